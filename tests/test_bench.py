"The benchmark harness runs end to end at tiny sizes (`bench/run.py --quick`), so it cannot rot. No timing asserts."
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick(tmp_path):
    names = ["series", "train", "batch", "deequ"] + (["endpoint"] if shutil.which("wrk") else [])
    env = {**os.environ, "BENCH_CACHE": str(tmp_path/"cache"), "SPARK_VERSION": "3.5"}
    p = subprocess.run([sys.executable, str(ROOT/"bench"/"run.py"), "--quick", "--only", ",".join(names),
                        "--results", str(tmp_path/"results")], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    [js] = list((tmp_path/"results").glob("*.json"))
    doc = json.loads(js.read_text())
    assert [r["name"] for r in doc["results"]] == names
    for r in doc["results"]:
        assert r["error"] is None and r["rows"], r
        assert len(r["load_start"]) == 3 and len(r["load_end"]) == 3
    assert js.with_suffix(".md").exists() and "| bench" in js.with_suffix(".md").read_text()
    assert "runner / bare" in p.stdout   # the printed table
