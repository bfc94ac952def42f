"Unit tests of ml_lifecycle.monitor: PyDeequ baseline in Model Monitor's format, captured data, violations (real Spark)."
import base64, json

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.platform.capture import DataCapture
from datetime import datetime, timezone

from scipy.spatial.distance import jensenshannon

from ml_lifecycle.platform.aws import AwsRecorder, validate_request
from ml_lifecycle.monitor import (baseline_job, drift_distances, monitoring_run, simulate_shift, suggest_constraints,
                                  pick_shift_features, simulate_capture_hour, hourly_monitoring_run, drift_over_time)
from ml_lifecycle.platform.model_monitor import (captured_frame, capture_hours, read_hour, drift_violations,
                                                 onehot_groups, execution_hour, report_parts, report_uri,
                                                 monitoring_reports)
from ml_lifecycle.model_quality import (ground_truth_records, write_ground_truth, read_ground_truth,
                                        join_ground_truth, model_quality_statistics, model_quality_constraints,
                                        check_model_quality, model_quality_run)
from ml_lifecycle.alarms import (metric_datapoints, put_metrics, read_metrics, metric_series,
                                 put_metric_data_requests, data_quality_metrics, evaluate_alarm, alarm_requests,
                                 monitoring_schedule_requests, model_quality_schedule_requests, create_monitoring,
                                 delete_monitoring, retrain_request, decode_rows, retrain_dataset, DATA_NAMESPACE)

FEATURES = ["calls", "minutes", "flag", "plan"]


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"calls": rng.poisson(3, n).astype("int64"), "minutes": rng.normal(180, 50, n).clip(1).round(1),
                         "flag": rng.integers(0, 2, n).astype(float), "plan": rng.choice(["basic", "gold", "pro"], n)})


@pytest.fixture(scope="module")
def lake_with_baseline(spark, tmp_path_factory):
    L = Lake(tmp_path_factory.mktemp("lake"))
    train = _rows(2000, 0)
    d = L.local_path("features", "t", "version=v1", "train"); d.mkdir(parents=True)
    pd.concat([pd.Series(np.zeros(len(train), int), name="label"), train], axis=1).to_parquet(d/"data.parquet")
    ptr = {"version": "v1", "train": str(d)}
    return L, baseline_job(spark, L, "t", ptr, comparison_threshold=0.1), train


def _capture(df, tmp_path, json_rows=False):
    "Data capture records of `df`'s rows sent in batches of 100 (CSV, or JSON instances)."
    cap, recs = DataCapture(tmp_path, "e"), []
    for i in range(0, len(df), 100):
        part = df.iloc[i:i + 100]
        if json_rows: body, ctype = json.dumps({"instances": part.values.tolist()}).encode(), "application/json"
        else: body, ctype = part.to_csv(header=False, index=False).encode(), "text/csv"
        recs.append(cap.record(body, ctype, b"0.5\n" * len(part), "text/csv"))
    return recs


@pytest.mark.slow  # Spark
def test_baseline_statistics_format(lake_with_baseline):
    L, base, train = lake_with_baseline
    st = L.read_json("monitoring", "t", "baseline", "statistics.json")
    assert st["version"] == 0.0 and st["dataset"]["item_count"] == len(train)
    by = {f["name"]: f for f in st["features"]}
    assert list(by) == FEATURES  # label dropped, order kept
    assert {k: by[k]["inferred_type"] for k in by} == {"calls": "Integral", "minutes": "Fractional",
                                                      "flag": "Integral", "plan": "String"}  # flag: 0/1 doubles
    ns = by["minutes"]["numerical_statistics"]
    assert set(ns) == {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}
    assert ns["common"] == {"num_present": len(train), "num_missing": 0}
    assert ns["mean"] == pytest.approx(train.minutes.mean()) and ns["sum"] == pytest.approx(train.minutes.sum())
    assert ns["std_dev"] == pytest.approx(train.minutes.std(ddof=0))
    assert (ns["min"], ns["max"]) == (train.minutes.min(), train.minutes.max())
    buckets = ns["distribution"]["kll"]["buckets"]
    assert len(buckets) == 10 and set(buckets[0]) == {"lower_bound", "upper_bound", "count"}
    assert sum(b["count"] for b in buckets) == len(train)
    ss = by["plan"]["string_statistics"]
    assert ss["common"]["num_present"] == len(train) and ss["distinct_count"] == 3
    cats = ss["distribution"]["categorical"]["buckets"]
    assert {b["value"]: b["count"] for b in cats} == train.plan.value_counts().to_dict()


