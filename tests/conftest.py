import os
os.environ.setdefault("SPARK_VERSION", "3.5")

import pytest


@pytest.fixture(scope="session")
def series(tmp_path_factory):
    "One run of the whole lifecycle series on a fresh lake, as `make run` does (shared by several tests)."
    from ml_lifecycle.platform.runner import run_series
    tmp = tmp_path_factory.mktemp("series")
    return run_series({"lake": str(tmp/"lake")}, runs_dir=tmp/"runs", progress=False, raise_on_error=False)


@pytest.fixture(scope="session")
def spark():
    "One Spark session (with Deequ) for every test that needs one, stopped at the end."
    from ml_lifecycle.platform.spark import get_spark, stop_spark
    yield get_spark()
    stop_spark()
