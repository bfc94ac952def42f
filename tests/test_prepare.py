"Unit tests of the feature pipeline (ml_lifecycle.prepare): real Spark, on a small synthetic dataset with the usual traps."
import json, math, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
import pytest

from ml_lifecycle.platform.schema import column_kinds
from ml_lifecycle.platform.storage import Lake, LakeError
from ml_lifecycle.prepare import (LABEL, MISSING, SPLITS, add_label, assign_splits, check_fractions,
                                  encode, encoder_metadata, features_version, fit_encoder, main, prepare_features,
                                  run_prepare, screen_columns, split_counts)
from ml_lifecycle.platform.encoding import transform_rows

T, TARGET, POS = "toy", "y", "churned"
KEYS = {"version", "uri", "train", "validation", "test", "metadata", "n_features"}


def toy_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    "Churn-like data with missing values, an identifier, a copy of the target, a near-leak and rare levels."
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype("float64"); age[rng.random(n) < 0.05] = np.nan
    income = rng.lognormal(10, 0.5, n); income[rng.random(n) < 0.08] = np.nan
    plan = rng.choice(["basic", "plus", "pro", None], n, p=[0.5, 0.3, 0.15, 0.05])
    city = rng.choice(["Ames", "Bend", "Cary", "Dover", "Erie"], n).astype(object)
    rare = rng.random(n) < 0.03                       # ~36 rows with a level of their own
    city[rare] = [f"Town{i}" for i in range(rare.sum())]
    z = 0.04 * (np.nan_to_num(age, nan=45) - 45) + (plan == "basic") * 0.8 + rng.normal(0, 1, n)
    churned = z > np.quantile(z, 0.8)
    y = np.where(churned, "churned", "stayed")
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],   # identifier
        "age": age, "income": income, "plan": plan, "city": city,
        "vip": rng.random(n) < 0.2,                        # boolean → categorical
        "refund_issued": np.where(rng.random(n) < 0.003, ~churned, churned).astype("int64"),  # near-perfect leak
        "y_copy": y,                                       # the target again
        TARGET: y})


def make_lake(root: Path, df: pd.DataFrame, table: str = T, version: str = "v000toy") -> Lake:
    "A lake with raw data and a `validated` pointer in the contract's shape."
    L = Lake(root)
    folder = L.local_path("raw", table, f"version={version}"); folder.mkdir(parents=True)
    df.to_parquet(folder/"part-00000.parquet", index=False)
    (folder/"_manifest.json").write_text(json.dumps({"table": table, "version": version, "rows": len(df)}))
    (folder/"_SUCCESS").touch()
    L.set_pointer(table, "validated", version=version, uri=L.spark_uri("raw", table, f"version={version}"),
                  manifest=L.uri("raw", table, f"version={version}", "_manifest.json"), rows=len(df),
                  columns=list(df.columns), target=TARGET, positive_label=POS, checks={})
    return L



@pytest.fixture(scope="module")
def toy(tmp_path_factory): return toy_frame()

@pytest.fixture(scope="module")
def lake(tmp_path_factory, toy): return make_lake(tmp_path_factory.mktemp("prep")/"lake", toy)

@pytest.fixture(scope="module")
def prepared(spark, lake, tmp_path_factory):
    "One run of the pipeline on the toy data: (output folder, metadata)."
    out = tmp_path_factory.mktemp("out")/"a"
    meta = prepare_features(spark, lake.pointer(T, "validated")["uri"], out, TARGET, POS, seed=7, source_version="v000toy")
    return out, meta

@pytest.fixture(scope="module")
def split_rows(spark, lake):
    "The raw rows with their split (same seed as `prepared`), ordered as the files are."
    raw = spark.read.parquet(lake.pointer(T, "validated")["uri"])
    return assign_splits(add_label(raw, TARGET, POS), 7).orderBy("split", "__u", "__key").toPandas()


