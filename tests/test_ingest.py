"Unit tests for ml_lifecycle.ingest: missing targets, amplification, explicit schema, schema drift, Glue and S3 options."
import json

import numpy as np
import pandas as pd
import pytest

from ml_lifecycle.ingest import (SchemaDriftError, amplify_rows, apply_schema, arrow_schema, drop_missing_target,
                                 glue_request, glue_table, ingest, register_glue_table, load_schema, s3_write_options, secure_lake)
from ml_lifecycle.platform.storage import Lake


@pytest.fixture
def src():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"n": rng.integers(0, 50, 200), "v": rng.normal(10, 2, 200).round(2),
                         "c": rng.choice(["a", "b", None], 200), "y": rng.choice(["no", "yes", None], 200, p=[.6, .3, .1])})


def test_drop_missing_target_counts(src):
    out, n = drop_missing_target(src, "y")
    assert n == src.y.isna().sum() > 0 and len(out) == len(src) - n and out.y.notna().all()


def test_amplify_is_seeded_jittered_and_typed(src):
    a, b = amplify_rows(src, 5000, seed=3, keep=("y",)), amplify_rows(src, 5000, seed=3, keep=("y",))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 5000 and (a.dtypes == src.dtypes).all()
    assert a.v.between(src.v.min(), src.v.max()).all() and a.n.between(src.n.min(), src.n.max()).all()
    assert a.v.nunique() > src.v.nunique()            # not only duplicates
    assert abs(a.y.eq("yes").mean() - src.y.eq("yes").mean()) < 0.03
    assert not a.equals(amplify_rows(src, 5000, seed=4, keep=("y",)))


def test_explicit_schema(src, tmp_path):
    (tmp_path/"s.json").write_text(json.dumps({"y": "string", "n": "double", "c": "string"}))
    s = load_schema(str(tmp_path/"s.json"))
    df = apply_schema(src, s)
    assert list(df.columns) == ["y", "n", "c"]
    assert [c["type"] for c in arrow_schema(df)] == ["string", "double", "string"]
    with pytest.raises(ValueError, match="lacks"): apply_schema(src, {"zz": "double"})


def test_schema_drift_fails_unless_accepted(src, tmp_path):
    lake = Lake(str(tmp_path/"lake"))
    df, _ = drop_missing_target(src, "y")
    m1 = ingest(df, lake, "t", "s1", "y", "yes")
    assert lake.read_json("catalog", "t.schema.json")["columns"] == m1["schema"]
    drifted = df.assign(n=df.n.astype(float) / 2, extra=1)
    with pytest.raises(SchemaDriftError, match="schema drift") as e: ingest(drifted, lake, "t", "s2", "y", "yes")
    assert '"added": ["extra"]' in str(e.value) and "int64 → double" in str(e.value)
    assert lake.pointer("t", "raw")["version"] == m1["version"]          # nothing moved
    m2 = ingest(drifted, lake, "t", "s2", "y", "yes", accept_schema_change=True)
    assert lake.pointer("t", "raw")["version"] == m2["version"] != m1["version"]


def test_register_glue_table_on_a_fresh_account(monkeypatch):
    "A fresh account has no Glue database: it is created, then the table; a second run updates the table."
    import boto3
    from moto import mock_aws
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    ti = glue_table("t", [{"name": "x", "type": "int64"}, {"name": "y", "type": "string"}], "s3://b/raw/t/")
    with mock_aws():
        assert register_glue_table("ml_lifecycle", ti, "us-east-1") == "CreateTable"
        assert register_glue_table("ml_lifecycle", ti, "us-east-1") == "UpdateTable"
        glue = boto3.client("glue", region_name="us-east-1")
        assert glue.get_database(Name="ml_lifecycle")["Database"]["Name"] == "ml_lifecycle"
        cols = glue.get_table(DatabaseName="ml_lifecycle", Name="t")["Table"]["StorageDescriptor"]["Columns"]
        assert [c["Name"] for c in cols] == ["x", "y"]


def test_glue_request_validates_offline():
    from botocore.exceptions import ParamValidationError
    ti = glue_table("t", [{"name": "x", "type": "int64"}], "s3://b/raw/t/")
    assert glue_request("db", ti) == ("CreateTable", {"DatabaseName": "db", "TableInput": ti})
    with pytest.raises(ParamValidationError): glue_request("db", {**ti, "StorageDescriptor": {"Columns": "x"}})


def test_s3_write_options(tmp_path):
    assert s3_write_options("k", {"p": "x y"}) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k", "Tagging": "p=x+y"}
    assert secure_lake(Lake(str(tmp_path)), "k", {"a": 1}) == {}   # local lakes are unchanged
