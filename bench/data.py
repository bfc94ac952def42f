"""The data stages at scale: 00_ingest → 03_prepare through papermill (as `make run` runs them) on 1M and 10M amplified
rows of the default data, each stage's wall time and the peak RSS of the whole process tree; then, on the 10M-row raw
version, 01_validate's one-scan profile against its verification of the saved suite."""
from __future__ import annotations
import json, shutil, sys, time

from common import CACHE, PeakRSS, loadavg, row

STAGES = ("00_ingest", "01_validate", "02_explore", "03_prepare")
SIZES = {True: [20_000], False: [1_000_000, 10_000_000]}
LIMITS = {1_000_000: 180.0, 10_000_000: 900.0}   # seconds for 00→03 (issue 18); peak RSS ≤ 8 GiB at every size
MAX_GIB, MAX_GROWTH, MAX_PROFILE_RATIO = 8.0, 10.0, 3.0

HOW = ("`runner.run_series` (papermill, one kernel per notebook, as `make run`) of 00_ingest (amplify=N: N rows resampled "
       "from modeldata/mlc_churn, numeric columns jittered, written in 1M-row Parquet parts), 01_validate, 02_explore and "
       "03_prepare (its processing job in the Spark image's environment) into a fresh lake, one stage at a time; wall time "
       "per stage from the call to its return (kernel start included); peak RSS = psutil sampling (0.2 s) of this process "
       "and all its descendants (kernels, Spark JVMs, the job's spark-submit and JVM), per stage, the largest reported. "
       "Then, in this process's own Spark session, on the 10M-row raw version as 01 reads it (Parquet): "
       "`platform.deequ.verify` of the suite 01_validate saved (quality/<t>/checks.json) and `platform.deequ.profile_columns` "
       "(the one-scan profile), after one warm-up of each on 1,000 rows; one run each.")


def case_name(n: int) -> str: return f"{n // 1_000_000}M rows" if n >= 1_000_000 else f"{n:,} rows"


def run_stages(n: int, root) -> list[dict]:
    "00→03 on `n` amplified rows into a fresh lake under `root`: seconds and peak RSS (GiB) per stage."
    from ml_lifecycle.platform.runner import run_series, stage_notebooks
    nbs = {p.stem: p for p in stage_notebooks()}
    shutil.rmtree(root, ignore_errors=True)
    out = []
    for name in STAGES:
        t0 = time.perf_counter()
        with PeakRSS() as m:
            res = run_series({"lake": str(root/"lake"), "amplify": n}, notebooks=[nbs[name]], runs_dir=root/"runs",
                             progress=False, raise_on_error=False)
        out.append({"stage": name, "seconds": round(time.perf_counter() - t0, 1), "peak_gib": m.gib, "ok": res.ok,
                    "error": str(res.error)[:1500] if res.error else None})
        print(json.dumps(out[-1]), flush=True)
        if not res.ok: break
    return out


def profile_vs_verify(lake_root) -> dict:
    "Seconds of 01's profile and of its verification of the saved suite, on the raw version of the lake."
    from ml_lifecycle.platform.storage import Lake
    from ml_lifecycle.platform.spark import get_spark, load_version, stop_spark
    from ml_lifecycle.platform.deequ import profile_columns, verify
    L = Lake(str(lake_root))
    raw, suite = L.pointer("mlc_churn", "raw"), L.read_json("quality", "mlc_churn", "checks.json")["checks"]
    spark = get_spark()
    try:
        df = load_version(spark, raw)
        verify(spark, df.limit(1000), suite); profile_columns(spark, df.limit(1000))  # warm-ups
        t0 = time.perf_counter(); res = verify(spark, df, suite); v = time.perf_counter() - t0
        with PeakRSS() as m:
            t0 = time.perf_counter(); prof = profile_columns(spark, df); p = time.perf_counter() - t0
        return {"rows": raw["rows"], "verify_s": round(v, 1), "verify_status": res["status"], "constraints": res["constraints"],
                "profile_s": round(p, 1), "profile_gib": m.gib,
                "sketch_sample": max((x.get("sketch_sample", 1.0) for x in prof), default=1.0)}
    finally: stop_spark()


def run(quick: bool = False) -> dict:
    rows, details = [], {"load": [loadavg()]}
    totals = {}
    for n in SIZES[quick]:
        case = case_name(n)
        figures = run_stages(n, CACHE/f"data-{n}")
        details[case] = figures
        for f in figures:
            rows.append(row(case, f["stage"], f["seconds"] if f["ok"] else f"FAILED: {f['error'][:120]}", "s"))
        ok = all(f["ok"] for f in figures) and len(figures) == len(STAGES)
        total, peak = sum(f["seconds"] for f in figures), max(f["peak_gib"] for f in figures)
        limit = LIMITS.get(n)
        rows.append(row(case, "00→03 total", round(total, 1) if ok else "incomplete", "s",
                        f"≤ {limit:g} s" if limit else "", (ok and total <= limit) if limit else None))
        rows.append(row(case, "peak RSS", peak, "GiB", f"≤ {MAX_GIB:g} GiB", peak <= MAX_GIB))
        if ok: totals[n] = total
        details["load"].append(loadavg())
    if not quick and len(totals) == 2:
        g = totals[10_000_000] / totals[1_000_000]
        rows.append(row("1M → 10M rows", "00→03 time growth", round(g, 1), "×", f"≤ {MAX_GROWTH:g}×", g <= MAX_GROWTH))
    big = max(SIZES[quick])
    if big in totals:
        pv = profile_vs_verify(CACHE/f"data-{big}"/"lake")
        details["profile_vs_verify"] = pv
        case = case_name(big)
        rows.append(row(case, "verification (01's saved suite)", pv["verify_s"], "s"))
        rows.append(row(case, "profile (one scan; sketches on a sample)", pv["profile_s"], "s"))
        r = pv["profile_s"] / pv["verify_s"]
        rows.append(row(case, "profile / verification", round(r, 2), "×", f"≤ {MAX_PROFILE_RATIO:g}×", r <= MAX_PROFILE_RATIO))
    return {"rows": rows, "details": details, "how": HOW}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
