"""aws mode rehearsed: the stage notebooks themselves, unchanged, with `mode="aws"` against the AWS emulator.

The lake is on the emulator's S3; training, processing and tuning jobs are SageMaker jobs the emulator carries
out in the Python environment of the image they name; MLflow is a tracking server whose artifacts go to that S3
(what SageMaker managed MLflow is: a server with an S3 artifact store). Every request that reaches the emulator
is validated against botocore's service models.

The execution-role policy that 06a_iam generates is checked against every call the notebooks made (the MLflow server
signs with its own key: on AWS, managed MLflow acts as its own role).

07_deploy's endpoint is served by the emulator (its variants' models from the emulated S3, weights, data capture
to S3), so the canary's traffic shifts, checks and verdict run as they would on AWS.

08b_alarms creates the data- and model-quality job definitions and schedules on that endpoint (the emulator keeps
the schedules), the SNS topic and the alarms on Model Monitor's metrics, and pushes no simulated metric; 08a's
model-quality runs read the capture 08_monitor left in the lake's S3.

01_validate (Deequ), 02_explore (aggregations) and 03_prepare (features) run their Spark work as PySparkProcessor
jobs that the emulator carries out through spark-submit in the Spark image's environment (with only what the job
ships: this project's few modules, PyDeequ, the Deequ jar); 07's batch transform is a SageMaker transform job on the
approved model; 08's analyses (the baseline, the simulated hours) are PySparkProcessor jobs too. 00→08 run in a kernel
(08a and 08b too) like a Studio space without Java: no `java` on its PATH, no JAVA_HOME, and `ML_LIFECYCLE_KERNEL_SPARK=off`, so any
Spark start in the kernel fails.

Not rehearsed: 08b's retrain (retrain=False here). On AWS it is an EventBridge rule that starts SageMaker Pipelines, and the emulator
records pipeline executions without carrying them out; locally the retrain is an execution of 07c's pipeline (tested in the series)."""
import dataclasses, json, os, socket, subprocess, sys, time, uuid
from pathlib import Path

import pytest

from ml_lifecycle.platform.iam import denied_calls, execution_role_policy
from ml_lifecycle.platform.config import make_params, project_root
from ml_lifecycle.platform.emulator import AwsEmulator
from ml_lifecycle.platform.processes import free_port
from ml_lifecycle.platform.runner import run_series
from ml_lifecycle.platform.storage import Lake

pytestmark = pytest.mark.notebooks
STAGES = ["00_ingest", "01_validate", "02_explore", "03_prepare", "04_train", "05_tune", "06_evaluate", "07_deploy",
          "08_monitor", "08a_model_quality", "08b_alarms"]
BUCKET = f"rehearsal-{uuid.uuid4().hex[:8]}"
# A request the project's code does not make, refused for a reason outside it: an S3 client below the project (not a
# botocore one: botocore validates before sending; pyarrow's or Hadoop's) sends x-amz-checksum-mode `enabled`, where
# botocore's model lists `ENABLED`.
THIRD_PARTY = [("s3", "GetObject", "ChecksumMode")]
NO_JVM = STAGES  # 00→08: every stage runs in a kernel without Java
MLFLOW_KEY = "MLFLOWSERVERKEY"  # the tracking server's own credentials: on AWS, managed MLflow's role, not the notebook's


