"""Model files read alike by SageMaker's XGBoost images: each image's pinned libraries (envs/xgboost-<image>.txt, a venv
built by scripts/job_envs.sh during `make setup`) score the models this project saves exactly as XGBoost 3.2 does here."""
import json, subprocess, tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ml_lifecycle.platform.payload import MODEL_FILE, pack_model, safe_extract
from ml_lifecycle.platform.images import XGBOOST_IMAGE, envs_dir, image_env_python, image_envs, image_predict
from ml_lifecycle.platform.sagemaker_local import run_training_job
from ml_lifecycle.scripts.xgb_train import load_booster, save_booster
from ml_lifecycle.platform.xgb_job import ENTRY_POINT, script_dir

IMAGES = sorted(image_envs())
TOL = 1e-6


def _python(image: str) -> Path:
    py = image_env_python(image)
    if py is None:
        pytest.skip(f"no up-to-date venv for SageMaker XGBoost image {image} in {envs_dir()}: `make setup` builds it "
                    f"(or run `scripts/job_envs.sh {image}`)")
    return py


def _data(n: int = 900, n_features: int = 6, seed: int = 0) -> tuple:
    "A noisy problem with about 1 positive in 6 rows, so the fitted base_score is far from XGBoost's default 0.5."
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=0.8, size=n) > 1.2).astype(np.float32)
    return X, y


def _base_score(model_file) -> str:
    return json.loads(Path(model_file).read_text())["learner"]["learner_model_param"]["base_score"]


def _here(model_file, X) -> np.ndarray:
    return load_booster(model_file).predict(xgb.DMatrix(X))


@pytest.fixture(scope="module")
def booster():
    X, y = _data()
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0},
                     xgb.DMatrix(X, label=y), 30), X


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    "A real training job of the entry script (checkpoints on): its model.tar.gz extracted, its checkpoints, test rows."
    tmp = tmp_path_factory.mktemp("parity")
    X, y = _data()
    for name, rows in (("train", slice(0, 500)), ("validation", slice(500, 700))):
        (tmp/"data"/name).mkdir(parents=True)
        pd.DataFrame(np.column_stack([y[rows], X[rows]])).to_csv(tmp/"data"/name/"data.csv", header=False, index=False)
    hps = {"num_round": 40, "max_depth": 3, "eta": 0.3, "checkpoint_frequency": 10, "seed": 0}
    _python(XGBOOST_IMAGE)  # the job runs in the image's environment
    res = run_training_job(ENTRY_POINT, script_dir(), hps, {k: tmp/"data"/k for k in ("train", "validation")},
                           job_name="parity", work_dir=tmp/"jobs", output_path=str(tmp/"models"), cpus=1,
                           checkpoint_dir=str(tmp/"kept-checkpoints"))
    with tarfile.open(res.model_data) as t: t.extractall(tmp/"model", filter="data")
    checkpoints = sorted(Path(res.job_dir, "checkpoints").glob("xgboost-checkpoint.*"), key=lambda p: int(p.suffix[1:]))
    assert checkpoints, "the job wrote no checkpoint"
    return tmp/"model"/MODEL_FILE, checkpoints, X[700:]


# --- always: the fix itself, in XGBoost 3.2 -------------------------------------------------------------------------

def test_save_booster_writes_base_score_as_number_and_nothing_else(booster, tmp_path):
    bst, X = booster
    bst.save_model(str(tmp_path/"raw.json"))
    path = save_booster(bst, tmp_path/"model.json")
    raw, fixed = _base_score(tmp_path/"raw.json"), _base_score(path)
    assert raw.startswith("[") and raw.endswith("]") and "," not in raw  # what XGBoost 3.2 writes: a 1-vector as text
    assert fixed == raw[1:-1] and 0.05 < float(fixed) < 0.4              # the same number, plain; far from 0.5
    assert Path(path).read_text() == (tmp_path/"raw.json").read_text().replace(f'"{raw}"', f'"{fixed}"')
    assert np.abs(_here(path, X) - bst.predict(xgb.DMatrix(X))).max() <= TOL  # 3.2 reads it back as the booster in memory


