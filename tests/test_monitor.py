"Unit tests of ml_lifecycle.monitor: PyDeequ baseline in Model Monitor's format, captured data, violations (real Spark)."
import base64, json

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.platform.endpoint import DataCapture
from ml_lifecycle.monitor import (baseline_job, captured_frame, drift_distances, monitoring_run, simulate_shift,
                                  suggest_constraints, pick_shift_features)

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
                                                      "flag": "Fractional", "plan": "String"}
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