@pytest.mark.slow  # Spark
def test_baseline_constraints_format(lake_with_baseline):
    L, *_ = lake_with_baseline
    c = L.read_json("monitoring", "t", "baseline", "constraints.json")
    assert set(c) == {"version", "features", "monitoring_config"}
    by = {f["name"]: f for f in c["features"]}
    assert by["calls"] == {"name": "calls", "inferred_type": "Integral", "completeness": 1.0,
                           "num_constraints": {"is_non_negative": True}}
    assert by["plan"]["string_constraints"] == {"domains": ["basic", "gold", "pro"]}
    mc = c["monitoring_config"]
    assert {"evaluate_constraints", "emit_metrics", "datatype_check_threshold", "domain_content_threshold",
            "distribution_constraints"} <= set(mc)
    assert mc["distribution_constraints"] == {"perform_comparison": "Enabled", "comparison_threshold": 0.1,
                                              "comparison_method": "Simple"}
    assert L.read_json("monitoring", "t", "baseline", "_manifest.json")["features_version"] == "v1"


@pytest.mark.slow  # Spark
def test_unshifted_traffic_has_no_violations(spark, lake_with_baseline, tmp_path):
    L, _, _ = lake_with_baseline
    live = _rows(600, 1)[FEATURES]
    run = monitoring_run(spark, L, "t", "unshifted", captured_frame(_capture(live, tmp_path), FEATURES))
    assert run["violations"] == [], run["drift"]
    assert (run["drift"].distance < 0.1).all()
    doc = L.read_json("monitoring", "t", "unshifted", "constraint_violations.json")
    assert doc == {"violations": []}
    assert L.read_json("monitoring", "t", "unshifted", "statistics.json")["dataset"]["item_count"] == 600


@pytest.mark.slow  # Spark
def test_shifted_traffic_has_drift_violations(spark, lake_with_baseline, tmp_path):
    L, _, train = lake_with_baseline
    live = simulate_shift(_rows(600, 2)[FEATURES], ["minutes", "calls"], 1.6)
    assert live.calls.dtype == "int64"  # integers stay integers: only the distribution moves
    run = monitoring_run(spark, L, "t", "shifted", captured_frame(_capture(live, tmp_path, json_rows=True), FEATURES))
    v = L.read_json("monitoring", "t", "shifted", "constraint_violations.json")["violations"]
    assert v == run["violations"]
    assert all(set(x) == {"feature_name", "constraint_check_type", "description"} for x in v)
    drift = sorted(x["feature_name"] for x in v if x["constraint_check_type"] == "baseline_drift_check")
    assert drift == ["calls", "minutes"], v
    assert all("exceeds threshold: 0.1" in x["description"] for x in v if x["feature_name"] in drift)
    assert pick_shift_features(train, ["flag", "calls", "minutes"], k=2) == ["calls", "minutes"]


@pytest.mark.slow  # Spark
def test_type_completeness_domain_and_column_violations(spark, lake_with_baseline, tmp_path):
    L, _, _ = lake_with_baseline
    live = _rows(300, 3)[FEATURES].astype(object)
    live.loc[:9, "calls"] = 2.5          # Fractional values in an Integral feature
    live.loc[:29, "minutes"] = None      # 10% missing
    live.loc[:99, "plan"] = "platinum"   # a category the baseline never saw
    recs = _capture(live, tmp_path)
    recs.append(DataCapture(tmp_path, "e").record(b"1,2.0,1.0,gold,extra\n", "text/csv", b"0.5\n", "text/csv"))
    run = monitoring_run(spark, L, "t", "broken", captured_frame(recs, FEATURES))
    kinds = {(x["feature_name"], x["constraint_check_type"]) for x in run["violations"]}
    assert ("calls", "data_type_check") in kinds
    assert ("minutes", "completeness_check") in kinds
    assert ("plan", "categorical_values_check") in kinds
    assert ("", "extra_column_check") in kinds
    assert not any(k == "data_type_check" for f, k in kinds if f != "calls")


