"""Unit tests of ml_lifecycle.validate: real Spark and real Deequ on small DataFrames."""
import os
os.environ.setdefault("SPARK_VERSION", "3.5")

import pyspark.sql.functions as F
import pytest

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.platform.deequ import make_check, profile_columns, suggest_constraints, verify
from ml_lifecycle.validate import (
    QualityGateError, build_suite, check_spec, corrupt_copy, failed_checks, hand_written_checks,
    load_or_build_suite, quality_gate, range_checks, suggestion_to_check)
from ml_lifecycle.platform.schema import column_kinds, is_positive, label_sql, label_key, target_labels
from ml_lifecycle.platform.spark import load_version

SCHEMA = "x double, n long, c string, y string"
ROWS = [(float(i), i % 6, "abc"[i % 3], "yes" if i % 4 == 0 else "no") for i in range(60)]


@pytest.fixture(scope="module")
def clean(spark):
    return spark.createDataFrame(ROWS, SCHEMA).cache()


@pytest.fixture(scope="module")
def derived(spark, clean):
    "Profile, suggestions and the suite derived from the clean data (as the notebook does)."
    profile = profile_columns(spark, clean)
    suggestions = suggest_constraints(spark, profile, clean.count())
    kinds = column_kinds(clean.schema, ["y"])
    suite, reviewed = build_suite(suggestions, profile, kinds, "y", target_labels(clean, "y"), "yes")
    return {"profile": profile, "suggestions": suggestions, "kinds": kinds, "suite": suite, "reviewed": reviewed}


def _info(version="v1"):
    return {"version": version, "uri": "file:///nowhere", "manifest": "m", "rows": len(ROWS),
            "columns": ["x", "n", "c", "y"], "target": "y", "positive_label": "yes"}


# --- pure translation logic (no Spark) ---------------------------------------------------------

def test_suggestion_to_check_translations():
    kinds = {"numeric": ["n"], "categorical": ["c"], "other": []}
    prof = [{"column": "c", "histogram": {"b": 3, "a": 2, "NullValue": 1}}, {"column": "n", "histogram": {"1": 2}}]
    s = lambda rule, col, code="": {"suggesting_rule": rule, "column": col, "code_for_constraint": code}
    assert suggestion_to_check(s("CompleteIfCompleteRule", "c"), kinds, prof)[0]["constraint"] == "isComplete"
    assert suggestion_to_check(s("NonNegativeNumbersRule", "n"), kinds, prof)[0]["constraint"] == "isNonNegative"
    spec, _ = suggestion_to_check(s("CategoricalRangeRule", "c"), kinds, prof)
    assert spec["constraint"] == "isContainedIn" and spec["params"]["values"] == ["a", "b"]  # sorted, no NullValue
    assert suggestion_to_check(s("CategoricalRangeRule", "n"), kinds, prof)[0] is None        # numeric: range instead
    assert suggestion_to_check(s("CategoricalRangeRule", "c"), kinds, prof, max_categories=1)[0] is None
    spec, _ = suggestion_to_check(s("RetainCompletenessRule", "c", '.hasCompleteness("c", lambda x: x >= 0.87, "x")'), kinds, prof)
    assert spec["params"] == {"min": 0.87}
    spec, _ = suggestion_to_check(s("RetainTypeRule", "c", '.hasDataType("c", ConstrainableDataTypes.Integral)'), kinds, prof)
    assert spec["params"] == {"datatype": "Integral"}
    for rule in ("UniqueIfApproximatelyUniqueRule", "FractionalCategoricalRangeRule", "SomeFutureRule"):
        spec, why = suggestion_to_check(s(rule, "c"), kinds, prof)
        assert spec is None and why


def test_range_checks_widen_and_clip():
    prof = [{"column": "n", "data_type": "Integral", "minimum": 2.0, "maximum": 12.0},
            {"column": "f", "data_type": "Fractional", "minimum": -0.5, "maximum": 0.5},
            {"column": "c", "data_type": "String"}]
    r = {c["column"]: c["params"] for c in range_checks(prof, ["n", "f"], margin=0.5)}
    assert r == {"n": {"min": 0, "max": 17}, "f": {"min": -1.0, "max": 1.0}}


