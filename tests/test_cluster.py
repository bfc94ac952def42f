"""01_validate and 03_prepare on a real Spark standalone cluster (one master, two workers, started from the installed
PySpark's own launcher) with SPARK_MASTER=spark://…: the same checks and the same feature files as local[*]."""
import json, shutil
from pathlib import Path

import pandas as pd
import pytest

from ml_lifecycle.platform.clusters import StandaloneCluster
from ml_lifecycle.platform.runner import run_notebook
from ml_lifecycle.platform.spark import spark_jars
from ml_lifecycle.platform.storage import Lake

ROOT = Path(__file__).resolve().parent.parent
T = "mlc_churn"


def run(nb: str, lake: Path, out: Path):
    run_notebook(ROOT/"nbs"/f"{nb}.ipynb", out/f"{nb}.ipynb", {"lake": str(lake)})


def outputs(lake: Path) -> dict:
    "What 01 and 03 published: the suite, the verification results, the features version and its files."
    L = Lake(str(lake))
    raw, feat = L.pointer(T, "raw"), L.pointer(T, "features")
    q = ("quality", T, f"version={raw['version']}")
    ver = L.read_json(*q, "verification.json")
    folder = Path(L.local_path("features", T, f"version={feat['version']}"))
    return {"checks": L.read_json("quality", T, "checks.json"), "status": ver["status"],
            "results": sorted((r["id"], r["deequ_constraint"], r["status"]) for r in ver["results"]),
            "profile": L.read_json(*q, "profile.json"), "features": feat["version"], "folder": folder,
            "meta": json.loads((folder/"feature_metadata.json").read_text())}


@pytest.mark.slow
@pytest.mark.notebooks
def test_validate_and_prepare_on_a_standalone_cluster_equal_local(tmp_path, monkeypatch):
    base = tmp_path/"base"
    run("00_ingest", base, tmp_path)
    shutil.copytree(base, tmp_path/"cluster")
    monkeypatch.delenv("SPARK_MASTER", raising=False)
    for nb in ("01_validate", "03_prepare"): run(nb, base, tmp_path/"local-runs")
    with StandaloneCluster(workers=2, cores=2, memory="3g", work_dir=tmp_path/"spark") as cluster:
        monkeypatch.setenv("SPARK_MASTER", cluster.url)  # the kernels, and 03's processing job, get the cluster
        # a standalone master gives an application every free core: a kernel holding them would leave 03's job waiting
        monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--conf spark.cores.max=2 pyspark-shell")
        for nb in ("01_validate", "03_prepare"): run(nb, tmp_path/"cluster", tmp_path/"cluster-runs")
        status, jars = cluster.status(), cluster.fetched_jars()
    apps = status["completedapps"] + status["activeapps"]
    assert len(apps) >= 3, [a["name"] for a in apps]           # 01's kernel, 03's kernel and 03's processing job
    assert {Path(j).name for j in spark_jars()} <= jars, jars   # Deequ, hadoop-aws and the AWS SDK reached the executors
    a, b = outputs(base), outputs(tmp_path/"cluster")
    assert a["checks"] == b["checks"] and a["status"] == b["status"] == "Success"
    assert a["results"] == b["results"]
    assert [(p["column"], p["data_type"], p["completeness"], p.get("minimum"), p.get("maximum"), p.get("histogram"))
            for p in a["profile"]] == [(p["column"], p["data_type"], p["completeness"], p.get("minimum"), p.get("maximum"),
                                        p.get("histogram")) for p in b["profile"]]
    assert a["features"] == b["features"] and a["meta"] == b["meta"]
    for split in ("train", "validation", "test"):
        assert (a["folder"]/split/"data.csv").read_bytes() == (b["folder"]/split/"data.csv").read_bytes(), split
        pd.testing.assert_frame_equal(pd.read_parquet(a["folder"]/split/"data.parquet"),
                                      pd.read_parquet(b["folder"]/split/"data.parquet"))
