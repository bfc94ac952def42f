"""The whole series on an S3 lake: local compute, the lake on `s3://` served by moto on loopback.

This is what aws mode does with its data, for real, without an AWS account: boto3, pandas/s3fs,
MLflow's artifact store and Spark's `s3a://` connector (hadoop-aws) all read and write the lake
through the S3 API of moto's server on loopback (`s3_server` in conftest.py). Only the compute stays local (mode='local'):
SageMaker jobs, endpoints and schedules are checked by request in tests/test_aws.py."""
import os, time, uuid
from pathlib import Path

import boto3, pytest

from ml_lifecycle.platform.runner import stage_notebooks
from ml_lifecycle.platform.storage import Lake

from conftest import BUCKET


@pytest.mark.s3
def test_lake_round_trip_on_s3(s3_server):
    "Lake's reads, writes, folder publishing and pointers work against the S3 API."
    lake = Lake(f"s3://{BUCKET}/unit-{uuid.uuid4().hex[:6]}")
    lake.write_json({"a": 1}, "x", "doc.json")
    assert lake.read_json("x", "doc.json") == {"a": 1}
    assert lake.spark_uri("x").startswith("s3a://")
    lake.set_pointer("t", "raw", version="v1")
    assert lake.pointer("t", "raw")["version"] == "v1"


@pytest.mark.slow
@pytest.mark.s3
def test_spark_reads_and_writes_s3a(s3_server, tmp_path):
    "Spark's s3a:// connector (hadoop-aws) writes and reads Parquet in the bucket itself, not via local copies."
    from ml_lifecycle.platform.spark import get_spark, stop_spark
    stop_spark()   # a session started before the server has no s3a endpoint
    spark = get_spark()
    try:
        uri = f"s3a://{BUCKET}/spark-{uuid.uuid4().hex[:6]}/t"
        spark.range(100).selectExpr("id", "id % 3 AS k").write.mode("overwrite").parquet(uri)
        assert spark.read.parquet(uri).count() == 100
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=uri.split("/", 3)[3])["Contents"]]
        assert any(k.endswith(".parquet") for k in keys) and any(k.endswith("_SUCCESS") for k in keys)
    finally:
        stop_spark()


