"Unit tests of ml_lifecycle.platform.endpoint: a real uvicorn server on loopback, boto3, data capture, tar safety."
import io, json, os, shutil, socket, subprocess, sys, tarfile, textwrap, time
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError

from ml_lifecycle.platform.endpoint import (MAX_PAYLOAD, DataCapture, LocalEndpoint, ModelPackageError, ServedModel,
                                            make_app, pack_model, read_capture, safe_extract, to_csv_payload)

FEATURES = ["a", "b", "c"]
ENDPOINT = "unit-endpoint"


@pytest.fixture(scope="module")
def model_tar(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).round(3)
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    bst = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, xgb.DMatrix(X, y), 8)
    return pack_model(bst, {"features": FEATURES}, tmp_path_factory.mktemp("pkg")/"model.tar.gz"), bst, X


@pytest.fixture(scope="module")
def served(model_tar, tmp_path_factory):
    tar, bst, X = model_tar
    capture = tmp_path_factory.mktemp("capture")
    ep = LocalEndpoint(tar, endpoint_name=ENDPOINT, capture_root=capture).start()
    yield ep, bst, X, capture
    ep.stop()


def _post(ep, body, ctype="text/csv", accept=None, path="/invocations", **headers):
    h = {"Content-Type": ctype, **headers}
    if accept: h["Accept"] = accept
    return requests.post(ep.url + path, data=body, headers=h, timeout=30)


def _still_serving(ep, X):
    assert requests.get(ep.url + "/ping", timeout=5).status_code == 200
    np.testing.assert_array_equal(ep.invoke(X[:2]), ServedModel(_model_dir(ep)).predict(X[:2]))


def _model_dir(ep):
    return Path(ep._tmp.name)/"model"


def _runtime(ep):
    return boto3.client("sagemaker-runtime", endpoint_url=ep.url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"max_attempts": 1}))


def test_ping_and_startup(served):
    ep, *_ = served
    assert requests.get(ep.url + "/ping", timeout=5).status_code == 200
    assert ep.host == "127.0.0.1" and ep.port > 0
    assert ep.startup_s < 3, f"start-up took {ep.startup_s:.2f}s"


def test_csv_single_and_many_rows(served):
    ep, bst, X, _ = served
    ref = bst.predict(xgb.DMatrix(X))
    r = _post(ep, to_csv_payload(X[:1]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    np.testing.assert_array_equal(np.float32(r.text.split()), ref[:1])
    r = _post(ep, to_csv_payload(X))
    np.testing.assert_array_equal(np.float32(r.text.split()), ref)  # exact, one per line
    assert len(r.text.strip().split("\n")) == len(X)


def test_json_lists_objects_and_accept(served):
    ep, bst, X, _ = served
    ref = bst.predict(xgb.DMatrix(X[:3]))
    body = json.dumps({"instances": X[:3].tolist()})
    r = _post(ep, body, "application/json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    np.testing.assert_array_equal(np.float32([p["score"] for p in r.json()["predictions"]]), ref)
    objs = json.dumps({"instances": [dict(zip(FEATURES, row)) for row in X[:3].tolist()]})
    np.testing.assert_array_equal(np.float32(_post(ep, objs, "application/json", accept="text/csv").text.split()), ref)
    r = _post(ep, to_csv_payload(X[:3]), accept="application/json")
    np.testing.assert_array_equal(np.float32([p["score"] for p in r.json()["predictions"]]), ref)
    assert _post(ep, to_csv_payload(X[:1]), accept="image/png").status_code == 406


def test_runtime_route_through_boto3(served):
    ep, bst, X, _ = served
    rt = _runtime(ep)
    r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:5]),
                           CustomAttributes="trace=1", InferenceId="boto-1", TargetVariant="AllTraffic")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["InvokedProductionVariant"] == "AllTraffic" and r["CustomAttributes"] == "trace=1"
    np.testing.assert_array_equal(np.float32(r["Body"].read().decode().split()), bst.predict(xgb.DMatrix(X[:5])))
    r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="application/json", Accept="application/json",
                           Body=json.dumps({"instances": X[:2].tolist()}))
    assert len(json.loads(r["Body"].read())["predictions"]) == 2
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="other-endpoint", ContentType="text/csv", Body=b"1,2,3")
    assert e.value.response["Error"]["Code"] == "ValidationError" and "other-endpoint" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="production variant"):
        rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2,3", TargetVariant="Canary")


