"""aws mode, request by request: what the notebooks would send to SageMaker, Glue and IAM, without AWS.

The SageMaker SDK 3 runs for real on a recorder session (`platform.sagemaker_account.sagemaker_recorder`): botocore
validates every call against its service model, the recorder keeps it and answers locally. Each
Create* request is then checked again with `validate_request` (enums, patterns, maxima) and for the
settings a real account needs: the role, instance type, output path in the lake, KMS key on volume
and output, VPC, network isolation and inter-container encryption. The execution role's policy is
linted with parliament and checked to allow every call the notebooks make — and little else."""
import json, warnings
from pathlib import Path

import pytest

from ml_lifecycle.platform.aws import validate_request
from ml_lifecycle.platform.iam import EXAMPLE_ACCOUNT, execution_role_policy, policy_allows
from ml_lifecycle.platform.sagemaker_account import sagemaker_recorder
from ml_lifecycle.platform.config import ParameterError, job_settings, make_params
from ml_lifecycle.platform.sagemaker_jobs import run_spark_processing_aws, spark_processing_spec
from ml_lifecycle.prepare import prepare_arguments

ROLE = f"arn:aws:iam::{EXAMPLE_ACCOUNT}:role/MLLifecycleSageMakerRole"
KEY = f"arn:aws:kms:us-east-1:{EXAMPLE_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REAL = dict(mode="aws", lake="s3://my-ml-bucket/lifecycle", aws_region="us-east-1", role_arn=ROLE, kms_key_id=KEY,
            instance_type="ml.m5.large", subnets="subnet-0abc1234,subnet-0def5678", security_group_ids=["sg-0abc1234"],
            enable_network_isolation=True, check_data=False)


@pytest.fixture(scope="module")
def P():
    return make_params(**REAL)


# --- parameters -------------------------------------------------------------------------------

def test_real_account_parameters_are_normalised(P):
    assert P.subnets == ("subnet-0abc1234", "subnet-0def5678") and P.security_group_ids == ("sg-0abc1234",)
    s = job_settings(P)
    assert s["role_arn"] == ROLE and s["kms_key_id"] == KEY and s["enable_network_isolation"] is True
    assert s["encrypt_inter_container_traffic"] is True and s["subnets"] == ["subnet-0abc1234", "subnet-0def5678"]


@pytest.mark.parametrize("bad, says", [
    ({"role_arn": "MyRole"}, "role_arn"),
    ({"role_arn": "arn:aws:iam::1234:role/x"}, "role_arn"),
    ({"kms_key_id": "my key"}, "kms_key_id"),
    ({"instance_type": "m5.large"}, "instance_type"),
    ({"aws_region": "Europe"}, "aws_region"),
    ({"subnets": "subnet-xyz"}, "subnets"),
    ({"security_group_ids": None, "subnets": "subnet-0abc1234"}, "both"),
    ({"enable_network_isolation": "maybe"}, "enable_network_isolation"),
    ({"lake": "/tmp/lake"}, "S3 lake"),
])
def test_wrong_aws_parameters_fail_clearly(bad, says):
    with pytest.raises(ParameterError, match=says): make_params(**{**REAL, **bad})


