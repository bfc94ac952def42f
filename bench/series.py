"Whole series: the stage notebooks 00 → 08 through the project's papermill runner into a fresh lake, on the default data."
from __future__ import annotations
import json, sys, tempfile, time
from pathlib import Path

from common import CACHE, PeakRSS, row

HOW = ("`runner.run_series` (papermill, one kernel per notebook) into a fresh lake and a fresh MLflow store, default "
       "data (modeldata/mlc_churn, 5,000 rows); per-notebook wall time as the runner measures it (kernel start "
       "included); peak RSS = psutil sampling of this process and all descendants (kernels, Spark JVMs, job and "
       "endpoint subprocesses); one run (the series is the unit a user runs)")


def run(quick: bool = False) -> dict:
    from ml_lifecycle.platform.runner import run_series, stage_notebooks
    nbs = stage_notebooks()
    if quick: nbs = [p for p in nbs if p.stem == "00_ingest"]   # the harness, not the figure
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-series-", dir=CACHE) as tmp:
        with PeakRSS(every=0.5) as m:
            t0 = time.perf_counter()
            res = run_series({"lake": str(Path(tmp)/"lake")}, notebooks=nbs, runs_dir=Path(tmp)/"runs", progress=False,
                             raise_on_error=False)
            wall = time.perf_counter() - t0
    if res.error: raise RuntimeError(f"the series failed: {res.error}")
    rows = [row("default data", s.notebook, round(s.seconds, 1), "s", how=HOW if i == 0 else "")
            for i, s in enumerate(res.stages)]
    total = sum(s.seconds for s in res.stages)
    rows += [row("default data", f"total ({len(res.stages)} notebooks)", round(total, 1), "s",
                 "< 300 s" if not quick else "", (total < 300) if not quick else None),
             row("default data", "wall time of run_series (incl. the runner's own work)", round(wall, 1), "s"),
             row("default data", "peak RSS (process tree)", m.gib, "GiB")]
    return {"rows": rows, "details": {s.notebook: s.seconds for s in res.stages}, "how": HOW}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
