"Unit tests of ml_lifecycle.platform.endpoint: a real uvicorn server on loopback, boto3, data capture, tar safety."
import io, json, os, re, shutil, socket, subprocess, sys, tarfile, textwrap, time
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
import xgboost as xgb
from botocore.config import Config
from botocore.exceptions import ClientError

from ml_lifecycle.platform.capture import DataCapture, read_capture
from ml_lifecycle.platform.endpoint import EndpointError, LocalEndpoint, to_csv_payload
from ml_lifecycle.platform.payload import MAX_PAYLOAD, ModelPackageError, ServedModel, pack_model, safe_extract
from ml_lifecycle.platform.routes import make_app

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
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}))


def _model_error(rt, **kw):
    "The parsed response of an invoke_endpoint that must raise botocore's modelled `ModelError`."
    with pytest.raises(rt.exceptions.ModelError) as e:
        rt.invoke_endpoint(**{"EndpointName": ENDPOINT, **kw})
    return e.value.response


CAPTURE_NAME = re.compile(r"^\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl$")  # SageMaker's <mm-ss-mmm>-<uuid>.jsonl


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
    assert r["InvokedProductionVariant"] == "AllTraffic"
    assert "CustomAttributes" not in r  # echoed only when the model sets it (this container never does)
    assert r["ContentType"] == "text/csv; charset=utf-8" and r["ResponseMetadata"]["RequestId"]
    np.testing.assert_array_equal(np.float32(r["Body"].read().decode().split()), bst.predict(xgb.DMatrix(X[:5])))
    r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="application/json", Accept="application/json",
                           Body=json.dumps({"instances": X[:2].tolist()}))
    assert len(json.loads(r["Body"].read())["predictions"]) == 2
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="other-endpoint", ContentType="text/csv", Body=b"1,2,3")
    assert e.value.response["Error"]["Code"] == "ValidationError" and "other-endpoint" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="production variant") as e:  # SageMaker checks the variant: no ModelError
        rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2,3", TargetVariant="Canary")
    assert e.value.response["Error"]["Code"] == "ValidationError" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_runtime_bad_row_is_model_error_424(served):
    "A row the container refuses (400) reaches a boto3 caller as SageMaker's 424 ModelError, with the container's status and message."
    ep, bst, X, _ = served
    rt = _runtime(ep)
    err = _model_error(rt, ContentType="text/csv", Body=b"1,2,3\n4,five,6\n")
    assert err["Error"]["Code"] == "ModelError" and err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 400
    assert "row 2, column 2 ('b'): 'five' is not a number" in err["OriginalMessage"]
    assert json.loads(err["OriginalMessage"])["message"].startswith("row 2")  # the container's body, verbatim
    assert err["Error"]["Message"].startswith("Received client error (400) from primary with message")
    assert err["LogStreamArn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}"
    assert err["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert err["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:  # any ClientError handler sees the same
        rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2\n")
    assert e.value.response["Error"]["Code"] == "ModelError" and e.value.response["OriginalStatusCode"] == 400
    r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:1]))  # still serving
    np.testing.assert_array_equal(np.float32(r["Body"].read().decode().split()), bst.predict(xgb.DMatrix(X[:1])))
    assert "CustomAttributes" not in r
    # the container route keeps the container's own status
    r = _post(ep, b"1,2\n")
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationError"


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
    with pytest.raises(ClientError) as e:  # and through boto3's runtime route: SageMaker's own limit, a bare 413
        _runtime(ep).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=big)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413 and e.value.response["Error"]["Code"] == "413"
    assert e.value.response["Error"]["Message"] == f"HTTP content length exceeded {MAX_PAYLOAD} bytes."
    for ctype in ("application/x-recordio-protobuf", "text/plain", ""):
        r = _post(ep, b"1,2,3", ctype)
        assert r.status_code == 415 and "text/csv" in r.json()["message"]
    err = _model_error(_runtime(ep), ContentType="text/plain", Body=b"1,2,3")  # the container's 415, as SageMaker reports it
    assert (err["ResponseMetadata"]["HTTPStatusCode"], err["OriginalStatusCode"]) == (424, 415)
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
    rb = _runtime(ep).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:2]),
                                      InferenceId="capture-me", CustomAttributes="k=v")
    rj = _post(ep, json.dumps({"instances": X[:1].tolist()}), "application/json", accept="application/json",
               **{"X-Amzn-SageMaker-Inference-Id": "capture-json"})
    files = sorted(capture.rglob("*.jsonl"))
    assert files
    for f in files:  # <root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl
        endpoint, variant, yyyy, mm, dd, hh, name = f.relative_to(capture).parts
        assert (endpoint, variant) == (ENDPOINT, "AllTraffic")
        assert len(yyyy) == 4 and len(mm) == len(dd) == len(hh) == 2
        assert CAPTURE_NAME.match(name), name
        first = json.loads(f.read_text().splitlines()[0])["eventMetadata"]["inferenceTime"]  # 2026-01-05T08:36:19.617Z
        assert name[:9] == f"{first[14:16]}-{first[17:19]}-{first[20:23]}"  # the minute, second, ms the file was started
        assert (yyyy, mm, dd, hh) == (first[:4], first[5:7], first[8:10], first[11:13])
    recs = read_capture(capture, ENDPOINT)
    rec = next(r for r in recs if r["eventMetadata"].get("inferenceId") == "capture-me")
    assert set(rec) == {"captureData", "eventMetadata", "eventVersion"} and rec["eventVersion"] == "0"
    inp, out = rec["captureData"]["endpointInput"], rec["captureData"]["endpointOutput"]
    assert (inp["mode"], inp["encoding"], inp["observedContentType"]) == ("INPUT", "CSV", "text/csv")
    assert inp["data"] == to_csv_payload(X[:2]).decode()
    assert (out["mode"], out["encoding"]) == ("OUTPUT", "CSV") and len(out["data"].split()) == 2
    # the Content-Type the server actually answered, parameters and all
    assert out["observedContentType"] == rb["ContentType"] == rb["ResponseMetadata"]["HTTPHeaders"]["content-type"]
    assert out["observedContentType"] == "text/csv; charset=utf-8"
    rec_j = next(r for r in recs if r["eventMetadata"].get("inferenceId") == "capture-json")
    assert rec_j["captureData"]["endpointOutput"]["observedContentType"] == rj.headers["content-type"] == "application/json"
    assert rec_j["captureData"]["endpointInput"]["observedContentType"] == "application/json"
    meta = rec["eventMetadata"]
    assert set(meta) == {"eventId", "inferenceId", "customAttributes", "inferenceTime"}
    assert meta["customAttributes"] == "k=v" and meta["inferenceTime"].endswith("Z")
    js = [r for r in recs if r["captureData"]["endpointInput"]["encoding"] == "JSON"]
    assert js and js[-1]["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert all(len({r["eventMetadata"]["eventId"] for r in recs}) == len(recs) for _ in [0])
    # errors are not captured, on either route
    n = len(read_capture(capture, ENDPOINT)); _post(ep, b"1,2\n")
    with pytest.raises(ClientError): _runtime(ep).invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2\n")
    assert len(read_capture(capture, ENDPOINT)) == n


def test_capture_request_content_type_as_sent(served):
    "endpointInput.observedContentType is the request's header verbatim (parameters kept)."
    ep, _, X, capture = served
    r = _post(ep, to_csv_payload(X[:1]), "text/csv; charset=utf-8", **{"X-Amzn-SageMaker-Inference-Id": "ctype-param"})
    assert r.status_code == 200
    rec = next(r for r in read_capture(capture, ENDPOINT) if r["eventMetadata"].get("inferenceId") == "ctype-param")
    assert rec["captureData"]["endpointInput"]["observedContentType"] == "text/csv; charset=utf-8"
    assert rec["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert rec["captureData"]["endpointOutput"]["observedContentType"] == r.headers["content-type"]


def test_capture_file_name_from_first_record(tmp_path):
    "A capture file is named by its first record's minute, second and millisecond; later records of the hour join it."
    from datetime import datetime, timezone
    cap = DataCapture(tmp_path, "e")
    t1, t2 = datetime(2026, 1, 5, 8, 36, 19, 617000, timezone.utc), datetime(2026, 1, 5, 8, 59, 1, 2000, timezone.utc)
    p1 = cap.write(cap.record(b"1,2,3\n", "text/csv", b"0.5\n", "text/csv; charset=utf-8", when=t1))
    p2 = cap.write(cap.record(b"1,2,3\n", "text/csv", b"0.5\n", "text/csv; charset=utf-8", when=t2))
    p3 = cap.write(cap.record(b"1,2,3\n", "text/csv", b"0.5\n", "text/csv", when=t1.replace(hour=9, minute=0, second=0, microsecond=5000)))
    cap.close()
    assert p1 == p2 and p1.parent == tmp_path/"e"/"AllTraffic"/"2026"/"01"/"05"/"08"
    assert CAPTURE_NAME.match(p1.name) and p1.name.startswith("36-19-617-")
    assert p3.parent.name == "09" and p3.name.startswith("00-00-005-") and CAPTURE_NAME.match(p3.name)
    assert len(read_capture(tmp_path, "e")) == 3


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
    ("inner", tarfile.SYMTYPE, "xgboost-model", "link"),
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
    with pytest.raises(ModelPackageError, match="not 'xgboost-model'"):
        ServedModel(tmp_path)
    (tmp_path/"xgboost-model").write_bytes(bytes(bst.save_raw("json")))
    with pytest.raises(ModelPackageError, match="lacks metadata/feature_metadata.json"):
        ServedModel(tmp_path)
    wrong = pack_model(bst, {"features": ["a", "b"]}, tmp_path/"wrong.tar.gz")
    with pytest.raises(ModelPackageError, match="expects 3 features"):
        LocalEndpoint(wrong).start()


# ---- the production server: gunicorn + uvicorn workers, variants, shadow, capture from several workers ----

from concurrent.futures import ThreadPoolExecutor


@pytest.fixture(scope="module")
def multi(model_tar, tmp_path_factory):
    "A two-worker endpoint (each worker loads the model)."
    tar, bst, X = model_tar
    ep = LocalEndpoint(tar, endpoint_name=ENDPOINT, workers=2).start()
    yield ep, bst, X
    ep.stop()


BAD_REQUESTS = [  # body, Content-Type, Accept, expected status, words the message must contain
    (b'1,"2\n', "text/csv", None, 400, "malformed CSV"),
    (b"1,2\n", "text/csv", None, 400, "row 1 has 2 columns"),
    (b"1,2,3\n4,5\n", "text/csv", None, 400, "row 2 has 2 columns"),
    (b"0,1,2,3\n", "text/csv", None, 400, "without a label"),
    (b"1,2,3\n4,five,6\n", "text/csv", None, 400, "row 2, column 2 ('b'): 'five' is not a number"),
    (b"1,2,inf\n", "text/csv", None, 400, "row 1, column 3 ('c'): inf is not a finite number"),
    (b"", "text/csv", None, 400, "no CSV rows"),
    (b"a,b,c\n1,2,3\n", "text/csv", None, 400, "header"),
    (b"{not json", "application/json", None, 400, "malformed JSON"),
    (b"", "application/json", None, 400, "malformed JSON"),
    (b"[[1, 2, 3]]", "application/json", None, 400, '"instances"'),
    (b'{"instances": []}', "application/json", None, 400, "at least one instance"),
    (b'{"instances": [[1, 2]]}', "application/json", None, 400, "instance 1 has 2 values"),
    (b'{"instances": [[1, 2, 3], [1, true, 3]]}', "application/json", None, 400, "instance 2, column 2 ('b')"),
    (b'{"instances": [{"a": 1, "state": "KS"}]}', "application/json", None, 400, "unknown feature"),
    (b'{"instances": ["1,2,3"]}', "application/json", None, 400, "instance 1 is a str"),
    (b"1,2,3\n" * (MAX_PAYLOAD // 6 + 1), "text/csv", None, 413, "6 MB"),
    (b"1,2,3\n", "application/x-npy", None, 415, "not supported"),
    (b"1,2,3\n", "", None, 415, "not supported"),
    (b"1,2,3\n", "text/csv", "image/png", 406, "Accept"),
]


@pytest.mark.parametrize("body,ctype,accept,status,expected", BAD_REQUESTS,
                         ids=[f"{s}-{e[:30]}" for *_, s, e in BAD_REQUESTS])
def test_bad_request_table_on_workers(multi, body, ctype, accept, status, expected):
    "Every client mistake gets its status and a message that names it; all workers keep serving."
    ep, bst, X = multi
    workers = ep.worker_pids()
    r = _post(ep, body, ctype, accept)
    assert r.status_code == status, r.text
    assert expected in r.json()["message"], r.json()["message"]
    assert r.headers["x-amzn-errortype"] == "ValidationError"
    for _ in range(4):  # several requests, so both workers answer a good one
        good = _post(ep, to_csv_payload(X[:3]))
        assert good.status_code == 200
        np.testing.assert_array_equal(np.float32(good.text.split()), bst.predict(xgb.DMatrix(X[:3])))
    assert ep.worker_pids() == workers  # no worker died or was replaced


@pytest.mark.parametrize("body,ctype,accept,status,expected", BAD_REQUESTS,
                         ids=[f"{s}-{e[:30]}" for *_, s, e in BAD_REQUESTS])
def test_bad_request_table_on_runtime_route(multi, body, ctype, accept, status, expected):
    "Through boto3: SageMaker's own checks keep their codes (413, empty body), the container's refusals become 424 ModelError."
    ep, bst, X = multi
    rt = _runtime(ep)
    kw = {"ContentType": ctype, "Body": body, **({"Accept": accept} if accept else {})}
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName=ENDPOINT, **kw)
    err = e.value.response
    if status == 413:  # the 6 MB limit is SageMaker's, before the container
        assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (413, "413")
    elif body == b"":  # so is a body at all
        assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (400, "ValidationError")
    else:
        assert isinstance(e.value, rt.exceptions.ModelError)
        assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["OriginalStatusCode"]) == (424, "ModelError", status)
        assert expected in json.loads(err["OriginalMessage"])["message"], err["OriginalMessage"]  # the container's body, verbatim
    r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:3]))
    np.testing.assert_array_equal(np.float32(r["Body"].read().decode().split()), bst.predict(xgb.DMatrix(X[:3])))