def no_java_kernel(folder: Path) -> str:
    "A Jupyter kernel (08a and 08b too) like a Studio space without Java: no `java` on PATH, no JAVA_HOME, and Spark refused in-process."
    spec = folder/"kernels"/"no-java"; spec.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p)/"java").exists())
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Python (no Java)",
        "language": "python", "env": {"PATH": path, "JAVA_HOME": "", "ML_LIFECYCLE_KERNEL_SPARK": "off"}}))
    return "no-java"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    "The stages run with mode=aws against the emulator: (run result, emulator, lake)."
    tmp = tmp_path_factory.mktemp("rehearsal")
    saved = {k: os.environ.get(k) for k in ("ML_LIFECYCLE_ROLE_ARN", "AWS_REGION", "ML_LIFECYCLE_MLFLOW_TRACKING_URI", "JUPYTER_PATH")}
    kernel = no_java_kernel(tmp/"jupyter")
    with AwsEmulator() as emu:
        emu.create_bucket(BUCKET)   # the account's owner made it: not a call of the notebooks
        port = free_port()
        mlflow = subprocess.Popen([str(Path(sys.executable).parent/"mlflow"), "server", "--host", "127.0.0.1",
                                   "--port", str(port), "--workers", "1", "--backend-store-uri",
                                   f"sqlite:///{tmp}/mlflow.db", "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
                                  env={**os.environ, "MLFLOW_S3_ENDPOINT_URL": emu.endpoint, "AWS_ACCESS_KEY_ID": MLFLOW_KEY},
                                  cwd=tmp,
                                  stdout=open(tmp/"mlflow.log", "w"), stderr=subprocess.STDOUT)
        try:
            for _ in range(200):
                try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
                except OSError: time.sleep(0.2)
            os.environ.update(ML_LIFECYCLE_ROLE_ARN=emu.role_arn, AWS_REGION=emu.region,
                              ML_LIFECYCLE_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
                              JUPYTER_PATH=os.pathsep.join(filter(None, [str(tmp/"jupyter"), saved["JUPYTER_PATH"]])))
            lake = f"s3://{BUCKET}/lake"
            # no retrain: in aws mode it is an EventBridge rule starting SageMaker Pipelines (07c is not in this rehearsal)
            res = run_series({"mode": "aws", "lake": lake, "register_glue": True, "retrain": False}, notebooks=[project_root()/"nbs"/f"{s}.ipynb" for s in STAGES],
                             runs_dir=tmp/"runs", progress=False, raise_on_error=False, kernels={s: kernel for s in NO_JVM})
            # every recorded call, for reading after a failure
            (tmp/"calls.json").write_text(json.dumps([dataclasses.asdict(c) for c in emu.calls], default=str, indent=0))
            yield res, emu, Lake(lake), f"http://127.0.0.1:{port}"
        finally:
            mlflow.terminate(); mlflow.wait(30)
            for k, v in saved.items():
                if v is None: os.environ.pop(k, None)
                else: os.environ[k] = v


def test_stages_run_in_aws_mode(rehearsal):
    res, emu, L, _ = rehearsal
    assert res.ok, f"{res.error}\n(logs: {res.run_dir/'logs'})"
    assert [s.status for s in res.stages] == ["ok"] * len(STAGES)
    recorded = L.summaries("mlc_churn")
    assert {s: recorded[s]["mode"] for s in STAGES} == {s: "aws" for s in STAGES}, "summaries say where figures were measured"
    assert f"| {STAGES[0]}.ipynb | aws | ok |" in res.summary.read_text()
    for p in ("raw", "validated", "features", "trained", "tuned", "approved" if L.exists("_pointers", "mlc_churn", "approved.json") else "evaluated"):
        assert L.exists("_pointers", "mlc_churn", f"{p}.json"), p


def test_spark_stages_ran_without_java_in_the_kernel(rehearsal):
    "00→08 ran in a kernel without Java: 01, 02, 03 and 08's Spark work ran in PySparkProcessor jobs."
    res, emu, L, _ = rehearsal
    ran = {Path(s.notebook).stem: s.kernel for s in res.stages}
    assert {s: ran.get(s) for s in NO_JVM} == {s: "no-java" for s in NO_JVM}, ran
    for s in NO_JVM:  # and no Spark started in them: the kernels' output (Spark's banner goes there) holds none
        log = (res.run_dir/"logs"/f"{s}.log").read_text(errors="replace")
        assert "SparkContext" not in log and "NativeCodeLoader" not in log, (s, log[-2000:])
    spark_jobs = [c.params for c in emu.calls if c.operation == "CreateProcessingJob"
                  and c.params["AppSpecification"]["ContainerEntrypoint"][0] == "smspark-submit"]
    names = [j["ProcessingJobName"] for j in spark_jobs]
    assert {n.split("-")[0] for n in names} >= {"validate", "explore", "prepare", "monitor"}, names
    assert sorted(n.split("-")[1] for n in names if n.startswith("monitor-")) == ["baseline", "hours"], names
    validate = next(j for j in spark_jobs if j["ProcessingJobName"].startswith("validate-"))
    assert "--jars" in validate["AppSpecification"]["ContainerEntrypoint"], validate["AppSpecification"]  # Deequ travels with it
    recorded = L.summaries("mlc_churn")
    assert recorded["01_validate"]["figures"]["passed"] == recorded["01_validate"]["figures"]["checks"] > 0


def test_batch_transform_was_a_transform_job(rehearsal):
    "07's batch transform ran as SageMaker transform jobs on the approved model: the clean one Completed, the late file's Failed."
    res, emu, L, _ = rehearsal
    jobs = [j for j in emu.jobs.values() if j.kind == "transform"]
    assert sorted(j.status for j in jobs) == ["Completed", "Failed"], [(j.name, j.status, j.failure_reason) for j in jobs]
    failed = next(j for j in jobs if j.status == "Failed")
    assert "day=1/late.csv" in failed.failure_reason and failed.request["ModelName"] == jobs[0].request["ModelName"]
    figures = L.summaries("mlc_churn")["07_deploy"]["figures"]
    assert figures["transform_rows"] == 750
    # the summary says which figures SageMaker measured and which the local endpoint of this machine did
    assert figures["measured_on"]["transform_rows"] == "SageMaker transform job", figures["measured_on"]
    assert figures["measured_on"]["latency_ms"] == "local endpoint" and figures["measured_on"]["aws_canary"] == "SageMaker endpoint"
    assert figures["measured_on"]["aws_latency_ms"] == "SageMaker endpoint" and figures["aws_latency_ms"]["p50"] > 0


def test_jobs_were_sagemaker_jobs_in_their_images(rehearsal):
    "03's PySparkProcessor, 04's training job and 05's tuning trials all went through SageMaker's API and ran."
    res, emu, L, _ = rehearsal
    ops = [c.operation for c in emu.calls]
    assert {"CreateProcessingJob", "CreateTrainingJob", "CreateHyperParameterTuningJob"} <= set(ops)
    from ml_lifecycle.platform.emulator_jobs import KERNEL_IMAGES, image_repo_tag
    images = {c.params["AppSpecification"]["ImageUri"] for c in emu.calls if c.operation == "CreateProcessingJob"}
    images |= {c.params["AlgorithmSpecification"]["TrainingImage"] for c in emu.calls if c.operation == "CreateTrainingJob"}
    repos = {image_repo_tag(i)[0] for i in images}
    assert repos and not repos & set(KERNEL_IMAGES), repos  # none ran in the kernel's Python for want of its image's
    trained = L.pointer("mlc_churn", "trained")
    assert trained["model_data"].startswith(f"s3://{BUCKET}/") and L.exists(trained["model_data"].removeprefix(L.root + "/"))
    # the job's own metrics.json (from output.tar.gz on S3) says which XGBoost trained it: the image's, not the kernel's
    doc = L.read_json("models", "mlc_churn", trained["job_name"], "metrics.json")
    import xgboost
    assert doc["xgboost_version"] and doc["xgboost_version"] != xgboost.__version__ and doc["curves"]


def test_every_request_matches_the_service_models(rehearsal):
    res, emu, L, _ = rehearsal
    assert len(emu.calls) > 100
    ours = [v for v in emu.violations
            if not any(v.call.service == s and v.call.operation == o and f in v.error for s, o, f in THIRD_PARTY)]
    assert not ours, ours[:5]


def test_the_execution_role_policy_allows_every_call(rehearsal):
    "The least-privilege policy 06a_iam generates allows every call the notebooks made (MLflow's server acts as its own role)."
    res, emu, L, mlflow_uri = rehearsal
    P = make_params(mode="aws", lake=L.root, aws_region=emu.region, role_arn=emu.role_arn, mlflow_tracking_uri=mlflow_uri,
                    check_data=False)
    calls = [c for c in emu.calls if c.access_key != MLFLOW_KEY]
    assert {c.service for c in calls} >= {"s3", "sagemaker", "logs", "glue"} and len(calls) > 100
    denied = denied_calls(execution_role_policy(P), calls, emu.region, emu.account)
    assert not denied, "\n".join(f"{c.service}:{c.operation} needs {a} on {r}" for c, a, r in
                                 {(c.service, c.operation, a, r): (c, a, r) for c, a, r in denied}.values())


def test_the_endpoint_serves_what_the_canary_decided(rehearsal):
    "07's endpoint runs on the emulator; the canary shifted its weights, and the `endpoint` pointer names what serves."
    res, emu, L, _ = rehearsal
    ptr = L.pointer("mlc_churn", "endpoint")
    hosted = emu.endpoints[ptr["endpoint_name"]]
    weights = [c.params["DesiredWeightsAndCapacities"] for c in emu.calls if c.operation == "UpdateEndpointWeightsAndCapacities"]
    assert weights, "the canary never shifted traffic"
    final = {d["VariantName"]: d["DesiredWeight"] for d in weights[-1]}
    assert hosted.server.weights == final
    serving = max(final, key=final.get)
    models = {v["VariantName"]: v["ModelName"] for v in emu.internal("sagemaker").describe_endpoint_config(
        EndpointConfigName=hosted.config)["ProductionVariants"]}
    data = emu.internal("sagemaker").describe_model(ModelName=models[serving])["PrimaryContainer"]["ModelDataUrl"]
    assert data == ptr["model_data"], (serving, data, ptr["model_data"])
    emu.sync_capture(hosted)
    assert L.ls("datacapture", ptr["endpoint_name"]), "no data capture reached the lake's S3"
    assert L.summaries("mlc_churn")["07_deploy"]["figures"]["aws_canary"] in ("promoted", "rolled back")


def test_monitoring_is_scheduled_on_the_endpoint(rehearsal):
    "08b scheduled Model Monitor's data- and model-quality jobs on 07's endpoint, and alarms on their metrics; no simulated metric."
    res, emu, L, _ = rehearsal
    ep = L.pointer("mlc_churn", "endpoint")["endpoint_name"]
    scheduled = {s["MonitoringType"]: s["MonitoringScheduleStatus"] for s in emu.schedules.values() if s.get("EndpointName") == ep}
    assert scheduled == {"DataQuality": "Scheduled", "ModelQuality": "Scheduled"}, scheduled
    alarms = emu.internal("cloudwatch").describe_alarms()["MetricAlarms"]
    namespaces = {m["MetricStat"]["Metric"]["Namespace"] for a in alarms for m in a.get("Metrics", []) if "MetricStat" in m}
    namespaces |= {a["Namespace"] for a in alarms if a.get("Namespace")}
    assert alarms and namespaces <= {"aws/sagemaker/Endpoints/data-metrics", "aws/sagemaker/Endpoints/model-metrics"}, namespaces
    assert "PutMetricData" not in emu.ops("cloudwatch"), "simulated hours must never reach CloudWatch"
    recorded = L.read_json("_aws", "mlc_churn", "resources.json")  # what cleanup.ipynb deletes
    assert {"monitoring_schedule", "alarm", "topic", "endpoint"} <= set(recorded), recorded
