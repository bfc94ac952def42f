"""Conformance of ml_lifecycle.monitor's files with SageMaker Model Monitor's documented formats.

(a) What the project writes (statistics.json, constraints.json, constraint_violations.json) for a small fixed
Spark DataFrame is read back by a minimal reader written here from the documented field names alone
(docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html, ...-byoc-constraints.html,
...-interpreting-violations.html), and its content holds: KLL buckets cover [min, max] and add up to num_present,
the sketch has parameters c, k and data, types are Integral / Fractional / String as SageMaker infers them.
(b) Files in SageMaker's format, hand-written from the documented schema (tests/data/monitor/, one of them in the
older spelling of published samples), are read by the project's readers and drive its checks.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.monitor import (check_constraints, checked_threshold, compute_statistics, data_quality_metrics,
                                  drift_distances, drift_over_time, drift_violations, infer_types, label_drift,
                                  monitoring_reports, read_constraints, read_statistics, read_violations,
                                  suggest_constraints)

DATA = Path(__file__).parent/"data"/"monitor"
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
