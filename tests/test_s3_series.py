"""The whole series on an S3 lake: local compute, the lake on `s3://` served by moto on loopback.

This is what aws mode does with its data, for real, without an AWS account: boto3, pandas/s3fs,
MLflow's artifact store and Spark's `s3a://` connector (hadoop-aws) all read and write the lake
through the S3 API of a local `moto_server` process. Only the compute stays local (mode='local'):
SageMaker jobs, endpoints and schedules are checked by request in tests/test_aws.py."""
import os, socket, subprocess, sys, time, uuid

import boto3, pytest, requests

from ml_lifecycle.platform.runner import run_series, stage_notebooks
from ml_lifecycle.platform.storage import Lake

BUCKET = "ml-lifecycle-ci"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
          "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    "A moto S3 server on loopback (a subprocess, stopped at the end) with the AWS variables pointing at it."
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto")/"moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_PROFILE"]}
    try:
        for _ in range(200):
            try:
                if requests.get(endpoint, timeout=1).status_code < 500: break
            except requests.ConnectionError: time.sleep(0.05)
        else: pytest.fail(f"moto_server did not start on {endpoint}")
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint, MLFLOW_S3_ENDPOINT_URL=endpoint)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def test_lake_round_trip_on_s3(s3_server):
    "Lake's reads, writes, folder publishing and pointers work against the S3 API."
    lake = Lake(f"s3://{BUCKET}/unit-{uuid.uuid4().hex[:6]}")
    lake.write_json({"a": 1}, "x", "doc.json")
    assert lake.read_json("x", "doc.json") == {"a": 1}
    assert lake.spark_uri("x").startswith("s3a://")
    lake.set_pointer("t", "raw", version="v1")
    assert lake.pointer("t", "raw")["version"] == "v1"


@pytest.mark.slow
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


def _keys(prefix: str) -> list[str]:
    s3, keys = boto3.client("s3"), []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys += [o["Key"][len(prefix) + 1:] for o in page.get("Contents", [])]
    return keys


@pytest.mark.slow
def test_series_on_s3_lake(s3_server, tmp_path):
    "All stages run with the lake on s3:// and leave each stage's outputs as objects in the bucket."
    from ml_lifecycle.platform.spark import stop_spark
    stop_spark()   # the notebooks start their own Spark; this process holds none while they run
    prefix = f"series-{uuid.uuid4().hex[:8]}"
    lake_uri = f"s3://{BUCKET}/{prefix}"
    t0 = time.time()
    res = run_series({"lake": lake_uri, "mode": "local"}, runs_dir=tmp_path/"runs", progress=False, raise_on_error=False)
    print(f"S3 series: {time.time() - t0:.0f} s, status {'ok' if res.ok else res.error}")
    keys = _keys(prefix)
    print(f"{len(keys)} objects under s3://{BUCKET}/{prefix}/")
    done = {s.notebook for s in res.stages if s.status == "ok"}
    t = "mlc_churn"
    expected = {  # the lake contract, stage by stage (see CONTRACT.md)
        "00_ingest.ipynb": [rf"raw/{t}/version=[^/]+/part-00000\.parquet", rf"raw/{t}/version=[^/]+/_manifest\.json",
                            rf"raw/{t}/version=[^/]+/_SUCCESS", rf"catalog/{t}\.json", rf"_pointers/{t}/raw\.json"],
        "01_validate.ipynb": [rf"quality/{t}/version=[^/]+/verification\.json", rf"_pointers/{t}/validated\.json"],
        "02_explore.ipynb": [rf"explore/{t}/version=[^/]+/stats\.json"],
        "03_prepare.ipynb": [rf"features/{t}/version=[^/]+/{s}/data\.(csv|parquet)" for s in ("train", "validation", "test")]
                            + [rf"features/{t}/version=[^/]+/feature_metadata\.json", rf"_pointers/{t}/features\.json"],
        "04_train.ipynb": [rf"models/{t}/[^/]+/model\.tar\.gz", rf"models/{t}/[^/]+/metrics\.json", rf"_pointers/{t}/trained\.json"],
        "05_tune.ipynb": [rf"tuning/{t}/[^/]+/best\.json", rf"_pointers/{t}/tuned\.json"],
        "06_evaluate.ipynb": [rf"evaluation/{t}/[^/]+/evaluation\.json"],
        "07_deploy.ipynb": [r"datacapture/[^/]+/[^/]+/\d{4}/\d\d/\d\d/\d\d/[^/]+\.jsonl", rf"_pointers/{t}/endpoint\.json"],
        "08_monitor.ipynb": [rf"monitoring/{t}/baseline/statistics\.json", rf"monitoring/{t}/baseline/constraints\.json",
                             rf"monitoring/{t}/[^/]+/constraint_violations\.json"],
    }
    import re
    missing = {nb: [p for p in pats if not any(re.fullmatch(p, k) for k in keys)]
               for nb, pats in expected.items() if nb in done}
    missing = {nb: m for nb, m in missing.items() if m}
    assert not missing, f"objects missing from the bucket: {missing}"
    assert res.ok, f"series on S3 failed: {res.error}"
    assert [s.notebook for s in res.stages] == [p.name for p in stage_notebooks()]
    assert not os.path.exists(tmp_path/"lake"), "the S3 run wrote a local lake"