def test_captured_frame_decodes_csv_json_and_base64(tmp_path):
    cap = DataCapture(tmp_path, "e", csv_content_types=())  # CSV captured as BASE64
    recs = [cap.record(b"1,2.5,,gold\n", "text/csv", b"0.1\n", "text/csv"),
            DataCapture(tmp_path, "e").record(json.dumps({"instances": [{"calls": 3, "plan": "pro"}]}).encode(),
                                              "application/json", b"{}", "application/json")]
    assert recs[0]["captureData"]["endpointInput"]["encoding"] == "BASE64"
    assert base64.b64decode(recs[0]["captureData"]["endpointInput"]["data"]) == b"1,2.5,,gold\n"
    df = captured_frame(recs, FEATURES)
    assert df.values.tolist() == [["1", "2.5", None, "gold"], ["3", None, None, "pro"]]
    assert df.attrs["row_widths"] == {4: 2}


def test_drift_distances_and_constraints_helpers():
    base = pd.DataFrame({"x": np.arange(1000) / 1000, "s": ["a", "b"] * 500})
    same = pd.DataFrame({"x": (np.arange(500) / 500).astype(str), "s": ["a", "b"] * 250})
    moved = pd.DataFrame({"x": (np.arange(500) / 500 + 0.5).astype(str), "s": ["a"] * 500})
    types = {"x": "Fractional", "s": "String"}
    d0, d1 = drift_distances(base, same, types), drift_distances(base, moved, types)
    assert (d0.distance < 0.01).all()
    assert d1.set_index("feature").distance.round(2).to_dict() == {"x": 0.5, "s": 0.5}
    st = {"dataset": {"item_count": 4}, "features": [
        {"name": "x", "inferred_type": "Fractional", "numerical_statistics": {"common": {"num_present": 3, "num_missing": 1}, "min": -1.0}}]}
    c = suggest_constraints(st, comparison_threshold=0.2)
    assert c["features"][0] == {"name": "x", "inferred_type": "Fractional", "completeness": 0.75,
                                "num_constraints": {"is_non_negative": False}}
    assert c["monitoring_config"]["distribution_constraints"]["comparison_threshold"] == 0.2


CHECK_TYPES = {"data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
               "extra_column_check", "categorical_values_check"}  # the documented ones


def _hour_capture(root, df, hour, prefix):
    "Capture records of `df` (one row per request, with inference ids) placed in `hour`'s partition."
    cap = DataCapture(root, "live", "AllTraffic")
    recs = [cap.record(df.iloc[[i]].to_csv(header=False, index=False).encode(), "text/csv", b"0.5\n", "text/csv",
                       inference_id=f"{prefix}-{i}") for i in range(len(df))]
    return simulate_capture_hour(recs, root, "e", "AllTraffic", hour)


def test_simulated_hours_land_in_hourly_partitions(tmp_path):
    _hour_capture(tmp_path, _rows(5, 0)[FEATURES], "2026-01-05T08:30", "a")
    _hour_capture(tmp_path, _rows(3, 1)[FEATURES], datetime(2026, 1, 5, 9, tzinfo=timezone.utc), "b")
    assert capture_hours(tmp_path, "e", "AllTraffic") == ["2026-01-05T08", "2026-01-05T09"]
    recs = read_hour(tmp_path, "e", "AllTraffic", "2026-01-05T09")
    assert [r["eventMetadata"]["inferenceId"] for r in recs] == ["b-0", "b-1", "b-2"]
    assert all(r["eventMetadata"]["inferenceTime"].startswith("2026-01-05T09:") for r in recs)
    assert (tmp_path/"e"/"AllTraffic"/"2026"/"01"/"05"/"08").is_dir()