def test_check_spec_and_unknown_constraint():
    assert check_spec("isComplete", "x")["id"] == "isComplete:x"
    with pytest.raises(ValueError, match="unknown constraint"): check_spec("isFancy", "x")
    assert [c["constraint"] for c in hand_written_checks("y", ["no", "yes"], "yes")] == \
        ["hasSize", "isComplete", "isContainedIn", "hasPositiveShare"]


def test_load_or_build_suite_reuses_until_target_changes(tmp_path):
    lake = Lake(tmp_path)
    a = [check_spec("isComplete", "x")]
    assert load_or_build_suite(lake, "t", a, "v1", "y", ["0", "1"])["checks"] == a
    assert load_or_build_suite(lake, "t", [], "v2", "y", ["0", "1"])["built_from_version"] == "v1"   # reused
    assert load_or_build_suite(lake, "t", [], "v2", "y", ["0", "1", "yes"])["built_from_version"] == "v1"  # new labels: the gate's job
    assert load_or_build_suite(lake, "t", [], "v2", "y", ["0", "1"], rebuild=True)["checks"] == []  # rebuilt
    assert load_or_build_suite(lake, "t", a, "v3", "z", ["0", "1"])["target"] == "z"                # other target


# --- Spark + Deequ ------------------------------------------------------------------------------

@pytest.mark.slow
def test_profile_and_suggestions(derived):
    prof = {p["column"]: p for p in derived["profile"]}
    assert prof["x"]["minimum"] == 0.0 and prof["x"]["maximum"] == 59.0 and prof["x"]["completeness"] == 1.0
    assert set(prof["c"]["histogram"]) == {"a", "b", "c"}
    rules = {s["suggesting_rule"] for s in derived["suggestions"]}
    assert {"CompleteIfCompleteRule", "NonNegativeNumbersRule", "CategoricalRangeRule"} <= rules
    assert all({"column", "description", "code_for_constraint", "suggesting_rule"} <= set(s) for s in derived["suggestions"])


@pytest.mark.slow
def test_suite_from_real_suggestions(derived):
    ids = [c["id"] for c in derived["suite"]]
    assert ids[:4] == ["hasSize:*", "isComplete:y", "isContainedIn:y", "hasPositiveShare:y"]
    assert {"isComplete:x", "isNonNegative:x", "isInRange:x", "isContainedIn:c", "isComplete:c"} <= set(ids)
    assert "isContainedIn:n" not in ids                      # numeric few-valued column: no value list
    assert len(ids) == len(set(ids))
    dec = {(r["column"], r["suggesting_rule"]): r["decision"] for r in derived["reviewed"]}
    assert dec[("y", "CategoricalRangeRule")] == "dropped"   # the target has hand-written checks
    assert all(r["reason"] for r in derived["reviewed"])


@pytest.mark.slow
def test_clean_passes_and_moves_pointer(spark, clean, derived, tmp_path):
    lake = Lake(tmp_path)
    res = verify(spark, clean, derived["suite"])
    assert res["status"] == "Success" and res["failed"] == 0 and res["passed"] == res["constraints"] > 0
    doc = quality_gate(lake, "t", res, _info(), report="r.json")
    assert lake.pointer("t", "validated")["version"] == "v1"
    assert doc["checks"] == {"constraints": res["constraints"], "passed": res["constraints"], "failed": 0, "report": "r.json"}


@pytest.mark.slow
def test_corrupted_copy_fails_gate_and_pointer_unmoved(spark, clean, derived, tmp_path):
    lake = Lake(tmp_path)
    quality_gate(lake, "t", verify(spark, clean, derived["suite"]), _info("good"))
    before = lake.read_json("_pointers", "t", "validated.json")
    bad, changes = corrupt_copy(clean, "y", derived["kinds"], fraction=0.3, seed=1)
    assert changes and all(c["rows"] > 0 for c in changes)
    res = verify(spark, bad, derived["suite"])
    assert res["status"] == "Error"
    with pytest.raises(QualityGateError) as e:
        quality_gate(lake, "t", res, _info("bad"))
    assert "NOT moved" in str(e.value) and "constraint" in str(e.value) and "column" in str(e.value)
    assert {c["column"] for c in changes} <= set(e.value.failures.column)
    assert lake.read_json("_pointers", "t", "validated.json") == before


