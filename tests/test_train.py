"Unit tests of the XGBoost entry script (ml_lifecycle.scripts.xgb_train), its job (ml_lifecycle.platform.xgb_job) and the training stage (ml_lifecycle.train)."
import json, tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ml_lifecycle.platform.storage import Lake, LakeError
from ml_lifecycle.platform.sagemaker_local import JobError, run_training_job
from ml_lifecycle.scripts.xgb_train import (load_booster, cast_hyperparameters, read_hyperparameters, read_csv_channel,
                                            find_feature_metadata, fit_xgboost, main)
from ml_lifecycle.platform.xgb_job import (DEFAULT_HYPERPARAMETERS, ENTRY_POINT, METRIC_DEFINITIONS, job_metrics,
                                           run_xgb_job, script_dir, train_job_name, xgb_channels)
from ml_lifecycle.train import train_model, log_training_run, plot_learning_curve

T = "toy"

def make_features_lake(root: Path, n: int = 800, n_features: int = 5, seed: int = 0) -> Lake:
    "A lake with a `features` pointer in the contract's shape (label-first CSVs, no header) on synthetic data."
    L = Lake(root)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)); y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=0.7, size=n) > 0.3).astype(int)
    names = [f"x{i}" for i in range(n_features)]
    base = L.local_path("features", T, "version=fv0123456789")
    for split, rows in (("train", slice(0, n // 2)), ("validation", slice(n // 2, 3 * n // 4)), ("test", slice(3 * n // 4, n))):
        (base/split).mkdir(parents=True)
        pd.DataFrame(np.column_stack([y[rows], X[rows]])).to_csv(base/split/"data.csv", header=False, index=False)
    (base/"feature_metadata.json").write_text(json.dumps({"label": "label", "features": names}))
    u = str(base)
    L.set_pointer(T, "features", version="fv0123456789", uri=u, train=u + "/train", validation=u + "/validation",
                  test=u + "/test", metadata=u + "/feature_metadata.json", n_features=n_features)
    return L

@pytest.fixture()
def lake(tmp_path): return make_features_lake(tmp_path/"lake")

# --- the entry script, in process -------------------------------------------------------------------------------

def test_hyperparameters_arrive_as_strings_and_are_cast():
    hp = cast_hyperparameters({"num_round": "200", "max_depth": "5", "eta": "0.2", "subsample": "0.8",
                               "objective": "binary:logistic", "_tuning_objective_metric": "validation:auc"})
    assert (hp["num_round"], hp["max_depth"], hp["eta"], hp["subsample"]) == (200, 5, 0.2, 0.8)
    assert isinstance(hp["num_round"], int) and isinstance(hp["eta"], float)
    assert hp["early_stopping_rounds"] == 0 and hp["eval_metric"] == "auc"  # defaults
    assert cast_hyperparameters({"max_depth": 5.0})["max_depth"] == 5       # typed values work too
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['max_dept'\]"): cast_hyperparameters({"max_dept": "5"})
    with pytest.raises(ValueError, match="not a valid int"): cast_hyperparameters({"num_round": "ten"})
    with pytest.raises(ValueError, match="outside"): cast_hyperparameters({"subsample": "1.5"})

def test_read_hyperparameters_file_then_sm_hps(tmp_path):
    (tmp_path/"hyperparameters.json").write_text(json.dumps({"max_depth": "3"}))
    assert read_hyperparameters({"SM_INPUT_CONFIG_DIR": str(tmp_path), "SM_HPS": '{"max_depth": 9}'})["max_depth"] == 3
    assert read_hyperparameters({"SM_INPUT_CONFIG_DIR": str(tmp_path/"none"), "SM_HPS": '{"max_depth": 9}'})["max_depth"] == 9

def test_read_csv_channel_and_metadata(lake):
    f = lake.pointer(T, "features")
    X, y = read_csv_channel(f["train"], "train")
    assert X.shape == (400, 5) and X.dtype == np.float32 and set(np.unique(y)) == {0.0, 1.0}
    with pytest.raises(ValueError, match="no .csv files"): read_csv_channel(str(Path(f["uri"])/"nothing"), "x")
    env = {"SM_CHANNELS": '["train", "validation", "metadata"]', "SM_CHANNEL_TRAIN": f["train"],
           "SM_CHANNEL_METADATA": f["uri"]}
    assert find_feature_metadata(env).endswith("feature_metadata.json")

def test_fit_keeps_best_round_and_no_feature_names(lake):
    f = lake.pointer(T, "features")
    tr, va = read_csv_channel(f["train"]), read_csv_channel(f["validation"])
    hps = cast_hyperparameters({"num_round": "300", "max_depth": "3", "eta": "0.3", "early_stopping_rounds": "5"})
    b, curves = fit_xgboost(hps, tr, va, verbose=False)
    best = int(b.attr("best_iteration"))
    assert b.num_boosted_rounds() == best + 1 < 300
    assert curves["validation"]["auc"][best] == max(curves["validation"]["auc"])
    assert b.feature_names is None  # serving sends bare CSV rows
    with pytest.raises(ValueError, match="labels must be 0 or 1"): fit_xgboost(hps, (tr[0], tr[1] + 1), va, verbose=False)

def test_main_writes_failure_on_error(tmp_path):
    (tmp_path/"config").mkdir(); (tmp_path/"config"/"hyperparameters.json").write_text('{"eta": "-1"}')
    env = {"SM_INPUT_CONFIG_DIR": str(tmp_path/"config"), "SM_OUTPUT_DIR": str(tmp_path/"output")}
    with pytest.raises(ValueError): main(env)
    assert (tmp_path/"output"/"failure").read_text().startswith("ValueError: hyperparameter eta=-1.0 is outside")

# --- the entry script as a real training job (subprocess) -------------------------------------------------------

def test_script_runs_as_training_job(lake, tmp_path):
    f = lake.pointer(T, "features")
    res = run_training_job(ENTRY_POINT, script_dir(), {**DEFAULT_HYPERPARAMETERS, "num_round": 50}, xgb_channels(f),
                           job_name="xgb-test", work_dir=tmp_path/"jobs", output_path=lake.uri("models", T),
                           metric_definitions=METRIC_DEFINITIONS, cpus=1)
    hps_file = json.loads((Path(res.job_dir)/"input"/"config"/"hyperparameters.json").read_text())
    assert all(isinstance(v, str) for v in hps_file.values()) and hps_file["num_round"] == "50"
    with tarfile.open(res.model_data) as t:
        names = t.getnames(); t.extractall(tmp_path/"model", filter="data")
    assert sorted(n for n in names if (tmp_path/"model"/n).is_file()) == ["metadata/feature_metadata.json", "xgboost-model"]
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)
    json.loads((tmp_path/"model"/"xgboost-model").read_text())  # XGBoost's own JSON format
    b = load_booster(tmp_path/"model"/"xgboost-model")
    X, _ = read_csv_channel(f["test"])
    assert b.predict(xgb.DMatrix(X)).shape == (X.shape[0],)
    m = job_metrics(res)
    assert m["validation:auc"] > 0.75
    assert set(res.metrics) == {"validation:auc", "train:auc", "cv:auc", "objective:auc", "best_iteration"}
    assert abs(res.metrics["validation:auc"] - m["validation:auc"]) < 1e-5  # the log's final line is the saved model
    assert abs(m["objective:auc"] - (m["cv:auc"] + m["validation:auc"]) / 2) < 1e-9
    assert len(m["curves"]["validation"]["auc"]) == m["best_iteration"] + 1 == m["num_boosted_rounds"]  # CV chose the rounds
    assert "cv\tfolds:5\trounds:" in res.logs

def test_bad_hyperparameter_fails_before_and_inside_the_job(lake, tmp_path):
    f = lake.pointer(T, "features")
    with pytest.raises(ValueError, match="max_dept"):  # checked before starting a job
        run_xgb_job(f, {"max_dept": 3}, lake.uri("models", T), work_dir=tmp_path)
    with pytest.raises(JobError, match="unknown hyperparameter") as e:  # and by the script itself
        run_training_job(ENTRY_POINT, script_dir(), {"max_dept": 3}, xgb_channels(f), work_dir=tmp_path)
    assert (Path(e.value.result.job_dir)/"output"/"failure").exists()

def test_names_and_channels():
    assert train_job_name("fv0123456789", {"a": 1}) == train_job_name("fv0123456789", {"a": 1})
    assert train_job_name("fv0123456789", {"a": 1}).startswith("xgb-fv012345-")
    with pytest.raises(LakeError, match="03_prepare"): xgb_channels({"version": "v", "train": "x"})

# --- the stage --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_model_publishes_and_sets_pointer(lake, tmp_path):
    p = train_model(lake, T, {"num_round": 60}, seed=1, work_dir=tmp_path/"jobs")
    assert set(p) >= {"job_name", "model_data", "hyperparameters", "metrics", "features_version"}
    assert p["features_version"] == "fv0123456789" and p["metrics"]["validation:auc"] > 0.75
    assert p["hyperparameters"]["num_round"] == 60 and p["hyperparameters"]["seed"] == 1
    assert isinstance(p["metrics"]["best_iteration"], int)
    assert lake.exists("models", T, p["job_name"], "model.tar.gz")
    assert lake.read_json("models", T, p["job_name"], "metrics.json")["metrics"] == p["metrics"]
    assert lake.pointer(T, "trained")["job_name"] == p["job_name"]
    again = train_model(lake, T, {"num_round": 60}, seed=1, work_dir=tmp_path/"jobs")  # re-run: same job, same model
    assert again["job_name"] == p["job_name"] and again["metrics"] == p["metrics"]
    assert lake.ls("models", T) == [p["job_name"]]
    fig = plot_learning_curve(lake.read_json("models", T, p["job_name"], "metrics.json")["curves"], p["metrics"]["best_iteration"])
    assert len(fig.axes[0].lines) == 3

@pytest.mark.slow
def test_mlflow_run_logged_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (tmp_path/"m.txt").write_text("x")
    rid = log_training_run(uri, "toy", "job-1", {"max_depth": 3}, {"validation:auc": 0.9},
                           curves={"validation": {"auc": [0.8, 0.9]}}, artifacts=[tmp_path/"m.txt"],
                           artifact_root=(tmp_path/"art").as_uri())
    assert log_training_run(uri, "toy", "job-1", {}, {}) == rid
    import mlflow
    run = mlflow.MlflowClient(uri).get_run(rid)
    assert run.data.metrics["validation_auc"] == 0.9 and run.data.params["max_depth"] == "3"
    assert (tmp_path/"art").exists()
    hist = mlflow.MlflowClient(uri).get_metric_history(rid, "validation_auc_curve")  # per round, with step
    assert sorted((h.step, h.value) for h in hist) == [(0, 0.8), (1, 0.9)]

def test_lineage_tags(lake):
    from ml_lifecycle.train import code_version, data_version
    c = code_version()
    assert len(c["entry_script_sha256"]) == 64 and c["entry_script"] == ENTRY_POINT
    assert "git_commit" not in c or len(c["git_commit"]) == 40
    assert data_version(lake, T) == {"features_version": "fv0123456789"}  # only the pointers that exist

# --- checkpoints: a killed job resumes ---------------------------------------------------------------------------

def job_env(root: Path, f: dict, ckpt: Path) -> dict:
    "The SM_* environment of a job folder under `root` with the lake's train/validation channels."
    import os
    (root/"config").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "SM_INPUT_CONFIG_DIR": str(root/"config"), "SM_MODEL_DIR": str(root/"model"),
            "SM_OUTPUT_DATA_DIR": str(root/"output"/"data"), "SM_OUTPUT_DIR": str(root/"output"), "SM_NUM_CPUS": "1",
            "SM_CHECKPOINT_DIR": str(ckpt), "SM_CHANNELS": '["train", "validation"]',
            "SM_CHANNEL_TRAIN": f["train"], "SM_CHANNEL_VALIDATION": f["validation"], "PYTHONUNBUFFERED": "1"}

@pytest.mark.slow
def test_killed_job_resumes_from_checkpoint(tmp_path):
    import os, signal, subprocess, sys, time
    from ml_lifecycle.scripts.xgb_train import latest_checkpoint
    L = make_features_lake(tmp_path/"lake", n=4000, n_features=20)
    f, ckpt, n = L.pointer(T, "features"), tmp_path/"checkpoints", 4000
    hps = {"num_round": str(n), "max_depth": "6", "eta": "0.01", "checkpoint_frequency": "100"}
    script = str(script_dir()/ENTRY_POINT)
    env1 = job_env(tmp_path/"run1", f, ckpt)
    (tmp_path/"run1"/"config"/"hyperparameters.json").write_text(json.dumps(hps))
    p = subprocess.Popen([sys.executable, script], env=env1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while latest_checkpoint(str(ckpt))[1] < 200 and p.poll() is None and time.time() < deadline: time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()                 # kill -9 mid-training
    _, k = latest_checkpoint(str(ckpt))
    assert p.returncode == -signal.SIGKILL and 200 <= k < n, (p.returncode, k)
    assert not (tmp_path/"run1"/"model"/"xgboost-model").exists()  # it never finished
    env2 = job_env(tmp_path/"run2", f, ckpt)                 # a new job with the same checkpoint folder
    (tmp_path/"run2"/"config"/"hyperparameters.json").write_text(json.dumps(hps))
    out = subprocess.run([sys.executable, script], env=env2, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    k2 = int(out.stdout.split("resuming from round ")[1].split()[0])
    assert k2 >= k                                           # the latest checkpoint (one more may have landed before the kill)
    m = json.loads((tmp_path/"run2"/"output"/"data"/"metrics.json").read_text())
    b = load_booster(tmp_path/"run2"/"model"/"xgboost-model")
    assert b.num_boosted_rounds() == n == m["num_boosted_rounds"]   # total rounds = requested
    assert m["resumed_from"] == k2 and len(m["curves"]["validation"]["auc"]) == n - k2  # not restarted
    print(f"killed at checkpoint {k}; resumed from round {k2}; {b.num_boosted_rounds()} rounds in all")