@pytest.mark.slow  # Spark
def test_hourly_runs_unshifted_vs_shifted_and_rerun(spark, lake_with_baseline, tmp_path):
    L, _, _ = lake_with_baseline
    _hour_capture(tmp_path, _rows(400, 5)[FEATURES], "2026-01-05T08", "u")
    _hour_capture(tmp_path, simulate_shift(_rows(400, 6)[FEATURES], ["minutes"], 1.6), "2026-01-05T09", "s")
    runs = {h: hourly_monitoring_run(spark, L, "t", "sched", tmp_path, "e", "AllTraffic", h, FEATURES)
            for h in capture_hours(tmp_path, "e", "AllTraffic")}
    # SageMaker's layout: <prefix>/<endpoint>/<schedule>/yyyy/mm/dd/hh/, hh the execution's scheduled hour (the next one)
    assert L.ls("monitoring", "t", "e", "sched", "2026", "01", "05") == ["09", "10"]
    assert [r["scheduled"] for r in runs.values()] == ["2026-01-05T09", "2026-01-05T10"]
    assert list(monitoring_reports(L, "t", "e", "sched")) == ["2026-01-05T09", "2026-01-05T10"]
    for h, r in runs.items():
        where = ("monitoring", "t", "e", "sched", "2026", "01", "05", r["scheduled"][-2:])
        assert r["uri"] == L.uri(*where)
        assert {"statistics.json", "constraint_violations.json"} <= set(L.ls(*where))
        st = L.read_json(*where, "statistics.json")
        assert set(st) == {"version", "dataset", "features"} and st["dataset"]["item_count"] == 400
        assert all({"name", "inferred_type"} <= set(f) and ("numerical_statistics" in f or "string_statistics" in f)
                   for f in st["features"])
        for v in L.read_json(*where, "constraint_violations.json")["violations"]:
            assert set(v) == {"feature_name", "constraint_check_type", "description"} and v["constraint_check_type"] in CHECK_TYPES
    assert runs["2026-01-05T08"]["violations"] == []
    assert drift_violations(runs["2026-01-05T09"]) == ["minutes"]
    where = ("monitoring", "t", *report_parts("e", "sched", "2026-01-05T10"))
    before = L.ls(*where)
    again = hourly_monitoring_run(spark, L, "t", "sched", tmp_path, "e", "AllTraffic", "2026-01-05T09", FEATURES)
    assert L.ls(*where) == before and again["violations"] == runs["2026-01-05T09"]["violations"]
    d = drift_over_time(L, "t", "e", "sched")
    assert list(d.index) == ["2026-01-05T09", "2026-01-05T10"] and d.loc["2026-01-05T10", "minutes"] > 0.1


def test_onehot_groups_and_jensen_shannon_drift():
    meta = {"numeric": ["n"], "features": ["n", "c=a", "c=b"], "categorical": {"c": ["a", "b"]}}
    g = onehot_groups(meta)
    assert g == {"c": ["c=a", "c=b"]}
    base = pd.DataFrame({"n": range(100), "c=a": [1, 0] * 50, "c=b": [0, 1] * 50})
    same = drift_distances(base, base.astype(str), {"n": "Integral"}, g).set_index("feature")
    moved = drift_distances(base, pd.DataFrame({"n": ["1"] * 10, "c=a": ["1"] * 10, "c=b": ["0"] * 10}), {"n": "Integral"}, g)
    assert same.loc["c", "distance"] == pytest.approx(0) and same.loc["c", "method"] == "jensenshannon"
    assert moved.set_index("feature").loc["c", "distance"] == pytest.approx(jensenshannon([0.5, 0.5, 0], [1, 0, 0], base=2))


