"Shared helpers of the benchmarks: load average, timing, peak memory of a process tree, cached fixtures."
from __future__ import annotations
import json, os, shutil, statistics, subprocess, sys, threading, time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BENCH_CACHE") or ROOT/".cache"/"bench")   # generated data, reused across runs
os.environ.setdefault("SPARK_VERSION", "3.5")


def loadavg() -> list[float]:
    "The 1-, 5- and 15-minute load averages."
    return [round(x, 2) for x in os.getloadavg()]


def median(xs) -> float: return float(statistics.median(xs))


def row(case: str, metric: str, value, unit: str = "", target: str = "", ok: bool | None = None, how: str = "") -> dict:
    "One line of the results table."
    return {"case": case, "metric": metric, "value": value, "unit": unit, "target": target, "ok": ok, "how": how}


class PeakRSS:
    "Sample the summed RSS of a process and all its descendants (e.g. Python + Spark JVM) in a thread."
    def __init__(self, pid: int | None = None, every: float = 0.2):
        self.pid, self.every, self.peak, self._stop = pid or os.getpid(), every, 0, threading.Event()
    def total(self) -> int:
        try: root = psutil.Process(self.pid)
        except psutil.Error: return 0
        n = 0
        for p in [root, *root.children(recursive=True)]:
            try: n += p.memory_info().rss
            except psutil.Error: pass
        return n
    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.total()); time.sleep(self.every)
    def __enter__(self):
        self.peak = self.total(); self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *exc): self._stop.set(); self._t.join()
    @property
    def gib(self) -> float: return round(self.peak / 2**30, 2)


@contextmanager
def timer():
    "`with timer() as t: ...` then `t()` is the elapsed seconds."
    t0 = time.perf_counter(); end = [None]
    yield lambda: (end[0] or time.perf_counter()) - t0
    end[0] = time.perf_counter()


# ---------------------------------------------------------------- fixtures ---------------------------------------
def _synthetic_features(root: Path, n: int = 4000, n_features: int = 20, seed: int = 0) -> dict:
    "Tiny stand-in for 03_prepare's output (label first, no header), for --quick runs."
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).round(4); y = (X[:, 0] - X[:, 1] + rng.normal(scale=.8, size=n) > 0).astype(int)
    cut = {"train": slice(0, int(n * .7)), "validation": slice(int(n * .7), int(n * .85)), "test": slice(int(n * .85), n)}
    for split, s in cut.items():
        (root/split).mkdir(parents=True, exist_ok=True)
        np.savetxt(root/split/"data.csv", np.column_stack([y[s], X[s]]), delimiter=",", fmt="%g")
    meta = {"label": "label", "features": [f"x{i}" for i in range(n_features)]}
    (root/"feature_metadata.json").write_text(json.dumps(meta))
    return meta


def features_fixture(quick: bool = False) -> dict:
    """03_prepare's output for the default data: train/validation/test folders (data.csv, label first, no header) and
    feature_metadata.json. Full: a lake under the cache, made once by running 00_ingest, 01_validate and 03_prepare
    through the project's papermill runner. Quick: small synthetic data of the same shape."""
    if quick:
        root = CACHE/"quick"/"features"
        if not (root/"feature_metadata.json").exists(): _synthetic_features(root)
        meta = json.loads((root/"feature_metadata.json").read_text())
        return {"train": str(root/"train"), "validation": str(root/"validation"), "test": str(root/"test"),
                "metadata": str(root/"feature_metadata.json"), "features": meta["features"], "source": "synthetic (quick)"}
    from ml_lifecycle.platform.storage import Lake
    lake = CACHE/"lake"; L = Lake(str(lake))
    local = lambda u: str(u).removeprefix("file://")
    try:
        ptr = L.pointer("mlc_churn", "features")
        if not Path(local(ptr["metadata"])).exists(): raise FileNotFoundError(ptr["metadata"])  # the cache was moved
    except Exception:
        from ml_lifecycle.platform.runner import run_series, stage_notebooks
        nbs = [p for p in stage_notebooks() if p.stem in ("00_ingest", "01_validate", "03_prepare")]
        print(f"[bench] making the features fixture: {[p.stem for p in nbs]} into {lake}", flush=True)
        run_series({"lake": str(lake)}, notebooks=nbs, runs_dir=CACHE/"runs", progress=False)
        ptr = L.pointer("mlc_churn", "features")
    meta = json.loads(Path(local(ptr["metadata"])).read_text())
    return {"train": local(ptr["train"]), "validation": local(ptr["validation"]), "test": local(ptr["test"]),
            "metadata": local(ptr["metadata"]), "features": meta["features"], "source": "mlc_churn via 00/01/03 notebooks"}


def read_split(folder: str) -> tuple[np.ndarray, np.ndarray]:
    "(X, y) of a split folder's data.csv (label first)."
    a = np.loadtxt(Path(folder)/"data.csv", delimiter=",", dtype=np.float32, ndmin=2)
    return a[:, 1:], a[:, 0]


MODEL_PARAMS = {"max_depth": 6, "eta": 0.02, "subsample": 0.8, "colsample_bytree": 0.5, "min_child_weight": 3,
                "objective": "binary:logistic", "eval_metric": "auc", "seed": 42, "tree_method": "hist", "nthread": 1}
MODEL_ROUNDS = 300


def model_fixture(feat: dict, quick: bool = False) -> Path:
    """A model package (xgboost-model + metadata/feature_metadata.json, and model.tar.gz beside them) trained on the
    fixture's train split with 04_train's default tree parameters and a fixed number of rounds."""
    import xgboost as xgb
    from ml_lifecycle.scripts.xgb_train import save_booster, MODEL_FILE, METADATA_FILE
    d = CACHE/("quick" if quick else "full")/"model"
    if (d/MODEL_FILE).exists() and (d/METADATA_FILE).exists(): return d
    d.mkdir(parents=True, exist_ok=True)
    X, y = read_split(feat["train"])
    b = xgb.train(MODEL_PARAMS, xgb.DMatrix(X, label=y), num_boost_round=30 if quick else MODEL_ROUNDS)
    save_booster(b, d/MODEL_FILE); (d/METADATA_FILE).parent.mkdir(exist_ok=True); shutil.copy(feat["metadata"], d/METADATA_FILE)
    from ml_lifecycle.platform.sagemaker_local import pack_dir
    tmp = CACHE/"tmp-model.tar.gz"; pack_dir(d, tmp); shutil.move(tmp, d.parent/"model.tar.gz")
    return d


def git_commit() -> str:
    try: return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError: return ""