def test_model_failure_and_timeout_are_5xx_with_reason(tmp_path):
    "A model that cannot serve → 500 ModelError with the reason; a slow one → 504; the workers survive."
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 3))
    mc = xgb.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1}, xgb.DMatrix(X, np.arange(90) % 3), 2)
    tar = pack_model(mc, {"features": FEATURES}, tmp_path/"multiclass.tar.gz")  # deployed by mistake
    with LocalEndpoint(tar, workers=2) as ep:
        workers = ep.worker_pids()
        for _ in range(3):
            r = _post(ep, to_csv_payload(X[:2]))
            assert r.status_code == 500 and r.headers["x-amzn-errortype"] == "ModelError"
            assert "binary classifiers" in r.json()["message"]
        err = _model_error(_runtime(ep), EndpointName=ep.endpoint_name, ContentType="text/csv", Body=to_csv_payload(X[:2]))  # SageMaker: 424 ModelError
        assert err["OriginalStatusCode"] == 500 and "binary classifiers" in err["OriginalMessage"]
        assert err["Error"]["Message"].startswith("Received server error (500) from primary")
        assert requests.get(ep.url + "/ping", timeout=5).status_code == 200 and ep.worker_pids() == workers
    bst = xgb.train({"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(X, np.arange(90) % 2), 50)
    tar = pack_model(bst, {"features": FEATURES}, tmp_path/"slow.tar.gz")
    with LocalEndpoint(tar, model_timeout=1e-6) as ep:  # no model answers within a microsecond
        r = _post(ep, to_csv_payload(np.tile(X, (50, 1))))
        assert r.status_code == 504 and "did not answer within" in r.json()["message"]
        err = _model_error(_runtime(ep), EndpointName=ep.endpoint_name, ContentType="text/csv",
                           Body=to_csv_payload(np.tile(X, (50, 1))))
        assert err["OriginalStatusCode"] == 504 and "timed out" in err["Error"]["Message"]
        assert requests.get(ep.url + "/ping", timeout=5).status_code == 200


def test_worker_crash_is_replaced_and_stop_leaves_no_process(model_tar):
    tar, bst, X = model_tar
    ep = LocalEndpoint(tar, workers=2).start()
    try:
        before = ep.worker_pids()
        assert len(before) == 2 and all(_alive(p) for p in before)
        os.kill(before[0], 9)  # a worker dies (OOM killer, segfault...)
        for _ in range(10): np.testing.assert_array_equal(ep.invoke(X[:1]), bst.predict(xgb.DMatrix(X[:1])))
        deadline = time.time() + 15
        while (len(ep.worker_pids()) < 2 or before[0] in ep.worker_pids()) and time.time() < deadline: time.sleep(0.1)
        after = ep.worker_pids()
        assert len(after) == 2 and before[0] not in after and before[1] in after
    finally:
        master, workers = ep.pid, ep.worker_pids()
        ep.stop()
    assert not _alive(master) and not any(_alive(w) for w in workers)
    with pytest.raises(ProcessLookupError): os.killpg(master, 0)  # nothing left in the group


def _lines_are_records(files):
    recs = []
    for f in files:
        for line in f.read_text().splitlines():
            recs.append(json.loads(line))  # a torn or interleaved line would not parse
    return recs


def test_capture_from_several_workers_and_sampling(model_tar, tmp_path):
    tar, bst, X = model_tar
    body = to_csv_payload(X[:2])
    with LocalEndpoint(tar, endpoint_name=ENDPOINT, capture_root=tmp_path/"all", workers=2) as ep:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: _post(ep, body, **{"X-Amzn-SageMaker-Inference-Id": f"id-{i}"}).status_code,
                                  range(300)))
    assert codes == [200] * 300
    files = sorted((tmp_path/"all").rglob("*.jsonl"))
    hours = {f.parent for f in files}
    assert all(len([f for f in files if f.parent == h]) <= 2 for h in hours)  # one file per worker per hour
    recs = _lines_are_records(files)
    assert sorted(r["eventMetadata"]["inferenceId"] for r in recs) == sorted(f"id-{i}" for i in range(300))
    assert all(r["captureData"]["endpointInput"]["data"] == body.decode() for r in recs)
    assert all(len(r["captureData"]["endpointOutput"]["data"].split()) == 2 for r in recs)
    with LocalEndpoint(tar, endpoint_name=ENDPOINT, capture_root=tmp_path/"some", workers=2,
                       sampling_percentage=25) as ep:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: _post(ep, body), range(400)))
    n = len(_lines_are_records(sorted((tmp_path/"some").rglob("*.jsonl"))))
    assert 60 <= n <= 140, n  # binomial(400, 0.25): mean 100, sd 8.7; this band is ±4.6 sd


