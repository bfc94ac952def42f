"""Unit tests of the data rules (ml_lifecycle.platform.schema): one rule for Python, Spark SQL and Deequ."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pyspark.sql import types as T

from ml_lifecycle.platform.config import ParameterError, make_params
from ml_lifecycle.platform.schema import (DataError, check_target, clean_columns, clean_name, column_kinds, is_positive,
                                          label_key, label_text, resolve_column, resolve_label, target_labels)


@given(st.text(max_size=30))
def test_clean_name_is_idempotent_and_safe(name):
    c = clean_name(name)
    assert clean_name(c) == c and c and not c[0].isdigit()
    assert all(ch.isalnum() or ch == "_" for ch in c) and c == c.lower()


@pytest.mark.parametrize("given_name", ["Bad Loan", "bad_loan"])
def test_resolve_column_either_spelling(given_name):
    assert resolve_column(given_name, ["Loan ID", "Bad Loan"]) == "bad_loan"


def test_resolve_column_error_lists_both_spellings():
    with pytest.raises(DataError) as e: resolve_column("Status ", ["Status", "amount"], "facet")
    assert "`facet`='Status '" in str(e.value) and "'Status (or status)'" in str(e.value) and "'amount'" in str(e.value)


VALUES = {  # Spark type → values of that type, missing included
    "boolean": [True, False, None], "bigint": [0, 1, -3, None], "int": [1, 0, None],
    "double": [1.0, 0.0, 0.5, -2.25, 123456789.0, 0.001, None, float("nan")], "float": [1.0, 0.5, None],
    "string": ["yes", " no ", "TRUE", "False", "1", "1.0", "", None],
}


@pytest.mark.slow
@pytest.mark.parametrize("spark_type", list(VALUES))
def test_label_key_same_in_python_and_spark(spark, spark_type):
    "The label key of every value is the same whether pandas (label_key) or Spark SQL (label_text) computes it."
    vals = VALUES[spark_type]
    df = spark.createDataFrame([(v,) for v in vals], f"t {spark_type}")
    spark_keys = [r[0] for r in df.select(label_text("t", df.schema["t"].dataType)).collect()]
    python_keys = [label_key(np.float32(v) if spark_type == "float" and v is not None else v) for v in vals]
    assert spark_keys == python_keys


@pytest.mark.slow
def test_is_positive_and_labels_for_each_target_kind(spark):
    for spark_type, vals, pos in [("boolean", [True, False], "1"), ("double", [1.0, 0.0], "1"),
                                  ("bigint", [1, 0], "1.0"), ("string", ["bad", "good"], "bad")]:
        df = spark.createDataFrame([(v,) for v in vals * 3], f"t {spark_type}")
        key = resolve_label(pos, vals)
        assert key in target_labels(df, "t")
        assert [r[0] for r in df.select(is_positive(df, "t", key)).collect()] == [1, 0] * 3


@pytest.mark.parametrize("pos,values,key", [("1", [0, 1], "1"), ("1.0", [0, 1], "1"), (1, [0.0, 1.0], "1"),
                                            ("True", [True, False], "true"), ("1", [True, False], "true"),
                                            ("0", [True, False], "false"), ("yes", ["no", "yes"], "yes")])
def test_resolve_label(pos, values, key):
    assert resolve_label(pos, values) == key


def test_resolve_label_refuses_near_misses():
    with pytest.raises(DataError, match=r"pass one of \['no', 'yes'\]"): resolve_label("Yes", ["no", "yes"])
    with pytest.raises(DataError): resolve_label("2", [True, False])


def test_check_target_errors_name_the_values():
    df = pd.DataFrame({"y": ["a", "b", "c"] * 20, "x": range(60)})
    with pytest.raises(DataError, match=r"has 3 distinct values \['a', 'b', 'c'\]"): check_target(df, "y", "a")
    with pytest.raises(DataError, match="has 1 distinct values"): check_target(df.assign(y="a"), "y", "a")
    with pytest.raises(DataError, match="too few rows"): check_target(df.head(12).assign(y=["a"] * 10 + ["b"] * 2), "y", "a")
    ok = check_target(df.assign(y=[True, False] * 30), "y", "1")
    assert ok == {"target": "y", "positive_label": "true", "counts": {"false": 30, "true": 30}}


def test_column_kinds_from_schema():
    s = T.StructType([T.StructField("a", T.DecimalType(10, 2)), T.StructField("b", T.BooleanType()),
                      T.StructField("c", T.TimestampType()), T.StructField("y", T.StringType())])
    assert column_kinds(s, ["y"]) == {"numeric": ["a"], "categorical": ["b"], "other": ["c"]}


def test_make_params_resolves_capitalised_target(tmp_path):
    "A dataset with capitalised names runs with the target in either spelling; every stage gets the lake's name."
    csv = tmp_path/"loans.csv"
    pd.DataFrame({"Loan ID": range(50), "Amount": np.arange(50) * 10.0, "Status": ["Default", "Paid"] * 25}).to_csv(csv, index=False)
    for t in ("Status", "status"):
        p = make_params(dataset=str(csv), target=t, positive_label="Default")
        assert (p.target, p.positive_label) == ("status", "Default")
    with pytest.raises(ParameterError, match=r"pass one of \['Default', 'Paid'\]"):
        make_params(dataset=str(csv), target="Status", positive_label="default")


@pytest.mark.parametrize("content,says", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "cannot be read as CSV"),
    (b"", "cannot be read as CSV"),
    (b"only_one_column\n1\n2\n", "pass a table with a target column"),
])
def test_bad_files_are_refused(tmp_path, content, says):
    f = tmp_path/"data.csv"; f.write_bytes(content)
    with pytest.raises(ParameterError, match=says): make_params(dataset=str(f), target="y", positive_label="1")
