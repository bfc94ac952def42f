"The local executor of SageMaker Pipelines definitions: real runs of small processing jobs (scikit-learn image: the kernel's Python)."
import json

import networkx as nx
import pytest

from ml_lifecycle.platform.pipeline_local import (ExpressionContext, PipelineError, bucket_path, bucket_uri, execution_table,
                                                  pipeline_graph, plot_pipeline, resolve)
from ml_lifecycle.platform.pipeline_steps import run_local_pipeline
from ml_lifecycle.platform.storage import Lake

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SCORE = """import json, pathlib, sys
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
if sys.argv[1] == "boom": raise ValueError("the score script was told to fail")
(out/"evaluation.json").write_text(json.dumps({"metrics": {"auc": {"value": float(sys.argv[1])}}, "runs": [{"n": 1}]}))
"""
COPY = """import pathlib, shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)
"""


def proc(name, code, args, inputs=(), outputs=(), **extra):
    "A Processing step in the shape SDK 3 writes."
    ins = [{"InputName": n, "S3Input": {"S3Uri": u, "LocalPath": f"/opt/ml/processing/input/{n}", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}} for n, u in [*inputs, ("code", f"s3://ml-lifecycle-local-lake/code/{code}")]]
    a = {"ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}},
         "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", f"/opt/ml/processing/input/code/{code}"],
                              "ContainerArguments": args},
         "RoleArn": "arn:aws:iam::000000000000:role/x", "ProcessingInputs": ins,
         "ProcessingOutputConfig": {"Outputs": [{"OutputName": n, "S3Output": {"S3Uri": u, "LocalPath": f"/opt/ml/processing/output/{n}",
                                                                                "S3UploadMode": "EndOfJob"}} for n, u in outputs]}}
    return {"Name": name, "Type": "Processing", "Arguments": a, **extra}


def definition():
    "Score (cached, writes a property file) → Gate on JsonGet → if: Copy + Register; else: Reject."
    score = proc("Score", "score.py", [{"Get": "Parameters.Auc"}, "/opt/ml/processing/output/evaluation"],
                 outputs=[("evaluation", "s3://ml-lifecycle-local-lake/out/evaluation")],
                 PropertyFiles=[{"PropertyFileName": "Evaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}],
                 CacheConfig={"Enabled": True, "ExpireAfter": "P30D"})
    auc = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Score.PropertyFiles.Evaluation"}, "Path": "metrics.auc.value"}}
    copy = proc("Copy", "copy.py", ["/opt/ml/processing/input/ev", "/opt/ml/processing/output/copy"],
                inputs=[("ev", {"Get": "Steps.Score.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"})],
                outputs=[("copy", {"Std:Join": {"On": "/", "Values": ["s3://ml-lifecycle-local-lake/out/copy",
                                                                      {"Get": "Execution.PipelineExecutionId"}]}})])
    register = {"Name": "Register", "Type": "RegisterModel", "DependsOn": ["Copy"], "Arguments": {
        "ModelPackageGroupName": "churn", "ModelApprovalStatus": {"Get": "Parameters.Approval"},
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": {"Std:Join": {"On": "/", "Values": [
            {"Get": "Steps.Score.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"}, "evaluation.json"]}}}}}}}
    reject = {"Name": "Reject", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {"On": " ", "Values": [
        "AUC", auc, "below", {"Get": "Parameters.MinAuc"}]}}}}
    gate = {"Name": "Gate", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "GreaterThanOrEqualTo", "LeftValue": auc, "RightValue": {"Get": "Parameters.MinAuc"}}],
        "IfSteps": [copy, register], "ElseSteps": [reject]}}
    return {"Version": "2020-12-01", "Metadata": {}, "PipelineName": "t",
            "Parameters": [{"Name": "Auc", "Type": "String", "DefaultValue": "0.8"},
                           {"Name": "MinAuc", "Type": "Float", "DefaultValue": 0.7},
                           {"Name": "Approval", "Type": "String", "DefaultValue": "Approved"}],
            "Steps": [score, gate]}


