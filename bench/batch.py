"""Batch transform: `ml_lifecycle.platform.transform.batch_transform` (Spark) against single-process pandas scoring
(read each CSV file, `booster.inplace_predict`, write `<file>.out`) at 1M and 10M amplified rows."""
from __future__ import annotations
import json, os, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np

from common import CACHE, PeakRSS, features_fixture, loadavg, median, model_fixture, row

ROWS_PER_FILE = 250_000
HOW = ("input: headerless CSV part files of {per:,} rows (features only, in the model's order), rows resampled whole "
       "(seeded) from 03_prepare's validation+test splits; both sides read every file, predict with the same booster "
       "and write one `<file>.out` per input file; wall time from call to return (Spark session already started, "
       "a warm-up on a small input excluded); pandas: one process, pandas.read_csv (C engine) + inplace_predict "
       "(XGBoost's default threads) + Series.to_csv, and the same with nthread=1 (one core); Spark: `batch_transform`'s "
       "defaults (the input cut into byte ranges spread evenly over the cores, each task reads its ranges itself, "
       "XGBoost nthread = cores / tasks); median of {reps} interleaved runs at 1M, one at 10M")


def batch_input(feat: dict, n: int, per_file: int = ROWS_PER_FILE) -> Path:
    "A folder of headerless CSV part files with `n` rows in total (made once, cached)."
    root = CACHE/f"batch-input-{n}"
    if (root/"_SUCCESS").exists(): return root
    shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
    lines = [l.split(b",", 1)[1] for split in ("validation", "test")
             for l in (Path(feat[split])/"data.csv").read_bytes().splitlines(keepends=True)]
    rng = np.random.default_rng(7)
    for i, start in enumerate(range(0, n, per_file)):
        idx = rng.integers(0, len(lines), min(per_file, n - start))
        (root/f"part-{i:05d}.csv").write_bytes(b"".join(lines[j] for j in idx))
    (root/"_SUCCESS").touch()
    return root


def input_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))


def pandas_transform(model_dir: Path, input_dir: Path, output_dir: Path, nthread: int | None = None) -> dict:
    "The single-process baseline a user would write: read, predict, write, file by file (XGBoost's threads unless `nthread`)."
    import pandas as pd, xgboost as xgb
    from ml_lifecycle.scripts.xgb_train import load_booster, MODEL_FILE
    b = load_booster(model_dir/MODEL_FILE)
    if nthread: b.set_param({"nthread": nthread})
    n = 0
    for f in input_files(input_dir):
        X = pd.read_csv(f, header=None, dtype=np.float32).to_numpy()
        p = b.inplace_predict(X)
        out = output_dir/(str(f.relative_to(input_dir)) + ".out"); out.parent.mkdir(parents=True, exist_ok=True)
        pd.Series(p).to_csv(out, header=False, index=False)
        n += len(p)
    return {"rows": n}


def prepare(quick: bool = False) -> None:
    "Make the features fixture, the model and the CSV inputs (cached)."
    feat = features_fixture(quick); model_fixture(feat, quick)
    for n in ([20_000] if quick else [1_000_000, 10_000_000]): batch_input(feat, n, 5_000 if quick else ROWS_PER_FILE)


def run(quick: bool = False) -> dict:
    from ml_lifecycle.platform.spark import get_spark, stop_spark
    feat = features_fixture(quick); model_dir = model_fixture(feat, quick)
    from ml_lifecycle.platform.transform import batch_transform as bt
    impl = "ml_lifecycle.platform.transform.batch_transform"
    sizes = [20_000] if quick else [1_000_000, 10_000_000]
    per = 5_000 if quick else ROWS_PER_FILE
    spark = get_spark()
    rows, details, base = [], {"implementation": impl}, {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-", dir=CACHE) as tmp:
            tmp = Path(tmp)
            warm = batch_input(feat, 2 * per // 10, per // 10)
            bt(str(model_dir), str(warm), str(tmp/"warm-s"), spark=spark); pandas_transform(model_dir, warm, tmp/"warm-p")
            for n in sizes:
                src = batch_input(feat, n, per)
                size_mb = sum(f.stat().st_size for f in input_files(src)) / 1e6
                reps = 1 if n >= 5_000_000 else (1 if quick else 3)
                S, Pd, P1 = [], [], []
                for i in range(reps):
                    for name, fn, acc in (("spark", lambda o: bt(str(model_dir), str(src), str(o), spark=spark), S),
                                          ("pandas", lambda o: pandas_transform(model_dir, src, o), Pd),
                                          ("pandas1", lambda o: pandas_transform(model_dir, src, o, nthread=1), P1)):
                        out = tmp/f"{name}-{n}-{i}"
                        t0 = time.perf_counter(); r = fn(out); acc.append(time.perf_counter() - t0)
                        if i == 0 and name == "pandas":  # the two agree, file by file
                            f0 = input_files(src)[0].name + ".out"
                            a = np.loadtxt(tmp/f"spark-{n}-0"/f0, max_rows=1000); b = np.loadtxt(out/f0, max_rows=1000)
                            assert np.allclose(a, b, atol=1e-6), "Spark and pandas outputs differ"
                        if name != "spark": shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(tmp/f"spark-{n}-{i}", ignore_errors=True)
                s, p, p1 = median(S), median(Pd), median(P1)
                base[n] = (s, p)
                case = f"{n:,} rows ({len(input_files(src))} files, {size_mb:,.0f} MB CSV)"
                rows += [row(case, "Spark batch_transform", round(s, 1), "s", how=HOW.format(per=per, reps=3)),
                         row(case, "pandas single process", round(p, 1), "s"),
                         row(case, "rows/s Spark / pandas", f"{n / s:,.0f} / {n / p:,.0f}", "rows/s"),
                         row(case, "speed-up Spark vs pandas", round(p / s, 2), "×", "≥ 1.5×", p / s >= 1.5),
                         row(case, "pandas on one core (nthread=1): time; Spark's speed-up over it", f"{p1:.1f} s; {p1 / s:.2f}×", "")]
                details[case] = {"spark_s": S, "pandas_s": Pd, "pandas_1thread_s": P1, "mb": size_mb}
            if len(sizes) == 2:
                (s1, p1), (s2, p2) = base[sizes[0]], base[sizes[1]]
                k = sizes[1] / sizes[0]
                rows += [row(f"{sizes[0]:,} → {sizes[1]:,} rows", "time growth Spark / pandas", f"{s2 / s1:.1f} / {p2 / p1:.1f}",
                             "×", f"near-linear (≈ {k:.0f}×)", s2 / s1 <= 1.2 * k)]
    finally:
        stop_spark()
    return {"rows": rows, "details": details, "how": HOW.format(per=per, reps=3), "implementation": impl}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