def test_ground_truth_join_and_model_quality_format(tmp_path):
    L = Lake(tmp_path/"lake")
    cap = DataCapture(tmp_path, "e")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.5 + rng.random(200) * 0.6, 0, 1)
    recs = [cap.record(b"1\n", "text/csv", f"{v}\n".encode(), "text/csv", inference_id=f"id-{i}") for i, v in enumerate(p)]
    recs.append(cap.record(b"1\n", "text/csv", b"0.5\n", "text/csv", inference_id="never-labelled"))
    gt = ground_truth_records({f"id-{i}": v for i, v in enumerate(y)})
    assert gt[0] == {"groundTruthData": {"data": str(y[0]), "encoding": "CSV"}, "eventMetadata": {"eventId": "id-0"}, "eventVersion": "0"}
    write_ground_truth(L, "t", gt[:100], "2026-01-05T09")
    write_ground_truth(L, "t", gt[100:], "2026-01-05T10")
    write_ground_truth(L, "t", gt[100:], "2026-01-05T10")  # re-upload of the same file: replaced
    assert L.ls("groundtruth", "t", "2026", "01", "05") == ["09", "10"]
    joined = join_ground_truth(recs, read_ground_truth(L, "t", ["2026-01-05T09", "2026-01-05T10"]))
    assert len(joined) == 200 and joined.attrs == {"unlabelled": 1, "mismatched": 0}
    assert (joined.label.to_numpy() == y).all() and np.allclose(joined.probability, p, atol=1e-6)
    base = model_quality_statistics(y, p, 0.5, evaluation_time="baseline")
    cons = model_quality_constraints(base, {"auc": 0.05})
    assert cons == {"version": 0.0, "binary_classification_constraints": {
        "auc": {"threshold": round(base["binary_classification_metrics"]["auc"]["value"] - 0.05, 6), "comparison_operator": "LessThanThreshold"}}}
    ok = model_quality_run(L, "t", "e", "2026-01-05T08", joined, cons, 0.5, wait_hours=2)  # labels waited for 2 hours
    where = ("monitoring", "t", "e", "e-model-quality", "2026", "01", "05", "11")     # run at 08:00 + 1 h + 2 h
    assert ok["scheduled"] == "2026-01-05T11" and ok["uri"] == L.uri(*where)
    doc = L.read_json(*where, "statistics.json")
    assert doc["version"] == 0.0 and doc["dataset"]["item_count"] == 200
    m = doc["binary_classification_metrics"]
    assert {"auc", "f1", "precision", "recall", "accuracy", "confusion_matrix"} <= set(m)
    assert set(m["auc"]) == {"value", "standard_deviation"} and 0 < m["auc"]["standard_deviation"] < 0.1
    assert sum(m["confusion_matrix"][a][b] for a in "01" for b in "01") == 200
    assert ok["violations"] == [] and L.read_json(*where, "constraint_violations.json") == {"violations": []}
    bad = model_quality_run(L, "t", "e", "2026-01-05T09", joined.assign(probability=rng.random(200)), cons, 0.5, "mq")
    v = L.read_json("monitoring", "t", "e", "mq", "2026", "01", "05", "10", "constraint_violations.json")["violations"]
    assert list(monitoring_reports(L, "t", "e", "mq")) == ["2026-01-05T10"]
    assert v == bad["violations"] and [x["metric_name"] for x in v] == ["auc"]
    assert v[0]["constraint_check_type"] == "LessThanThreshold" and set(v[0]) == {"metric_name", "constraint_check_type", "description"}


def test_metrics_store_is_idempotent_and_requests_validate(tmp_path):
    L = Lake(tmp_path)
    dims = {"Endpoint": "e", "MonitoringSchedule": "s"}
    a = metric_datapoints(DATA_NAMESPACE, dims, "2026-01-05T08", {"feature_baseline_drift_x": 0.05, "auc": 0.9})
    b = metric_datapoints(DATA_NAMESPACE, dims, "2026-01-05T09", {"feature_baseline_drift_x": 0.3})
    put_metrics(L, "t", a); put_metrics(L, "t", b)
    store = put_metrics(L, "t", a.assign(value=[0.06, 0.9]))  # the 08:00 hour again, corrected
    assert len(store) == 3 and len(read_metrics(L, "t")) == 3
    assert metric_series(store, "feature_baseline_drift_x").tolist() == [0.06, 0.3]
    reqs = put_metric_data_requests(pd.concat([a] * 600, ignore_index=True))
    assert [len(r["MetricData"]) for r in reqs] == [1000, 200]
    for r in reqs: validate_request("cloudwatch", "PutMetricData", r)
    assert reqs[0]["MetricData"][0]["Dimensions"] == [{"Name": "Endpoint", "Value": "e"}, {"Name": "MonitoringSchedule", "Value": "s"}]
    rec = AwsRecorder()
    cw = rec.client("cloudwatch")
    for r in put_metric_data_requests(store): cw.put_metric_data(**r)
    assert rec.ops() == ["PutMetricData"] and len(rec.find("PutMetricData")[0]["MetricData"]) == 3


