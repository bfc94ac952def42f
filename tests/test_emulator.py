"""aws mode that really runs: the project's unchanged aws-mode code against `AwsEmulator` on loopback.

moto's server answers the AWS APIs; the emulator carries out the SageMaker jobs the SDK 3 creates
(in the Python environment of the image they name), and records and validates every request that
reaches it. Nothing leaves the machine."""
import io, json, tarfile, time, uuid
from pathlib import Path

import boto3, pytest
from botocore.exceptions import ClientError

from ml_lifecycle.platform.aws import validate_request
from ml_lifecycle.platform.emulator import ENDPOINT_SERVICES, AwsEmulator, client_endpoints, emulated_aws, emulator_env
from ml_lifecycle.platform.emulator_jobs import image_python
from ml_lifecycle.platform.emulator_requests import EmulatorError, simulate_decision
from ml_lifecycle.platform.emulator_runs import container_path
from ml_lifecycle.platform.images import XGBOOST_IMAGE, envs_dir, image_env_python, image_envs
from ml_lifecycle.platform.sagemaker_jobs import (framework_image_uri, processing_job_spec, run_processing_job_aws,
                                                  run_training_job_aws, training_job_spec)
from ml_lifecycle.platform.xgb_job import ENTRY_POINT, METRIC_DEFINITIONS, script_dir

emu = pytest.fixture(scope="module", name="emu")(emulated_aws)
BUCKET = f"emulated-{uuid.uuid4().hex[:8]}"  # moto's state is per process: a bucket of this module's own


# --- no server needed ------------------------------------------------------------------------------

def test_every_service_follows_aws_endpoint_url(monkeypatch):
    for k, v in emulator_env("http://127.0.0.1:5999").items(): monkeypatch.setenv(k, v)
    assert set(client_endpoints(services=ENDPOINT_SERVICES).values()) == {"http://127.0.0.1:5999"}
    from sagemaker.core.helper.session_helper import Session
    sess = Session(boto_session=boto3.Session(), default_bucket="b")
    assert sess.sagemaker_client.meta.endpoint_url == "http://127.0.0.1:5999"
    assert sess.s3_client.meta.endpoint_url == "http://127.0.0.1:5999"


def test_images_without_an_environment_are_refused():
    assert image_python(framework_image_uri("sklearn"))[1].startswith("NOTE: no local environment")
    with pytest.raises(EmulatorError, match="no pins for image"):
        image_python(framework_image_uri("xgboost").replace(XGBOOST_IMAGE, "0.90-2"))
    with pytest.raises(EmulatorError, match="not 'my-image'"):
        image_python("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-image:1")


def test_container_paths_and_policy_decisions():
    assert container_path("--out=/opt/ml/processing/output/x", "/w/j") == "--out=/w/j/processing/output/x"
    assert container_path("s3://b/opt/ml/x", "/w/j") == "s3://b/opt/ml/x"
    deny = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                          {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]}
    assert [simulate_decision([deny], a) for a in ("s3:GetObject", "s3:DeleteObject", "ecr:GetAuthorizationToken")] == \
        ["allowed", "explicitDeny", "implicitDeny"]


def test_the_server_page_installs_every_page_s_overrides():
    "Importing platform.emulator is enough: `install_patches` sets the overrides of 08a, 08b and 08e, and they are given back."
    from moto.iam.responses import IamResponse
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from ml_lifecycle.platform.emulator import install_patches
    from ml_lifecycle.platform.emulator_requests import EMULATORS_BY_PORT, MOTO_HANDLERS, remove_patches
    if EMULATORS_BY_PORT: pytest.skip("an emulator is running: its overrides are in place")
    install_patches()
    try:
        handlers = {(SageMakerResponse, "create_training_job"): "emulator_jobs", (SageMakerResponse, "create_endpoint"): "emulator_endpoints",
                    (SageMakerResponse, "list_monitoring_schedules"): "emulator_endpoints",
                    (SageMakerRuntimeResponse, "invoke_endpoint"): "emulator_endpoints",
                    (IamResponse, "simulate_principal_policy"): "emulator_requests"}
        assert {k: getattr(*k).__module__.rsplit(".", 1)[-1] for k in handlers} == handlers
    finally: remove_patches()
    assert MOTO_HANDLERS == {} and not hasattr(SageMakerResponse, "list_monitoring_schedules")


# --- jobs on the emulator ---------------------------------------------------------------------------

