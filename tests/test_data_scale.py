"Data stages 00→03 at scale (1M amplified rows: the `data` benchmark's 1M case) and on data with missing values, through the papermill runner."
import json, os, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.platform.runner import run_series, stage_notebooks
from ml_lifecycle.platform.storage import Lake

sys.path.insert(0, str(Path(__file__).resolve().parent.parent/"bench"))
from common import PeakRSS  # noqa: E402  (the benchmarks' own sampler of a process tree's memory)
from data import MAX_GIB, STAGES, run_stages  # noqa: E402  (the `data` benchmark's harness: what `make bench` measures)

DATA_STAGES = STAGES


def run_one_by_one(params: dict, runs_dir: Path) -> list[dict]:
    "Run 00→03 one notebook at a time with `params`; wall time and peak RSS (process tree) per stage."
    nbs = {p.stem: p for p in stage_notebooks()}
    out = []
    for name in DATA_STAGES:
        t0 = time.perf_counter()
        with PeakRSS() as m:
            res = run_series(params, notebooks=[nbs[name]], runs_dir=runs_dir, progress=False, raise_on_error=False)
        out.append({"stage": name, "ok": res.ok, "seconds": round(time.perf_counter() - t0, 1),
                    "peak_rss_gb": m.gib, "error": str(res.error)[:2000] if res.error else None})
        assert res.ok, out[-1]
    return out


@pytest.mark.slow
def test_data_stages_on_1m_rows(tmp_path):
    """The `data` benchmark's 1M case: 00→03 on 1,000,000 amplified rows; every stage succeeds, the lake holds every
    row in Parquet parts and three split files, and the process tree (kernels, Spark JVMs, the job) stays within 8 GiB.
    Its times are the benchmark's business (bench/README.md), not this test's."""
    figures = run_stages(1_000_000, tmp_path/"data")
    print(json.dumps(figures, indent=1))
    (Path(os.environ.get("SCALE_REPORT", tmp_path))/"scale_figures.json").write_text(json.dumps(figures, indent=1))
    assert [f["stage"] for f in figures] == list(STAGES) and all(f["ok"] for f in figures), figures
    L = Lake(str(tmp_path/"data"/"lake"))
    raw = L.pointer("mlc_churn", "raw")
    manifest = json.loads(L.fs.cat_file(raw["manifest"]))
    assert raw["rows"] == 1_000_000 and manifest["synthetic"]["amplify"] == 1_000_000
    assert sum(L.pointer("mlc_churn", "features")["rows"].values()) == 1_000_000
    profile = L.read_json("quality", "mlc_churn", f"version={raw['version']}", "profile.json")
    assert all(0 < p["sketch_sample"] < 1 for p in profile if "minimum" in p)  # the sketches say they saw a sample
    assert max(f["peak_gib"] for f in figures) <= MAX_GIB, figures


def churn_with_missing(path: Path, share: float = 0.05, seed: int = 0) -> Path:
    "A copy of mlc_churn with `share` of the values missing in several numeric and categorical columns and the target."
    from ml_lifecycle.platform.config import read_source
    df = read_source("modeldata/mlc_churn")
    rng = np.random.default_rng(seed)
    for c in ["total_day_minutes", "total_eve_calls", "number_vmail_messages", "state", "international_plan", "churn"]:
        df.loc[rng.random(len(df)) < share, c] = None
    df.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_data_stages_with_missing_values(tmp_path):
    "00→03 on churn data with 5 % missing values: rows without a target are dropped and counted, the rest imputed."
    csv = churn_with_missing(tmp_path/"churn_missing.csv")
    src = pd.read_csv(csv)
    lake = tmp_path/"lake"
    figures = run_one_by_one({"lake": str(lake), "dataset": str(csv), "target": "churn", "positive_label": "yes"},
                             tmp_path/"runs")
    print(json.dumps(figures, indent=1))
    L = Lake(str(lake))
    raw = L.pointer("churn_missing", "raw")
    manifest = json.loads(L.fs.cat_file(raw["manifest"]))
    assert manifest["dropped_missing_target"] == int(src.churn.isna().sum()) > 0
    assert raw["rows"] == len(src) - manifest["dropped_missing_target"]
    meta = L.read_json("features", "churn_missing", f"version={L.pointer('churn_missing', 'features')['version']}",
                       "feature_metadata.json")
    assert "__missing__" in meta["categorical"]["state"] and "total_day_minutes" in meta["impute"]
    assert sum(meta["splits"].values()) == raw["rows"]