def test_data_quality_metrics_names():
    run = {"drift": pd.DataFrame({"feature": ["a", "b"], "distance": [0.3, 0.01]}),
           "violations": [{"feature_name": "a", "constraint_check_type": "baseline_drift_check", "description": ""}]}
    assert data_quality_metrics(run) == {"feature_baseline_drift_a": 0.3, "feature_baseline_drift_b": 0.01,
                                         "baseline_drift_check_violations": 1.0, "constraint_violations": 1.0}


def test_alarm_rule_n_of_m():
    s = pd.Series([0, 1, 0, 0, 1, 1, 0], index=[f"h{i}" for i in range(7)], dtype=float)
    a = evaluate_alarm(s, 1, "GreaterThanOrEqualToThreshold", evaluation_periods=3, datapoints_to_alarm=2)
    assert a.state.tolist() == ["INSUFFICIENT_DATA", "OK", "OK", "OK", "OK", "ALARM", "ALARM"]
    assert a.breaching.tolist() == [False, True, False, False, True, True, False]
    assert evaluate_alarm(s, 1, evaluation_periods=1, datapoints_to_alarm=1).state.tolist()[1] == "ALARM"
    assert evaluate_alarm(pd.Series([0.9, 0.8, 0.7]), 0.85, "LessThanThreshold", 2, 2).state.tolist() == ["INSUFFICIENT_DATA", "OK", "ALARM"]
    with pytest.raises(ValueError, match="datapoints_to_alarm"): evaluate_alarm(s, 1, evaluation_periods=2, datapoints_to_alarm=3)


def test_aws_requests_validate_and_are_sent_with_recorder():
    topic = "arn:aws:sns:us-east-1:111122223333:e-monitoring"
    alarm = alarm_requests("e-data-drift", DATA_NAMESPACE, "baseline_drift_check_violations", {"Endpoint": "e"}, 1,
                           "GreaterThanOrEqualToThreshold", 3, 2, topic)["put_metric_alarm"]
    validate_request("cloudwatch", "PutMetricAlarm", alarm)
    validate_request("sns", "CreateTopic", {"Name": "e-monitoring"})
    role, img = "arn:aws:iam::111122223333:role/R", "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    dq = monitoring_schedule_requests("e", "s3://b/p/baseline", "s3://b/p/monitoring/t", img, role, kms_key_id="k")
    mq = model_quality_schedule_requests("e", "s3://b/p/mqb", "s3://b/p/groundtruth", "s3://b/p/monitoring/t", img, role, 0.3,
                                         schedule_name="e-mq", wait_hours=2)
    for reqs in (dq, mq):
        for op, params in reqs.items(): validate_request("sagemaker", op, params)
    mq_input = mq["create_model_quality_job_definition"]["ModelQualityJobInput"]
    assert mq_input["GroundTruthS3Input"] == {"S3Uri": "s3://b/p/groundtruth"}
    assert (mq_input["EndpointInput"]["StartTimeOffset"], mq_input["EndpointInput"]["EndTimeOffset"]) == ("-PT3H", "-PT2H")
    assert "StartTimeOffset" not in model_quality_schedule_requests("e", "s3://b/m", "s3://b/g", "s3://b/o", img, role)[
        "create_model_quality_job_definition"]["ModelQualityJobInput"]["EndpointInput"]
    assert [r["create_monitoring_schedule"]["MonitoringScheduleName"] for r in (dq, mq)] == ["e-data-quality", "e-mq"]
    # the S3Uri is the prefix SageMaker appends <endpoint>/<schedule>/yyyy/mm/dd/hh to: the folder the local runs write
    out = dq["create_data_quality_job_definition"]["DataQualityJobOutputConfig"]["MonitoringOutputs"][0]["S3Output"]["S3Uri"]
    assert report_uri(out, "e", "e-data-quality", execution_hour("2026-01-05T08")) == "s3://b/p/monitoring/t/e/e-data-quality/2026/01/05/09"
    assert report_uri(out, "e", "e-data-quality", "2026-01-05T09") == "/".join(["s3://b/p", "monitoring", "t", *report_parts("e", "e-data-quality", "2026-01-05T09")])
    mq_out = mq["create_model_quality_job_definition"]["ModelQualityJobOutputConfig"]["MonitoringOutputs"][0]["S3Output"]["S3Uri"]
    assert report_uri(mq_out, "e", "e-mq", execution_hour("2026-01-05T08", 2)).endswith("/monitoring/t/e/e-mq/2026/01/05/11")
    rec = AwsRecorder(responses={"CreateTopic": {"TopicArn": topic}})
    clients = [rec.client(s) for s in ("sagemaker", "cloudwatch", "sns")]
    assert create_monitoring(*clients, [dq, mq], [alarm | {"AlarmActions": ["x"]}], "e-monitoring") == topic
    assert rec.find("PutMetricAlarm")[0]["AlarmActions"] == [topic]
    assert rec.find("CreateMonitoringSchedule")[1]["MonitoringScheduleConfig"]["MonitoringType"] == "ModelQuality"
    delete_monitoring(*clients, [dq, mq], ["e-data-drift"], topic)
    assert rec.ops()[-6:] == ["DeleteMonitoringSchedule", "DeleteDataQualityJobDefinition", "DeleteMonitoringSchedule",
                              "DeleteModelQualityJobDefinition", "DeleteAlarms", "DeleteTopic"]


