"""Training: the local SageMaker-contract runner (`run_training_job` + the 04a entry script, a subprocess in a job
folder) against bare `xgboost.train` in this process, same data, same parameters, same number of rounds."""
from __future__ import annotations
import json, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

from common import CACHE, features_fixture, loadavg, median, row

HOW = ("wall time of `run_training_job` (job folder, channel copy, subprocess with the 04a script, model.tar.gz) vs "
       "in-process pandas.read_csv + DMatrix + xgboost.train (evals on train and validation) + save_booster; "
       "nthread=1 in both (04_train's setting); checkpoints every 50 rounds ON in the runner; median of interleaved repeats after one warm-up each; "
       "cases: 04_train's default job (stratified 5-fold xgb.cv with early stopping picks the rounds, then the final fit) "
       "and fixed-round jobs without CV, which isolate the runner's fixed cost")


def hyperparameters(rounds: int, checkpoint_frequency: int = 50, cv: bool = False) -> dict:
    "04_train's default hyperparameters; without `cv`, a fixed number of rounds (no CV, no early stopping)."
    from ml_lifecycle.platform.xgb_job import DEFAULT_HYPERPARAMETERS
    hps = {**DEFAULT_HYPERPARAMETERS, "num_round": rounds, "checkpoint_frequency": checkpoint_frequency, "seed": 42}
    return hps if cv else hps | {"early_stopping_rounds": 0, "cv_folds": 0}


def run_runner(feat: dict, hps: dict, work: Path) -> dict:
    "One local training job; wall time and its parts."
    from ml_lifecycle.platform.sagemaker_local import run_training_job
    from ml_lifecycle.platform.xgb_job import ENTRY_POINT, METRIC_DEFINITIONS, script_dir
    t0 = time.perf_counter()
    res = run_training_job(ENTRY_POINT, script_dir(), hps, {"train": feat["train"], "validation": feat["validation"],
                           "metadata": feat["metadata"]}, job_name="bench-train", work_dir=work, cpus=1, overwrite=True,
                           metric_definitions=METRIC_DEFINITIONS)
    wall = time.perf_counter() - t0
    m = json.loads((Path(res.job_dir)/"output"/"data"/"metrics.json").read_text())
    return {"wall": wall, "subprocess": res.seconds, "script_main": m["seconds"], "auc": m["validation:auc"]}


def run_bare(feat: dict, hps: dict, out: Path) -> dict:
    "The same training in this process with plain pandas + xgboost."
    import pandas as pd, xgboost as xgb
    from ml_lifecycle.scripts.xgb_train import cast_hyperparameters, save_booster, xgb_params
    hps = cast_hyperparameters(hps)  # what the entry script does with the strings it receives
    t0 = time.perf_counter()
    tr = pd.read_csv(Path(feat["train"])/"data.csv", header=None).to_numpy(np.float32)
    va = pd.read_csv(Path(feat["validation"])/"data.csv", header=None).to_numpy(np.float32)
    dtr, dva = xgb.DMatrix(tr[:, 1:], label=tr[:, 0], nthread=1), xgb.DMatrix(va[:, 1:], label=va[:, 0], nthread=1)
    t1 = time.perf_counter()
    ev, rounds = {}, hps["num_round"]
    if hps["cv_folds"] > 1:  # 04_train's default: stratified k-fold CV with early stopping picks the rounds
        cv = xgb.cv(xgb_params(hps, 1), dtr, num_boost_round=rounds, nfold=hps["cv_folds"], stratified=True,
                    seed=hps["seed"], early_stopping_rounds=hps["early_stopping_rounds"] or None, maximize=True)
        rounds = len(cv)
    b = xgb.train(xgb_params(hps, 1), dtr, num_boost_round=rounds, evals=[(dtr, "train"), (dva, "validation")],
                  evals_result=ev, verbose_eval=False)
    t2 = time.perf_counter()
    save_booster(b, out/"xgboost-model")  # as the script saves it
    return {"wall": time.perf_counter() - t0, "read": t1 - t0, "train": t2 - t1, "auc": ev["validation"]["auc"][-1]}


def amplified_features(feat: dict, n: int) -> dict:
    "Train/validation folders with `n` train rows resampled (whole CSV lines, seeded) from the fixture's train split."
    root = CACHE/f"train-amplified-{n}"
    if not (root/"train"/"data.csv").exists():
        lines = (Path(feat["train"])/"data.csv").read_bytes().splitlines(keepends=True)
        idx = np.random.default_rng(0).integers(0, len(lines), n)
        (root/"train").mkdir(parents=True, exist_ok=True)
        (root/"train"/"data.csv").write_bytes(b"".join(lines[i] for i in idx))
    return {**feat, "train": str(root/"train")}


def interpreter_start() -> float:
    "Seconds for a fresh interpreter to import what the entry script imports (numpy, pandas, xgboost)."
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, pandas, xgboost"], check=True)
    return time.perf_counter() - t0


def prepare(quick: bool = False) -> None:
    "The features fixture and the amplified train split (cached)."
    feat = features_fixture(quick)
    if not quick: amplified_features(feat, 100_000)


def run(quick: bool = False) -> dict:
    feat = features_fixture(quick)
    reps = 1 if quick else 3
    cases = [("04_train's default job (5-fold CV, early stopping)", feat, 20 if quick else 1000, True),
             ("default data, fixed rounds", feat, 50 if quick else 1000, False)]
    if not quick: cases.append(("100k train rows (resampled), fixed rounds", amplified_features(feat, 100_000), 100, False))
    rows, details = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        starts = [interpreter_start() for _ in range(reps)]
        for name, f, rounds, cv in cases:
            hps = hyperparameters(rounds, cv=cv)
            n_train = sum(1 for _ in open(Path(f["train"])/"data.csv"))
            run_runner(f, hps, tmp/"w"); run_bare(f, hps, tmp)            # warm-ups (page cache, imports), not counted
            R, B = [], []
            for _ in range(reps):                                           # interleaved
                R.append(run_runner(f, hps, tmp/"w")); B.append(run_bare(f, hps, tmp))
            no_ck = [run_runner(f, hyperparameters(rounds, 0, cv), tmp/"w")["wall"] for _ in range(reps)]
            r, b = median([x["wall"] for x in R]), median([x["wall"] for x in B])
            case = f"{name}: {n_train:,} rows × {len(f['features'])} features, {'≤ ' if cv else ''}{rounds} rounds"
            rows += [row(case, "runner wall", round(r, 2), "s", how=HOW),
                     row(case, "bare xgboost.train wall", round(b, 2), "s"),
                     row(case, "runner / bare", round(r / b, 2), "×", "≤ 1.3×", r / b <= 1.3),
                     row(case, "  of which: interpreter start + imports", round(median(starts), 2), "s"),
                     row(case, "  of which: job folder, copy, pack (outside the subprocess)",
                         round(r - median([x["subprocess"] for x in R]), 2), "s"),
                     row(case, "  of which: checkpoints (runner with checkpoints off)", round(r - median(no_ck), 2), "s"),
                     row(case, "  bare: read CSV + DMatrix / train", f"{median([x['read'] for x in B]):.2f} / {median([x['train'] for x in B]):.2f}", "s")]
            details[case] = {"runner": R, "bare": B, "runner_no_checkpoints": no_ck, "interpreter_start": starts,
                             "hyperparameters": hps}
    return {"rows": rows, "details": details, "how": HOW}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