@pytest.fixture
def lake(tmp_path):
    lk = Lake(tmp_path/"lake")
    lk.write_bytes(SCORE.encode(), "code/score.py")
    lk.write_bytes(COPY.encode(), "code/copy.py")
    return lk


def statuses(ex): return execution_table(ex).set_index("step").status.to_dict()


def test_lake_bucket_mapping(lake):
    assert bucket_path(lake, bucket_uri(lake, "a", "b.json")) == lake.local_path("a", "b.json")
    with pytest.raises(PipelineError, match="not in the local lake"): bucket_path(lake, "s3://elsewhere/k")


def test_expressions(lake):
    lake.write_json({"a": {"b": [{"c": 3}]}}, "f/p.json")
    ctx = ExpressionContext({"X": 2.5}, {"PipelineExecutionId": "e1"},
                            {"S": {"ModelArtifacts": {"S3ModelArtifacts": "s3://m"},
                                   "ProcessingOutputConfig": {"Outputs": [{"OutputName": "o", "S3Output": {"S3Uri": bucket_uri(lake, "f")}}]}}},
                            read_file=lambda u: bucket_path(lake, u).read_bytes(),
                            property_files={"S": {"P": {"PropertyFileName": "P", "OutputName": "o", "FilePath": "p.json"}}})
    got = resolve({"j": {"Std:Join": {"On": "/", "Values": [{"Get": "Steps.S.ModelArtifacts.S3ModelArtifacts"},
                                                             {"Get": "Execution.PipelineExecutionId"}, {"Get": "Parameters.X"}]}},
                   "v": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.S.PropertyFiles.P"}, "Path": "a.b[0].c"}},
                   "u": {"Std:JsonGet": {"S3Uri": bucket_uri(lake, "f/p.json"), "Path": "a.b[0].c"}}}, ctx)
    assert got == {"j": "s3://m/e1/2.5", "v": 3, "u": 3}
    with pytest.raises(PipelineError, match="no parameter 'Y'"): resolve({"Get": "Parameters.Y"}, ctx)


def test_graph_from_references():
    g = pipeline_graph(definition())
    assert g.edges["Score", "Gate"]["kind"] == "Get"      # through the JsonGet of its property file
    assert g.edges["Score", "Copy"]["kind"] == "Get"      # through its output's S3Uri
    assert g.edges["Gate", "Copy"]["kind"] == "If" and g.edges["Gate", "Reject"]["kind"] == "Else"
    assert g.edges["Copy", "Register"]["kind"] == "DependsOn"
    assert list(nx.topological_sort(g))[:2] == ["Score", "Gate"]
    d = definition(); d["Steps"][0]["DependsOn"] = ["Copy"]
    with pytest.raises(PipelineError, match="cycle"): pipeline_graph(d)
    d = definition(); d["Steps"][0]["DependsOn"] = ["Nope"]
    with pytest.raises(PipelineError, match="'Nope'"): pipeline_graph(d)