def test_job_and_package_models_have_scalar_base_score(job, booster, tmp_path):
    model_file, checkpoints, _ = job
    for f in [model_file, *checkpoints]:
        assert not _base_score(f).startswith("["), f
    bst, _ = booster
    pack_model(bst, {"features": [f"x{i}" for i in range(6)]}, tmp_path/"model.tar.gz")
    assert not _base_score(safe_extract(tmp_path/"model.tar.gz", tmp_path/"pkg")/MODEL_FILE).startswith("[")


# --- in each image's venv -------------------------------------------------------------------------------------------

def test_images_are_pinned():
    assert {"3.0-5", "1.7-1"} <= set(IMAGES)
    assert image_envs()["3.0-5"]["xgboost-cpu"] == "3.0.5" and image_envs()["1.7-1"]["xgboost"] == "1.7.4"


@pytest.mark.parametrize("image", IMAGES)
def test_image_venv_has_the_pinned_versions(image):
    py = _python(image)
    out = subprocess.run([str(py), "-I", "-c", "import json, numpy, xgboost; print(json.dumps([xgboost.__version__, numpy.__version__]))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    pins = image_envs()[image]
    assert json.loads(out) == [pins.get("xgboost") or pins["xgboost-cpu"], pins["numpy"]]


@pytest.mark.parametrize("image", IMAGES)
def test_training_job_model_scores_alike_in_image(image, job):
    _python(image)
    model_file, checkpoints, X = job
    for f in (model_file, checkpoints[-1]):  # the job's model and its latest checkpoint
        diff = np.abs(image_predict(image, f, X) - _here(f, X)).max()
        assert diff <= TOL, f"{f.name}: image {image} predicts up to {diff:.3g} away from XGBoost {xgb.__version__}"


@pytest.mark.parametrize("image", IMAGES)
def test_packed_model_scores_alike_in_image(image, booster, tmp_path):
    _python(image)
    bst, X = booster
    pack_model(bst, {"features": [f"x{i}" for i in range(X.shape[1])]}, tmp_path/"model.tar.gz")
    model_file = safe_extract(tmp_path/"model.tar.gz", tmp_path/"pkg")/MODEL_FILE
    diff = np.abs(image_predict(image, model_file, X) - bst.predict(xgb.DMatrix(X))).max()
    assert diff <= TOL, f"image {image} predicts the packed model up to {diff:.3g} away from the booster in memory"


@pytest.mark.parametrize("image", IMAGES)
def test_plain_save_model_is_read_differently_by_image(image, booster, tmp_path):
    "The bug save_booster fixes: the file of XGBoost 3.2's plain save_model loads in the image, but base_score becomes 0.5."
    _python(image)
    bst, X = booster
    bst.save_model(str(tmp_path/"raw.json"))
    here = bst.predict(xgb.DMatrix(X))
    raw_diff = np.abs(image_predict(image, tmp_path/"raw.json", X) - here).max()
    fixed_diff = np.abs(image_predict(image, save_booster(bst, tmp_path/"model.json"), X) - here).max()
    assert raw_diff > 0.05, f"image {image} now reads XGBoost 3.2's vector base_score (diff {raw_diff:.3g}): save_booster may be unneeded"
    assert fixed_diff <= TOL


@pytest.mark.parametrize("image", IMAGES)
def test_entry_script_runs_with_image_libraries(image, tmp_path):
    "The script-mode entry point imports only what the image has: it trains there, and both sides read its model alike."
    py = _python(image)
    X, y = _data(600)
    for name, rows in (("train", slice(0, 400)), ("validation", slice(400, 600))):
        (tmp_path/name).mkdir()
        pd.DataFrame(np.column_stack([y[rows], X[rows]])).to_csv(tmp_path/name/"data.csv", header=False, index=False)
    env = {"SM_HPS": json.dumps({"num_round": 20, "max_depth": 3, "checkpoint_frequency": 5, "cv_folds": 3}), "SM_NUM_CPUS": "1",
           "SM_MODEL_DIR": str(tmp_path/"model"), "SM_OUTPUT_DATA_DIR": str(tmp_path/"out"/"data"),
           "SM_OUTPUT_DIR": str(tmp_path/"out"), "SM_CHECKPOINT_DIR": str(tmp_path/"ck"), "SM_CHANNELS": '["train", "validation"]',
           "SM_CHANNEL_TRAIN": str(tmp_path/"train"), "SM_CHANNEL_VALIDATION": str(tmp_path/"validation")}
    r = subprocess.run([str(py), "-I", str(script_dir()/ENTRY_POINT)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path/"out"/"data"/"metrics.json").read_text())
    assert metrics["xgboost_version"] == (image_envs()[image].get("xgboost") or image_envs()[image]["xgboost-cpu"])
    model_file = tmp_path/"model"/MODEL_FILE
    assert np.abs(image_predict(image, model_file, X) - _here(model_file, X)).max() <= TOL


# --- SageMaker's XGBoost container's own rules, run in each image's venv ------------------------------------------------
# Written from reading aws/sagemaker-xgboost-container (algorithm_mode/serve_utils.get_loaded_booster and
# checkpointing.load_checkpoint): at serving time every regular file at the top of the model folder is loaded as a
# model, pickle first, then Booster.load_model(path); on a restart the checkpoint folder's files named exactly
# `xgboost-checkpoint.<digits>` are sorted by that number, the largest is loaded and training continues at number + 1.

_CONTAINER_RULES = r"""
import json, os, pickle, re, sys
import numpy as np, xgboost as xgb
model_dir, ck_dir, x_file, num_round = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
X = np.load(x_file)
loaded = []
for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path): continue
    try:
        pickle.load(open(path, "rb")); kind = "pickle"
    except Exception:
        b = xgb.Booster(); b.load_model(path); kind = "xgb"
    loaded.append((name, kind, b.predict(xgb.DMatrix(X)).tolist()))
names = [f for f in os.listdir(ck_dir) if re.match(r"^xgboost-checkpoint\.[0-9]+$", f)]
names.sort(key=lambda f: int(f.split(".")[1]))
latest = names[-1]
ck = xgb.Booster(); ck.load_model(os.path.join(ck_dir, latest))
start = int(latest.split(".")[1]) + 1
print(json.dumps({"loaded": loaded, "checkpoints": names, "start": start, "ck_rounds": ck.num_boosted_rounds(),
                  "xgboost": xgb.__version__}))
"""


@pytest.mark.parametrize("image", IMAGES)
def test_container_rules_load_the_package_and_resume_from_checkpoints(image, job, tmp_path):
    "The image's loader finds exactly one model (ours, read as we read it); its checkpoint rule resumes where ours does."
    py = _python(image)
    model_file, checkpoints, X = job
    np.save(tmp_path/"X.npy", X)
    r = subprocess.run([str(py), "-I", "-c", _CONTAINER_RULES, str(model_file.parent), str(checkpoints[0].parent),
                        str(tmp_path/"X.npy"), "40"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(n, k) for n, k, _ in out["loaded"]] == [(MODEL_FILE, "xgb")]  # one top-level file, an XGBoost model
    assert np.abs(np.array(out["loaded"][0][2]) - _here(model_file, X)).max() <= TOL
    assert out["checkpoints"] == [p.name for p in checkpoints]                # our names match the container's pattern
    assert out["start"] == out["ck_rounds"] == 40                             # it resumes after the last round held
    from ml_lifecycle.scripts.xgb_train import latest_checkpoint
    assert latest_checkpoint(str(checkpoints[0].parent))[1] == out["start"]   # and so does our script


def test_job_runs_in_the_image_environment(job):
    "Training jobs run in XGBOOST_IMAGE's venv, not the kernel's: the job reports the image's XGBoost."
    model_file, _, _ = job
    metrics = json.loads(tarfile.open(model_file.parent.parent/"models"/"parity"/"output.tar.gz").extractfile("metrics.json").read())
    pins = image_envs()[XGBOOST_IMAGE]
    assert metrics["xgboost_version"] == (pins.get("xgboost") or pins["xgboost-cpu"]) != xgb.__version__