def _image_env():
    if image_env_python(XGBOOST_IMAGE) is None:
        pytest.skip(f"no up-to-date venv for SageMaker XGBoost image {XGBOOST_IMAGE} in {envs_dir()}: `make setup` "
                    f"builds it (or run `scripts/job_envs.sh {XGBOOST_IMAGE}`)")


def _csv(n: int, seed: int) -> str:
    "Simulated rows: the label first, then 3 features; the label follows the first feature, with noise."
    import numpy as np, pandas as pd
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)); y = (X[:, 0] + rng.normal(scale=0.7, size=n) > 0).astype(int)
    return pd.DataFrame(np.c_[y, X.round(4)]).to_csv(header=False, index=False)


@pytest.fixture(scope="module")
def lake(emu):
    "Synthetic train/validation splits and feature metadata in the emulated S3; the channels of a training job."
    emu.create_bucket(BUCKET)
    s3 = boto3.client("s3")
    for split, seed in (("train", 1), ("validation", 2)):
        s3.put_object(Bucket=BUCKET, Key=f"features/t/{split}/part-0.csv", Body=_csv(300, seed))
    s3.put_object(Bucket=BUCKET, Key="features/t/feature_metadata.json", Body=json.dumps({"features": ["x0", "x1", "x2"]}))
    return {"train": f"s3://{BUCKET}/features/t/train", "validation": f"s3://{BUCKET}/features/t/validation",
            "metadata": f"s3://{BUCKET}/features/t/feature_metadata.json"}


def _spec(emu, channels, hps, name, **kw):
    return training_job_spec(ENTRY_POINT, script_dir(), hps, channels, job_name=name, output_path=f"s3://{BUCKET}/models/t",
                             metric_definitions=METRIC_DEFINITIONS, role_arn=emu.role_arn, **kw)


def _tar(uri: str) -> dict:
    bucket, key = uri[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


@pytest.mark.slow
@pytest.mark.s3
def test_training_job_runs_in_the_image(emu, lake):
    "04_train's aws path (run_training_job_aws, SDK 3 ModelTrainer, wait=True) runs the real entry script to completion."
    _image_env()
    spec = _spec(emu, lake, {"num_round": 12, "max_depth": 3, "checkpoint_frequency": 5}, "xgb-emulated",
                 checkpoint_dir=f"s3://{BUCKET}/checkpoints/t")
    res = run_training_job_aws(spec, wait=True)
    assert res.status == "Completed"
    model = _tar(res.model_data)
    assert sorted(model) == ["metadata/feature_metadata.json", "xgboost-model"]
    assert json.loads(model["metadata/feature_metadata.json"]) == {"features": ["x0", "x1", "x2"]}
    job_metrics = json.loads(_tar(res.model_data.replace("model.tar.gz", "output.tar.gz"))["metrics.json"])
    pins = image_envs()[XGBOOST_IMAGE]
    assert job_metrics["xgboost_version"] == (pins.get("xgboost") or pins["xgboost-cpu"])  # the image's venv ran it

    d = boto3.client("sagemaker").describe_training_job(TrainingJobName=res.job_name)
    assert d["TrainingJobStatus"] == "Completed" and d["ModelArtifacts"]["S3ModelArtifacts"] == res.model_data
    final = {m["MetricName"]: m["Value"] for m in d["FinalMetricDataList"]}
    assert {"validation:auc", "train:auc", "objective:auc", "best_iteration"} <= set(final)
    assert abs(final["validation:auc"] - job_metrics["validation:auc"]) < 1e-6
    assert final["best_iteration"] == job_metrics["best_iteration"]
    assert d["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS  # the request's, not moto's
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]] == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert d["TrainingStartTime"] <= d["TrainingEndTime"]
    [summary] = [s for s in boto3.client("sagemaker").list_training_jobs(NameContains="xgb-emulated")["TrainingJobSummaries"]]
    assert summary["TrainingJobStatus"] == "Completed"

    job = emu.job(res.job_name)
    ckpts = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/t/")["Contents"]
    saved = sorted(p.name for p in (Path(job.job_dir)/"checkpoints").iterdir())
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in ckpts) == saved and "xgboost-checkpoint.4" in saved
    assert job.log_stream.startswith(f"{res.job_name}/algo-1-")
    events = boto3.client("logs").get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=job.log_stream)["events"]
    assert events[0]["message"].startswith(f"ml_lifecycle AwsEmulator: {ENTRY_POINT} runs in the Python environment of "
                                           f"SageMaker XGBoost image {XGBOOST_IMAGE}")
    assert events[-1]["message"].startswith("final\t")