def test_both_branches_and_registration(lake, tmp_path):
    ok = run_local_pipeline(definition(), lake, work_dir=tmp_path/"w1")
    assert ok["PipelineExecutionStatus"] == "Succeeded", ok["FailureReason"]
    assert statuses(ok) == {"Score": "Succeeded", "Gate": "Succeeded", "Copy": "Succeeded", "Register": "Succeeded", "Reject": "NotExecuted"}
    assert json.loads(lake.local_path("out/copy", ok["PipelineExecutionId"], "evaluation.json").read_text())["metrics"]["auc"]["value"] == 0.8
    pkg = lake.read_json("pipeline/t/model_packages/churn/1.json")
    assert pkg["ModelApprovalStatus"] == "Approved" and pkg["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("evaluation/evaluation.json")
    reg = next(s for s in ok["Steps"] if s["StepName"] == "Register")
    assert reg["Properties"]["ModelPackageArn"].endswith("model-package/churn/1")
    assert lake.read_json("pipeline/t/executions", f"{ok['PipelineExecutionId']}.json")["PipelineExecutionStatus"] == "Succeeded"

    bad = run_local_pipeline(definition(), lake, {"MinAuc": 0.9}, work_dir=tmp_path/"w2")
    assert bad["PipelineExecutionStatus"] == "Failed"
    assert bad["FailureReason"] == "step 'Reject' failed: AUC 0.8 below 0.9"
    assert statuses(bad)["Copy"] == statuses(bad)["Register"] == "NotExecuted"
    assert lake.ls("pipeline/t/model_packages/churn") == ["1.json"]   # rejected: no new version


def test_cache_hit_then_miss_on_parameter_change(lake, tmp_path):
    first = run_local_pipeline(definition(), lake, work_dir=tmp_path/"w1")
    second = run_local_pipeline(definition(), lake, work_dir=tmp_path/"w2")
    score = second["Steps"][0]
    assert score["StepName"] == "Score" and score["CacheHit"] and score["StepStatus"] == "Succeeded"
    assert score["CacheHitResult"]["SourcePipelineExecutionArn"] == first["PipelineExecutionArn"]
    assert not (tmp_path/"w2").exists() or not any(p.name.endswith("-Score") for p in (tmp_path/"w2").iterdir())
    assert execution_table(second).set_index("step").cached.to_dict() == {"Score": True, "Gate": False, "Copy": False, "Register": False, "Reject": False}
    third = run_local_pipeline(definition(), lake, {"Auc": "0.75"}, work_dir=tmp_path/"w3")
    assert not third["Steps"][0]["CacheHit"]
    lake.write_bytes((SCORE + "\n# changed\n").encode(), "code/score.py")   # same URI, new code: a miss
    fourth = run_local_pipeline(definition(), lake, {"Auc": "0.75"}, work_dir=tmp_path/"w4")
    assert not fourth["Steps"][0]["CacheHit"]
    off = run_local_pipeline(definition(), lake, {"Auc": "0.75"}, work_dir=tmp_path/"w5", cache=False)
    assert not off["Steps"][0]["CacheHit"]


def test_failing_step_fails_execution_and_skips_dependents(lake, tmp_path):
    ex = run_local_pipeline(definition(), lake, {"Auc": "boom"}, work_dir=tmp_path/"w")
    assert ex["PipelineExecutionStatus"] == "Failed"
    assert statuses(ex) == {"Score": "Failed", "Gate": "NotExecuted", "Copy": "NotExecuted", "Register": "NotExecuted", "Reject": "NotExecuted"}
    assert "the score script was told to fail" in ex["Steps"][0]["FailureReason"]
    assert "AlgorithmError" in ex["FailureReason"] and "exit code 1" in ex["FailureReason"]


def test_refused_definitions(lake):
    d = definition(); d["Steps"].append({"Name": "Tune", "Type": "Tuning", "Arguments": {}})
    with pytest.raises(PipelineError, match=r"\['Tuning'\] cannot run locally"): run_local_pipeline(d, lake)
    with pytest.raises(PipelineError, match="pass some of"): run_local_pipeline(definition(), lake, {"Nope": 1})
    with pytest.raises(PipelineError, match="2020-12-01"): run_local_pipeline({**definition(), "Version": "1"}, lake)


def test_plot(lake, tmp_path):
    ex = run_local_pipeline(definition(), lake, {"MinAuc": 0.9}, work_dir=tmp_path/"w")
    fig = plot_pipeline(definition(), ex)
    assert fig.axes[0].get_title().startswith("Execution failed")
    assert plot_pipeline(definition()).axes[0].get_title() == "5 steps in 4 waves, read from the definition"