def test_retrain_request_and_dataset(tmp_path):
    L = Lake(tmp_path)
    r1 = retrain_request(L, "t", "e-data-drift", "2026-01-05T11:00:00Z", "drift", {"x": 1})
    r2 = retrain_request(L, "t", "e-data-drift", "2026-01-05T11:00:00Z", "drift", {"x": 2})
    assert r1["id"] == r2["id"] == "e-data-drift-2026-01-05t11-00-00z"
    assert L.ls("monitoring", "t", "retrain_requests") == [f"{r1['id']}.json"]
    assert L.read_json("monitoring", "t", "retrain_requests", f"{r1['id']}.json")["metrics"] == {"x": 2}
    meta = {"numeric": ["n"], "features": ["n", "c=a", "c=b"], "categorical": {"c": ["a", "b"]}}
    enc = pd.DataFrame([[1.0, 1, 0], [2.0, 0, 1]], columns=meta["features"])
    assert decode_rows(enc, meta).to_dict("list") == {"n": [1.0, 2.0], "c": ["a", "b"]}
    raw = pd.DataFrame({"id": [1], "n": [5], "c": ["b"], "y": ["no"]})
    new = retrain_dataset(raw, enc, [1, 0], meta, "y", "yes")
    assert list(new.columns) == list(raw.columns) and new.y.tolist() == ["no", "yes", "no"] and new.id.isna().sum() == 2


def test_retrain_dataset_leaves_out_held_out_rows():
    meta = {"numeric": ["n"], "features": ["n", "c=a", "c=b"], "categorical": {"c": ["a", "b"]}}
    raw = pd.DataFrame({"n": [1, 2, 2, 3], "c": ["a", "a", "b", "b"], "y": ["no", "yes", "no", "yes"]})
    enc = pd.DataFrame([[5.0, 1, 0]], columns=meta["features"])
    out = retrain_dataset(raw, enc, [1], meta, "y", "yes", exclude=decode_rows(pd.DataFrame([[2.0, 1, 0], [3.0, 0, 1]], columns=meta["features"]), meta))
    assert out.attrs["excluded"] == 2
    assert out[["n", "c", "y"]].values.tolist() == [[1, "a", "no"], [2, "b", "no"], [5.0, "a", "yes"]]


