"Unit tests of ml_lifecycle.platform.sagemaker_local: the SageMaker job contract, run as real subprocesses."
import json, os, sys, tarfile, time
from pathlib import Path

import pytest

from ml_lifecycle.platform.sagemaker_local import FLOAT_RE, JobError, deserialize_hyperparameters, fetch, pack_dir, parse_metrics, run_training_job, serialize_hyperparameters, unique_job_name, check_job_name
from ml_lifecycle.platform.processing_jobs import run_processing_job
from ml_lifecycle.platform.sagemaker_jobs import processing_job_spec, training_job, training_job_spec

# An entry script that records what it saw (files, env, argv) and writes a model, using only the contract.
PROBE = r'''
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("SM_") or k == "TRAINING_JOB_NAME"}
cfg = os.environ["SM_INPUT_CONFIG_DIR"]
seen = {"env": env, "argv": sys.argv[1:], "cwd": os.getcwd(),
        "hyperparameters.json": json.load(open(os.path.join(cfg, "hyperparameters.json"))),
        "resourceconfig.json": json.load(open(os.path.join(cfg, "resourceconfig.json"))),
        "inputdataconfig.json": json.load(open(os.path.join(cfg, "inputdataconfig.json"))),
        "train_files": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])),
        "restored": sorted(os.listdir(os.environ["SM_CHECKPOINT_DIR"]))}
json.dump(seen, open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json"), "w"))
open(os.path.join(os.environ["SM_CHECKPOINT_DIR"], "ckpt-1"), "w").write("state")
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w").write("{}")
for i in range(3): print(f"[{i}]\ttrain-auc:0.{80 + i}\tvalidation-auc:0.{70 + i}")
'''

@pytest.fixture()
def job(tmp_path):
    code = tmp_path/"code"; code.mkdir()
    (code/"probe.py").write_text(PROBE)
    train = tmp_path/"data"/"train"; train.mkdir(parents=True); (train/"data.csv").write_text("1,0.5\n0,0.2\n")
    meta = tmp_path/"data"/"feature_metadata.json"; meta.write_text('{"features": ["x"]}')
    return tmp_path, code, train, meta

DEFS = [{"Name": "validation:auc", "Regex": r".*\[[0-9]+\].*validation-auc:" + FLOAT_RE},
        {"Name": "train:auc", "Regex": r".*\[[0-9]+\].*train-auc:" + FLOAT_RE}]

