#!/usr/bin/env python
"""Run the benchmarks and print one table; write bench/results/<timestamp>.json and .md.

    .venv/bin/python bench/run.py [--only NAME[,NAME]] [--quick]

Each benchmark runs in its own Python process (a failure or a Spark session of one cannot disturb the next) and
reports the load average at its start and end. `--quick` uses tiny sizes: it checks the harness, not the figures."""
from __future__ import annotations
import argparse, json, os, platform, subprocess, sys, time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import CACHE, git_commit, loadavg  # noqa: E402

BENCHMARKS = ["series", "train", "endpoint", "batch", "deequ", "data"]


def child(name: str, quick: bool, out: Path) -> None:
    "Run one benchmark in this process and write its result to `out`."
    import importlib
    t0, load0 = time.perf_counter(), loadavg()
    try:
        res = importlib.import_module(name).run(quick=quick); res["error"] = None
    except Exception as e:
        import traceback; res = {"rows": [], "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    res.update(name=name, seconds=round(time.perf_counter() - t0, 1), load_start=load0, load_end=loadavg())
    out.write_text(json.dumps(res, indent=1, default=str))


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def table(results: list[dict], fmt: str = "simple") -> str:
    from tabulate import tabulate
    lines = []
    for r in results:
        for x in r["rows"]:
            ok = "" if x.get("ok") is None else ("yes" if x["ok"] else "NO")
            lines.append([r["name"], x["case"], x["metric"], f"{x['value']}", x.get("unit", ""), x.get("target", ""), ok])
        load = f"load {r['load_start'][0]} → {r['load_end'][0]}, {r['seconds']} s"
        lines.append([r["name"], "(run)", "error: " + r["error"][:160] if r.get("error") else "", "", "", "", load])
    return tabulate(lines, headers=["bench", "case", "measure", "value", "unit", "target", "met / load"], tablefmt=fmt)


def markdown(meta: dict, results: list[dict]) -> str:
    head = [f"# Benchmark results {meta['started']}", "",
            f"- machine: {meta['machine']}", f"- commit: {meta['commit']}", f"- mode: {'quick' if meta['quick'] else 'full'}",
            f"- load average (1 min) at start / end: {meta['load_start'][0]} / {meta['load_end'][0]}", "",
            table(results, "github"), "", "## How each figure was measured", ""]
    for r in results:
        if r.get("how"): head.append(f"- **{r['name']}**: {r['how']}")
        if r.get("implementation"): head.append(f"  (implementation: {r['implementation']})")
    return "\n".join(head) + "\n"


def main(argv=None) -> int:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--only", help=f"comma-separated subset of {BENCHMARKS}")
    a.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, not the figures")
    a.add_argument("--prepare", action="store_true", help="only build the cached inputs (fixtures, amplified data)")
    a.add_argument("--results", help="folder for <timestamp>.json and .md (default: bench/results, or the cache with --quick)")
    a.add_argument("--child", help=argparse.SUPPRESS); a.add_argument("--out", help=argparse.SUPPRESS)
    o = a.parse_args(argv)
    if o.child: child(o.child, o.quick, Path(o.out)); return 0
    if o.prepare:
        import importlib
        for n in (o.only.split(",") if o.only else BENCHMARKS):
            if hasattr(m := importlib.import_module(n), "prepare"):
                print(f"[bench] preparing {n} ...", flush=True); m.prepare(o.quick)
        return 0
    names = o.only.split(",") if o.only else BENCHMARKS
    if bad := [n for n in names if n not in BENCHMARKS]: a.error(f"unknown benchmark(s) {bad}; pick from {BENCHMARKS}")
    os.environ.setdefault("SPARK_VERSION", "3.5"); CACHE.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta = {"started": stamp, "machine": machine(), "commit": git_commit(), "quick": o.quick, "load_start": loadavg()}
    results = []
    for n in names:
        print(f"[bench] {n}{' (quick)' if o.quick else ''}: load {loadavg()} ...", flush=True)
        out = CACHE/f"result-{stamp}-{n}.json"
        subprocess.run([sys.executable, __file__, "--child", n, "--out", str(out)] + (["--quick"] if o.quick else []),
                       cwd=HERE)
        r = json.loads(out.read_text()) if out.exists() else {"name": n, "rows": [], "error": "the benchmark process died",
                                                               "seconds": 0, "load_start": [0], "load_end": [0]}
        if r.get("error"): print(f"[bench] {n} FAILED: {r['error']}\n{r.get('traceback', '')}", flush=True)
        results.append(r)
    meta["load_end"] = loadavg()
    res_dir = Path(o.results or (CACHE/"results-quick" if o.quick else HERE/"results")); res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir/f"{stamp}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    (res_dir/f"{stamp}.md").write_text(markdown(meta, results))
    print(f"\n{meta['machine']}, commit {meta['commit']}, load {meta['load_start']} → {meta['load_end']}\n")
    print(table(results))
    print(f"\nwritten: {res_dir/stamp}.json and .md")
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