@pytest.mark.parametrize("body,expected", [
    (b'1,"2\n', "malformed CSV"),                 # unterminated quote
    (b"1,2\n", "row 1 has 2 columns"),             # too few columns
    (b"0,1,2,3\n", "without a label"),             # label left in
    (b"1,2,3\n4,five,6\n", "row 2, column 2 ('b'): 'five' is not a number"),
    (b"a,b,c\n1,2,3\n", "header"),
    (b"", "no CSV rows"),
    (b"\xff\xfe,1,2\n", "not UTF-8"),
])
def test_400_bad_csv_then_still_serving(served, body, expected):
    ep, _, X, _ = served
    r = _post(ep, body)
    assert r.status_code == 400, r.text
    assert expected in r.json()["message"]
    assert r.headers["x-amzn-errortype"] == "ValidationError"
    _still_serving(ep, X)


@pytest.mark.parametrize("body,expected", [
    (b"{not json", "malformed JSON"),
    (b'{"rows": [[1,2,3]]}', '"instances"'),
    (b'{"instances": [[1, 2]]}', "has 2 values"),
    (b'{"instances": [[1, "2", 3]]}', "'2' is not a number"),
    (b'{"instances": [{"a": 1, "state": "KS"}]}', "unknown feature"),
])
def test_400_bad_json_then_still_serving(served, body, expected):
    ep, _, X, _ = served
    r = _post(ep, body, "application/json")
    assert r.status_code == 400 and expected in r.json()["message"]
    _still_serving(ep, X)


def test_413_over_6mb_and_415_content_type(served):
    ep, _, X, _ = served
    big = b"1,2,3\n" * (MAX_PAYLOAD // 6 + 1)
    assert len(big) > MAX_PAYLOAD
    r = _post(ep, big)
    assert r.status_code == 413 and "6 MB" in r.json()["message"]
    _still_serving(ep, X)
    with pytest.raises(ClientError) as e:  # and through boto3's runtime route
        _runtime(ep).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=big)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    for ctype in ("application/x-recordio-protobuf", "text/plain", ""):
        r = _post(ep, b"1,2,3", ctype)
        assert r.status_code == 415 and "text/csv" in r.json()["message"]
    _still_serving(ep, X)
    r = _post(ep, to_csv_payload(X[:1]), "text/csv; charset=utf-8")  # parameters are fine
    assert r.status_code == 200


def test_model_error_is_500_and_app_keeps_serving(model_tar, tmp_path):
    from starlette.testclient import TestClient
    tar, _, X = model_tar
    model = ServedModel(safe_extract(tar, tmp_path/"m"))
    calls = {"n": 0}
    real = model.predict
    def flaky(X):
        calls["n"] += 1
        if calls["n"] == 1: raise RuntimeError("booster exploded")
        return real(X)
    model.predict = flaky
    client = TestClient(make_app(model, ENDPOINT))
    r = client.post("/invocations", content=to_csv_payload(X[:1]), headers={"Content-Type": "text/csv"})
    assert r.status_code == 500 and "booster exploded" in r.json()["message"]
    assert r.headers["x-amzn-errortype"] == "ModelError"
    assert client.post("/invocations", content=to_csv_payload(X[:1]), headers={"Content-Type": "text/csv"}).status_code == 200