# --- the contract ---------------------------------------------------------------------------------------------------
def test_layout_and_metadata(prepared):
    out, meta = prepared
    assert sorted(p.name for p in out.iterdir()) == ["feature_metadata.json", "test", "train", "validation"]
    for s in SPLITS: assert sorted(p.name for p in (out/s).iterdir()) == ["data.csv", "data.parquet"]
    on_disk = json.loads((out/"feature_metadata.json").read_text())
    assert on_disk == meta
    for k in ("label", "target", "positive_label", "features", "numeric", "categorical", "encoding", "impute",
              "source_version", "splits", "seed"):
        assert k in meta, k
    assert (meta["label"], meta["target"], meta["positive_label"], meta["encoding"], meta["seed"]) == \
           ("label", TARGET, POS, "one-hot", 7)
    assert meta["numeric"] == ["age", "income"]
    assert list(meta["categorical"]) == ["plan", "city", "vip"]
    assert meta["categorical"]["vip"] == ["false", "true"]
    assert meta["features"] == ["age", "income"] + [f"{c}={l}" for c, ls in meta["categorical"].items() for l in ls]
    assert set(meta["impute"]) == {"age", "income", "plan", "city", "vip"} and meta["impute"]["plan"] == MISSING
    assert sum(meta["splits"].values()) == 1200


def test_csv_is_xgboost_ready(prepared):
    out, meta = prepared
    for s in SPLITS:
        csv = pd.read_csv(out/s/"data.csv", header=None)
        pq = pd.read_parquet(out/s/"data.parquet")
        assert list(pq.columns) == [LABEL, *meta["features"]]
        assert csv.shape == pq.shape == (meta["splits"][s], 1 + len(meta["features"]))
        assert set(csv[0]) == {0, 1} and csv[0].dtype == np.int64           # label first, as 0/1
        assert not csv.isna().any().any()                                    # everything imputed
        np.testing.assert_array_equal(csv.to_numpy(), pq.to_numpy())
    assert not (out/"train"/"data.csv").read_text().startswith("label")    # no header


# --- splits ---------------------------------------------------------------------------------------------------------
def test_stratified_sizes_and_rates(prepared):
    _, meta = prepared
    n = sum(meta["splits"].values())
    for s, f in zip(SPLITS, (0.7, 0.15, 0.15)): assert abs(meta["splits"][s] / n - f) < 0.005
    rates = meta["label_rate"]
    assert max(rates.values()) - min(rates.values()) < 0.01, rates
    assert abs(rates["train"] - 0.2) < 0.005


def test_no_overlap_and_complete(split_rows, toy):
    ids = {s: set(split_rows.customer_id[split_rows.split == s]) for s in SPLITS}
    assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"]) and not (ids["validation"] & ids["test"])
    assert set().union(*ids.values()) == set(toy.customer_id)


def test_split_ignores_partitioning_and_follows_seed(spark, toy):
    sdf = add_label(spark.createDataFrame(toy.drop(columns=["vip"])), TARGET, POS)
    a = assign_splits(sdf, 1).select("customer_id", "split")
    b = assign_splits(sdf.repartition(5, "age").sortWithinPartitions("income"), 1).select("customer_id", "split")
    c = assign_splits(sdf, 2).select("customer_id", "split")
    assert a.exceptAll(b).count() == 0
    assert a.exceptAll(c).count() > 100            # another seed, another split


def test_job_spark_keeps_a_set_shuffle_size(spark):
    "A processing job's session: a shuffle size set by the caller's configuration stays (only an unset one is sized)."
    from ml_lifecycle.platform.job_code import job_spark
    assert job_spark().conf.get("spark.sql.shuffle.partitions") == spark.conf.get("spark.sql.shuffle.partitions")


