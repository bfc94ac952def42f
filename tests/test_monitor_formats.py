"""Conformance of ml_lifecycle.monitor's files with SageMaker Model Monitor's formats and layout.

(a) What the project writes (statistics.json, constraints.json, constraint_violations.json, model-quality
statistics) is read back by a minimal reader written here from the documented field names alone
(docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html, ...-byoc-constraints.html,
...-interpreting-violations.html, ...-model-quality-metrics.html), and its content holds: KLL buckets cover
[min, max] and add up to num_present, the sketch has parameters c, k and data, types are Integral / Fractional /
String as SageMaker infers them. Both from a small fixed Spark DataFrame in memory, and from the files the
project's writers (baseline_job, hourly_monitoring_run, model_quality_run) put in a lake, found by SageMaker's
report layout <prefix>/<endpoint>/<schedule>/yyyy/mm/dd/hh/ alone.
(b) Files in SageMaker's format, hand-written from the documented schema (tests/data/monitor/, see its README),
are read by the project's readers and drive its checks.
(c) SageMaker's own published test data (the SDK's tests/data/monitor/, vendored in tests/data/sdk_monitor/,
see its NOTICE.md) is read by the project's readers: statistics, constraints in the older spelling,
violations, data capture and ground truth (merged by eventId), with the values the files state.
"""
import json, re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.platform.capture import DataCapture, read_capture
from ml_lifecycle.monitor import (baseline_job, check_constraints, drift_distances, drift_over_time,
                                  hourly_monitoring_run, label_drift, simulate_capture_hour, simulate_shift,
                                  suggest_constraints)
from ml_lifecycle.platform.analyzer import compute_statistics, infer_types
from ml_lifecycle.platform.model_monitor import (capture_hours, captured_frame, checked_threshold, drift_violations,
                                                 monitoring_reports, read_constraints, read_hour, read_statistics,
                                                 read_violations, report_parts)
from ml_lifecycle.model_quality import (check_model_quality, join_ground_truth, model_quality_constraints,
                                        model_quality_run, model_quality_statistics, read_ground_truth)
from ml_lifecycle.alarms import data_quality_metrics, model_quality_metrics

DATA = Path(__file__).parent/"data"/"monitor"
SDK = Path(__file__).parent/"data"/"sdk_monitor"  # the SageMaker Python SDK's published test data (NOTICE.md)
CHECK_TYPES = {"data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
               "extra_column_check", "categorical_values_check"}  # the documented constraint_check_type values
TYPES = {"Integral", "Fractional", "String", "Unknown"}


# --- a minimal reader, from the documented field names only -------------------------------------------------------

def parse_statistics(doc: dict) -> dict:
    "{'item_count', 'features': {name: {...}}} from a statistics.json, reading only documented fields."
    feats = {}
    for f in doc["features"]:
        rec = {"type": f["inferred_type"]}
        if "numerical_statistics" in f:
            ns = f["numerical_statistics"]
            kll = ns["distribution"]["kll"]
            rec |= {"present": ns["common"]["num_present"], "missing": ns["common"]["num_missing"],
                    "mean": ns["mean"], "sum": ns["sum"], "std_dev": ns["std_dev"], "min": ns["min"], "max": ns["max"],
                    "buckets": [(b["lower_bound"], b["upper_bound"], b["count"]) for b in kll["buckets"]],
                    "c": kll["sketch"]["parameters"]["c"], "k": kll["sketch"]["parameters"]["k"],
                    "data": kll["sketch"]["data"]}
        else:
            ss = f["string_statistics"]
            rec |= {"present": ss["common"]["num_present"], "missing": ss["common"]["num_missing"],
                    "distinct": ss.get("distinct_count"),
                    "categories": {b["value"]: b["count"] for b in ss.get("distribution", {}).get("categorical", {}).get("buckets", [])}}
        feats[f["name"]] = rec
    return {"version": doc["version"], "item_count": doc["dataset"]["item_count"], "features": feats}


def parse_constraints(doc: dict) -> dict:
    "{'features': {name: {...}}, 'config': {...}} from a constraints.json (current documented spelling)."
    feats = {f["name"]: {"type": f["inferred_type"], "completeness": f.get("completeness"),
                         "non_negative": f.get("num_constraints", {}).get("is_non_negative"),
                         "domains": f.get("string_constraints", {}).get("domains")} for f in doc["features"]}
    mc = doc["monitoring_config"]
    dc = mc["distribution_constraints"]
    return {"version": doc["version"], "features": feats,
            "config": {"evaluate_constraints": mc["evaluate_constraints"], "emit_metrics": mc["emit_metrics"],
                       "datatype_check_threshold": mc["datatype_check_threshold"],
                       "domain_content_threshold": mc["domain_content_threshold"],
                       "perform_comparison": dc["perform_comparison"], "comparison_threshold": dc["comparison_threshold"],
                       "comparison_method": dc["comparison_method"]}}


