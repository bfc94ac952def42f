"Unit tests of ml_lifecycle.deploy: Spark batch transform, canary rollout and rollback, shadow comparison, SageMaker requests."
import io, json, os, pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import botocore.session
import xgboost as xgb
from hypothesis import given, settings, strategies as st

from ml_lifecycle.deploy import canary_rollout, check_step, compare_shadow, send_traffic
from ml_lifecycle.platform.aws import AwsRecorder
from ml_lifecycle.platform.capture import read_capture
from ml_lifecycle.platform.deployment import (DeployError, delete_sagemaker, deploy_sagemaker, endpoint_config_request,
                                              model_request, sagemaker_weights, validate_requests, weights_request)
from ml_lifecycle.platform.endpoint import LocalEndpoint, to_csv_payload
from ml_lifecycle.platform.payload import pack_model, safe_extract
from ml_lifecycle.platform.transform import (TransformError, TransformJobFailed, batch_transform, byte_ranges, read_lines,
                                             transform_job_request)

FEATURES = [f"x{i}" for i in range(6)]


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, len(FEATURES)))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    bst = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, y), 20)
    d = tmp_path_factory.mktemp("pkg")
    return pack_model(bst, {"features": FEATURES}, d/"model.tar.gz"), bst, X, y


# ---------------------------------------------------------------- batch transform

def _write(path: Path, X):
    path.parent.mkdir(parents=True, exist_ok=True); path.write_bytes(to_csv_payload(X))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=10),
       final_newline=st.booleans(), split=st.integers(1, 20), block=st.integers(1, 9))
