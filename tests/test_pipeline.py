"07c_pipeline: the lifecycle as one SageMaker pipeline definition, built offline, written to the lake and validated."
import json, re, socket

import pytest

from ml_lifecycle.pipeline import (LOCAL_ROLE, build_pipeline, pipeline_name, pipeline_requests, step_table,
                                   validate_definition, write_definition)
from ml_lifecycle.platform.config import make_params
from ml_lifecycle.platform.storage import LOCAL_BUCKET, Lake

TABLE = "mlc_churn"
STEPS = {"Validate": "Processing", "Prepare": "Processing", "Train": "Training", "Evaluate": "Processing",
         "CheckGate": "Condition", "Register": "RegisterModel", "Baseline": "Processing", "CreateModel": "Model",
         "Transform": "Transform", "ModelRejected": "Fail"}


def _raw(lake: Lake, version: str = "0123456789abcdef") -> dict:
    "The `raw` pointer 00_ingest would write (the definition reads nothing else of the data)."
    parts = ("raw", TABLE, f"version={version}")
    return lake.set_pointer(TABLE, "raw", version=version, uri=lake.spark_uri(*parts), manifest=lake.uri(*parts, "_manifest.json"),
                            rows=100, columns=["churn", "x"], target="churn", positive_label="yes")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    "The definition, built with every network connection refused (local mode makes no AWS call)."
    lake = Lake(str(tmp_path_factory.mktemp("pipeline")/"lake")); _raw(lake)
    P = make_params(lake=lake.uri(), check_data=False)
    mp = pytest.MonkeyPatch()
    def refuse(self, address): raise OSError(f"test: no network while a local definition is built ({address})")
    mp.setattr(socket.socket, "connect", refuse)
    try:
        pipeline = build_pipeline(P, lake, TABLE)
        definition = write_definition(lake, TABLE, pipeline)
    finally: mp.undo()
    return {"lake": lake, "P": P, "pipeline": pipeline, "definition": definition}


def test_definition_has_the_steps_and_their_order(built):
    d, steps = built["definition"], step_table(built["definition"]).set_index("step")
    assert dict(zip(steps.index, steps.type)) == STEPS
    assert steps.loc["Prepare", "depends on"] == "Validate"
    assert steps.loc["Train", "depends on"] == "Prepare"
    assert steps.loc["Evaluate", "depends on"] == "Prepare, Train"
    assert steps.loc["CheckGate", "depends on"] == "Evaluate"
    assert set(steps.index[steps.branch == "CheckGate:else"]) == {"ModelRejected"}  # a rejected model: no Register, no Transform
    assert set(steps.index[steps.branch == "CheckGate:if"]) == {"Register", "Baseline", "CreateModel", "Transform"}
    assert steps.cached[["Validate", "Prepare", "Train", "Evaluate", "Baseline", "Transform"]].all()
    assert [p["Name"] for p in d["Parameters"]] == ["InputData", "Target", "PositiveLabel", "DataVersion", "ProcessingInstanceType",
                                                    "TrainingInstanceType", "MinAuc", "ModelApprovalStatus"]
    assert built["lake"].read_json("pipeline", TABLE, "definition.json") == d


def test_definition_holds_s3_uris_and_its_code_is_in_the_lake(built):
    lake, text = built["lake"], json.dumps(built["definition"])
    assert lake.uri() not in text  # a local lake's paths never reach the definition...
    params = {p["Name"]: p["DefaultValue"] for p in built["definition"]["Parameters"]}
    assert params["InputData"] == f"s3://{LOCAL_BUCKET}/raw/{TABLE}/version=0123456789abcdef"  # ...its bucket URIs do
    code = set(re.findall(rf"s3://{LOCAL_BUCKET}/pipeline/{TABLE}/code/[^\"]+", text))  # scripts, zips, jars, drivers
    assert len(code) >= 8 and all(lake.exists(u.split("/", 3)[3]) for u in code)  # every upload is in the lake
    gate = next(s for s in built["definition"]["Steps"] if s["Name"] == "CheckGate")["Arguments"]["Conditions"][0]
    assert gate["LeftValue"]["Std:JsonGet"]["Path"] == "binary_classification_metrics.auc.value"


def test_every_request_validates_against_botocore(built):
    checks = validate_definition(built["definition"])
    assert checks.ok.all(), checks[~checks.ok].to_dict("records")
    assert set(checks.operation) >= {"CreateProcessingJob", "CreateTrainingJob", "CreateModelPackage", "CreateModel", "CreateTransformJob"}


def test_a_bad_request_is_reported(built):
    bad = json.loads(json.dumps(built["definition"]))
    bad["Steps"][2]["Arguments"]["ResourceConfig"]["InstanceCount"] = "one"
    checks = validate_definition(bad).set_index("step")
    assert not checks.loc["Train", "ok"] and "InstanceCount" in checks.loc["Train", "error"]
    with pytest.raises(ValueError, match="not a pipeline definition"): validate_definition({"Steps": []})


def test_same_data_same_definition(built):
    "The same data and code give the same step arguments (SageMaker's step cache compares them)."
    again = build_pipeline(built["P"], built["lake"], TABLE)
    assert json.loads(again.definition()) == built["definition"]