def parse_violations(doc: dict) -> list[tuple]:
    "[(feature_name, constraint_check_type, description)] from a constraint_violations.json."
    return [(v["feature_name"], v["constraint_check_type"], v["description"]) for v in doc["violations"]]


def parse_model_quality(doc: dict) -> dict:
    "{'item_count', 'confusion': {actual: {predicted: n}}, 'metrics': {name: (value, std)}} from a model-quality statistics.json."
    m = doc["binary_classification_metrics"]
    num = lambda v: float(v)  # documented numbers, or "NaN" as text
    return {"version": doc["version"], "item_count": doc["dataset"]["item_count"],
            "confusion": {a: {b: int(n) for b, n in row.items()} for a, row in m["confusion_matrix"].items()},
            "metrics": {k: (num(v["value"]), num(v["standard_deviation"])) for k, v in m.items() if isinstance(v, dict) and "value" in v}}


def parse_model_quality_violations(doc: dict) -> list[tuple]:
    "[(metric_name, constraint_check_type, description)] from a model-quality constraint_violations.json."
    return [(v["metric_name"], v["constraint_check_type"], v["description"]) for v in doc["violations"]]


REPORT = re.compile(r"(?P<endpoint>[^/]+)/(?P<schedule>[^/]+)/(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<h>\d\d)/(?P<file>[^/]+)")


def assert_kll(rec: dict):
    "The documented KLL distribution of one numerical feature is whole and consistent."
    b = rec["buckets"]
    assert b and b[0][0] == rec["min"] and b[-1][1] == rec["max"]
    assert all(lo <= hi for lo, hi, _ in b) and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
    assert sum(c for *_, c in b) == rec["present"]
    assert isinstance(rec["c"], (int, float)) and isinstance(rec["k"], (int, float)) and 0 < rec["c"] < 1 < rec["k"]
    assert rec["data"] and all(isinstance(level, list) for level in rec["data"]) and any(rec["data"])
    assert sum(len(level) * 2 ** i for i, level in enumerate(rec["data"])) == rec["present"]  # item weight 2**level


# --- (a) the project's files, from a small fixed DataFrame ------------------------------------------------------------

N = 40
X = [0.1 + 12.5 * i for i in range(37)] + [507.59999999999997, 507.59999999999997, None]  # min + 10 * width < max in floats


def _baseline() -> pd.DataFrame:
    return pd.DataFrame({"n": [i % 8 for i in range(N)], "x": X, "oh": [float(i % 2) for i in range(N)],
                         "s": [("a", "b", "c", "a")[i % 4] for i in range(N)]})


@pytest.fixture(scope="module")
def produced(spark):
    from pyspark.sql import types as T
    base = _baseline()
    schema = T.StructType([T.StructField("n", T.LongType()), T.StructField("x", T.DoubleType()),
                           T.StructField("oh", T.DoubleType()), T.StructField("s", T.StringType())])
    sdf = spark.createDataFrame([tuple(None if pd.isna(v) else v for v in r) for r in base.itertuples(index=False)], schema)
    types, _ = infer_types(spark, sdf)
    stats = compute_statistics(spark, sdf, types)
    cons = suggest_constraints(stats, comparison_threshold=0.1)
    cap = pd.DataFrame({c: [None if pd.isna(v) else str(v) for v in base[c]] for c in base}, dtype=object)  # text cells
    cap.loc[:4, "n"] = "2.5"          # fractional values in an Integral feature
    cap.loc[5:6, "n"] = None          # missing values in a complete feature
    cap.loc[7, "x"] = "-3.0"          # a negative value in a never-negative feature
    cap.loc[:9, "s"] = "zzz"          # values outside the baseline domain
    cap["oh"] = ["1.0" if i % 3 else "0.0" for i in range(N)]  # whole numbers written with a fraction
    cap.attrs["row_widths"] = {4: N - 1, 5: 1}
    csdf = spark.createDataFrame([tuple(r) for r in cap.itertuples(index=False)],
                                 T.StructType([T.StructField(c, T.StringType()) for c in cap.columns]))
    _, counts = infer_types(spark, csdf)
    cstats = compute_statistics(spark, csdf, types)
    drift = label_drift(drift_distances(base, cap, types), cons)
    violations = check_constraints(cons, cstats, counts, drift, cap)
    as_json = lambda d: json.loads(json.dumps(d))  # as written to and read from the files
    return {"types": types, "statistics": as_json(stats), "constraints": as_json(cons),
            "violations": as_json({"violations": violations}), "drift": drift, "captured_statistics": as_json(cstats)}