def test_duplicates_straddling_a_cut_are_divided_exactly(spark):
    "Few distinct rows, many copies: shares stay exact (copies of one row split between two splits), as one sort per class."
    from pyspark.sql import Window
    from ml_lifecycle.prepare import row_hashes, split_thresholds
    sdf = spark.createDataFrame([(i % 3, int(i % 4 == 0)) for i in range(1000)], "x long, label int")
    th = split_thresholds(row_hashes(sdf, 5), (0.7, 0.15, 0.15))
    assert any(t[2] < t[3] for ts in th.values() for t in ts)            # 6 distinct rows: the cuts fall inside groups
    got = {(r[0], r[1]): r[2] for r in assign_splits(sdf, 5).groupBy(LABEL, "split").count().collect()}
    for y, n in ((0, 750), (1, 250)):
        assert (got[(y, "train")], got[(y, "validation")], got[(y, "test")]) == \
               (int(n * 0.7 + 0.5), int(n * 0.85 + 0.5) - int(n * 0.7 + 0.5), n - int(n * 0.85 + 0.5))
    rank = F.row_number().over(Window.partitionBy(LABEL).orderBy("__u", "__key")) - 1
    n = F.count(F.lit(1)).over(Window.partitionBy(LABEL))
    plain = row_hashes(sdf, 5).withColumn("split", F.when(rank < F.floor(n * 0.7 + 0.5), "train")
                                                 .when(rank < F.floor(n * 0.85 + 0.5), "validation").otherwise("test"))
    key = lambda d: sorted(tuple(r) for r in d.groupBy(LABEL, "split", "__key").count().collect())
    assert key(assign_splits(sdf, 5)) == key(plain)