def test_aws_settings_from_environment(monkeypatch):
    monkeypatch.setenv("ML_LIFECYCLE_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    p = make_params(mode="aws", lake="s3://b/p", check_data=False)
    assert (p.role_arn, p.aws_region) == (ROLE, "eu-west-1")


# --- SageMaker jobs through the SDK, recorded ---------------------------------------------------

def _check_job_security(req: dict, P, kind: str):
    "The settings a real account needs, wherever this kind of request keeps them."
    if kind == "training":
        assert req["RoleArn"] == P.role_arn
        assert req["ResourceConfig"]["InstanceType"] == P.instance_type
        assert req["ResourceConfig"]["VolumeKmsKeyId"] == KEY and req["OutputDataConfig"]["KmsKeyId"] == KEY
        assert req["OutputDataConfig"]["S3OutputPath"].startswith(P.lake + "/")
        assert req["VpcConfig"] == {"Subnets": list(P.subnets), "SecurityGroupIds": list(P.security_group_ids)}
        assert req["EnableNetworkIsolation"] is True and req["EnableInterContainerTrafficEncryption"] is True
    else:  # processing
        assert req["RoleArn"] == P.role_arn
        c = req["ProcessingResources"]["ClusterConfig"]
        assert c["InstanceType"] == P.instance_type and c["VolumeKmsKeyId"] == KEY
        assert req["ProcessingOutputConfig"]["KmsKeyId"] == KEY
        assert all(o["S3Output"]["S3Uri"].startswith(P.lake + "/") for o in req["ProcessingOutputConfig"]["Outputs"])
        n = req["NetworkConfig"]
        assert n["VpcConfig"] == {"Subnets": list(P.subnets), "SecurityGroupIds": list(P.security_group_ids)}
        assert n["EnableNetworkIsolation"] is True and n["EnableInterContainerTrafficEncryption"] is True


def _unencrypted(rec) -> list[str]:
    "Uploads the SDK made without SSE-KMS under the lake's key."
    return [c["Key"] for c in rec.find("PutObject") if c.get("SSEKMSKeyId") != KEY or c.get("ServerSideEncryption") != "aws:kms"]


def _in_lake(rec, P) -> list[str]:
    "S3 objects the SDK uploaded (code, drivers) that are outside the lake's prefix."
    bucket, prefix = P.lake[5:].split("/", 1)
    return [f"s3://{c['Bucket']}/{c['Key']}" for c in rec.find("PutObject")
            if c["Bucket"] != bucket or not c["Key"].startswith(prefix + "/")]


def _recorded_job(P, start, op: str, kind: str) -> tuple:
    "Run `start()` under a recorder; the one `op` request it made, validated and checked for the account's security settings."
    rec = sagemaker_recorder(P.role_arn, execution_role_policy(P))
    with rec.install():
        res = start()
    [req] = rec.find(op)
    validate_request("sagemaker", op, req)
    _check_job_security(req, P, kind)
    assert not _in_lake(rec, P), "the SDK staged code outside the lake prefix"
    assert not _unencrypted(rec), "uploads without the lake's KMS key"
    return req, res, rec


@pytest.mark.slow
def test_training_job_request(P):
    "04_train in aws mode: the SDK's CreateTrainingJob carries the account's settings and validates."
    from ml_lifecycle.platform.sagemaker_jobs import run_training_job_aws, training_job_spec
    from ml_lifecycle.platform.xgb_job import ENTRY_POINT, METRIC_DEFINITIONS, script_dir
    feats = P.lake + "/features/mlc_churn/version=abc"
    spec = training_job_spec(ENTRY_POINT, script_dir(), {"num_round": 10, "max_depth": 3},
                             {"train": feats + "/train", "validation": feats + "/validation"}, job_name="xgb-abc",
                             output_path=P.lake + "/models/mlc_churn", metric_definitions=METRIC_DEFINITIONS,
                             **job_settings(P))
    req, res, rec = _recorded_job(P, lambda: run_training_job_aws(spec, wait=False), "CreateTrainingJob", "training")
    assert req["HyperParameters"]["max_depth"] == "3" and res.status == "InProgress"
    assert {d["Name"] for d in req["AlgorithmSpecification"]["MetricDefinitions"]} >= {"validation:auc"}
    assert "ListBuckets" not in rec.ops() or rec.find("CreateBucket") == []


@pytest.mark.slow
def test_processing_job_request(P, tmp_path):
    "A platform processing job in aws mode (ScriptProcessor)."
    from ml_lifecycle.platform.sagemaker_jobs import processing_job_spec, run_processing_job_aws
    code = tmp_path/"job.py"; code.write_text("print('hello')\n")
    spec = processing_job_spec(code, inputs={"data": P.lake + "/raw/t"}, outputs={"out": P.lake + "/features/t"},
                               arguments=["--in", "{input:data}"], job_name="prepare-demo", **job_settings(P))
    req, _, _ = _recorded_job(P, lambda: run_processing_job_aws(spec, wait=False), "CreateProcessingJob", "processing")
    assert req["AppSpecification"]["ContainerArguments"] == ["--in", "/opt/ml/processing/input/data"]


def _prepare_spec(P, features_uri, args):
    "03_prepare's PySpark job as `module_spark_job` builds it in aws mode (this module, JOB_MODULES zipped beside it)."
    import importlib.util, tempfile
    from ml_lifecycle.platform.job_code import ship_package
    from ml_lifecycle.prepare import JOB_MODULES
    code = ship_package(Path(tempfile.mkdtemp(prefix="job-code-"))/"ml_lifecycle.zip", JOB_MODULES)
    aws = {k: v for k, v in job_settings(P).items() if k != "image_uri" and v is not None}
    return spark_processing_spec(importlib.util.find_spec("ml_lifecycle.prepare").origin, {"data": P.lake + "/raw/mlc_churn/version=v1"},
                                 {"features": features_uri}, args, "prepare-f1", py_files=[code], **aws)


@pytest.mark.slow
def test_prepare_pyspark_job_request(P):
    "03_prepare in aws mode: a PySparkProcessor job with the account's settings."
    args = prepare_arguments("churn", "yes", 42, (0.7, 0.15, 0.15), "v1")
    spec = _prepare_spec(P, P.lake + "/features/mlc_churn/version=f1", args)
    req, _, _ = _recorded_job(P, lambda: run_spark_processing_aws(spec, wait=False), "CreateProcessingJob", "processing")
    assert req["ProcessingJobName"].startswith("prepare-f1")
    assert "spark" in req["AppSpecification"]["ImageUri"]


@pytest.mark.slow
@pytest.mark.s3
def test_tuning_job_request(P, s3_server):
    "05_tune in aws mode: the tuning job's request, and pointer `tuned` set from its (recorded) best trial."
    import uuid
    from ml_lifecycle.platform.storage import Lake
    from ml_lifecycle.tune import run_tuning_job_aws
    from conftest import BUCKET
    lake = f"s3://{BUCKET}/tune-{uuid.uuid4().hex[:6]}"
    p = make_params(**{**REAL, "lake": lake})
    L = Lake(lake)
    fv = L.uri("features", "mlc_churn", "version=f1")
    L.set_pointer("mlc_churn", "features", version="f1", uri=fv, train=fv + "/train", validation=fv + "/validation",
                  test=fv + "/test", metadata=fv + "/feature_metadata.json", n_features=5)
    rec = sagemaker_recorder(p.role_arn, execution_role_policy(p), objective=0.93)
    with rec.install():
        tuned = run_tuning_job_aws(L, "mlc_churn", n_trials=4, n_jobs=2, seed=7, aws=job_settings(p), warm_start=False)
    [req] = rec.find("CreateHyperParameterTuningJob")
    validate_request("sagemaker", "CreateHyperParameterTuningJob", req)
    cfg, d = req["HyperParameterTuningJobConfig"], req["TrainingJobDefinition"]
    assert cfg["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    assert cfg["Strategy"] == "Bayesian" and cfg["RandomSeed"] == 7
    assert cfg["HyperParameterTuningJobObjective"]["Type"] == "Maximize"
    assert d["RoleArn"] == p.role_arn and d["ResourceConfig"]["InstanceType"] == p.instance_type
    assert d["ResourceConfig"]["VolumeKmsKeyId"] == KEY and d["OutputDataConfig"]["KmsKeyId"] == KEY
    assert d["OutputDataConfig"]["S3OutputPath"].startswith(lake + "/tuning/mlc_churn/")
    assert d["VpcConfig"]["Subnets"] == list(p.subnets) and d["EnableNetworkIsolation"] is True
    assert d["EnableInterContainerTrafficEncryption"] is True
    # isolated trials cannot download their code: it comes in as the `code` channel, read from its local path
    code = [c for c in d["InputDataConfig"] if c["ChannelName"] == "code"]
    assert len(code) == 1 and code[0]["DataSource"]["S3DataSource"]["S3Uri"].startswith(lake + "/")
    assert code[0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("/sourcedir.tar.gz")
    assert d["StaticHyperParameters"]["sagemaker_submit_directory"].strip('"') == "/opt/ml/input/data/code/sourcedir.tar.gz"
    assert not _in_lake(rec, p), "the SDK staged code outside the lake prefix"
    assert not _unencrypted(rec), "uploads without the lake's KMS key"
    assert tuned["metrics"]["validation:auc"] == 0.93 and tuned["n_trials"] == 4
    assert L.pointer("mlc_churn", "tuned")["job_name"] == tuned["job_name"]


def test_glue_table_requests():
    "00_ingest's `register_glue`: the database (created when missing), GetTable, then CreateTable or UpdateTable."
    from ml_lifecycle.ingest import glue_table, register_glue_table
    ti = glue_table("mlc_churn", [{"name": "x", "type": "int64"}, {"name": "churn", "type": "string"}],
                    "s3://my-ml-bucket/lifecycle/raw/mlc_churn/")
    missing = sagemaker_recorder(ROLE, responses={"GetTable": {"Error": {"Code": "EntityNotFoundException", "Message": "no"}}})
    with missing.install():
        assert register_glue_table("ml_lifecycle", ti, "us-east-1") == "CreateTable"
    assert missing.ops() == ["GetDatabase", "GetTable", "CreateTable"]
    validate_request("glue", "CreateTable", missing.find("CreateTable")[0])
    fresh = sagemaker_recorder(ROLE, responses={"GetDatabase": {"Error": {"Code": "EntityNotFoundException", "Message": "no"}},
                                                "GetTable": {"Error": {"Code": "EntityNotFoundException", "Message": "no"}}})
    with fresh.install():  # a fresh account: the database is created first
        assert register_glue_table("ml_lifecycle", ti, "us-east-1") == "CreateTable"
    assert fresh.ops() == ["GetDatabase", "CreateDatabase", "GetTable", "CreateTable"]
    assert fresh.find("CreateDatabase")[0]["DatabaseInput"]["Name"] == "ml_lifecycle"
    present = sagemaker_recorder(ROLE, responses={"GetTable": {"Table": {"Name": "mlc_churn", "DatabaseName": "ml_lifecycle"}}})
    with present.install():
        assert register_glue_table("ml_lifecycle", ti, "us-east-1") == "UpdateTable"
    validate_request("glue", "UpdateTable", present.find("UpdateTable")[0])


# --- the execution role's policy --------------------------------------------------------------

def _lint(policy: dict) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # parliament imports pkg_resources
        from parliament import analyze_policy_string
    return analyze_policy_string(json.dumps(policy), include_community_auditors=True).findings


# parliament's findings that this policy keeps on purpose, each with its reason:
ACCEPTED = {
    # the SageMaker SDK simulates these against "*" before every job and refuses a role that scopes or lacks them
    "RESOURCE_STAR": {"ec2:createnetworkinterface", "ec2:createnetworkinterfacepermission", "ec2:deletenetworkinterface"},
    # SageMaker pulls its framework images with the role's ECR login; the token API has no resource
    "CREDENTIALS_EXPOSURE": {"ecr:getauthorizationtoken"},
    # scoped: PassRole to this role only and only to SageMaker; the topic by name; ENIs of job VPCs;
    # grants on the lake's key only, only for AWS resources (the job instances' encrypted volumes)
    "PERMISSIONS_MANAGEMENT_ACTIONS": {"iam:passrole", "sns:createtopic", "ec2:createnetworkinterfacepermission",
                                       "ec2:deletenetworkinterfacepermission", "kms:creategrant"},
}


MLFLOW = f"arn:aws:sagemaker:us-east-1:{EXAMPLE_ACCOUNT}:mlflow-tracking-server/ml-lifecycle"

@pytest.mark.parametrize("extra", [{}, {"kms_key_id": "alias/ml-lifecycle"}, {"kms_key_id": None, "subnets": None,
                                                                              "security_group_ids": None},
                                   {"mlflow_tracking_uri": MLFLOW}])
def test_policy_lints_clean(extra):
    "parliament finds no error, no `Resource: *` where a resource exists, no unknown action or wrong resource type."
    p = make_params(**{**REAL, **extra})
    findings = _lint(execution_role_policy(p))
    unexpected = []
    for f in findings:
        acts = {a.lower() for a in (f.location.get("actions", []) if isinstance(f.location, dict) else [])}
        acts |= {a.lower() for a in (f.detail if isinstance(f.detail, list) else []) if isinstance(a, str)}
        if f.issue in ACCEPTED and acts and acts <= ACCEPTED[f.issue]: continue
        # parliament 1.6.4's action database predates the kms:ResourceAliases condition key (KMS ABAC, 2021)
        if f.issue == "UNKNOWN_CONDITION_FOR_ACTION" and "kms:ResourceAliases" in str(f.detail): continue
        unexpected.append((f.issue, f.detail, f.location))
    assert not unexpected, unexpected


def test_linter_catches_what_it_should():
    "The lint is not vacuous: a `*` resource on S3 and a misspelt action are reported."
    p = make_params(**REAL)
    pol = execution_role_policy(p)
    bad = {**pol, "Statement": pol["Statement"] + [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
                                                   {"Effect": "Allow", "Action": ["s3:GetObjekt"], "Resource": "arn:aws:s3:::b/*"}]}
    issues = {f.issue for f in _lint(bad)}
    assert {"RESOURCE_STAR", "UNKNOWN_ACTION"} <= issues


def test_policy_is_scoped_to_bucket_prefix_and_key(P):
    pol = execution_role_policy(P)
    for st in pol["Statement"]:
        acts = st["Action"]
        assert "*" not in acts and not any(a.endswith(":*") for a in acts), st["Sid"]
        if any(a.startswith(("s3:", "kms:", "iam:", "sagemaker:Create", "sagemaker:Delete", "glue:", "sns:")) for a in acts):
            assert "*" not in st["Resource"], f"{st['Sid']} acts on every resource"
        if any(a.startswith("s3:") for a in acts):
            assert all(r.startswith("arn:aws:s3:::my-ml-bucket") for r in st["Resource"]), st
    key = "arn:aws:s3:::my-ml-bucket/lifecycle/models/mlc_churn/model.tar.gz"
    assert policy_allows(pol, "s3:GetObject", key)
    assert not policy_allows(pol, "s3:GetObject", "arn:aws:s3:::my-ml-bucket/lifecycle-other/x")
    assert not policy_allows(pol, "s3:GetObject", "arn:aws:s3:::another-bucket/lifecycle/x")
    assert not policy_allows(pol, "s3:PutBucketPolicy", "arn:aws:s3:::my-ml-bucket")
    assert policy_allows(pol, "kms:GenerateDataKey", KEY)
    assert not policy_allows(pol, "kms:GenerateDataKey", KEY.replace("1234abcd", "9999abcd"))
    assert not policy_allows(pol, "kms:ScheduleKeyDeletion", KEY)
    assert policy_allows(pol, "kms:CreateGrant", KEY, {"kms:GrantIsForAWSResource": "true"})
    assert not policy_allows(pol, "kms:CreateGrant", KEY, {"kms:GrantIsForAWSResource": "false"})
    assert not policy_allows(pol, "iam:PassRole", f"arn:aws:iam::{EXAMPLE_ACCOUNT}:role/Admin",
                             {"iam:PassedToService": "sagemaker.amazonaws.com"})
    no_vpc = execution_role_policy(make_params(**{**REAL, "subnets": None, "security_group_ids": None}))
    # the SDK simulates these before every training job, VPC or not, and refuses a role without them (tests/test_emulator.py)
    assert policy_allows(pol, "ec2:CreateNetworkInterface") and policy_allows(no_vpc, "ec2:CreateNetworkInterface")


# IAM action and resource ARN of each recorded call the notebooks make (those the role needs)
def _resource(op: str, params: dict, region="us-east-1", account=EXAMPLE_ACCOUNT) -> str | None:
    sm = lambda kind, key: f"arn:aws:sagemaker:{region}:{account}:{kind}/{params[key].lower()}"
    return {"CreateTrainingJob": lambda: sm("training-job", "TrainingJobName"),
            "DescribeTrainingJob": lambda: sm("training-job", "TrainingJobName"),
            "CreateProcessingJob": lambda: sm("processing-job", "ProcessingJobName"),
            "DescribeProcessingJob": lambda: sm("processing-job", "ProcessingJobName"),
            "GetRole": lambda: f"arn:aws:iam::{account}:role/{params['RoleName']}",
            "SimulatePrincipalPolicy": lambda: params["PolicySourceArn"],
            "CreateHyperParameterTuningJob": lambda: sm("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
            "PutObject": lambda: f"arn:aws:s3:::{params['Bucket']}/{params['Key']}",
            "CreateTable": lambda: f"arn:aws:glue:{region}:{account}:table/{params['DatabaseName']}/{params['TableInput']['Name']}",
            }.get(op, lambda: None)()


@pytest.mark.slow
def test_policy_allows_every_recorded_call(P):
    "Each job request the SDK sends (and the code it uploads) is allowed by the generated policy; PassRole too."
    from ml_lifecycle.platform.sagemaker_jobs import run_training_job_aws, training_job_spec
    from ml_lifecycle.platform.xgb_job import ENTRY_POINT, METRIC_DEFINITIONS, script_dir
    pol = execution_role_policy(P)
    rec = sagemaker_recorder(P.role_arn, pol)
    feats = P.lake + "/features/mlc_churn/version=f1"
    with rec.install():
        run_training_job_aws(training_job_spec(ENTRY_POINT, script_dir(), {"num_round": 10}, {"train": feats + "/train"},
                                               job_name="xgb-f1", output_path=P.lake + "/models/mlc_churn",
                                               **job_settings(P)), wait=False)
        run_spark_processing_aws(_prepare_spec(P, feats, prepare_arguments("churn", "yes", 42, (0.7, 0.15, 0.15), "v1")),
                                 wait=False)
    checked = 0
    for c in rec.calls:
        if (res := _resource(c.operation, c.params)) is None: continue
        action = {"s3": "s3", "sagemaker": "sagemaker", "glue": "glue", "iam": "iam"}[c.service] + ":" + c.operation
        assert policy_allows(pol, action, res), f"{action} on {res} is denied"
        checked += 1
    assert checked >= 6 and {"GetRole", "CreateTrainingJob", "CreateProcessingJob", "PutObject"} <= set(rec.ops())
    assert policy_allows(pol, "iam:PassRole", P.role_arn, {"iam:PassedToService": "sagemaker.amazonaws.com"})