@pytest.mark.slow  # Spark
def test_statistics_parse_with_documented_fields(produced):
    st = parse_statistics(produced["statistics"])
    assert st["version"] == 0.0 and st["item_count"] == N
    assert {k: f["type"] for k, f in st["features"].items()} == {"n": "Integral", "x": "Fractional", "oh": "Integral",
                                                                  "s": "String"}
    for name in ("n", "x", "oh"):
        rec = st["features"][name]
        assert_kll(rec)
        assert len(rec["buckets"]) == 10
        assert (rec["c"], rec["k"]) == (0.64, 2048)
    x = st["features"]["x"]
    assert (x["present"], x["missing"], x["min"], x["max"]) == (N - 1, 1, 0.1, 507.59999999999997)
    v = np.array([a for a in X if a is not None])
    edges = [b[0] for b in x["buckets"]] + [x["max"]]
    exact = [int(((v >= lo) & ((v < hi) if i < 9 else (v <= hi))).sum()) for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    assert [c for *_, c in x["buckets"]] == exact and exact[-1] >= 2  # both maxima are counted
    s = st["features"]["s"]
    assert s["distinct"] == 3 and s["categories"] == {"a": 20, "b": 10, "c": 10} and sum(s["categories"].values()) == s["present"]


@pytest.mark.slow  # Spark
def test_constraints_parse_with_documented_fields(produced):
    c = parse_constraints(produced["constraints"])
    assert c["version"] == 0.0 and set(c["features"]) == {"n", "x", "oh", "s"}
    assert all(f["type"] in TYPES for f in c["features"].values())
    assert c["features"]["oh"]["type"] == "Integral" and c["features"]["x"]["completeness"] == (N - 1) / N
    assert c["features"]["x"]["non_negative"] is True and c["features"]["s"]["domains"] == ["a", "b", "c"]
    assert c["config"] == {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled", "datatype_check_threshold": 1.0,
                           "domain_content_threshold": 1.0, "perform_comparison": "Enabled", "comparison_threshold": 0.1,
                           "comparison_method": "Simple"}


@pytest.mark.slow  # Spark
def test_violations_use_documented_check_types_only(produced):
    v = parse_violations(produced["violations"])
    assert v and all(isinstance(f, str) and k in CHECK_TYPES and isinstance(d, str) and d for f, k, d in v)
    kinds = {(f, k) for f, k, _ in v}
    assert {("n", "data_type_check"), ("n", "completeness_check"), ("x", "data_type_check"),
            ("s", "categorical_values_check"), ("", "extra_column_check")} <= kinds
    assert ("oh", "data_type_check") not in kinds  # '1.0' is an integral value of an Integral feature
    neg = [d for f, k, d in v if f == "x" and k == "data_type_check"]
    assert len(neg) == 1 and "non-negative" in neg[0] and "-3.0" in neg[0]
    assert parse_statistics(produced["captured_statistics"])["features"]["x"]["min"] == -3.0


@pytest.mark.slow  # Spark
def test_drift_file_says_which_distances_are_checked(produced):
    d = produced["drift"]
    assert {"feature", "distance", "threshold", "checked"} <= set(d.columns) and d.checked.all()
    above = sorted(d.feature[d.checked & (d.distance > d.threshold)])
    assert above == drift_violations(produced["violations"])


def test_drift_labels_match_the_check_and_one_hot_groups_are_unchecked():
    cons = {"features": [{"name": "n", "inferred_type": "Integral"}, {"name": "c=a", "inferred_type": "Integral"},
                         {"name": "c=b", "inferred_type": "Integral"}],
            "monitoring_config": {"distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.15}}}
    base = pd.DataFrame({"n": range(100), "c=a": [1, 0] * 50, "c=b": [0, 1] * 50})
    cap = pd.DataFrame({"n": [str(v) for v in range(60, 100)], "c=a": ["1"] * 40, "c=b": ["0"] * 40})
    types = {"n": "Integral", "c=a": "Integral", "c=b": "Integral"}
    drift = label_drift(drift_distances(base, cap, types, {"c": ["c=a", "c=b"]}), cons)
    assert drift.set_index("feature").checked.to_dict() == {"n": True, "c=a": True, "c=b": True, "c": False}
    assert np.isnan(drift.set_index("feature").loc["c", "threshold"])
    st = {"dataset": {"item_count": 40}, "features": [{"name": f, "numerical_statistics": {"common": {"num_present": 40}}} for f in types]}
    v = check_constraints(cons, st, {}, drift)
    assert sorted(drift.feature[drift.checked & (drift.distance > drift.threshold)]) == drift_violations({"violations": v})
    assert "feature_baseline_drift_c" not in data_quality_metrics({"drift": drift, "violations": v})


def test_drift_over_time_keeps_checked_distances_in_old_and_new_layout(tmp_path):
    L = Lake(tmp_path)
    old = pd.DataFrame({"feature": ["n", "c"], "inferred_type": ["Integral", "Categorical (one-hot)"],
                        "distance": [0.05, 0.4], "method": ["ks_2samp", "jensenshannon"]})  # written before labels
    new = old.assign(distance=[0.3, 0.2], threshold=[0.15, np.nan], checked=[True, False])
    for h, d in [("2026-01-05T08", old), ("2026-01-05T09", new)]:  # an older lake: <schedule>/<analysed hour>/
        L.write_bytes(d.to_csv(index=False).encode(), "monitoring", "t", "s", h, "drift.csv")
    L.write_bytes(new.assign(distance=[0.5, 0.1]).to_csv(index=False).encode(),  # SageMaker's: <endpoint>/<schedule>/yyyy/mm/dd/hh
                  "monitoring", "t", "e", "s", "2026", "01", "05", "11", "drift.csv")
    L.write_bytes(b"{}", "monitoring", "t", "e", "s", "2026", "01", "05", "12", "statistics.json")  # no drift.csv: not listed
    t = drift_over_time(L, "t", "e", "s")  # rows: the executions' scheduled hours (an old folder's hour + 1)
    assert list(t.index) == ["2026-01-05T09", "2026-01-05T10", "2026-01-05T11"]
    assert list(t.columns) == ["n"] and t.n.tolist() == [0.05, 0.3, 0.5]
    every = drift_over_time(L, "t", "e", "s", checked_only=False)
    assert sorted(every.columns) == ["c (not checked)", "n"] and every["c (not checked)"].tolist() == [0.4, 0.2, 0.1]
    assert drift_over_time(L, "t", "e", "s", hours=["2026-01-05T11:00Z"]).n.tolist() == [0.5]
    with pytest.raises(Exception, match="executions found are"): drift_over_time(L, "t", "e", "s", hours=["2026-01-05T12"])
    assert list(monitoring_reports(L, "t", "e", "s")) == ["2026-01-05T12"]  # statistics.json: the new-layout one only
    assert drift_over_time(L, "t", "other-endpoint", "other-schedule").empty


# --- (b) SageMaker's format, hand-written from the documented schema -----------------------------------------------

def test_sagemaker_statistics_are_read():
    st = read_statistics(DATA/"statistics.json")
    assert st["version"] == 0.0 and st["dataset"]["item_count"] == 6
    by = {f["name"]: f for f in st["features"]}
    assert {k: f["inferred_type"] for k, f in by.items()} == {"trips": "Integral", "fare": "Fractional",
                                                              "payment": "String", "note": "Unknown"}
    for name in ("trips", "fare"):
        ns = by[name]["numerical_statistics"]
        assert_kll({"present": ns["common"]["num_present"], "min": ns["min"], "max": ns["max"],
                    "buckets": [(b["lower_bound"], b["upper_bound"], b["count"]) for b in ns["distribution"]["kll"]["buckets"]],
                    **ns["distribution"]["kll"]["sketch"]["parameters"], "data": ns["distribution"]["kll"]["sketch"]["data"]})
    assert read_statistics((DATA/"statistics.json").read_text()) == st  # JSON text reads the same
    cons = suggest_constraints(DATA/"statistics.json")
    by_c = {f["name"]: f for f in cons["features"]}
    assert by_c["fare"]["completeness"] == 5 / 6 and by_c["payment"]["string_constraints"] == {"domains": ["card", "cash"]}
    assert by_c["note"] == {"name": "note", "inferred_type": "Unknown", "completeness": 0.0}


def test_sagemaker_constraints_current_and_older_spelling_are_read():
    cur, old = read_constraints(DATA/"constraints.json"), read_constraints(DATA/"constraints_legacy.json")
    for c in (cur, old):
        assert c["version"] == 0.0 and parse_constraints(c)["config"]["perform_comparison"] == "Enabled"
    assert parse_constraints(old)["config"] == {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled",
                                                "datatype_check_threshold": 1.0, "domain_content_threshold": 1.0,
                                                "perform_comparison": "Enabled", "comparison_threshold": 0.2,
                                                "comparison_method": "Simple"}
    assert old["monitoring_config"]["distribution_constraints"]["min_domain_mass"] == 1.0
    assert {f["name"]: f.get("monitoringConfigOverrides") for f in old["features"]} == {
        "trips": None, "payment": {"evaluate_constraints": "Disabled", "emit_metrics": "Enabled"}}
    assert {f["name"]: f.get("monitoringConfigOverrides") for f in cur["features"]} == {
        "trips": None, "fare": {"evaluate_constraints": "Disabled"}, "payment": None}
    assert [checked_threshold(cur, f) for f in ("trips", "fare", "payment", "nope")] == [0.1, None, 0.3, None]
    assert [checked_threshold(old, f) for f in ("trips", "payment")] == [0.2, None]


def test_sagemaker_files_drive_the_checks():
    st = json.loads((DATA/"statistics.json").read_text())
    st["features"][0]["numerical_statistics"]["min"] = -1.0  # captured: a negative trip count
    drift = pd.DataFrame({"feature": ["trips", "fare", "payment"], "distance": [0.25, 0.5, 0.25]})
    counts = {"trips": {"Integral": 5, "Fractional": 1, "Boolean": 0, "String": 0}}
    cur = check_constraints(json.loads((DATA/"constraints.json").read_text()), st, counts, drift)
    assert sorted((v["feature_name"], v["constraint_check_type"]) for v in cur) == [
        ("trips", "baseline_drift_check"), ("trips", "data_type_check"), ("trips", "data_type_check")]
    assert all(v["constraint_check_type"] in CHECK_TYPES for v in cur)  # fare: disabled; payment: 0.25 <= 0.3
    old = check_constraints(DATA/"constraints_legacy.json", DATA/"statistics.json", {}, drift)  # paths read too
    assert [(v["feature_name"], v["constraint_check_type"]) for v in old] == [("trips", "baseline_drift_check")]
    old = check_constraints(DATA/"constraints_legacy.json", st, {}, drift.assign(distance=[0.2, 0.5, 0.9]))
    assert [(v["feature_name"], v["constraint_check_type"]) for v in old] == [("trips", "data_type_check")]  # payment: disabled


def test_sagemaker_violations_are_read():
    doc = read_violations(DATA/"constraint_violations.json")
    v = parse_violations(doc)
    assert len(v) == 4 and all(k in CHECK_TYPES for _, k, _ in v)
    assert drift_violations(DATA/"constraint_violations.json") == ["fare"]
    assert read_violations({"violations": [{"constraint_check_type": "extra_column_check"}]})["violations"] == [
        {"feature_name": "", "description": "", "constraint_check_type": "extra_column_check"}]
    assert data_quality_metrics({"drift": pd.DataFrame({"feature": ["fare"], "distance": [0.42]}), **doc}) == {
        "feature_baseline_drift_fare": 0.42, "baseline_drift_check_violations": 1.0, "constraint_violations": 4.0}


def test_sagemaker_model_quality_statistics_are_read():
    doc = json.loads((DATA/"model_quality_statistics.json").read_text())  # the developer guide's binary example
    mq = parse_model_quality(doc)
    assert mq["item_count"] == 4 == sum(n for row in mq["confusion"].values() for n in row.values())
    assert np.isnan(mq["metrics"]["auc"][1])  # "NaN" as text: no standard deviation below 200 samples
    assert model_quality_metrics({"statistics": doc}) == {"auc": 1.0, "f1": 0.5, "precision": 0.3333333333333333,
                                                          "recall": 1.0, "accuracy": 0.5}
    cons = json.loads((DATA/"model_quality_constraints.json").read_text())
    v = parse_model_quality_violations({"violations": check_model_quality(doc, cons)})
    assert [(k, op) for k, op, _ in v] == [("precision", "LessThanThreshold"), ("f1", "LessThanThreshold")]
    assert v[0][2] == "Metric precision with 0.3333 +/- 0 was LessThanThreshold '0.5'"
    assert check_model_quality(doc, cons | {"binary_classification_constraints": {
        "false_positive_rate": {"threshold": 0.5, "comparison_operator": "GreaterThanThreshold"}}})[0]["metric_name"] == "false_positive_rate"


def _capture_tree(root: Path, endpoint: str, hour_parts: list, name: str, lines: list[str]) -> Path:
    "Capture records as SageMaker writes them: <root>/<endpoint>/AllTraffic/yyyy/mm/dd/hh/<name>.jsonl."
    d = root.joinpath(endpoint, "AllTraffic", *hour_parts); d.mkdir(parents=True, exist_ok=True)
    (d/f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return d/f"{name}.jsonl"


def test_documented_capture_and_ground_truth_are_read(tmp_path):
    lines = (DATA/"capture_documented.jsonl").read_text().splitlines()
    for k, line in enumerate(lines):
        hour = json.loads(line)["eventMetadata"]["inferenceTime"][:13].replace("-", "/").replace("T", "/").split("/")
        _capture_tree(tmp_path, "ep", hour, f"part-{k}", [line])
    assert capture_hours(tmp_path, "ep", "AllTraffic") == ["2022-02-14T17", "2022-02-14T18"]
    recs = read_hour(tmp_path, "ep", "AllTraffic", "2022-02-14T17")  # times without milliseconds; 18:00:00Z is the next hour
    assert [r["eventMetadata"]["eventId"][-1] for r in recs] == ["1", "2"]
    cap = captured_frame(recs, ["a", "b", "c"])
    assert cap.values.tolist() == [["69", "0", "153.7"], ["94", "23", "197.1"]]  # CSV and BASE64 inputs
    gt = [json.loads(l) for l in (DATA/"ground_truth_documented.jsonl").read_text().splitlines()]
    joined = join_ground_truth(recs, gt)  # record 1 by its eventId; record 2 by its inferenceId (not its eventId)
    assert joined[["inference_id", "label"]].values.tolist() == [["aaaaaaaa-bbbb-cccc-dddd-000000000001", 0], ["order-2", 1]]
    assert joined.probability.round(6).tolist() == [0.025418, 0.076755]  # text/csv; charset=utf-8, and BASE64 output
    moved = simulate_capture_hour(recs, tmp_path/"sim", "ep", "AllTraffic", "2026-01-05T08")  # no-millisecond times move too
    assert [r["eventMetadata"]["inferenceTime"] for r in read_capture(tmp_path/"sim", "ep")] == [
        "2026-01-05T08:00:00.000Z", "2026-01-05T08:00:14.000Z"] and len(moved) == 1


# --- (c) SageMaker's published test data (the SDK's tests/data/monitor/) ----------------------------------------------

def test_sdk_statistics_are_read():
    st = read_statistics(SDK/"statistics.json")
    assert st["version"] == 0.0 and st["dataset"]["item_count"] == 418
    (f,) = st["features"]
    assert (f["name"], f["inferred_type"]) == ("message", "String")
    ss = f["string_statistics"]
    assert ss["common"] == {"num_present": 418, "num_missing": 0} and ss["distinct_count"] == 1.0
    assert ss["distribution"]["categorical"]["buckets"] == [{"value": "preproc-not-YET-supported-for-csv-json", "count": 418}]
    mine = parse_statistics(json.loads((SDK/"statistics.json").read_text()))  # the minimal reader agrees
    assert mine["features"]["message"]["categories"] == {"preproc-not-YET-supported-for-csv-json": 418}
    cons = suggest_constraints(SDK/"statistics.json")
    assert cons["features"] == [{"name": "message", "inferred_type": "String", "completeness": 1.0,
                                 "string_constraints": {"domains": ["preproc-not-YET-supported-for-csv-json"]}}]


def test_sdk_constraints_in_the_older_spelling_are_read():
    c = read_constraints(SDK/"constraints.json")
    dc = c["monitoring_config"]["distribution_constraints"]
    assert dc == {"min_domain_mass": 1.0, "comparison_threshold": 1.0, "perform_comparison": "Enabled"}  # enable_comparisons: true
    assert (c["monitoring_config"]["datatype_check_threshold"], c["monitoring_config"]["domain_content_threshold"]) == (1.0, 1.0)
    by = {f["name"]: f for f in c["features"]}
    assert by["message"]["monitoringConfigOverrides"] == {"evaluate_constraints": "Enabled", "emit_metrics": "Enabled"}
    assert by["message"]["string_constraints"] == {"domains": ["preproc-not-YET-supported-for-csv-json"]}
    assert "monitoringConfigOverrides" not in by["second_message"] and by["second_message"]["completeness"] == 1.0
    assert [checked_threshold(c, f) for f in ("message", "second_message")] == [1.0, 1.0]
    st = read_statistics(SDK/"statistics.json")
    cap = pd.DataFrame({"message": ["preproc-not-YET-supported-for-csv-json"] * 3 + ["something else"]}, dtype=object)
    v = check_constraints(SDK/"constraints.json", st, {}, pd.DataFrame({"feature": ["message"], "distance": [0.25]}), cap)
    assert [(x["feature_name"], x["constraint_check_type"]) for x in v] == [("message", "categorical_values_check")]
    assert "Observed: 75.0%" in v[0]["description"]  # second_message: not in the statistics, not checked


def test_sdk_violations_are_read():
    doc = read_violations(SDK/"constraint_violations.json")
    v = parse_violations(doc)
    assert [f for f, *_ in v] == ["store_and_fwd_flag", "fare_amount", "total_amount", "congestion_surcharge",
                                  "tolls_amount", "extra", "tip_amount"]
    assert Counter(k for _, k, _ in v) == {"data_type_check": 5, "categorical_values_check": 1, "completeness_check": 1}
    assert all(k in CHECK_TYPES for _, k, _ in v) and v[3][2] == "Value: 0.0 does not meet the constraint requirement! "
    assert drift_violations(SDK/"constraint_violations.json") == []
    assert data_quality_metrics({"drift": pd.DataFrame({"feature": [], "distance": []}), **doc}) == {
        "baseline_drift_check_violations": 0.0, "constraint_violations": 7.0}


def _fill(path: Path, times: list[str]) -> list[str]:
    "The lines of a published file with its '{%s}' inferenceTime placeholders filled in, one time per line."
    lines = path.read_text().splitlines()
    assert len(lines) == len(times) and all(l.count('"{%s}"') == 1 for l in lines)
    return [l.replace("{%s}", t) for l, t in zip(lines, times)]


def test_sdk_capture_and_ground_truth_are_read_and_merged(tmp_path):
    times = [f"2026-01-05T08:{i:02d}:30Z" for i in range(44)]  # one a minute, stamped as the documented example (no ms)
    _capture_tree(tmp_path/"capture", "sdk-ep", ["2026", "01", "05", "08"], "capture", _fill(SDK/"capture.jsonl", times))
    assert capture_hours(tmp_path/"capture", "sdk-ep", "AllTraffic") == ["2026-01-05T08"]
    recs = read_hour(tmp_path/"capture", "sdk-ep", "AllTraffic", "2026-01-05T08")
    assert len(recs) == 44 and "inferenceId" not in recs[0]["eventMetadata"]
    cap = captured_frame(recs, [f"f{i}" for i in range(7)])
    assert cap.shape == (44, 7) and cap.attrs["row_widths"] == {7: 44}
    assert cap.iloc[0].tolist() == ["9", "45", "45", "42", "7", "5", "0"] and cap.iloc[-1].tolist() == ["0", "0", "7", "47", "2", "48", "18"]
    L = Lake(tmp_path/"lake")  # the labels arrive the next hour, in the documented groundtruth/yyyy/mm/dd/hh/ layout
    L.write_bytes(("\n".join(_fill(SDK/"actuals.jsonl", times)) + "\n").encode(), "groundtruth", "t", "2026", "01", "05", "09", "actuals.jsonl")
    gt = read_ground_truth(L, "t", ["2026-01-05T09"])
    assert len(gt) == 44
    joined = join_ground_truth(recs, gt)  # no inferenceId in the capture: matched by eventId, as Model Monitor's merge does
    assert len(joined) == 44 and joined.attrs == {"unlabelled": 0, "mismatched": 0}
    assert joined.iloc[0][["inference_id", "probability", "label"]].tolist() == ["74b0dd56-e7c8-368e-94b1-14a138a96000", 0.302709460258, 1]
    assert joined.label.sum() == 34 and joined.probability.max() == 0.714013934135
    run = model_quality_run(L, "t", "sdk-ep", "2026-01-05T08", joined, {"binary_classification_constraints": {}}, 0.5, wait_hours=1)
    mq = parse_model_quality(json.loads(Path(L.uri(*("monitoring", "t", "sdk-ep", "sdk-ep-model-quality", "2026", "01", "05", "10",
                                                       "statistics.json"))).read_text()))
    assert run["scheduled"] == "2026-01-05T10" and mq["item_count"] == 44
    assert mq["confusion"]["1"]["1"] + mq["confusion"]["1"]["0"] == 34 and mq["confusion"]["0"]["0"] + mq["confusion"]["0"]["1"] == 10


# --- (a) the files the project's writers put in a lake, found by SageMaker's layout alone -----------------------------

@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    "A lake holding what baseline_job, one hourly data-quality execution and one model-quality execution wrote."
    tmp = tmp_path_factory.mktemp("written")
    L, rng = Lake(tmp/"lake"), np.random.default_rng(7)
    n = 160
    train = pd.DataFrame({"label": rng.integers(0, 2, n), "calls": rng.poisson(3, n).astype("int64"),
                          "minutes": pd.array(np.where(np.arange(n) % 20 == 0, np.nan, rng.normal(180, 40, n).round(1)), dtype="Float64"),
                          "flag": rng.integers(0, 2, n).astype(float), "plan": rng.choice(["basic", "gold", "pro"], n)})
    d = L.local_path("features", "t", "version=v1", "train"); d.mkdir(parents=True)
    train.to_parquet(d/"data.parquet")
    baseline_job(spark, L, "t", {"version": "v1", "train": str(d)}, comparison_threshold=0.1)
    live = simulate_shift(train.drop(columns="label").iloc[:80].astype({"minutes": float}), ["minutes"], 3.0)
    live["plan"] = ["platinum" if i % 4 == 0 else p for i, p in enumerate(live["plan"])]  # outside the baseline's domain
    cap = DataCapture(tmp/"live", "e")
    recs = [cap.record(live.iloc[[i]].to_csv(header=False, index=False, na_rep="").encode(), "text/csv", b"0.5\n", "text/csv",
                       inference_id=f"r-{i}") for i in range(len(live))]
    simulate_capture_hour(recs, tmp/"capture", "e", "AllTraffic", "2026-01-05T08")
    dq = hourly_monitoring_run(spark, L, "t", "e-data-quality", tmp/"capture", "e", "AllTraffic", "2026-01-05T08", list(live.columns))
    y, p = rng.integers(0, 2, 300), rng.random(300)
    mq = model_quality_run(L, "t", "e", "2026-01-05T08", pd.DataFrame({"label": y, "probability": p}),
                           model_quality_constraints(model_quality_statistics(y, np.clip(y * 0.7 + p * 0.3, 0, 1)), {"auc": 0.05}), 0.5,
                           wait_hours=1)
    files = {f.relative_to(L.local_path("monitoring", "t")).as_posix(): f for f in L.local_path("monitoring", "t").rglob("*.json")}
    return {"L": L, "files": files, "dq": dq, "mq": mq, "n": n, "live": live}


@pytest.mark.slow  # Spark
def test_written_reports_are_in_sagemaker_layout(written):
    reports = {k: REPORT.fullmatch(k).groupdict() for k in written["files"] if not k.startswith("baseline/")}
    assert {k for k in written["files"] if k.startswith("baseline/")} == {"baseline/statistics.json", "baseline/constraints.json",
                                                                          "baseline/_manifest.json"}
    assert all(reports.values()), reports  # every report is <endpoint>/<schedule>/yyyy/mm/dd/hh/<file>
    assert sorted((r["schedule"], f"{r['y']}-{r['m']}-{r['d']}T{r['h']}", r["file"]) for r in reports.values()) == [
        ("e-data-quality", "2026-01-05T09", "constraint_violations.json"), ("e-data-quality", "2026-01-05T09", "statistics.json"),
        ("e-model-quality", "2026-01-05T10", "constraint_violations.json"), ("e-model-quality", "2026-01-05T10", "statistics.json")]
    assert {r["endpoint"] for r in reports.values()} == {"e"}
    assert written["dq"]["uri"] == written["L"].uri("monitoring", "t", *report_parts("e", "e-data-quality", "2026-01-05T09"))


@pytest.mark.slow  # Spark
def test_written_statistics_and_constraints_parse_with_documented_fields(written):
    f, n = written["files"], written["n"]
    base = parse_statistics(json.loads(f["baseline/statistics.json"].read_text()))
    run = parse_statistics(json.loads(f["e/e-data-quality/2026/01/05/09/statistics.json"].read_text()))
    assert (base["item_count"], run["item_count"]) == (n, 80)
    for st in (base, run):
        assert {k: v["type"] for k, v in st["features"].items()} == {"calls": "Integral", "minutes": "Fractional",
                                                                      "flag": "Integral", "plan": "String"}
        for name in ("calls", "minutes", "flag"):
            assert_kll(st["features"][name])  # buckets cover [min, max] and add up to num_present
        plan = st["features"]["plan"]
        assert sum(plan["categories"].values()) == plan["present"] == st["item_count"]
    assert base["features"]["minutes"]["missing"] == n // 20 and run["features"]["minutes"]["missing"] == 4
    assert run["features"]["minutes"]["max"] > 2 * base["features"]["minutes"]["max"]  # the shift (x3)
    c = parse_constraints(json.loads(f["baseline/constraints.json"].read_text()))
    assert c["features"]["plan"]["domains"] == ["basic", "gold", "pro"] and c["features"]["minutes"]["completeness"] == 1 - 1 / 20
    assert c["config"]["comparison_threshold"] == 0.1 and c["config"]["perform_comparison"] == "Enabled"


@pytest.mark.slow  # Spark
def test_written_violations_parse_with_documented_fields(written):
    f = written["files"]
    v = parse_violations(json.loads(f["e/e-data-quality/2026/01/05/09/constraint_violations.json"].read_text()))
    assert v and all(k in CHECK_TYPES and isinstance(d, str) and d for _, k, d in v)
    assert {("minutes", "baseline_drift_check"), ("plan", "categorical_values_check")} <= {(x, k) for x, k, _ in v}
    assert v == parse_violations(written["dq"])
    mq = parse_model_quality(json.loads(f["e/e-model-quality/2026/01/05/10/statistics.json"].read_text()))
    assert mq["item_count"] == 300 == sum(n for row in mq["confusion"].values() for n in row.values())
    assert {"auc", "f1", "precision", "recall", "accuracy"} <= set(mq["metrics"])
    mv = parse_model_quality_violations(json.loads(f["e/e-model-quality/2026/01/05/10/constraint_violations.json"].read_text()))
    assert [(k, op) for k, op, _ in mv] == [("auc", "LessThanThreshold")]  # random probabilities: AUC far below the baseline's
