"""Unit tests of the serverless path: ml_lifecycle.scripts.lambda_handler (events as Function URLs and API Gateway
send them, bodies clients get wrong) and ml_lifecycle.serverless (the package, run alone as Lambda runs it)."""
import base64, json, os, zipfile

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings, strategies as st, HealthCheck

from ml_lifecycle.platform.aws import AwsRequestError, validate_request
from ml_lifecycle.platform.endpoint import LocalEndpoint, to_csv_payload
from ml_lifecycle.platform.payload import MAX_PAYLOAD, pack_model, safe_extract
from ml_lifecycle.scripts import lambda_handler as lh
from ml_lifecycle import serverless as sv

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    "A packed toy model, its extracted folder and rows to score."
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)).round(3)
    bst = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                    xgb.DMatrix(X, (X[:, 0] + X[:, 1] > 0).astype(int)), 6)
    root = tmp_path_factory.mktemp("lambda-model")
    tar = pack_model(bst, {"features": FEATURES}, root/"model.tar.gz")
    return tar, safe_extract(tar, root/"model"), X


@pytest.fixture
def handler(model, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(model[1]))
    return lh.lambda_handler


def rest_api_event(body: str, content_type="text/csv", method="POST", accept=None):
    "An API Gateway REST API proxy event (payload format 1.0): mixed-case headers, `httpMethod`."
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return {"resource": "/score", "path": "/score", "httpMethod": method, "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
            "requestContext": {"resourcePath": "/score", "httpMethod": method, "stage": "prod"},
            "body": body, "isBase64Encoded": False}


def test_function_url_and_rest_api_events_score_alike(handler, model):
    _, d, X = model
    body = to_csv_payload(X[:5]).decode()
    a, b = handler(lh.function_url_event(body)), handler(rest_api_event(body))
    assert a["statusCode"] == b["statusCode"] == 200 and a["body"] == b["body"]
    want = lh.load_model(d).predict(X[:5])
    assert np.array_equal(np.array(a["body"].split(), dtype=np.float32), want)
    j = handler(lh.function_url_event(body, accept="application/json"))
    assert j["headers"]["Content-Type"] == "application/json"
    assert [p["score"] for p in json.loads(j["body"])["predictions"]] == [float(str(v)) for v in want]


def test_base64_body_as_function_urls_send_binary(handler, model):
    body = to_csv_payload(model[2][:3])
    r = handler(lh.function_url_event(body, binary=True))
    assert r["statusCode"] == 200 and len(r["body"].split()) == 3


@pytest.mark.parametrize("event, status", [
    (lh.function_url_event(b""), 400), (lh.function_url_event(b"a,b,c\n1,2,3\n"), 400),
    (lh.function_url_event(b"1,2\n"), 400), (lh.function_url_event(b"1,x,3\n"), 400),
    (lh.function_url_event(b"1,inf,3\n"), 400), (lh.function_url_event(b"{", "application/json"), 400),
    (lh.function_url_event(b'{"instances": []}', "application/json"), 400),
    (lh.function_url_event(b'{"instances": [{"zz": 1}]}', "application/json"), 400),
    (lh.function_url_event(b"1,2,3", "text/plain"), 415), (lh.function_url_event(b"1,2,3", accept="image/png"), 406),
    (lh.function_url_event(b"", method="DELETE"), 405), ({**lh.function_url_event(b""), "body": "@@", "isBase64Encoded": True}, 400),
    ({"Records": [{"s3": {}}]}, 400), ("a string", 400), (None, 400)])
def test_client_mistakes_are_4xx_json(handler, event, status):
    r = handler(event)
    assert r["statusCode"] == status, r
    assert r["headers"]["Content-Type"] == "application/json"
    assert set(json.loads(r["body"])) == {"error", "message"}


def test_payload_limit_is_413(handler):
    assert handler(lh.function_url_event(b"1" * (MAX_PAYLOAD + 1)))["statusCode"] == 413


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), ctype=st.sampled_from(["text/csv", "application/json", "text/csv; charset=utf-8", ""]),
       binary=st.booleans())
def test_no_body_makes_a_5xx(handler, body, ctype, binary):
    "Whatever bytes a client sends, the answer is a score (200) or a client error (4xx), never a server error."
    r = handler(lh.function_url_event(body, ctype, binary=binary))
    assert r["statusCode"] == 200 or 400 <= r["statusCode"] < 500, (body, ctype, r)