@pytest.mark.slow
@pytest.mark.s3
def test_batch_transform_reads_and_writes_s3(s3_server, tmp_path):
    "Batch transform's tasks read their byte ranges from the bucket and write the `.out` files there."
    import numpy as np, xgboost as xgb
    from ml_lifecycle.platform.endpoint import to_csv_payload
    from ml_lifecycle.platform.payload import pack_model
    from ml_lifecycle.platform.transform import TransformJobFailed, batch_transform
    from ml_lifecycle.platform.spark import get_spark, stop_spark
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)); y = (X[:, 0] + rng.normal(size=400) > 0).astype(float)
    bst = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, label=y), 10)
    tar = pack_model(bst, {"features": [f"x{i}" for i in range(4)], "label": "y"}, tmp_path/"model.tar.gz")
    prefix = f"transform-{uuid.uuid4().hex[:6]}"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/a.csv", Body=to_csv_payload(X[:250]))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/b.csv", Body=to_csv_payload(X[250:]))
    try:  # the session (and its Python workers) may predate the server: batch_transform hands the tasks its settings
        res = batch_transform(tar, f"s3://{BUCKET}/{prefix}/in", f"s3://{BUCKET}/{prefix}/out", spark=get_spark(), split_mb=0.002)
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/c.csv", Body=b"1,2\n")  # a malformed object fails alone
        with pytest.raises(TransformJobFailed, match=r"c\.csv.*Expected 4 columns"):
            batch_transform(tar, f"s3://{BUCKET}/{prefix}/in", f"s3://{BUCKET}/{prefix}/out2", spark=get_spark(), split_mb=0.002)
    finally:
        stop_spark()
    assert res["files"] == 2 and res["rows"] == 400
    got = np.concatenate([np.float32(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/out/{n}.csv.out")["Body"].read().split())
                          for n in "ab"])
    np.testing.assert_array_equal(got, bst.predict(xgb.DMatrix(X)))
    assert sorted(_keys(f"{prefix}/out")) == ["a.csv.out", "b.csv.out"]
    assert sorted(_keys(f"{prefix}/out2")) == ["a.csv.out", "b.csv.out"]  # the good objects' outputs, no parts
    assert all(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/out2/{n}.csv.out")["Body"].read()
               == s3.get_object(Bucket=BUCKET, Key=f"{prefix}/out/{n}.csv.out")["Body"].read() for n in "ab")


def _keys(prefix: str) -> list[str]:
    s3, keys = boto3.client("s3"), []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys += [o["Key"][len(prefix) + 1:] for o in page.get("Contents", [])]
    return keys


# Small but real: fewer boosting rounds, folds and tuning trials than the defaults, so the S3 run fits CI.
STAGE_PARAMETERS = {
    "02_explore": {"rel_error": 0.01},
    "04_train": {"hyperparameters": {"num_round": 300, "eta": 0.1, "early_stopping_rounds": 20, "cv_folds": 3}},
    "05_tune": {"n_trials": 3, "num_round": 300, "cv_folds": 2, "warm_start": False},
    "07_deploy": {"latency_requests": 20},
}


def s3_stages() -> list:
    """00_ingest … 07_deploy: every stage that reads or writes the lake's data through Spark, pandas or boto3.
    08_monitor (3 more minutes; its capture stays in a local folder with an S3 lake) joins with ML_LIFECYCLE_S3_FULL=1."""
    stages = stage_notebooks()
    return stages if os.environ.get("ML_LIFECYCLE_S3_FULL") == "1" else [p for p in stages if p.stem < "08"]


@pytest.mark.notebooks
@pytest.mark.s3
def test_series_on_s3_lake(s3_server, tmp_path):
    "All stages run with the lake on s3:// and leave each stage's outputs as objects in the bucket."
    import re
    from ml_lifecycle.platform.runner import run_notebook, NotebookFailed
    from ml_lifecycle.platform.spark import stop_spark
    stop_spark()   # the notebooks start their own Spark; this process holds none while they run
    prefix = f"series-{uuid.uuid4().hex[:8]}"
    lake_uri = f"s3://{BUCKET}/{prefix}"
    t0, times, error = time.time(), {}, None
    os.environ["ML_LIFECYCLE_WORK"] = str(tmp_path/"jobs")
    try:
        for nb in s3_stages():
            t = time.time()
            try: run_notebook(nb, tmp_path/"runs"/nb.name, {"lake": lake_uri, "mode": "local",
                                                            **STAGE_PARAMETERS.get(nb.stem, {})})
            except NotebookFailed as e: error = e; break
            finally: times[nb.stem] = round(time.time() - t)
    finally: os.environ.pop("ML_LIFECYCLE_WORK", None)
    print(f"S3 series: {time.time() - t0:.0f} s {times}")
    keys = _keys(prefix)
    print(f"{len(keys)} objects under s3://{BUCKET}/{prefix}/")
    done = set(times) - ({Path(error.notebook).stem} if error else set())
    t = "mlc_churn"
    expected = {  # the lake contract, stage by stage (see CONTRACT.md)
        "00_ingest": [rf"raw/{t}/version=[^/]+/part-00000\.parquet", rf"raw/{t}/version=[^/]+/_manifest\.json",
                      rf"raw/{t}/version=[^/]+/_SUCCESS", rf"catalog/{t}\.json", rf"_pointers/{t}/raw\.json"],
        "01_validate": [rf"quality/{t}/version=[^/]+/verification\.json", rf"_pointers/{t}/validated\.json"],
        "02_explore": [rf"explore/{t}/version=[^/]+/stats\.json"],
        "03_prepare": [rf"features/{t}/version=[^/]+/{s}/data\.(csv|parquet)" for s in ("train", "validation", "test")]
                      + [rf"features/{t}/version=[^/]+/feature_metadata\.json", rf"_pointers/{t}/features\.json"],
        "04_train": [rf"models/{t}/[^/]+/model\.tar\.gz", rf"models/{t}/[^/]+/metrics\.json", rf"_pointers/{t}/trained\.json"],
        "05_tune": [rf"tuning/{t}/[^/]+/best\.json", rf"_pointers/{t}/tuned\.json"],
        "06_evaluate": [rf"evaluation/{t}/[^/]+/evaluation\.json"],
        "07_deploy": [rf"_pointers/{t}/endpoint\.json"],
        "08_monitor": [rf"monitoring/{t}/baseline/statistics\.json", rf"monitoring/{t}/baseline/constraints\.json",
                       rf"monitoring/{t}/[^/]+/[^/]+/\d{{4}}/\d\d/\d\d/\d\d/constraint_violations\.json"],
    }
    missing = {nb: [p for p in pats if not any(re.fullmatch(p, k) for k in keys)]
               for nb, pats in expected.items() if nb in done}
    missing = {nb: m for nb, m in missing.items() if m}
    assert error is None, f"series on S3 failed: {error}"
    assert not missing, f"objects missing from the bucket: {missing}"
    assert list(times) == [p.stem for p in s3_stages()]
    assert not (tmp_path/"lake").exists(), "the S3 run wrote a local lake"