@pytest.fixture(scope="module")
def two_models(model_tar, tmp_path_factory):
    tar, bst, X = model_tar
    y = (X[:, 1] > 0).astype(int)  # another model: it learns a different rule, so its answers differ
    other = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, y), 5)
    tar_b = pack_model(other, {"features": FEATURES}, tmp_path_factory.mktemp("pkg_b")/"model.tar.gz")
    return {"model-a": tar, "model-b": tar_b}, {"model-a": bst, "model-b": other}, X


def test_weighted_variants_target_header_and_weight_updates(two_models):
    models, boosters, X = two_models
    variants = [{"VariantName": "Blue", "ModelName": "model-a", "InitialVariantWeight": 4},
                {"VariantName": "Green", "ModelName": "model-b", "InitialVariantWeight": 1}]
    ref = {"Blue": boosters["model-a"].predict(xgb.DMatrix(X[:1])), "Green": boosters["model-b"].predict(xgb.DMatrix(X[:1]))}
    assert ref["Blue"][0] != ref["Green"][0]
    with LocalEndpoint(endpoint_name=ENDPOINT, variants=variants, models=models, workers=2) as ep:
        rt = _runtime(ep)
        def call(**kw):
            r = rt.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=to_csv_payload(X[:1]), **kw)
            v = r["InvokedProductionVariant"]
            np.testing.assert_array_equal(np.float32(r["Body"].read().decode().split()), ref[v])  # the variant's model answered
            return v
        seen = [call() for _ in range(600)]
        share = seen.count("Green") / len(seen)
        assert 0.14 <= share <= 0.26, share  # 1/5 = 0.2; sd 0.016
        assert {call(TargetVariant="Green") for _ in range(20)} == {"Green"}
        with pytest.raises(ClientError) as e:
            call(TargetVariant="Purple")
        assert e.value.response["Error"]["Code"] == "ValidationError" and "Purple" in e.value.response["Error"]["Message"]
        workers = ep.worker_pids()
        assert ep.update_weights({"Blue": 0, "Green": 1}) == {"Blue": 0.0, "Green": 1.0}
        assert {call() for _ in range(60)} == {"Green"}  # every worker, at once, without a restart
        ep.update_weights({"Blue": 1})
        ep.update_weights({"Green": 0})  # two updates in a row (within a millisecond) both count
        assert {call() for _ in range(60)} == {"Blue"} and ep.worker_pids() == workers
        assert ep.weights == {"Blue": 1.0, "Green": 0.0}
        with pytest.raises(ValueError, match="no production variant"): ep.update_weights({"Purple": 1})
        with pytest.raises(ValueError, match="above 0"): ep.update_weights({"Blue": 0})