def test_unservable_model_is_500(tmp_path, monkeypatch):
    (tmp_path/"m").mkdir(); (tmp_path/"m"/"xgboost-model").write_text("not a model")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path/"m"))
    r = lh.lambda_handler(lh.function_url_event(b"1,2,3\n"))
    assert r["statusCode"] == 500 and "cannot be served" in json.loads(r["body"])["message"]


def test_package_runs_alone_and_answers_as_the_endpoint(model, tmp_path):
    "The function zip plus the layer's libraries, in a Python with no site-packages, answers as 07's endpoint does."
    tar, d, X = model
    try: libs = sv.layer_libraries()
    except FileNotFoundError as e: pytest.fail(f"{e}")   # make setup builds it: a missing layer is a setup bug
    fn = sv.build_function(d, tmp_path/"function.zip")
    assert fn == {**fn, "sha256": sv.build_function(d, tmp_path/"again.zip")["sha256"]}   # reproducible bytes
    with zipfile.ZipFile(fn["zip"]) as z: assert "ml_lifecycle/scripts/lambda_handler.py" in z.namelist()
    body = to_csv_payload(X)
    run = sv.invoke_package(fn["zip"], libs, [lh.function_url_event(body), lh.function_url_event(b"1,2\n")])
    with LocalEndpoint(tar, endpoint_name="sv-unit") as ep:
        want = ep.runtime_client().invoke_endpoint(EndpointName="sv-unit", Body=body, ContentType="text/csv")["Body"].read().decode()
    ok, bad = (o["response"] for o in run["results"])
    assert ok["statusCode"] == 200 and ok["body"] == want
    assert bad["statusCode"] == 400 and run["cold_ms"] > 0


def test_a_package_missing_its_libraries_fails_loudly(model, tmp_path):
    "Without the layer the packaged handler cannot import XGBoost: `invoke_package` says so (the isolation is real)."
    fn = sv.build_function(model[1], tmp_path/"function.zip")
    (tmp_path/"empty").mkdir()
    with pytest.raises(RuntimeError, match="numpy|xgboost"):
        sv.invoke_package(fn["zip"], tmp_path/"empty", [lh.function_url_event(b"1,2,3\n")])


def test_requests_validate_against_botocore(model, tmp_path):
    fn = sv.build_function(model[1], tmp_path/"function.zip")
    layer = {"zip": fn["zip"], "zipped_bytes": sv.DIRECT_UPLOAD_LIMIT + 1, "sha256": "ab" * 32}
    reqs = sv.lambda_requests("scorer", "arn:aws:iam::111122223333:role/r", fn, layer, "my-bucket", "lambda",
                              "arn:aws:lambda:us-east-1:111122223333:layer:scorer-libraries:1")
    for op, req in reqs.items(): validate_request("lambda", op, req)
    assert "ZipFile" in reqs["create_function"]["Code"] and "S3Key" in reqs["publish_layer_version"]["Content"]
    cfg = validate_request("sagemaker", "create_endpoint_config", sv.serverless_config_request("c", "m", 3072, 10))
    assert cfg["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 10}
    with pytest.raises(AwsRequestError): validate_request("sagemaker", "create_endpoint_config", sv.serverless_config_request("c", "m", 2048, 0))
    with pytest.raises(ValueError, match="1024, 2048"): sv.serverless_config_request("c", "m", 512)


def test_serverless_endpoint_serves_one_worker_and_throttles_past_max_concurrency(model):
    tar, _, X = model
    with pytest.raises(ValueError, match="exactly one variant"):
        LocalEndpoint(variants=[{"VariantName": "A", "ModelName": "m", "ServerlessConfig": {"MaxConcurrency": 1}},
                                {"VariantName": "B", "ModelName": "m"}], models={"m": tar})
    v = {"VariantName": "AllTraffic", "ModelName": "m", "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2}}
    with LocalEndpoint(variants=[v], models={"m": tar}, endpoint_name="sv-limit", workers=4) as ep:
        assert ep.workers == 1
        out = ep.runtime_client().invoke_endpoint(EndpointName="sv-limit", Body=to_csv_payload(X[:2]), ContentType="text/csv")
        assert out["InvokedProductionVariant"] == "AllTraffic"


@pytest.mark.parametrize("name", ["../outside.txt", "/abs/outside.txt"])
def test_unpack_zip_refuses_members_outside(tmp_path, name):
    bad = tmp_path/"bad.zip"
    with zipfile.ZipFile(bad, "w") as z: z.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(ValueError, match="outside"): sv.unpack_zip(bad, tmp_path/"task")
    assert not (tmp_path/"outside.txt").exists()