@pytest.mark.slow
@pytest.mark.parametrize("col,sql,constraint", [
    ("x", "CASE WHEN n = 1 THEN NULL ELSE x END", "isComplete"),
    ("x", "CASE WHEN n = 1 THEN -3.0 ELSE x END", "isNonNegative"),
    ("x", "CASE WHEN n = 1 THEN 1e9 ELSE x END", "isInRange"),
    ("c", "CASE WHEN n = 1 THEN 'zz' ELSE c END", "isContainedIn"),
    ("y", "CASE WHEN n = 1 THEN 'maybe' ELSE y END", "isContainedIn"),
    ("y", "'no'", "hasPositiveShare"),
])
def test_each_fault_is_caught_by_its_check(spark, clean, derived, col, sql, constraint):
    res = verify(spark, clean.withColumn(col, F.expr(sql)), derived["suite"])
    f = failed_checks(res)
    assert ((f.column == col) & (f.constraint == constraint)).any(), f


@pytest.mark.slow
def test_missing_column_fails_readably(spark, clean, derived):
    f = failed_checks(verify(spark, clean.drop("c"), derived["suite"]))
    assert any("does not include column c" in m for m in f.message)


@pytest.mark.slow
def test_warning_level_does_not_block(spark, clean, tmp_path):
    res = verify(spark, clean, [check_spec("isInRange", "x", level="Warning", min=0, max=1)])
    assert res["failed"] == 1 and failed_checks(res).empty
    quality_gate(Lake(tmp_path), "t", res, _info())


@pytest.mark.slow
def test_int_and_bool_targets(spark):
    ints = spark.createDataFrame([(1.0, 0), (2.0, 1), (3.0, 1)], "x double, y long")
    bools = spark.createDataFrame([(1.0, False), (2.0, True), (3.0, True)], "x double, y boolean")
    floats = spark.createDataFrame([(1.0, 0.0), (2.0, 1.0), (3.0, 1.0)], "x double, y double")
    for df, pos in ((ints, 1), (bools, "True"), (floats, "1")):
        labels = target_labels(df, "y")
        assert len(labels) == 2 and label_key(pos) in labels
        assert [r.p for r in df.select(is_positive(df, "y", pos).alias("p")).collect()] == [0, 1, 1]
        res = verify(spark, df, hand_written_checks("y", labels, label_key(pos), key_sql=label_sql("y", df.schema["y"].dataType)))
        assert res["failed"] == 0, [(r["id"], r["deequ_message"]) for r in res["results"]]


@pytest.mark.slow
def test_load_version_checks_columns(spark, clean, tmp_path):
    clean.write.parquet(str(tmp_path/"v"))
    info = {"uri": str(tmp_path/"v"), "columns": ["y", "x"]}
    assert load_version(spark, info).columns == ["y", "x"]
    with pytest.raises(ValueError, match="nope"):
        load_version(spark, {**info, "columns": ["x", "nope"]})


@pytest.mark.slow
def test_make_check_rejects_unknown(spark):
    with pytest.raises(ValueError, match="unknown constraint"):
        make_check(spark, {"id": "z", "constraint": "isFancy", "column": "x", "params": {}})