@pytest.mark.slow
@pytest.mark.s3
def test_failing_job_fails_as_on_aws(emu, lake):
    "A bad hyperparameter: the script's reason becomes FailureReason and the SDK raises its FailedStatusError."
    _image_env()
    from sagemaker.core.utils.exceptions import FailedStatusError
    with pytest.raises(FailedStatusError, match=r"max_depth=100 is outside \[0, 64\]"):
        run_training_job_aws(_spec(emu, lake, {"num_round": 5, "max_depth": 100}, "xgb-bad"), wait=True)
    [name] = [n for (k, n) in emu.jobs if n.startswith("xgb-bad")]
    d = boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert (d["TrainingJobStatus"], d["FailureReason"]) == ("Failed", "ValueError: hyperparameter max_depth=100 is outside [0, 64]")
    assert "FinalMetricDataList" not in d
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"models/t/{name}/").get("KeyCount") == 0


@pytest.mark.slow
@pytest.mark.s3
def test_job_in_progress_then_stopped(emu, lake):
    "DescribeTrainingJob answers InProgress while the job runs; StopTrainingJob (which moto lacks) ends it Stopped."
    _image_env()
    res = run_training_job_aws(_spec(emu, lake, {"num_round": 100000, "max_depth": 6, "eta": 0.001}, "xgb-long"), wait=False)
    sm = boto3.client("sagemaker")
    assert sm.describe_training_job(TrainingJobName=res.job_name)["TrainingJobStatus"] == "InProgress"
    deadline = time.monotonic() + 60
    while sm.describe_training_job(TrainingJobName=res.job_name)["SecondaryStatus"] != "Training" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the script has started
    sm.stop_training_job(TrainingJobName=res.job_name)
    assert emu.job(res.job_name).done.wait(30)
    d = sm.describe_training_job(TrainingJobName=res.job_name)
    assert d["TrainingJobStatus"] == "Stopped" and "FailureReason" not in d


@pytest.mark.slow
@pytest.mark.s3
def test_unknown_image_is_refused_at_create(emu, lake):
    spec = _spec(emu, lake, {"num_round": 5}, "xgb-old", image_uri=framework_image_uri("xgboost").replace(XGBOOST_IMAGE, "0.90-2"))
    with pytest.raises(ClientError, match="ValidationException.*cannot run this training job.*no pins for image '0.90-2'"):
        run_training_job_aws(spec, wait=True)


@pytest.mark.slow
@pytest.mark.s3
def test_processing_job(emu, lake, tmp_path):
    "A platform processing job (run_processing_job_aws, ScriptProcessor): input downloaded, script run, output uploaded."
    code = tmp_path/"count_rows.py"
    code.write_text("import os, pathlib, sys\n"
                    "src, dst = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[4])\n"
                    "n = sum(len(p.read_text().splitlines()) for p in src.rglob('*.csv'))\n"
                    "(dst/'rows.txt').write_text(f\"{n} {os.environ['SM_PROCESSING_INPUT_DATA'] == sys.argv[2]}\")\n")
    spec = processing_job_spec(code, inputs={"data": lake["train"]}, outputs={"counts": f"s3://{BUCKET}/counts/t"},
                               arguments=["--in", "{input:data}", "--out", "{output:counts}"], job_name="count-rows",
                               role_arn=emu.role_arn)
    run_processing_job_aws(spec, wait=True)
    assert boto3.client("s3").get_object(Bucket=BUCKET, Key="counts/t/rows.txt")["Body"].read() == b"300 True"
    [job] = [j for j in emu.jobs.values() if j.kind == "processing" and j.name.startswith("count-rows")]
    d = boto3.client("sagemaker").describe_processing_job(ProcessingJobName=job.name)
    assert d["ProcessingJobStatus"] == "Completed" and d["ProcessingStartTime"] <= d["ProcessingEndTime"]
    first = boto3.client("logs").get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=job.log_stream)["events"][0]
    assert "NOTE: no local environment for image sagemaker-scikit-learn" in first["message"]

    bad = tmp_path/"fail.py"; bad.write_text("import sys; sys.exit('no rows to count')\n")
    run_processing_job_aws(processing_job_spec(bad, inputs={"data": lake["train"]}, outputs={"counts": f"s3://{BUCKET}/counts/bad"},
                                               arguments=["--in", "{input:data}"], job_name="fail-rows", role_arn=emu.role_arn),
                           wait=False)
    assert emu.wait_for_jobs(60)
    [job] = [j for j in emu.jobs.values() if j.name.startswith("fail-rows")]
    d = boto3.client("sagemaker").describe_processing_job(ProcessingJobName=job.name)
    assert d["ProcessingJobStatus"] == "Failed" and "no rows to count" in d["FailureReason"]