def test_shadow_variant_is_captured_never_returned(two_models, tmp_path):
    models, boosters, X = two_models
    with LocalEndpoint(endpoint_name=ENDPOINT, models=models, workers=2, capture_root=tmp_path,
                       variants=[{"VariantName": "Prod", "ModelName": "model-a", "InitialVariantWeight": 1}],
                       shadow_variants=[{"VariantName": "Shadow", "ModelName": "model-b", "InitialVariantWeight": 1}]) as ep:
        answers = [_post(ep, to_csv_payload(X[i:i + 2])) for i in range(40)]
        with pytest.raises(EndpointError, match="400"):
            _raise_for(_post(ep, b"1,2,3\n", **{"X-Amzn-SageMaker-Target-Variant": "Shadow"}))
        time.sleep(0.5)  # shadow predictions run after the response was sent
    assert {r.headers["x-amzn-invoked-production-variant"] for r in answers} == {"Prod"}
    for i, r in enumerate(answers):  # the caller always got production's answer
        np.testing.assert_array_equal(np.float32(r.text.split()), boosters["model-a"].predict(xgb.DMatrix(X[i:i + 2])))
    prod, shadow = read_capture(tmp_path, ENDPOINT, "Prod"), read_capture(tmp_path, ENDPOINT, "Shadow")
    assert len(prod) == len(shadow) == 40
    by_id = {r["eventMetadata"]["eventId"]: r for r in prod}
    for s in shadow:
        p = by_id[s["eventMetadata"]["eventId"]]  # the same request, answered twice
        assert s["captureData"]["endpointInput"] == p["captureData"]["endpointInput"]
        rows = np.array([[float(v) for v in line.split(",")] for line in s["captureData"]["endpointInput"]["data"].split()])
        np.testing.assert_array_equal(np.float32(s["captureData"]["endpointOutput"]["data"].split()),
                                      boosters["model-b"].predict(xgb.DMatrix(rows)))
    with pytest.raises(ValueError, match="needs data capture"):
        LocalEndpoint(endpoint_name=ENDPOINT, models=models, variants=[{"VariantName": "P", "ModelName": "model-a"}],
                      shadow_variants=[{"VariantName": "S", "ModelName": "model-b"}])


def _raise_for(r):
    if r.status_code != 200: raise EndpointError(r.status_code, r.json()["message"])
    return r