def test_create_and_start_requests(built):
    reqs = pipeline_requests(built["pipeline"], LOCAL_ROLE, {"MinAuc": 0.8, "ModelApprovalStatus": "Approved"})
    assert reqs["CreatePipeline"]["PipelineName"] == pipeline_name(TABLE) == "mlc-churn-lifecycle"
    assert json.loads(reqs["CreatePipeline"]["PipelineDefinition"]) == built["definition"]
    assert reqs["StartPipelineExecution"]["PipelineParameters"] == [{"Name": "MinAuc", "Value": "0.8"},
                                                                    {"Name": "ModelApprovalStatus", "Value": "Approved"}]
    with pytest.raises(ValueError, match="pass some of"):
        pipeline_requests(built["definition"], LOCAL_ROLE, {"MinAUC": 0.8}, name=pipeline_name(TABLE))
    with pytest.raises(ValueError, match="pass name="): pipeline_requests(built["definition"], LOCAL_ROLE)


def test_cli_prints_and_writes_the_definition(built, capsys):
    from ml_lifecycle.platform.runner import main
    assert main(["pipeline", "--lake", built["lake"].uri(), "--table", TABLE]) == 0
    out = capsys.readouterr().out
    assert "ModelRejected" in out and "10/10 steps valid" in out


def test_aws_mode_uploads_code_to_the_s3_lake(s3_server):
    "On an S3 lake the definition holds the lake's own URIs, and the SDK's uploads land in the lake (S3 on loopback here)."
    from conftest import BUCKET
    lake = Lake(f"s3://{BUCKET}/pdef"); _raw(lake)
    P = make_params(mode="aws", lake=lake.uri(), aws_region="us-east-1", role_arn="arn:aws:iam::123456789012:role/sm",
                    check_data=False)
    definition = write_definition(lake, TABLE, build_pipeline(P, lake, TABLE))
    text = json.dumps(definition)
    assert LOCAL_BUCKET not in text and "arn:aws:iam::123456789012:role/sm" in text
    code = set(re.findall(rf"s3://{BUCKET}/pdef/pipeline/{TABLE}/code/[^\"]+", text))
    assert len(code) >= 8 and all(lake.exists(u[len(lake.uri()) + 1:]) for u in code)
    assert validate_definition(definition).ok.all()


def test_cli_runs_the_pipeline_end_to_end_and_then_from_the_cache(tmp_path):
    "`ml-lifecycle pipeline --run` on the default data: every step of the gate's branch runs; a second run takes the job steps from the cache."
    import subprocess, sys
    from ml_lifecycle.platform.pipeline_steps import run_local_pipeline
    from ml_lifecycle.platform.stages import run_ingest
    lake = Lake(str(tmp_path/"lake"))
    run_ingest(lake, TABLE, dataset="modeldata/mlc_churn", runs_dir=tmp_path/"runs")
    cli = [sys.executable, "-c", "import sys; from ml_lifecycle.platform.runner import main; sys.exit(main(sys.argv[1:]))",
           "pipeline", "--lake", lake.uri(), "--run"]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = lambda out: {m[0]: m[1:] for m in re.findall(r"^\s*(\w+)\s+\w+\s+(Succeeded|Failed|NotExecuted)\s+(True|False)", out, re.M)}
    ran = rows(first.stdout)
    assert {s: ran[s][0] for s in ("Validate", "Prepare", "Train", "Evaluate", "CheckGate", "Register", "Baseline",
                                   "CreateModel", "Transform")} == dict.fromkeys(
        ("Validate", "Prepare", "Train", "Evaluate", "CheckGate", "Register", "Baseline", "CreateModel", "Transform"), "Succeeded")
    assert ran["ModelRejected"][0] == "NotExecuted" and "execution" in first.stdout and ": Succeeded in" in first.stdout
    second = subprocess.run(cli, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = rows(second.stdout)
    assert {s: again[s][1] for s in ("Validate", "Prepare", "Train", "Evaluate", "Baseline")} == dict.fromkeys(
        ("Validate", "Prepare", "Train", "Evaluate", "Baseline"), "True")  # the job steps came from the cache
    # the rejected branch on the same definition: the gate fails, nothing is registered or scored
    group = ("pipeline", pipeline_name(TABLE), "model_packages", pipeline_name(TABLE))
    before = lake.ls(*group)
    rejected = run_local_pipeline(lake.read_json("pipeline", TABLE, "definition.json"), lake, {"MinAuc": 1.01}, name=pipeline_name(TABLE))
    status = {s["StepName"]: s["StepStatus"] for s in rejected["Steps"]}
    assert rejected["PipelineExecutionStatus"] == "Failed" and status["ModelRejected"] == "Failed"
    assert {status[s] for s in ("Register", "Baseline", "CreateModel", "Transform")} == {"NotExecuted"}
    assert lake.ls(*group) == before


def test_validate_step_stops_the_pipeline_on_failed_checks(built):
    "The Validate step runs 01_validate's job with --fail-on-error: a failed error-level check fails the step, not just its report."
    validate = next(s for s in built["definition"]["Steps"] if s["Name"] == "Validate")
    assert "--fail-on-error" in validate["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert any(i["InputName"] == "jars" for i in validate["Arguments"]["ProcessingInputs"])  # the Deequ jar travels with it