@pytest.mark.slow
@pytest.mark.s3
def test_tuning_job(emu, lake):
    "05_tune's aws path: a tuning job of two trials, carried out one after the other, its best trial becomes `tuned`."
    _image_env()
    from ml_lifecycle.platform.storage import Lake
    from ml_lifecycle.tune import run_tuning_job_aws
    L = Lake(f"s3://{BUCKET}/lake")
    L.set_pointer("t", "features", version="synthetic1", uri=lake["train"].rsplit("/", 1)[0], train=lake["train"],
                  validation=lake["validation"], test=lake["validation"], metadata=lake["metadata"], n_features=3)
    tuned = run_tuning_job_aws(L, "t", n_trials=2, n_jobs=1, seed=7, aws={"role_arn": emu.role_arn}, warm_start=False,
                               static={"num_round": 8, "cv_folds": 0, "early_stopping_rounds": 0, "checkpoint_frequency": 0})
    job = emu.job(tuned["tuning_job"])
    assert job.status == "Completed" and len(job.trials) == 2
    assert all(t.status == "Completed" and t.request["HyperParameters"]["num_round"] == "8" for t in job.trials)
    assert tuned["job_name"] == max(job.trials, key=lambda t: t.metrics["objective:auc"]).name
    assert tuned["model_data"].endswith(f"/{tuned['job_name']}/output/model.tar.gz")
    assert "xgboost-model" in _tar(tuned["model_data"])


@pytest.mark.slow
@pytest.mark.s3
def test_every_request_validates(emu):
    "Every request that reached the emulator in this module matches botocore's service model (patterns, enums, maxima)."
    assert len(emu.calls) > 50
    assert emu.violations == [], "\n".join(v.error for v in emu.violations)
    assert emu.unparsed == []
    for op in ("CreateTrainingJob", "CreateProcessingJob", "CreateHyperParameterTuningJob"):
        for params in emu.find(op): validate_request("sagemaker", op, params)
    assert {"SimulatePrincipalPolicy", "GetRole", "PutObject", "DescribeLogStreams", "GetLogEvents"} <= set(emu.ops())
    with pytest.raises(ClientError):  # botocore sends it (it checks no patterns); the emulator flags it
        boto3.client("sagemaker").describe_training_job(TrainingJobName="not_a_valid_name")
    [v] = emu.violations
    assert v.call.operation == "DescribeTrainingJob" and "does not match the pattern" in v.error
    emu.violations.clear()


@pytest.mark.slow
@pytest.mark.s3
@pytest.mark.parametrize("vpc", [True, False])  # found here: the SDK checks the ec2 actions for every job, VPC or not
def test_least_privilege_role_passes_the_sdk_role_check(vpc):
    "The project's execution-role policy, as the role's only policy: the SDK's role check (iam:SimulatePrincipalPolicy) passes."
    from ml_lifecycle.platform.iam import execution_role_policy
    from ml_lifecycle.platform.config import make_params
    net = {"subnets": "subnet-0abc1234", "security_group_ids": "sg-0abc1234"} if vpc else {}
    P = make_params(mode="aws", lake=f"s3://{BUCKET}-lp/lake", aws_region="us-east-1", check_data=False,
                    role_arn="arn:aws:iam::123456789012:role/LeastPrivilegeRole", **net)
    with AwsEmulator(role_name="LeastPrivilegeRole", role_policy=execution_role_policy(P), cpus=1) as other:
        other.create_bucket(f"{BUCKET}-lp")
        train = training_job_spec(ENTRY_POINT, script_dir(), {"num_round": 1}, {"train": f"{P.lake}/none"}, job_name="xgb-lp",
                                  output_path=f"{P.lake}/models", role_arn=P.role_arn, **net)
        run_training_job_aws(train, wait=False)  # ModelTrainer checks the role before it creates the job
        assert other.find("CreateTrainingJob")