def test_drift_alarm_is_metric_math_over_model_monitor_metrics():
    "The drift alarm watches what Model Monitor emits: MAX over feature_baseline_drift_<column>, in its namespace."
    from ml_lifecycle.alarms import MAX_ALARM_METRICS, drift_alarm_requests, largest_drift, metric_datapoints
    from ml_lifecycle.platform.model_monitor import capture_columns, renamed
    topic = "arn:aws:sns:us-east-1:111122223333:e-monitoring"
    cols = capture_columns(["tenure", "calls", "plan_yes"])
    assert cols == {"tenure": "_c0", "calls": "_c1", "plan_yes": "_c2"}
    dims = {"Endpoint": "e", "MonitoringSchedule": "e-data-quality"}
    req = drift_alarm_requests("e-data-drift", DATA_NAMESPACE, [cols["calls"], cols["tenure"]], dims, 0.15, 3, 2, topic)
    validate_request("cloudwatch", "PutMetricAlarm", req["put_metric_alarm"])
    m = req["put_metric_alarm"]["Metrics"]
    assert [x["MetricStat"]["Metric"]["MetricName"] for x in m[:-1]] == ["feature_baseline_drift__c1", "feature_baseline_drift__c0"]
    assert m[0]["MetricStat"]["Metric"]["Namespace"] == "aws/sagemaker/Endpoints/data-metrics"
    assert m[-1] == {"Id": "drift", "Expression": "MAX(METRICS())", "Label": "largest feature drift", "ReturnData": True}
    with pytest.raises(ValueError, match="1 to 10"): drift_alarm_requests("a", DATA_NAMESPACE, [f"_c{i}" for i in range(11)], dims, .1, 3, 2, topic)
    assert MAX_ALARM_METRICS == 10
    store = pd.concat([metric_datapoints(DATA_NAMESPACE, dims, "2026-01-05T08", {"feature_baseline_drift_tenure": 0.1, "feature_baseline_drift_calls": 0.05}),
                       metric_datapoints(DATA_NAMESPACE, dims, "2026-01-05T09", {"feature_baseline_drift_tenure": 0.02, "feature_baseline_drift_calls": 0.3,
                                                                                 "feature_baseline_drift_other": 0.9})])
    assert largest_drift(store, ["tenure", "calls"]).tolist() == [0.1, 0.3]  # 'other' is not watched
    doc = {"version": 0.0, "features": [{"name": "tenure", "inferred_type": "Fractional"}, {"name": "calls", "inferred_type": "Integral"}]}
    assert [f["name"] for f in renamed(doc, cols)["features"]] == ["_c0", "_c1"] and doc["features"][0]["name"] == "tenure"


@pytest.mark.slow  # Spark in the kernel, and a job in the Spark image's environment
def test_analysis_job_in_the_spark_image_equals_the_kernel(spark, lake_with_baseline, tmp_path):
    "run_analysis_job (only what SageMaker's Spark image has, plus what the job ships) finds what `analyse` finds here."
    from ml_lifecycle.platform.analyzer import run_analysis_job
    L, base, _ = lake_with_baseline
    _hour_capture(tmp_path, simulate_shift(_rows(300, 7)[FEATURES], ["minutes"], 1.6), "2026-01-05T11", "j")
    captured = captured_frame(read_hour(tmp_path, "e", "AllTraffic", "2026-01-05T11"), FEATURES)
    types = {f["name"]: f["inferred_type"] for f in base["constraints"]["features"]}
    train = base["manifest"]["dataset"]
    job = run_analysis_job(L, "t", "check", {"baseline": train, "hour": captured.astype("string")},
                           {"baseline": {"drop": ["label"]}, "hour": {"types": types}})
    assert set(job) == {"baseline", "hour"}
    assert job["baseline"]["statistics"] == base["statistics"]  # the same Deequ analysis, in another process
    kernel = monitoring_run(spark, L, "t", "k", captured)  # `analyse` of the same rows in this kernel's Spark
    assert job["hour"]["statistics"] == json.loads(json.dumps(kernel["statistics"]))
    from_job = monitoring_run(None, L, "t", "j", captured, analysis=job["hour"])  # no Spark needed with the job's analysis
    assert from_job["violations"] == kernel["violations"] and drift_violations(from_job) == ["minutes"]
    assert L.ls("monitoring", "t", "_analysis", "check") == ["input", "output"]
    with pytest.raises(ValueError, match="letters, digits"):
        run_analysis_job(L, "t", "check", {"a/b": captured})