def test_check_fractions():
    assert check_fractions([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)
    for bad in [(0.7, 0.3), (0.7, 0.3, 0.0), (0.8, 0.15, 0.15), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="sum to 1"): check_fractions(bad)


# --- screening ------------------------------------------------------------------------------------------------------
def test_leakage_check_flags_id_and_label_copies(prepared):
    _, meta = prepared
    ex = meta["excluded"]
    assert ex["customer_id"].startswith("identifier"), ex
    assert ex["y_copy"] == "leak: a copy of the target"
    assert ex["refund_issued"].startswith("leak: single-feature AUC"), ex
    assert set(ex) == {"customer_id", "y_copy", "refund_issued"}
    assert not any(f.startswith(("customer_id", "y_copy", "refund_issued")) for f in meta["features"])
    rows = {r["column"]: r for r in meta["screening"]}
    assert rows["refund_issued"]["auc"] > 0.99 and rows["age"]["auc"] < 0.9


def test_keep_leaks_keeps_but_reports(spark, lake):
    raw = spark.read.parquet(lake.pointer(T, "validated")["uri"])
    train = assign_splits(add_label(raw, TARGET, POS), 7).where(F.col("split") == "train")
    rep = screen_columns(train, column_kinds(raw.schema, [TARGET]), TARGET, drop_leaks=False).set_index("column")
    assert rep.action["y_copy"] == "keep (flagged)" and rep.action["refund_issued"] == "keep (flagged)"
    assert rep.action["customer_id"] == "drop"                 # identifiers are never kept


def test_numeric_label_copy_and_constant(spark):
    pdf = pd.DataFrame({"t": ["a", "b"] * 100, "x": np.arange(200.0), "k": ["same"] * 200})
    sdf = add_label(spark.createDataFrame(pdf), "t", "a").withColumn("lbl", F.col(LABEL) * 1.0)
    sdf = assign_splits(sdf, 0)
    rep = screen_columns(sdf, column_kinds(sdf.schema, ["t", LABEL, "split", "__u", "__key"]), "t").set_index("column")
    assert rep.reason["lbl"] == "leak: a copy of the target"
    assert rep.reason["k"] == "constant: a single value"
    assert rep.action["x"] == "keep"                         # decimals are not identifiers


# --- encoding -------------------------------------------------------------------------------------------------------
def test_encoding_and_imputation_learned_on_train_only(prepared, split_rows):
    _, meta = prepared
    tr = split_rows[split_rows.split == "train"]
    assert meta["categorical"]["city"] == sorted(set(tr.city.dropna()))
    assert meta["categorical"]["plan"] == sorted(set(tr.plan.fillna(MISSING)))
    outside = set(split_rows.city[split_rows.split != "train"]) - set(tr.city)
    assert outside and not outside & set(meta["categorical"]["city"])    # rare towns outside train are unknown
    for c in ("age", "income"):
        v = np.sort(tr[c].dropna().to_numpy()); m = len(v)
        tol = 1 + math.ceil(1e-3 * m)                                         # fit_encoder's relative_error, and a rank's rounding
        assert meta["impute"][c] in v[max(0, (m - 1) // 2 - tol): m // 2 + tol + 1], c  # a TRAIN value at the median's rank


def test_fit_encoder_unseen_and_missing(spark):
    tr = spark.createDataFrame([(1.0, "a"), (None, "b"), (9.0, None), (float("nan"), "a"), (5.0, "b")], "x double, c string")
    te = spark.createDataFrame([(None, "zzz"), (2.0, "b"), (4.0, None)], "x double, c string")
    m = fit_encoder(tr, ["x"], ["c"]); meta = encoder_metadata(m, ["x"], ["c"])
    assert meta == {"features": ["x", "c=__missing__", "c=a", "c=b"], "numeric": ["x"],
                    "categorical": {"c": [MISSING, "a", "b"]}, "impute": {"x": 5.0, "c": MISSING}}
    want = [[5.0, 0, 0, 0], [2.0, 0, 0, 1], [4.0, 1, 0, 0]]
    assert encode(meta, te).toPandas().to_numpy().tolist() == want
    assert transform_rows(te.toPandas(), meta).tolist() == want


def test_transform_rows_equals_spark_output(prepared, split_rows):
    out, meta = prepared
    for s in ("test", "validation"):
        raw = split_rows[split_rows.split == s].drop(columns=["split", "__u", "__key", LABEL])
        written = pd.read_parquet(out/s/"data.parquet")
        np.testing.assert_array_equal(transform_rows(raw, meta), written[meta["features"]].to_numpy())
        np.testing.assert_array_equal(split_rows[LABEL][split_rows.split == s].to_numpy(), written[LABEL].to_numpy())


def test_transform_rows_serving_inputs(prepared):
    _, meta = prepared
    rows = pd.DataFrame({"age": [None, "41"], "income": [np.nan, 1000], "plan": ["pro", None],
                         "city": ["Nowhere", "Erie"], "vip": [True, False], "extra": [1, 2]})
    x = transform_rows(rows, meta)
    f = meta["features"]
    assert x.shape == (2, len(f)) and x.dtype == np.float64
    assert x[0, f.index("age")] == meta["impute"]["age"] and x[1, f.index("age")] == 41.0
    assert x[0, [i for i, n in enumerate(f) if n.startswith("city=")]].sum() == 0      # unseen town → zeros
    assert x[0, f.index("vip=true")] == 1 and x[1, f.index("vip=false")] == 1
    assert x[1, f.index("plan=__missing__")] == (1 if MISSING in meta["categorical"]["plan"] else 0)
    with pytest.raises(ValueError, match="lack column"): transform_rows(rows.drop(columns=["city"]), meta)


# --- determinism, versions, pointer ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_are_byte_identical(spark, lake, prepared, tmp_path):
    out, _ = prepared
    prepare_features(spark, lake.pointer(T, "validated")["uri"], tmp_path/"b", TARGET, POS, seed=7, source_version="v000toy")
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) == 7
    for f in files: assert (out/f).read_bytes() == (tmp_path/"b"/f).read_bytes(), f


@pytest.mark.slow
def test_run_prepare_is_content_addressed(spark, lake):
    p1 = run_prepare(lake, T, seed=7, spark=spark)
    assert KEYS <= set(p1) and p1["n_features"] == len(lake.read_json("features", T, f"version={p1['version']}",
                                                                      "feature_metadata.json")["features"])
    assert p1["train"] == lake.uri("features", T, f"version={p1['version']}", "train")
    assert lake.exists("features", T, f"version={p1['version']}", "_SUCCESS")
    stamp = lake.local_path("features", T, f"version={p1['version']}", "train", "data.csv").stat().st_mtime_ns
    p2 = run_prepare(lake, T, seed=7, spark=spark)                       # same inputs → nothing rewritten
    assert p2["version"] == p1["version"] and lake.ls("features", T) == [f"version={p1['version']}"]
    assert lake.local_path("features", T, f"version={p1['version']}", "train", "data.csv").stat().st_mtime_ns == stamp
    assert lake.pointer(T, "features")["version"] == p1["version"]
    assert features_version("v000toy", 8, a=1) != features_version("v000toy", 7, a=1) != features_version("v1", 7, a=1)
    with pytest.raises(ValueError, match="re-run 00_ingest"): run_prepare(lake, T, target="y_copy", spark=spark)


def test_run_prepare_needs_validated(tmp_path):
    with pytest.raises(LakeError, match="run 01_validate first"): run_prepare(Lake(tmp_path), "nothing")


def test_boundary_errors(spark, toy, tmp_path):
    with pytest.raises(ValueError, match="is not a column"): add_label(spark.createDataFrame(toy[["age", "y"]]), "Y", POS)
    tiny = make_lake(tmp_path/"lake", toy.head(12), table="tiny")
    with pytest.raises(ValueError, match="every split needs both classes"):
        prepare_features(spark, tiny.pointer("tiny", "validated")["uri"], tmp_path/"o", TARGET, "nobody", seed=1)


@pytest.mark.slow
def test_main_runs_as_processing_script(lake, prepared, tmp_path):
    "The module file is the processing script: same arguments → the same bytes as the in-process call."
    out, _ = prepared
    import ml_lifecycle.prepare as mod
    src = lake.local_path("raw", T, "version=v000toy")
    code = tmp_path/"code"/"prepare.py"; code.parent.mkdir()   # as in a container: the script alone, elsewhere
    code.write_bytes(Path(mod.__file__).read_bytes())            # (run in place, ml_lifecycle/platform would shadow stdlib `platform`)
    r = subprocess.run([sys.executable, str(code), "--input-dir", str(src), "--output-dir", str(tmp_path/"o"),
                        "--target", TARGET, "--positive-label", POS, "--seed", "7"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["splits"] == json.loads((out/"feature_metadata.json").read_text())["splits"]
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        assert (out/f).read_bytes() == (tmp_path/"o"/f).read_bytes(), f   # source_version read from _manifest.json


@pytest.mark.slow
def test_under_local_processing_job(lake, prepared, tmp_path):
    "Through the local SageMaker processing runner, with its {input:..}/{output:..} placeholders."
    sml = pytest.importorskip("ml_lifecycle.platform.processing_jobs")
    out, _ = prepared
    import ml_lifecycle.prepare as mod
    res = sml.run_processing_job(mod.__file__, inputs={"data": str(lake.local_path("raw", T, "version=v000toy"))},
                                 outputs={"features": str(tmp_path/"published"/"features")},
                                 arguments=["--input-dir", "{input:data}", "--output-dir", "{output:features}",
                                            "--target", TARGET, "--positive-label", POS, "--seed", "7"],
                                 work_dir=tmp_path/"jobs")
    assert res.status == "Completed"
    pub = tmp_path/"published"/"features"
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        assert (out/f).read_bytes() == (pub/f).read_bytes(), f


@pytest.mark.slow
def test_run_prepare_via_processing_job_is_byte_identical(spark, lake, tmp_path):
    "run_prepare(via='processing') (a local job in the Spark image's environment) publishes the same data as the in-process path."
    import shutil
    twin = Lake(str(tmp_path/"twin"))
    shutil.copytree(lake.local_path(), twin.local_path(), ignore=shutil.ignore_patterns("features"), dirs_exist_ok=True)
    a = run_prepare(lake, T, seed=11, spark=spark)
    b = run_prepare(twin, T, seed=11, via="processing")
    assert a["version"] == b["version"]
    pa_, pb = Path(lake.local_path("features", T, f"version={a['version']}")), Path(twin.local_path("features", T, f"version={b['version']}"))
    files = sorted(p.relative_to(pa_) for p in pa_.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(pb) for p in pb.rglob("*") if p.is_file())
    for f in files:  # the job ran in the Spark image's environment (no pyarrow): Parquet equal in content, the rest in bytes
        if f.suffix == ".parquet": pd.testing.assert_frame_equal(pd.read_parquet(pa_/f), pd.read_parquet(pb/f))
        else: assert (pa_/f).read_bytes() == (pb/f).read_bytes(), f


def test_pyspark_job_spec_shape(tmp_path):
    "The aws-mode spec of this module's job: PySparkProcessor kwargs (Spark 3.5 container) and run kwargs with SageMaker paths."
    import importlib.util
    from ml_lifecycle.platform.job_code import ship_package
    from ml_lifecycle.platform.sagemaker_jobs import spark_processing_spec
    from ml_lifecycle.prepare import JOB_MODULES, prepare_arguments
    spec = spark_processing_spec(importlib.util.find_spec("ml_lifecycle.prepare").origin, {"data": "s3a://b/raw/t/version=v1"},
                                 {"features": "s3://b/features/t/version=f"}, prepare_arguments("y", "1", 1, (0.7, 0.15, 0.15)),
                                 py_files=[ship_package(tmp_path/"ml_lifecycle.zip", JOB_MODULES)],
                                 role_arn="arn:aws:iam::111122223333:role/R", kms_key_id="k")
    assert spec["processor"]["framework_version"] == "3.5" and spec["processor"]["output_kms_key"] == "k"
    assert spec["run"]["inputs"][0].s3_input.s3_uri == "s3://b/raw/t/version=v1"
    assert "/opt/ml/processing/output/features" in spec["run"]["arguments"]
    from sagemaker.core.spark.processing import PySparkProcessor
    import inspect
    assert set(spec["processor"]) <= set(inspect.signature(PySparkProcessor.__init__).parameters)
    assert set(spec["run"]) <= set(inspect.signature(PySparkProcessor.run).parameters)


def test_auc_without_scikit_learn_equals_scikit_learn():
    "The rank formula the screening uses (the Spark image has no scikit-learn) gives scikit-learn's AUC, ties included."
    import numpy as np
    import ml_lifecycle.prepare as prep
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 300); y[:2] = [0, 1]
        x = np.round(rng.normal(size=300) + y * rng.uniform(0, 2), int(rng.integers(0, 3)))  # rounding makes ties
        assert abs(prep._auc(y, x) - roc_auc_score(y, x)) < 1e-12


def test_script_needs_only_what_the_spark_image_has(tmp_path):
    "In the Spark image's environment (no scikit-learn, pyarrow, fastcore) the script imports with the shipped zip alone."
    import subprocess
    from ml_lifecycle.platform.images import spark_image_python
    import importlib.util
    from ml_lifecycle.platform.job_code import ship_package
    from ml_lifecycle.prepare import JOB_MODULES
    script_path = lambda: importlib.util.find_spec("ml_lifecycle.prepare").origin
    py, zp = spark_image_python(), ship_package(tmp_path/"ml_lifecycle.zip", JOB_MODULES)
    code = "import importlib.util as u, sys; s = u.spec_from_file_location('prep', sys.argv[1]); m = u.module_from_spec(s); s.loader.exec_module(m); print(m.PIPELINE_VERSION)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(zp)}
    ok = subprocess.run([str(py), "-c", code, str(script_path())], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-1500:]
    bare = subprocess.run([str(py), "-c", code, str(script_path())], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "ship it with the job" in bare.stderr
