"Unit tests of ml_lifecycle.tune: the search space as data, Optuna and SageMaker translations, real tuning jobs."
import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.tune import (SEARCH_SPACE, best_own_trial, check_search_space, optuna_distributions,
                               param_importances, plot_importances, plot_trials, sagemaker_ranges, trial_job_name,
                               tune_model, tuner_spec, tuning_job_name)

T = "toy"

def make_features_lake(root: Path, n: int = 600, n_features: int = 4, seed: int = 0) -> Lake:
    "A lake with a `features` pointer in the contract's shape on synthetic data."
    L = Lake(root)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)); y = (X[:, 0] + rng.normal(scale=0.8, size=n) > 0.2).astype(int)
    base = L.local_path("features", T, "version=fvabcdef01")
    for split, rows in (("train", slice(0, n // 2)), ("validation", slice(n // 2, 3 * n // 4)), ("test", slice(3 * n // 4, n))):
        (base/split).mkdir(parents=True)
        pd.DataFrame(np.column_stack([y[rows], X[rows]])).to_csv(base/split/"data.csv", header=False, index=False)
    (base/"feature_metadata.json").write_text(json.dumps({"features": [f"x{i}" for i in range(n_features)]}))
    u = str(base)
    L.set_pointer(T, "features", version="fvabcdef01", uri=u, train=u + "/train", validation=u + "/validation",
                  test=u + "/test", metadata=u + "/feature_metadata.json", n_features=n_features)
    return L

SMALL = {"max_depth": ("int", 2, 4), "eta": ("log", 0.05, 0.5)}

def test_search_space_validation():
    assert check_search_space(SEARCH_SPACE) is SEARCH_SPACE
    for bad, msg in [({}, "empty"), ({"depth": ("int", 1, 3)}, "not a hyperparameter"),
                     ({"eta": ("log", 0.0, 1)}, "low > 0"), ({"eta": ("float", 1, 1)}, "below high"),
                     ({"max_depth": ("int", 1.5, 3)}, "whole"), ({"eta": ("uniform", 0, 1)}, "kind in")]:
        with pytest.raises(ValueError, match=msg): check_search_space(bad)

def test_optuna_distributions():
    d = optuna_distributions(SEARCH_SPACE)
    assert isinstance(d["max_depth"], optuna.distributions.IntDistribution) and (d["max_depth"].low, d["max_depth"].high) == (3, 8)
    assert d["eta"].log and not d["subsample"].log

@pytest.mark.slow
def test_sagemaker_ranges_and_tuner_spec():  # importing the SageMaker SDK takes seconds
    r = sagemaker_ranges(SEARCH_SPACE)
    assert r["eta"].as_tuning_range("eta") == {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"}
    assert r["subsample"].as_tuning_range("subsample")["ScalingType"] == "Linear"
    assert type(r["max_depth"]).__name__ == "IntegerParameter"
    s = tuner_spec(SEARCH_SPACE, n_trials=8, n_jobs=2, seed=1, parent_tuning_job="tune-abc")
    assert (s["objective_metric_name"], s["strategy"], s["max_jobs"], s["max_parallel_jobs"]) == ("objective:auc", "Bayesian", 8, 2)
    assert s["warm_start_config"].parent_hyper_parameter_tuning_jobs[0].hyper_parameter_tuning_job_name == "tune-abc"

def test_names_fit_sagemaker_limits():
    name = tuning_job_name("fvabcdef0123")
    assert len(name) <= 32 and name.startswith("tune-fvabcd-")
    assert trial_job_name(name, 3) == name + "-003"

def test_best_own_trial_and_importances():
    recs = [{"number": 0, "source": "warm start", "state": "COMPLETE", "value": 0.99},
            {"number": 1, "source": "this job", "state": "COMPLETE", "value": 0.90},
            {"number": 2, "source": "this job", "state": "FAIL", "value": None},
            {"number": 3, "source": "this job", "state": "COMPLETE", "value": 0.95}]
    assert best_own_trial(recs)["number"] == 3
    with pytest.raises(RuntimeError, match="no trial"): best_own_trial(recs[:1])
    study = optuna.create_study(direction="maximize")
    assert param_importances(study) == {}
    assert len(plot_trials(recs).axes) == 1 and len(plot_importances({"eta": 0.7, "max_depth": 0.3}).axes) == 1

@pytest.mark.slow
def test_tune_model_runs_jobs_and_warm_starts(tmp_path):
    L = make_features_lake(tmp_path/"lake")
    out = tune_model(L, T, n_trials=3, n_jobs=2, seed=0, space=SMALL, static={"num_round": 30}, work_dir=tmp_path/"jobs")
    p = L.pointer(T, "tuned")
    assert out["n_jobs"] == 2 and p["n_trials"] == 3 and p["parent_tuning_job"] is None
    own = [r for r in out["records"] if r["source"] == "this job"]
    assert len(own) == 3 and all(r["state"] == "COMPLETE" for r in own)
    assert p["metrics"]["objective:auc"] == max(r["value"] for r in own)  # the tuning objective (CV and validation)
    assert abs(p["metrics"]["objective:auc"] - (p["metrics"]["cv:auc"] + p["metrics"]["validation:auc"]) / 2) < 1e-9
    assert p["job_name"].startswith(p["tuning_job"]) and set(p["hyperparameters"]) >= {"max_depth", "eta", "num_round"}
    assert L.exists(p["model_data"].removeprefix(L.root + "/"))
    assert {"trials.json", "trials.csv", "best.json"} <= set(L.ls("tuning", T, p["tuning_job"]))
    hp = p["hyperparameters"]
    assert 2 <= hp["max_depth"] <= 4 and 0.05 <= hp["eta"] <= 0.5 and hp["num_round"] == 30
    # a second tuning job warm-starts: the parent's trials join the study and its best is re-run first
    import time; time.sleep(1.1)  # a new tuning job name (second resolution)
    out2 = tune_model(L, T, n_trials=2, n_jobs=1, seed=0, space=SMALL, static={"num_round": 30}, work_dir=tmp_path/"jobs")
    p2 = L.pointer(T, "tuned")
    assert p2["parent_tuning_job"] == p["tuning_job"] and p2["tuning_job"] != p["tuning_job"]
    warm = [r for r in out2["records"] if r["source"] == "warm start"]
    first_new = [r for r in out2["records"] if r["source"] == "this job"][0]
    assert len(warm) == 3 and first_new["params"] == {k: hp[k] for k in SMALL}
    assert abs(first_new["value"] - p["metrics"]["objective:auc"]) < 1e-9  # same data + hyperparameters -> same model
    assert p2["metrics"]["objective:auc"] >= p["metrics"]["objective:auc"] - 1e-9
    assert param_importances(out2["study"], seed=0).keys() == SMALL.keys()


def test_with_code_channel_moves_the_code_into_a_channel():
    "An isolated trial reads its script from the `code` channel; a definition without an S3 submit directory is left alone."
    from sagemaker.core.shapes import HyperParameterTrainingJobDefinition
    from ml_lifecycle.platform.sagemaker_jobs import ISOLATED_SUBMIT_DIR, with_code_channel
    d = HyperParameterTrainingJobDefinition.model_construct(static_hyper_parameters={
        "sagemaker_submit_directory": '"s3://b/lake/tuning/t/_code/sourcedir.tar.gz"', "num_round": "100"}, input_data_config=[])
    d = with_code_channel(d)
    assert [c.channel_name for c in d.input_data_config] == ["code"]
    assert d.input_data_config[0].data_source.s3_data_source.s3_uri == "s3://b/lake/tuning/t/_code/sourcedir.tar.gz"
    assert d.static_hyper_parameters == {"sagemaker_submit_directory": f'"{ISOLATED_SUBMIT_DIR}"', "num_round": "100"}
    assert with_code_channel(d).input_data_config == d.input_data_config  # idempotent
    local = HyperParameterTrainingJobDefinition.model_construct(static_hyper_parameters={"num_round": "1"}, input_data_config=[])
    assert with_code_channel(local).input_data_config == []


@pytest.mark.slow
def test_parallel_search_is_reproducible(tmp_path):
    "Two fresh lakes, the same data and seed, two trials at a time: the same trials, values and best model."
    runs = []
    for k in ("a", "b"):
        L = make_features_lake(tmp_path/k)
        out = tune_model(L, T, n_trials=6, n_jobs=2, seed=5, space=SMALL, static={"num_round": 30}, work_dir=tmp_path/k/"jobs")
        runs.append(([(r["number"], r["params"], round(r["value"], 12)) for r in out["records"]],
                     out["pointer"]["hyperparameters"]))
    assert runs[0] == runs[1]
    assert len({str(p) for _, p, _ in runs[0][0]}) > 1  # a real search: the trials differ


def test_run_batches_tells_in_trial_order():
    "Results come back in any order; the study records them in trial order, and a JobError marks a trial failed."
    import optuna, threading, time
    from ml_lifecycle.platform.sagemaker_local import JobError
    from ml_lifecycle.tune import run_batches
    told = []
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.tell = (lambda tell: lambda t, *a, **k: (told.append(t.number), tell(t, *a, **k))[1])(study.tell)
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(0.2 if trial.number % 2 == 0 else 0.0)  # the even trial of each batch finishes last
        if trial.number == 3: raise JobError("boom")
        return x
    run_batches(study, objective, 5, 2)
    assert told == [0, 1, 2, 3, 4]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