def test_capture_files_and_fields(served):
    ep, _, X, capture = served
    _runtime(ep).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:2]),
                                 InferenceId="capture-me", CustomAttributes="k=v")
    _post(ep, json.dumps({"instances": X[:1].tolist()}), "application/json", accept="application/json")
    files = sorted(capture.rglob("*.jsonl"))
    assert files
    for f in files:  # <root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<uuid>.jsonl
        endpoint, variant, yyyy, mm, dd, hh, name = f.relative_to(capture).parts
        assert (endpoint, variant) == (ENDPOINT, "AllTraffic")
        assert len(yyyy) == 4 and len(mm) == len(dd) == len(hh) == 2 and name.endswith(".jsonl")
        uuid_part = name.removesuffix(".jsonl")
        assert len(uuid_part) == 36
    recs = read_capture(capture, ENDPOINT)
    rec = next(r for r in recs if r["eventMetadata"].get("inferenceId") == "capture-me")
    assert set(rec) == {"captureData", "eventMetadata", "eventVersion"} and rec["eventVersion"] == "0"
    inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
    assert (inp["mode"], inp["encoding"], inp["observedContentType"]) == ("INPUT", "CSV", "text/csv")
    assert inp["data"] == to_csv_payload(X[:2]).decode()
    assert (out["mode"], out["encoding"]) == ("OUTPUT", "CSV") and len(out["data"].split()) == 2
    meta = rec["eventMetadata"]
    assert set(meta) == {"eventId", "inferenceId", "customAttributes", "inferenceTime"}
    assert meta["customAttributes"] == "k=v" and meta["inferenceTime"].endswith("Z")
    js = [r for r in recs if r["captureData"]["endpointInput"]["encoding"] == "JSON"]
    assert js and js[-1]["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert all(len({r["eventMetadata"]["eventId"] for r in recs}) == len(recs) for _ in [0])
    # errors are not captured
    n = len(read_capture(capture, ENDPOINT)); _post(ep, b"1,2\n")
    assert len(read_capture(capture, ENDPOINT)) == n


def test_capture_base64_and_sampling(tmp_path):
    cap = DataCapture(tmp_path, "e", sampling_percentage=0, seed=1)
    assert not any(cap.sampled() for _ in range(100))
    cap = DataCapture(tmp_path, "e", sampling_percentage=30, seed=1)
    assert 40 < sum(cap.sampled() for _ in range(200)) < 80  # about 30%
    rec = cap.record(b"\x00\x01", "application/x-npy", b"0.5\n", "text/csv")
    assert rec["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert rec["captureData"]["endpointInput"]["data"] == "AAE="
    with pytest.raises(ValueError, match="0 to 100"): DataCapture(tmp_path, "e", sampling_percentage=150)


def _alive(pid):
    try: os.kill(pid, 0); return True
    except ProcessLookupError: return False


def _listening(port):
    with socket.socket() as s: return s.connect_ex(("127.0.0.1", port)) == 0


def test_stop_leaves_no_process(model_tar):
    tar, _, X = model_tar
    with LocalEndpoint(tar) as ep:
        pid, port = ep.pid, ep.port
        assert _alive(pid) and _listening(port)
        ep.invoke(X[:1])
    assert not _alive(pid) and not _listening(port) and not ep.running
    with pytest.raises(ProcessLookupError): os.killpg(pid, 0)  # the whole process group is gone
    assert ep.stop() is None  # stopping twice is harmless


@pytest.mark.slow
def test_server_exits_when_parent_dies(model_tar, tmp_path):
    tar, _, _ = model_tar
    script = textwrap.dedent(f"""
        import os, sys
        from ml_lifecycle.platform.endpoint import LocalEndpoint
        ep = LocalEndpoint({str(tar)!r}).start()
        print(ep.pid, ep._tmp.name, flush=True)
        os._exit(0)  # a crash: no atexit, no stop()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid, tmp = out.stdout.split()
    pid = int(pid)
    shutil.rmtree(tmp, ignore_errors=True)  # the crashed parent could not clean its work folder
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline: time.sleep(0.1)
    assert not _alive(pid), "the server outlived the process that started it"


def _tar_with(path, member: tarfile.TarInfo, data=b"x"):
    with tarfile.open(path, "w:gz") as tf:
        if member.isfile(): member.size = len(data); tf.addfile(member, io.BytesIO(data))
        else: tf.addfile(member)
    return path


@pytest.mark.parametrize("name,kind,link,expected", [
    ("../evil.txt", tarfile.REGTYPE, "", "outside"),
    ("/tmp/evil_abs.txt", tarfile.REGTYPE, "", "outside"),
    ("a/../../evil.txt", tarfile.REGTYPE, "", "outside"),
    ("link", tarfile.SYMTYPE, "/etc/passwd", "link"),
    ("inner", tarfile.SYMTYPE, "xgboost-model.json", "link"),
    ("hard", tarfile.LNKTYPE, "/etc/passwd", "link"),
    ("fifo", tarfile.FIFOTYPE, "", "special"),
])
def test_tar_traversal_rejected(tmp_path, name, kind, link, expected):
    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link
    tar = _tar_with(tmp_path/"bad.tar.gz", ti)
    with pytest.raises(ModelPackageError, match=expected):
        safe_extract(tar, tmp_path/"out")
    assert not (tmp_path/"evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()
    assert not any((tmp_path/"out").iterdir())
    with pytest.raises(ModelPackageError):
        LocalEndpoint(tar).start()


def test_bad_package_fails_before_serving(model_tar, tmp_path):
    tar, bst, _ = model_tar
    with pytest.raises(ModelPackageError, match="lacks"):
        ServedModel(tmp_path)
    wrong = pack_model(bst, {"features": ["a", "b"]}, tmp_path/"wrong.tar.gz")
    with pytest.raises(ModelPackageError, match="expects 3 features"):
        LocalEndpoint(wrong).start()
