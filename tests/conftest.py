import os
os.environ.setdefault("SPARK_VERSION", "3.5")

from ml_lifecycle.platform.processes import free_port

import pytest

# The run folder whose platform and guide notebooks the docs build executed in this session (test_docs sets it):
# test_notebooks then checks those executed copies instead of running each notebook a second time.
DOCS_EXECUTED = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def series(tmp_path_factory):
    "One run of the whole lifecycle series on a fresh lake, as `make run` does (shared by several tests)."
    from ml_lifecycle.platform.runner import run_series
    tmp = tmp_path_factory.mktemp("series")
    return run_series({"lake": str(tmp/"lake")}, runs_dir=tmp/"runs", progress=False, raise_on_error=False)


@pytest.fixture(scope="module")
def spark():
    "The shared Spark session (with Deequ): the live one, or a new one where an earlier module stopped it (stopped at exit)."
    from ml_lifecycle.platform.spark import get_spark
    return get_spark()


BUCKET = "ml-lifecycle-ci"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
          "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3_server():
    "A moto S3 server on loopback (`ThreadedMotoServer`, a free port) with the AWS variables pointing at it (for one test module)."
    import boto3
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*S3_ENV, "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_PROFILE"]}
    server.start()
    try:
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint, MLFLOW_S3_ENDPOINT_URL=endpoint)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def pytest_unconfigure(config):
    "A watchdog for the exit: if the interpreter is still alive 5 minutes after the tests, print every thread's stack and fail."
    import faulthandler, sys
    faulthandler.dump_traceback_later(300, exit=True, file=sys.stderr)