# --- the same steps as a processing job in SageMaker's Spark image (aws mode's path) -------------------------------------
def _raw_version(spark, lake: Lake, table: str, version: str, rows, created: str):
    "Write `rows` as raw version `version` (Parquet, manifest) and point `raw` at it, as 00_ingest does."
    import json as _json
    df = spark.createDataFrame(rows, SCHEMA)
    folder = lake.local_path("raw", table, f"version={version}")
    df.coalesce(1).write.mode("overwrite").parquet(str(folder))
    manifest = {"version": version, "created": created, "schema": [{"name": f.name, "type": f.dataType.simpleString()}
                                                                   for f in df.schema.fields]}
    (folder/"_manifest.json").write_text(_json.dumps(manifest))
    return lake.set_pointer(table, "raw", version=version, uri=str(folder), manifest=str(folder/"_manifest.json"),
                            rows=len(rows), columns=df.columns, target="y", positive_label="yes")


def test_validation_job_in_the_spark_image_finds_what_the_kernel_finds(spark, tmp_path):
    "run_validation_job (Spark image's environment, PyDeequ and the Deequ jar shipped) = validate_version in this kernel."
    from ml_lifecycle.validate import choose_suite, run_validation_job, validate_version
    L = Lake(tmp_path/"lake")
    raw = _raw_version(spark, L, "t", "v1", ROWS, "2026-01-01T00:00:00Z")
    job = run_validation_job(L, "t", raw, created_ms=1_767_225_600_000)
    here = validate_version(spark, load_version(spark, raw), "y", "yes", "v1", None, str(tmp_path/"here-metrics.json"),
                            1_767_225_600_000, table="t")
    assert job["new_suite"] and job["anomalies"] == []      # a table's first version: a new suite, no history
    assert job["suite"] == here["suite"] and job["kinds"] == here["kinds"] and job["labels"] == here["labels"]
    assert [(r["id"], r["status"]) for r in job["result"]["results"]] == [(r["id"], r["status"]) for r in here["result"]["results"]]
    assert job["result"]["metrics"] == here["result"]["metrics"]
    entries = L.read_json("quality", "t", "version=v1", "_job", "metrics.json")
    assert [e["resultKey"]["tags"] for e in entries] == [{"version": "v1"}]   # the repository with this version's entry
    # a second version against that repository and the saved suite: the suite is reused, the anomaly checks run
    L.write_json(job["suite"], "quality", "t", "checks.json")
    L.write_bytes(L.read_bytes("quality", "t", "version=v1", "_job", "metrics.json"), "quality", "t", "metrics.json")
    raw2 = _raw_version(spark, L, "t", "v2", ROWS[:20], "2026-01-02T00:00:00Z")
    job2 = run_validation_job(L, "t", raw2, created_ms=1_767_312_000_000)
    assert not job2["new_suite"] and job2["suite"] == choose_suite(job["suite"], [], "t", "v2", "y", ["no", "yes"])
    size = next(r for r in job2["result"]["results"] if r["id"] == "anomaly:Size:*")
    assert size["status"] == "Failure" and size["level"] == "Warning"   # 60 → 20 rows: below half the previous count


def test_validation_job_can_fail_on_error_level_checks(spark, tmp_path):
    "With fail_on_error (the pipeline's Validate step), a version that fails an error-level check fails the job itself, naming the checks."
    from ml_lifecycle.platform.sagemaker_local import JobError
    from ml_lifecycle.validate import run_validation_job
    L = Lake(tmp_path/"lake")
    job = run_validation_job(L, "t", _raw_version(spark, L, "t", "v1", ROWS, "2026-01-01T00:00:00Z"),
                             created_ms=1_767_225_600_000, fail_on_error=True)  # clean data: the job succeeds
    L.write_json(job["suite"], "quality", "t", "checks.json")
    bad = [(x, n, c, "maybe" if i < 3 else y) for i, (x, n, c, y) in enumerate(ROWS)]  # a label the suite does not know
    raw2 = _raw_version(spark, L, "t", "v2", bad, "2026-01-02T00:00:00Z")
    with pytest.raises(JobError, match=r"QualityGateError: \d+ error-level check\(s\) failed on version v2"):
        run_validation_job(L, "t", raw2, created_ms=1_767_312_000_000, fail_on_error=True)
    assert run_validation_job(L, "t", raw2, created_ms=1_767_312_000_000)["result"]["passed"] >= 0  # without it: a report, no failure
