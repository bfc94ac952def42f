"""Integration tests: every notebook runs through papermill.

The platform notebooks run one by one; the lifecycle series 00 -> 08 runs in order on a fresh lake,
exactly as `make run` does, and then once more on the same lake (every stage must be safe to re-run)."""
import json
from pathlib import Path

import nbformat, pytest

from conftest import DOCS_EXECUTED
from ml_lifecycle.platform.config import project_root
from ml_lifecycle.platform.runner import run_notebook, run_series, stage_notebooks, NotebookFailed
from ml_lifecycle.platform.storage import Lake

pytestmark = pytest.mark.notebooks
ROOT = project_root()
PLATFORM = sorted((ROOT/"nbs"/"platform").glob("*.ipynb"))
GUIDES = sorted(p for p in (ROOT/"nbs").glob("*.ipynb") if p not in stage_notebooks() and p.name != "index.ipynb")


def _run_once(nb: Path, folder: str, request, tmp_path, monkeypatch):
    """Run `nb` through papermill, unless the docs build of this session ran it already (into `<run>/<folder>/`,
    where only a notebook that ran to the end is kept): then check that copy, made from the same source."""
    run = request.config.stash.get(DOCS_EXECUTED, None)
    done = run and Path(run)/folder/nb.name
    if done and done.exists():
        executed, source = nbformat.read(done, as_version=4), nbformat.read(nb, as_version=4)
        code = lambda n: [c.source for c in n.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
        if code(executed) == code(source):
            errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, errors[0]
            assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code" and c.source.strip())
            return
    monkeypatch.setenv("ML_LIFECYCLE_LAKE", str(tmp_path/"lake"))
    run_notebook(nb, tmp_path/nb.name)


@pytest.mark.parametrize("nb", PLATFORM, ids=[p.stem for p in PLATFORM])
def test_platform_notebook(nb, request, tmp_path, monkeypatch):
    "Each platform notebook runs to the end (once per session: the docs build's run counts)."
    _run_once(nb, "platform", request, tmp_path, monkeypatch)


@pytest.mark.parametrize("nb", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_notebook(nb, request, tmp_path, monkeypatch):
    "Guide pages (e.g. aws_studio) run too: their outputs are real."
    _run_once(nb, "guides", request, tmp_path, monkeypatch)


def test_series_runs_every_stage(series):
    assert series.ok, f"series failed: {series.error}"
    assert [s.notebook for s in series.stages] == [p.name for p in stage_notebooks()]
    assert all(s.status == "ok" for s in series.stages)
    summary = series.summary.read_text()
    assert "status: **passed**" in summary
    recorded = Lake(series.lake).summaries("mlc_churn")
    stages = {p.stem for p in stage_notebooks() if p.name[2] == "_"} | {"08a_model_quality", "08b_alarms"}  # 00_ingest … 08b_alarms
    assert stages <= set(recorded), f"stages without a summary: {stages - set(recorded)}"
    assert {s: recorded[s]["mode"] for s in stages} == {s: "local" for s in stages}  # where the figures were measured
    assert "| 00_ingest.ipynb | local | ok |" in summary


def test_series_pipeline_runs_and_drift_retrains_through_it(series):
    "07c ran its definition here (and its rejected branch); 08b's alarm retrained through an execution of that pipeline."
    if not series.ok: pytest.skip("the series failed")
    lake = Lake(series.lake)
    pipe = lake.summaries("mlc_churn")["07c_pipeline"]["figures"]
    assert (pipe["execution"], pipe["rejected_branch"]) == ("Succeeded", "Failed"), pipe
    assert pipe["cached_rerun_s"] < pipe["execution_s"]
    alarms = lake.summaries("mlc_churn")["08b_alarms"]["figures"]
    assert alarms["retrain_request"], alarms  # the simulated drift fires an alarm on the default data
    request = lake.read_json("monitoring", "mlc_churn", "retrain_requests", f"{alarms['retrain_request']}.json")
    assert request["status"] == "completed", request
    eid = request["result"]["pipeline_execution"].rsplit("/", 1)[1]
    execution = lake.read_json("pipeline", pipe["pipeline"], "executions", f"{eid}.json")
    assert execution["Parameters"]["DataVersion"] == f"retrain-{alarms['retrain_request']}"
    assert {s["StepName"]: s["StepStatus"] for s in execution["Steps"]}["Train"] == "Succeeded"
    target = request["result"]["trigger"]["put_targets"]["Targets"][0]
    assert target["Arn"].endswith(f":pipeline/{pipe['pipeline']}")
    assert {p["Name"]: p["Value"] for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]} == {
        k: execution["Parameters"][k] for k in ("InputData", "DataVersion")}


def test_series_is_safe_to_rerun(series, tmp_path):
    "A second run on the same lake succeeds and creates no new raw or feature version."
    if not series.ok: pytest.skip("first run failed")
    lake = Lake(series.lake)
    before = {z: lake.ls(z, "mlc_churn") for z in ("raw", "features")}
    res = run_series({"lake": series.lake}, runs_dir=tmp_path/"runs", progress=False, raise_on_error=False)
    assert res.ok, f"re-run failed: {res.error}"
    assert {z: lake.ls(z, "mlc_churn") for z in ("raw", "features")} == before


def test_failing_cell_is_named(tmp_path):
    "A deliberately failing cell stops the series, naming the notebook and the cell."
    nb = nbformat.read(ROOT/"nbs"/"00_ingest.ipynb", as_version=4)
    nb.cells.insert(9, nbformat.v4.new_code_cell("raise RuntimeError('deliberately failing cell')"))
    nbformat.write(nb, tmp_path/"00_ingest.ipynb")
    with pytest.raises(NotebookFailed) as e:
        run_series({"lake": str(tmp_path/"lake")}, notebooks=[tmp_path/"00_ingest.ipynb"], runs_dir=tmp_path/"runs", progress=False)
    assert (e.value.notebook, e.value.cell, e.value.evalue) == ("00_ingest.ipynb", 10, "deliberately failing cell")
    assert "00_ingest.ipynb failed in cell 10" in str(e.value)


@pytest.mark.parametrize("params,says", [
    ({"target": "Churn"}, "`target`='Churn' is not a column"),
    ({"dataset": "modeldata/no_such_table"}, "does not exist"),
    ({"dataset": "/no/such/data.csv"}, "no such file"),
])
def test_wrong_parameters_fail_in_first_cell(tmp_path, params, says):
    "A wrong dataset or target fails in the first cell after the imports, saying what to pass."
    nb = ROOT/"nbs"/"00_ingest.ipynb"
    with pytest.raises(NotebookFailed) as e:
        run_notebook(nb, tmp_path/"out.ipynb", {"lake": str(tmp_path/"lake"), **params})
    src = nbformat.read(nb, as_version=4)
    first_work = next(i for i, c in enumerate(src.cells, 1) if c.cell_type == "code" and "make_params(" in c.source)
    assert e.value.ename == "ParameterError" and says in e.value.evalue and "pass" in e.value.evalue.lower()
    assert e.value.cell == first_work


def test_series_champion_scores_alike_in_the_serving_image(series, tmp_path):
    "The run's approved model, as SageMaker's XGBoost image (XGBOOST_IMAGE) reads it, predicts what this kernel predicts."
    if not series.ok: pytest.skip("the series failed")
    import numpy as np, xgboost as xgb
    from ml_lifecycle.platform.payload import model_files, safe_extract
    from ml_lifecycle.platform.images import XGBOOST_IMAGE, image_env_python, image_envs, image_predict
    from ml_lifecycle.scripts.xgb_train import load_booster, read_csv_channel
    L = Lake(series.lake)
    approved, features = L.pointer("mlc_churn", "approved"), L.pointer("mlc_churn", "features")
    model_file, _ = model_files(safe_extract(approved["model_data"], tmp_path/"model"))
    X, _ = read_csv_channel(features["test"])
    here = load_booster(model_file).predict(xgb.DMatrix(X))
    for image in [XGBOOST_IMAGE, *sorted(set(image_envs()) - {XGBOOST_IMAGE})]:
        if image_env_python(image) is None:
            assert image != XGBOOST_IMAGE, "make setup builds the serving image's environment"
            continue
        diff = float(np.abs(image_predict(image, model_file, X) - here).max())
        assert diff <= 1e-6, f"image {image} scores the champion up to {diff:.3g} away from XGBoost {xgb.__version__}"


def test_series_monitoring_statistics_follow_the_documented_schema(series):
    "Every statistics.json of the run: numeric features carry a KLL sketch (c, k, data) and buckets that cover [min, max] and sum to num_present."
    if not series.ok: pytest.skip("the series failed")
    files = sorted(Path(series.lake).glob("monitoring/**/statistics.json"))
    assert files, "08 wrote no statistics.json"
    data_quality = [f for f in files if "features" in json.loads(f.read_text())]  # model-quality ones hold metrics instead
    assert len(data_quality) > 1, "no data-quality statistics.json"
    for f in data_quality:
        doc = json.loads(f.read_text())
        for feat in doc["features"]:
            num = feat.get("numerical_statistics")
            if not num or not num["common"]["num_present"]: continue
            kll = num["distribution"]["kll"]
            assert {"c", "k"} <= set(kll["sketch"]["parameters"]) and kll["sketch"]["data"], (f, feat["name"])
            buckets = kll["buckets"]
            assert sum(b["count"] for b in buckets) == num["common"]["num_present"], (f, feat["name"])
            assert buckets[0]["lower_bound"] <= num["min"] and buckets[-1]["upper_bound"] >= num["max"], (f, feat["name"])