def test_byte_ranges_read_every_line_once_in_order(lines, final_newline, split, block):
    "Whatever the split size and read block, the ranges' lines joined are the file: nothing lost, nothing read twice."
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    ranges = byte_ranges({"f": len(data)}, split)
    assert all(e - s <= split for _, s, e in ranges) and len(ranges) == max(1, -(-len(data) // split))
    assert [r[1] for r in ranges] == [0, *[r[2] for r in ranges[:-1]]] and ranges[-1][2] == len(data)
    got = [b"".join(read_lines(io.BytesIO(data), s, e, block)) for _, s, e in ranges]
    assert b"".join(got) == data
    at = 0
    for (_, s, e), g in zip(ranges, got):  # a range holds whole lines, the ones that begin inside it
        if g: assert s <= at < e and data[at - 1:at] in (b"", b"\n") and (g.endswith(b"\n") or at + len(g) == len(data))
        at += len(g)


@pytest.mark.slow
def test_batch_transform_equals_booster_in_order(spark, pkg, tmp_path):
    tar, bst, X, _ = pkg
    X = X.copy(); X[5, 2] = np.nan  # a missing value (empty field) is fine
    _write(tmp_path/"in"/"a.csv", X[:1500])
    _write(tmp_path/"in"/"day=2"/"b.csv", X[1500:])
    (tmp_path/"in"/"_SUCCESS").write_text("")  # marker files are not inputs
    out = tmp_path/"out"
    res = batch_transform(tar, str(tmp_path/"in"), str(out), spark=spark, split_mb=0.02)  # ~10 splits of a.csv
    assert res["files"] == 2 and res["rows"] == len(X) and res["seconds"] > 0
    assert res["TransformJobStatus"] == "Completed" and "FailureReason" not in res and res["failed"] == {}
    assert res["outputs"] == ["a.csv.out", "day=2/b.csv.out"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.csv.out", "day=2/b.csv.out"]
    ref = bst.predict(xgb.DMatrix(X))
    got = np.concatenate([np.float32((out/"a.csv.out").read_text().split()),
                          np.float32((out/"day=2"/"b.csv.out").read_text().split())])
    np.testing.assert_array_equal(got, ref)  # one line per input line, in input order, the booster's float32
    assert len((out/"a.csv.out").read_text().splitlines()) == 1500
    # a model directory works as well as a tar; a re-run replaces the outputs; a single file is an input too
    model_dir = safe_extract(tar, tmp_path/"model")
    res = batch_transform(str(model_dir), str(tmp_path/"in"/"a.csv"), str(out), spark=spark)
    assert res["files"] == 1 and res["rows"] == 1500
    np.testing.assert_array_equal(np.float32((out/"a.csv.out").read_text().split()), ref[:1500])
    assert not list(out.rglob("*.tmp")) and not (out/"_temporary").exists()


@pytest.mark.slow
def test_batch_transform_bad_inputs_name_the_file(spark, pkg, tmp_path):
    tar, _, X, _ = pkg
    _write(tmp_path/"cols"/"ok.csv", X[:10])
    (tmp_path/"cols"/"short.csv").write_text("1,2,3\n")
    with pytest.raises(TransformJobFailed, match=r"short\.csv.*Expected 6 columns, got 3"):
        batch_transform(tar, str(tmp_path/"cols"), str(tmp_path/"o1"), spark=spark)
    (tmp_path/"types").mkdir()
    (tmp_path/"types"/"words.csv").write_text("1,2,3,4,5,6\n1,2,three,4,5,6\n")
    with pytest.raises(TransformError, match=r"words\.csv.*three"):
        batch_transform(tar, str(tmp_path/"types"), str(tmp_path/"o2"), spark=spark)
    with pytest.raises(TransformError, match="does not exist"):
        batch_transform(tar, str(tmp_path/"nowhere"), str(tmp_path/"o3"), spark=spark)
    with pytest.raises(TransformError, match="text/csv"):
        batch_transform(tar, str(tmp_path/"cols"), str(tmp_path/"o4"), spark=spark, content_type="application/x-npy")
    assert (tmp_path/"o1"/"ok.csv.out").exists() and not (tmp_path/"o1"/"short.csv.out").exists()  # per file, as SageMaker
    assert not list((tmp_path/"o1").rglob("*.part"))   # and no parts are left behind


@pytest.mark.slow
def test_batch_transform_failed_file_fails_alone(spark, pkg, tmp_path):
    "Like SageMaker: the good files get their .out, the malformed one none, and the job ends Failed naming it."
    tar, bst, X, _ = pkg
    _write(tmp_path/"clean"/"a.csv", X[:600]); _write(tmp_path/"clean"/"c.csv", X[600:1000])
    clean = batch_transform(tar, str(tmp_path/"clean"), str(tmp_path/"clean_out"), spark=spark, split_mb=0.01)
    assert clean["TransformJobStatus"] == "Completed"
    _write(tmp_path/"in"/"a.csv", X[:600]); _write(tmp_path/"in"/"c.csv", X[600:1000])
    body = to_csv_payload(X[:300]).decode().splitlines()  # the middle file: good lines around one malformed line,
    (tmp_path/"in"/"b.csv").write_text("\n".join(body[:150] + ["1,2,3"] + body[150:]) + "\n")  # several ranges
    out = tmp_path/"out"; out.mkdir()
    (out/"b.csv.out").write_text("0.5\n")  # a stale output of an earlier run
    with pytest.raises(TransformJobFailed) as err:
        batch_transform(tar, str(tmp_path/"in"), str(out), spark=spark, split_mb=0.01, job_name="fails-alone")
    job = err.value.job
    assert isinstance(err.value, TransformError)  # callers catching TransformError keep working
    assert job["TransformJobName"] == "fails-alone" and job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"] == str(err.value) and len(job["FailureReason"]) <= 1024
    assert job["FailureReason"].startswith("1 of 3 input files failed, and have no .out: b.csv. First error, in b.csv: ")
    assert "Expected 6 columns, got 3" in job["FailureReason"]
    assert job["outputs"] == ["a.csv.out", "c.csv.out"] and list(job["failed"]) == ["b.csv"]
    assert job["files"] == 3 and job["rows"] == 1000  # rows written: the good files'
    for n in ("a.csv.out", "c.csv.out"):
        assert (out/n).read_bytes() == (tmp_path/"clean_out"/n).read_bytes()  # what a clean run writes
    assert sorted(p.name for p in out.rglob("*")) == ["a.csv.out", "c.csv.out"]  # no b.csv.out, parts, .tmp, _temporary
    # the description's SageMaker fields are DescribeTransformJob's
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("DescribeTransformJob").output_shape
    camel = [k for k in job if k[0].isupper()]
    assert set(camel) <= set(shape.members) and job["TransformJobStatus"] in shape.members["TransformJobStatus"].enum
    assert set(shape.members["TransformOutput"].members) >= set(job["TransformOutput"])
    assert set(shape.members["TransformInput"].members) >= set(job["TransformInput"])
    assert pickle.loads(pickle.dumps(err.value)).job["failed"] == job["failed"]


@pytest.mark.slow
def test_batch_transform_blank_lines_and_empty_file(spark, pkg, tmp_path):
    tar, bst, X, _ = pkg
    body = to_csv_payload(X[:3]).decode().splitlines()
    (tmp_path/"in").mkdir()
    (tmp_path/"in"/"gaps.csv").write_text(body[0] + "\n\n" + body[1] + "\n" + body[2] + "\n\n")
    (tmp_path/"in"/"empty.csv").write_text("")
    res = batch_transform(tar, str(tmp_path/"in"), str(tmp_path/"out"), spark=spark)
    assert res == {**res, "files": 2, "rows": 3}
    np.testing.assert_array_equal(np.float32((tmp_path/"out"/"gaps.csv.out").read_text().split()),
                                  bst.predict(xgb.DMatrix(X[:3])))
    assert (tmp_path/"out"/"empty.csv.out").read_text() == ""


# ---------------------------------------------------------------- canary rollout

def test_canary_rollout_promotes_or_rolls_back():
    applied = []
    res = canary_rollout(applied.append, lambda s: {"ok": True, "share": s}, "Prod", "Cand", (0.1, 0.5, 1.0))
    assert res["outcome"] == "promoted" and res["serving"] == "Cand"
    assert applied == [{"Prod": 0.9, "Cand": 0.1}, {"Prod": 0.5, "Cand": 0.5}, {"Prod": 0.0, "Cand": 1.0}]
    applied.clear()
    res = canary_rollout(applied.append, lambda s: {"ok": s < 0.5}, "Prod", "Cand", (0.1, 0.5, 1.0))
    assert res["outcome"] == "rolled back" and res["failed_step"] == 0.5 and res["serving"] == "Prod"
    assert applied[-1] == {"Prod": 1.0, "Cand": 0.0} and len(res["history"]) == 2


@pytest.mark.slow
def test_canary_on_endpoint_rolls_back_a_failing_candidate(pkg, tmp_path):
    "A candidate that answers 5xx fails the health check at the first step; traffic returns to production."
    tar, bst, X, y = pkg
    Xd = pd.DataFrame(X, columns=FEATURES)
    mc = xgb.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1}, xgb.DMatrix(X, np.arange(len(X)) % 3), 2)
    broken = pack_model(mc, {"features": FEATURES}, tmp_path/"broken.tar.gz")
    variants = [{"VariantName": "Production", "ModelName": "good", "InitialVariantWeight": 1.0},
                {"VariantName": "Canary", "ModelName": "broken", "InitialVariantWeight": 0.0}]
    with LocalEndpoint(endpoint_name="canary-test", variants=variants, models={"good": tar, "broken": broken},
                       workers=2) as ep:
        rt = ep.runtime_client(retries={"max_attempts": 1})
        res = canary_rollout(ep.update_weights, lambda s: check_step(rt, "canary-test", "Production", "Canary",
                                                                     Xd, Xd[:300], y[:300], n=100, seed=1),
                             "Production", "Canary", (0.2, 0.5, 1.0))
        assert res["outcome"] == "rolled back" and res["failed_step"] == 0.2
        step = res["history"][0]
        assert step["candidate_errors"] > 0 and "errors" in step["reason"]
        assert ep.weights == {"Production": 1.0, "Canary": 0.0}
        after = send_traffic(rt, "canary-test", Xd, 50)
        assert set(after.variant) == {"Production"} and set(after.status) == {200}


# ---------------------------------------------------------------- shadow

@pytest.mark.slow
def test_shadow_comparison_from_capture(pkg, tmp_path):
    tar, bst, X, _ = pkg
    other = xgb.train({"objective": "binary:logistic", "max_depth": 1, "nthread": 1},
                      xgb.DMatrix(X, (X[:, 0] > 0.3).astype(int)), 5)
    tar_b = pack_model(other, {"features": FEATURES}, tmp_path/"b.tar.gz")
    Xd = pd.DataFrame(X, columns=FEATURES)
    for shadow_tar, same in [(tar, True), (tar_b, False)]:
        cap = tmp_path/f"cap-{same}"
        with LocalEndpoint(endpoint_name="shadow-test", models={"p": tar, "s": shadow_tar}, capture_root=cap, workers=2,
                           variants=[{"VariantName": "Prod", "ModelName": "p"}],
                           shadow_variants=[{"VariantName": "Shadow", "ModelName": "s"}]) as ep:
            t = send_traffic(ep.runtime_client(), "shadow-test", Xd, 60)
            import time; time.sleep(0.3)
        assert set(t.variant) == {"Prod"}
        cmp = compare_shadow(cap, "shadow-test", "Prod", "Shadow")
        assert cmp["requests"] == cmp["rows"] == 60
        if same: assert cmp["agreement"] == 1.0 and cmp["max_abs_diff"] == 0.0
        else:
            a, b = bst.predict(xgb.DMatrix(X)), other.predict(xgb.DMatrix(X))
            assert 0 < cmp["max_abs_diff"] <= float(np.abs(a - b).max()) + 1e-6 and cmp["agreement"] < 1.0
        for r in read_capture(cap, "shadow-test", "Shadow"):  # SageMaker's capture format, field by field
            assert r["eventVersion"] == "0" and set(r["captureData"]) == {"endpointInput", "endpointOutput"}
            assert set(r["captureData"]["endpointOutput"]) == {"observedContentType", "mode", "data", "encoding"}
            assert {"eventId", "inferenceTime"} <= set(r["eventMetadata"])


# ---------------------------------------------------------------- SageMaker requests

def _requests():
    role, image = "arn:aws:iam::111122223333:role/SM", "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
    return {
        "create_model": [model_request(n, f"s3://b/models/{n}/model.tar.gz", image, role)
                         for n in ("churn-v1", "churn-v2")],
        "create_endpoint_config": endpoint_config_request(
            "churn-config", [{"VariantName": "Production", "ModelName": "churn-v1", "InitialVariantWeight": 1.0},
                             {"VariantName": "Canary", "ModelName": "churn-v2", "InitialVariantWeight": 0.0}],
            "s3://b/datacapture", shadow_variants=[{"VariantName": "Shadow", "ModelName": "churn-v2"}],
            capture_percentage=20, kms_key_id="arn:aws:kms:us-east-1:111122223333:key/abc"),
        "create_endpoint": {"EndpointName": "churn-endpoint", "EndpointConfigName": "churn-config"},
        "update_endpoint_weights_and_capacities": [weights_request("churn-endpoint", {"Production": 0.9, "Canary": 0.1})],
        "create_transform_job": transform_job_request("churn-transform", "churn-v2", "s3://b/in/", "s3://b/out/"),
    }


def test_sagemaker_requests_validate_against_botocore():
    reqs = validate_requests(_requests())
    cfg = reqs["create_endpoint_config"]
    assert [v["InitialVariantWeight"] for v in cfg["ProductionVariants"]] == [1.0, 0.0]
    assert cfg["ShadowProductionVariants"][0]["VariantName"] == "Shadow"
    assert cfg["DataCaptureConfig"]["InitialSamplingPercentage"] == 20 and cfg["DataCaptureConfig"]["KmsKeyId"]
    tj = reqs["create_transform_job"]
    assert (tj["TransformInput"]["SplitType"], tj["TransformOutput"]["AssembleWith"]) == ("Line", "Line")
    bad = _requests(); bad["create_transform_job"]["TransformInput"]["SplitType"] = "Row"
    with pytest.raises(DeployError, match="SplitType"): validate_requests(bad)
    bad = _requests(); bad["create_endpoint_config"]["DataCaptureConfig"]["InitialSamplingPercentage"] = 101
    with pytest.raises(DeployError, match="InitialSamplingPercentage"): validate_requests(bad)


def test_deploy_canary_and_cleanup_calls_through_recorder():
    reqs = validate_requests(_requests())
    rec = AwsRecorder(responses={"DescribeEndpoint": {"EndpointName": "churn-endpoint", "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/churn-endpoint",
                                                      "EndpointConfigName": "churn-config", "EndpointStatus": "InService",
                                                      "CreationTime": 0, "LastModifiedTime": 0}})
    assert deploy_sagemaker(reqs, "us-east-1", session=rec.session, wait=False)["EndpointStatus"] == "InService"
    sm = rec.client("sagemaker")
    res = canary_rollout(sagemaker_weights(sm, "churn-endpoint", wait=False), lambda s: {"ok": True},
                         "Production", "Canary", (0.1, 0.5, 1.0))
    assert res["outcome"] == "promoted"
    sm.create_transform_job(**reqs["create_transform_job"])
    delete_sagemaker(sm, "churn-endpoint", ["churn-config"], ["churn-v1", "churn-v2"])
    assert rec.ops() == ["CreateModel", "CreateModel", "CreateEndpointConfig", "DescribeEndpoint", "UpdateEndpoint",
                         "DescribeEndpoint"] + ["UpdateEndpointWeightsAndCapacities"] * 3 + [
                         "CreateTransformJob", "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel", "DeleteModel"]
    assert [c["DesiredWeightsAndCapacities"][1]["DesiredWeight"] for c in rec.find("UpdateEndpointWeightsAndCapacities")] == [0.1, 0.5, 1.0]
