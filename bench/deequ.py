"""Deequ at scale: 01_validate's verification suite (VerificationSuite) and column profiling (one-scan analyzers)
on 1M and 10M rows amplified from mlc_churn: rows/s, growth from 1M to 10M, peak memory of Python + JVM."""
from __future__ import annotations
import json, shutil, sys, time
from pathlib import Path

import numpy as np

from common import CACHE, PeakRSS, loadavg, row

HOW = ("mlc_churn amplified with 00_ingest's `amplify_rows` (resampled rows, 2 % jitter) in 1M-row chunks written "
       "as Parquet; read with Spark and cached (load + cache time reported apart); suite = 01_validate's checks "
       "the notebook saved (`quality/<t>/checks.json` of the features fixture's lake: hand-written, translated Deequ suggestions, ranges); verify = `platform.deequ.verify` on all rows; "
       "profile = `platform.deequ.profile_columns` (Deequ analyzers in one scan, KLL sketches on a seeded sample of "
       "≈50,000 rows, value counts of low-cardinality columns; before issue 18: ColumnProfilerRunner) straight from the "
       "Parquet files, the cache released first; peak RSS = psutil "
       "sampling (0.2 s) of this process and its children (the Spark JVM); one run each")

CHUNK = 1_000_000


def amplified(n: int, quick: bool = False) -> Path:
    "`n` amplified rows as Parquet part files (cached)."
    from ml_lifecycle.platform.config import read_source
    from ml_lifecycle.ingest import amplify_rows
    root = CACHE/f"deequ-{n}"
    if (root/"_SUCCESS").exists(): return root
    shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
    src = read_source("modeldata/mlc_churn")
    chunk = min(n, CHUNK)
    for i, start in enumerate(range(0, n, chunk)):
        amplify_rows(src, min(chunk, n - start), seed=42 + i, keep=("churn",)).to_parquet(root/f"part-{i:05d}.parquet", index=False)
    (root/"_SUCCESS").touch()
    return root


def suite_for(spark, src_df, quick: bool = False) -> list[dict]:
    """01_validate's check suite. Full: the suite the notebook saved in the features fixture's lake
    (`quality/mlc_churn/checks.json`). Quick: built from the source's profile without Deequ's suggestions."""
    from ml_lifecycle.platform.storage import Lake
    from ml_lifecycle.platform.deequ import profile_columns
    from ml_lifecycle.validate import build_suite
    from ml_lifecycle.platform.schema import column_kinds, target_labels
    if not quick:
        from common import features_fixture
        features_fixture(False)
        return Lake(str(CACHE/"lake")).read_json("quality", "mlc_churn", "checks.json")["checks"]
    kinds, labels = column_kinds(src_df.schema, ["churn"]), target_labels(src_df, "churn")
    suite, _ = build_suite([], [], kinds, "churn", labels, "yes")
    return suite


def timed(fn, *a, **k):
    with PeakRSS() as m:
        t0 = time.perf_counter(); out = fn(*a, **k); s = time.perf_counter() - t0
    return out, s, m.gib


def prepare(quick: bool = False) -> None:
    "Write the amplified Parquet inputs (cached)."
    for n in SIZES[quick]: amplified(n, quick)


SIZES = {True: [5_000, 10_000], False: [1_000_000, 10_000_000]}


def run(quick: bool = False, steps=("verify", "profile")) -> dict:
    """Verify then profile at each size; each step's figures are kept as soon as they exist (a step that kills the
    JVM, e.g. with OutOfMemoryError, is reported as that step's error, the figures before it stay)."""
    from ml_lifecycle.platform.config import read_source
    from ml_lifecycle.platform.spark import get_spark, stop_spark
    from ml_lifecycle.platform.deequ import profile_columns, verify
    sizes = SIZES[quick]
    spark = get_spark()
    rows, details, res, failed = [], {}, {}, None
    try:
        src_df = spark.createDataFrame(read_source("modeldata/mlc_churn")).cache()
        suite = suite_for(spark, src_df, quick)
        verify(spark, src_df, suite)  # warm-ups (JIT, class loading), not counted
        if not quick: profile_columns(spark, src_df)
        details["checks"] = len(suite)
        for n in sizes:
            path = amplified(n, quick)
            r = res[n] = {"load": [loadavg()]}
            df = spark.read.parquet(str(path)).cache()
            _, r["load_cache_s"], _ = timed(df.count)
            case = f"{n:,} rows × {len(df.columns)} columns"
            rows.append(row(case, "read Parquet + cache", round(r["load_cache_s"], 1), "s", how=HOW))
            for step in steps:
                try:
                    if step == "verify":
                        v, r["verify_s"], r["verify_gib"] = timed(verify, spark, df, suite)
                        rows.append(row(case, f"verify ({v['constraints']} constraints, {v['status']})",
                                        f"{r['verify_s']:.1f} s, {n / r['verify_s']:,.0f} rows/s, peak {r['verify_gib']} GiB", ""))
                    else:
                        df.unpersist()  # the profiler reads the Parquet files itself, with the whole heap
                        pq = spark.read.parquet(str(path))
                        _, r["profile_s"], r["profile_gib"] = timed(profile_columns, spark, pq.select(pq.columns[:4]) if quick else pq)
                        rows.append(row(case, "profile (4 columns)" if quick else "profile (all columns)",
                                        f"{r['profile_s']:.1f} s, {n / r['profile_s']:,.0f} rows/s, peak {r['profile_gib']} GiB", ""))
                except Exception as e:
                    failed = f"{step} at {n:,} rows: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    rows.append(row(case, f"{step} FAILED", failed, "")); break
                finally:
                    (CACHE/"deequ-progress.json").write_text(json.dumps(res, indent=1, default=str))
            if failed: break
            r["load"].append(loadavg()); df.unpersist()
            details[case] = r
        a, b = sizes
        for step in steps:
            if f"{step}_s" in res.get(a, {}) and f"{step}_s" in res.get(b, {}):
                g = res[b][f"{step}_s"] / res[a][f"{step}_s"]
                rows.append(row(f"{a:,} → {b:,} rows", f"{step} time growth", round(g, 1), "×", "≤ 11×", g <= 11))
    finally:
        try: stop_spark()
        except Exception: pass  # the JVM may be gone (OutOfMemoryError)
    if failed: details["failed"] = failed
    return {"rows": rows, "details": {**details, "by_size": res}, "how": HOW}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
