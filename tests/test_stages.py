"The one stage API: `run_<stage>(lake, table, ...)` runs a stage's notebook on a table and returns what it recorded."
from pathlib import Path

import pytest

from ml_lifecycle.platform.runner import stage_notebooks
from ml_lifecycle.platform.stages import STAGE_RUNNERS, run_ingest, run_stage_notebook, run_validate, table_parameters
from ml_lifecycle.platform.storage import Lake, LakeError


def test_every_stage_with_a_summary_has_a_runner():
    "Every stage notebook but the two script pages (04a, 07a: they export a job's or a function's script) has one."
    stages = {p.stem for p in stage_notebooks()} - {"04a_xgb_train_script", "07a_lambda_handler"}
    assert set(STAGE_RUNNERS) == stages
    assert all(f.__name__ == "run_" + s.split("_", 1)[1] for s, f in STAGE_RUNNERS.items())


def test_ingest_then_validate(tmp_path):
    lake, runs = Lake(str(tmp_path/"lake")), tmp_path/"runs"
    ingested = run_ingest(lake, "mlc_churn", dataset="modeldata/mlc_churn", runs_dir=runs, seed=7)
    assert ingested == lake.summaries("mlc_churn")["00_ingest"] and ingested["figures"]["rows"] == 5000
    assert table_parameters(lake, "mlc_churn") == {"dataset": "modeldata/mlc_churn", "target": "churn", "positive_label": "yes"}
    validated = run_validate(str(tmp_path/"lake"), "mlc_churn", runs_dir=runs)  # a folder is a lake too
    assert validated == lake.summaries("mlc_churn")["01_validate"]
    assert validated["figures"]["passed"] == validated["figures"]["checks"] > 0
    assert lake.pointer("mlc_churn", "validated")["version"] == lake.pointer("mlc_churn", "raw")["version"]
    assert len(list(runs.glob("*/01_validate.ipynb"))) == 1  # the executed notebook, as a run of one stage


def test_bad_calls_say_what_to_do(tmp_path):
    lake = Lake(str(tmp_path/"lake"))
    with pytest.raises(LakeError, match="run 00_ingest first"): run_validate(lake, "mlc_churn")
    with pytest.raises(ValueError, match="no stage '09_x'"): run_stage_notebook("09_x", lake, "mlc_churn")
    with pytest.raises(ValueError, match="makes table 'mlc_churn', not 'churn'"):
        run_ingest(lake, "churn", dataset="modeldata/mlc_churn")