def test_hyperparameters_are_strings_like_sagemaker():
    hps = serialize_hyperparameters({"max_depth": 5, "eta": 0.2, "objective": "binary:logistic", "flag": True, "l": [1, 2]})
    assert hps == {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic", "flag": "true", "l": "[1, 2]"}
    assert all(isinstance(v, str) for v in hps.values())
    assert deserialize_hyperparameters(hps) == {"max_depth": 5, "eta": 0.2, "objective": "binary:logistic", "flag": True, "l": [1, 2]}
    with pytest.raises(ValueError, match="non-empty words"): serialize_hyperparameters({"a b": 1})
    with pytest.raises(TypeError): serialize_hyperparameters([("a", 1)])

def test_parse_metrics_sagemaker_definitions():
    log = "[0]\ttrain-auc:0.8\tvalidation-auc:0.7\nnoise\n[1]\ttrain-auc:0.9\tvalidation-auc:0.75\n"
    assert parse_metrics(log, DEFS) == {"validation:auc": 0.75, "train:auc": 0.9}
    assert parse_metrics(log, DEFS, series=True)["validation:auc"] == [0.7, 0.75]
    assert parse_metrics(log.replace("\t", "#011"), DEFS)["train:auc"] == 0.9  # CloudWatch renders tabs as #011
    assert parse_metrics("loss=1.5e-3", [{"Name": "loss", "Regex": "loss=" + FLOAT_RE}]) == {"loss": 0.0015}
    assert parse_metrics("nothing here", DEFS) == {}
    with pytest.raises(ValueError, match="capture group"): parse_metrics(log, [{"Name": "x", "Regex": "auc"}])
    with pytest.raises(ValueError, match="bad regex"): parse_metrics(log, [{"Name": "x", "Regex": "(["}])

def test_pack_dir_is_reproducible(tmp_path):
    (tmp_path/"m").mkdir(); (tmp_path/"m"/"b.json").write_text("1"); (tmp_path/"m"/"a.json").write_text("2")
    one = pack_dir(tmp_path/"m", tmp_path/"1.tar.gz").read_bytes()
    time.sleep(1.1); (tmp_path/"m"/"a.json").touch()
    assert pack_dir(tmp_path/"m", tmp_path/"2.tar.gz").read_bytes() == one
    with tarfile.open(tmp_path/"1.tar.gz") as t: assert t.getnames() == ["a.json", "b.json"]

def test_job_names():
    assert len(unique_job_name("x" * 100)) == 63
    for bad in ["", "-a", "a_b", "a" * 64]:
        with pytest.raises(ValueError): check_job_name(bad)

def test_training_job_layout_env_and_model(job):
    tmp, code, train, meta = job
    res = run_training_job("probe.py", code, {"max_depth": 5, "eta": 0.2, "objective": "binary:logistic"},
                           {"train": train, "metadata": meta}, job_name="probe-1", work_dir=tmp/"jobs",
                           output_path=tmp/"lake"/"models", checkpoint_dir=tmp/"ckpt", metric_definitions=DEFS, cpus=3)
    d = Path(res.job_dir); seen = json.loads((d/"output"/"data"/"seen.json").read_text())
    assert res.status == "Completed" and res.exit_code == 0
    assert seen["hyperparameters.json"] == {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic"}
    assert seen["resourceconfig.json"]["current_host"] == "algo-1" and seen["resourceconfig.json"]["hosts"] == ["algo-1"]
    assert set(seen["inputdataconfig.json"]) == {"train", "metadata"}
    assert seen["inputdataconfig.json"]["train"]["ContentType"] == "text/csv"
    assert seen["train_files"] == ["data.csv"]
    assert (d/"input"/"data"/"metadata"/"feature_metadata.json").exists()  # a file channel
    env = seen["env"]
    assert env["SM_MODEL_DIR"] == str(d/"model") and env["SM_OUTPUT_DATA_DIR"] == str(d/"output"/"data")
    assert json.loads(env["SM_CHANNELS"]) == ["metadata", "train"]
    assert env["SM_CHANNEL_TRAIN"] == str(d/"input"/"data"/"train")
    assert json.loads(env["SM_HPS"]) == {"max_depth": 5, "eta": 0.2, "objective": "binary:logistic"}
    assert env["SM_HP_MAX_DEPTH"] == "5" and env["SM_HP_OBJECTIVE"] == "binary:logistic"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_NUM_CPUS"] == "3" and env["SM_CHECKPOINT_DIR"] == str(d/"checkpoints")
    assert env["TRAINING_JOB_NAME"] == "probe-1"
    assert seen["argv"] == ["--max_depth", "5", "--eta", "0.2", "--objective", "binary:logistic"]
    assert res.metrics == {"validation:auc": 0.72, "train:auc": 0.82}
    assert res.model_data == str(tmp/"lake"/"models"/"probe-1"/"model.tar.gz")
    with tarfile.open(res.model_data) as t: assert t.getnames() == ["model.json"]
    assert (tmp/"lake"/"models"/"probe-1"/"output.tar.gz").exists()
    assert (tmp/"ckpt"/"ckpt-1").read_text() == "state"  # checkpoints synced out...
    with pytest.raises(JobError, match="already exists"):
        run_training_job("probe.py", code, {}, {"train": train}, job_name="probe-1", work_dir=tmp/"jobs")
    res2 = run_training_job("probe.py", code, {}, {"train": train}, job_name="probe-1", work_dir=tmp/"jobs",
                            checkpoint_dir=tmp/"ckpt", overwrite=True)
    assert json.loads((Path(res2.job_dir)/"output"/"data"/"seen.json").read_text())["restored"] == ["ckpt-1"]  # ...and in

def test_training_job_validates_inputs(job):
    tmp, code, train, _ = job
    with pytest.raises(FileNotFoundError, match="entry point"): run_training_job("nope.py", code, {}, {"train": train}, work_dir=tmp)
    with pytest.raises(ValueError, match="at least one channel"): run_training_job("probe.py", code, {}, {}, work_dir=tmp)
    with pytest.raises(ValueError, match="channel name"): run_training_job("probe.py", code, {}, {"a b": train}, work_dir=tmp)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_training_job("probe.py", code, {}, {"train": tmp/"missing"}, work_dir=tmp/"jobs")
    with pytest.raises(ValueError, match="'local' or 'aws'"): training_job(mode="docker")

def test_failing_script_writes_failure_and_raises(job):
    tmp, code, train, _ = job
    (code/"bad.py").write_text("print('loading')\nraise ValueError('eta must be positive')\n")
    with pytest.raises(JobError) as e: run_training_job("bad.py", code, {"eta": -1}, {"train": train}, work_dir=tmp/"jobs")
    r = e.value.result
    assert r.status == "Failed" and r.exit_code == 1
    assert r.failure_reason == "AlgorithmError: ValueError: eta must be positive (exit code 1)"
    assert (Path(r.job_dir)/"output"/"failure").read_text() == r.failure_reason
    assert "eta must be positive" in str(e.value) and "loading" in str(e.value)  # reason and log tail
    # a script that writes its own failure reason keeps it
    (code/"own.py").write_text("import os, sys\nopen(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('bad data')\nsys.exit(2)\n")
    with pytest.raises(JobError, match="bad data") as e: run_training_job("own.py", code, {}, {"train": train}, work_dir=tmp/"jobs")
    assert e.value.result.exit_code == 2

def _alive(pid):
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")

def test_timeout_stops_the_whole_process_group(job):
    tmp, code, train, _ = job
    (code/"hang.py").write_text(
        "import os, subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], 'pid'), 'w').write(str(c.pid))\n"
        "print('started', flush=True); time.sleep(60)\n")
    t0 = time.monotonic()
    with pytest.raises(JobError, match="MaxRuntimeExceeded") as e:
        run_training_job("hang.py", code, {}, {"train": train}, work_dir=tmp/"jobs", timeout=1.5)
    assert time.monotonic() - t0 < 15
    r = e.value.result
    assert r.status == "Stopped" and r.exit_code is None and "started" in r.logs
    assert not _alive(int((Path(r.job_dir)/"output"/"data"/"pid").read_text()))

def test_processing_job_layout_and_outputs(tmp_path):
    raw = tmp_path/"raw"; raw.mkdir(); (raw/"data.csv").write_text("a\nb\nc\n")
    script = tmp_path/"prep.py"
    script.write_text(
        "import os, sys\n"
        "src, dst = sys.argv[1], sys.argv[2]\n"
        "assert os.environ['SM_PROCESSING_INPUT_RAW'] == src and os.environ['SM_PROCESSING_OUTPUT_CLEAN'] == dst\n"
        "assert src.endswith('processing/input/raw') and dst.endswith('processing/output/clean')\n"
        "rows = open(os.path.join(src, 'data.csv')).read().split()\n"
        "open(os.path.join(dst, 'part-0.csv'), 'w').write('\\n'.join(r.upper() for r in rows))\n"
        "print('rows', len(rows))\n")
    res = run_processing_job(script, {"raw": raw}, {"clean": tmp_path/"lake"/"clean"/"v1"},
                             arguments=["{input:raw}", "{output:clean}"], job_name="prep-1", work_dir=tmp_path/"jobs")
    assert res.status == "Completed" and "rows 3" in res.logs
    assert res.outputs == {"clean": str(tmp_path/"lake"/"clean"/"v1")}
    assert (tmp_path/"lake"/"clean"/"v1"/"part-0.csv").read_text() == "A\nB\nC"
    assert (tmp_path/"lake"/"clean"/"v1"/"_SUCCESS").exists()
    cfg = json.loads((Path(res.job_dir)/"config"/"processingjobconfig.json").read_text())
    assert [i["InputName"] for i in cfg["ProcessingInputs"]] == ["raw"]
    assert (Path(res.job_dir)/"processing"/"input"/"code"/"prep.py").exists()
    # re-running replaces the output (same inputs -> same outputs)
    res = run_processing_job(script, {"raw": raw}, {"clean": tmp_path/"lake"/"clean"/"v1"},
                             arguments=["{input:raw}", "{output:clean}"], job_name="prep-1", work_dir=tmp_path/"jobs")
    assert sorted(p.name for p in (tmp_path/"lake"/"clean").iterdir()) == ["v1"]
    (tmp_path/"fail.py").write_text("import sys; sys.exit('no rows')\n")
    with pytest.raises(JobError, match="no rows"): run_processing_job(tmp_path/"fail.py", work_dir=tmp_path/"jobs")
    with pytest.raises(ValueError, match="'code'"): run_processing_job(script, {"code": raw}, work_dir=tmp_path/"jobs")

def test_fetch_file_and_folder(tmp_path):
    (tmp_path/"d"/"sub").mkdir(parents=True); (tmp_path/"d"/"sub"/"x.csv").write_text("1")
    assert (fetch(tmp_path/"d", tmp_path/"o1")/"sub"/"x.csv").read_text() == "1"
    assert [p.name for p in fetch(tmp_path/"d"/"sub"/"x.csv", tmp_path/"o2").iterdir()] == ["x.csv"]

@pytest.mark.slow
def test_aws_specs_build_sdk_objects_offline(job):
    tmp, code, *_ = job
    spec = training_job_spec("probe.py", code, {"max_depth": 5}, {"train": "s3://b/features/train"}, job_name="probe",
                             output_path="s3://b/models", checkpoint_dir="s3://b/ckpt", metric_definitions=DEFS,
                             role_arn="arn:aws:iam::111122223333:role/sm", aws_region="eu-west-1", kms_key_id="k")
    t = spec["trainer"]
    assert t["training_image"].endswith(".dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5")
    assert t["hyperparameters"] == {"max_depth": "5"} and t["source_code"].entry_script == "probe.py"
    assert t["compute"].volume_kms_key_id == "k" and t["output_data_config"].s3_output_path == "s3://b/models"
    assert t["checkpoint_config"].local_path == "/opt/ml/checkpoints" and t["environment"]["SM_CHECKPOINT_DIR"] == "/opt/ml/checkpoints"
    assert [c.channel_name for c in spec["input_data_config"]] == ["train"]
    assert [m.name for m in spec["metric_definitions"]] == ["validation:auc", "train:auc"]
    p = processing_job_spec(code/"probe.py", {"raw": "s3://b/raw"}, {"out": "s3://b/out"}, ["{input:raw}", "--x", 1])
    assert p["run"]["arguments"] == ["/opt/ml/processing/input/raw", "--x", "1"]
    assert p["run"]["outputs"][0].s3_output.local_path == "/opt/ml/processing/output/out"
    assert "sagemaker-scikit-learn" in p["processor"]["image_uri"]
