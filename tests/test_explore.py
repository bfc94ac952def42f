"""Unit tests of ml_lifecycle.explore: Spark-computed statistics checked against NumPy/SciPy on known data."""
import os
os.environ.setdefault("SPARK_VERSION", "3.5")

import json
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_lifecycle.platform.storage import Lake
from ml_lifecycle.explore import (
    _jsonable, association, cardinality, category_rates, correlations, explore_stats, histogram_edges, histograms,
    numeric_summary, plot_cardinality, plot_category_rates, plot_correlations, plot_histograms, plot_outliers,
    plot_target_balance, save_figure, target_balance)

pytestmark = pytest.mark.slow  # every test but the first uses Spark

RNG = np.random.default_rng(7)
N = 300
X = RNG.normal(50, 10, N).round(3)
K = RNG.integers(0, 4, N)
C = np.array(["a", "b", "c"])[RNG.integers(0, 3, N)]
Y = np.where(RNG.random(N) < 0.3, "yes", "no")


@pytest.fixture(scope="module")
def df(spark):
    rows = [(float(x), int(k), str(c), str(y)) for x, k, c, y in zip(X, K, C, Y)]
    return spark.createDataFrame(rows, "x double, k long, c string, y string").cache()


def test_histogram_edges():
    assert histogram_edges(0, 10, 5) == [0, 2, 4, 6, 8, 10]
    assert histogram_edges(0, 3, 20, integral=True) == [-0.5, 0.5, 1.5, 2.5, 3.5]
    assert histogram_edges(5, 5, 10) == [4.5, 5.5]


def test_histogram_counts_match_numpy(df):
    h = histograms(df, ["x", "k"], "y", "yes", bins=7)
    hx = h[h.column == "x"]
    counts, edges = np.histogram(X, bins=7)
    assert hx.groupby("bin")["count"].sum().tolist() == counts.tolist()
    np.testing.assert_allclose(sorted(hx.left.unique()), edges[:-1])
    pos = np.histogram(X[Y == "yes"], bins=edges)[0]
    assert hx[hx.positive == 1].sort_values("bin")["count"].tolist() == pos.tolist()
    hk = h[h.column == "k"]  # integers 0..3: one bin per integer
    assert hk.groupby("bin")["count"].sum().tolist() == np.bincount(K, minlength=4).tolist()


def test_histograms_skip_missing_and_nan(spark):
    d = spark.createDataFrame([(1.0, "y"), (None, "n"), (float("nan"), "n"), (3.0, "n")], "x double, y string")
    h = histograms(d, ["x"], "y", "y", bins=2)
    assert h["count"].sum() == 2


def test_target_balance_and_rates(df):
    tb = target_balance(df, "y", "yes")
    assert tb.set_index("label")["count"].to_dict() == {"no": int((Y == "no").sum()), "yes": int((Y == "yes").sum())}
    assert tb.positive.tolist() == [False, True]
    r = category_rates(df, ["c"], "y", "yes").set_index("level")
    for lvl in "abc":
        assert r.at[lvl, "count"] == (C == lvl).sum()
        assert r.at[lvl, "positives"] == ((C == lvl) & (Y == "yes")).sum()
        assert r.at[lvl, "rate"] == pytest.approx(((C == lvl) & (Y == "yes")).sum() / (C == lvl).sum())


def test_target_rate_with_int_and_bool_targets(spark):
    ints = spark.createDataFrame([("a", 1), ("a", 0), ("b", 1), ("a", 1)], "c string, y long")
    bools = spark.createDataFrame([("a", True), ("a", False), ("b", True), ("a", True)], "c string, y boolean")
    for d, pos in ((ints, 1), (ints, "1"), (bools, True), (bools, "True")):
        r = category_rates(d, ["c"], "y", pos).set_index("level")
        assert r.at["a", "rate"] == pytest.approx(2 / 3) and r.at["b", "rate"] == 1.0
        assert target_balance(d, "y", pos).query("positive")["count"].tolist() == [3]


def test_missing_category_is_a_level(spark):
    d = spark.createDataFrame([("a", "y"), (None, "n"), (None, "y")], "c string, t string")
    r = category_rates(d, ["c"], "t", "y").set_index("level")
    assert r.at["(missing)", "count"] == 2 and r.at["(missing)", "positives"] == 1


def test_numeric_summary_exact(df):
    s = numeric_summary(df, ["x"], rel_error=0.0).loc["x"]
    assert s["count"] == N and s["missing"] == 0
    assert s["mean"] == pytest.approx(X.mean()) and s["std"] == pytest.approx(X.std(ddof=1))
    assert (s["min"], s["max"]) == (X.min(), X.max())
    xs = np.sort(X)  # Spark's exact quantile: the smallest value with rank >= ceil(q * n)
    assert [s["q1"], s["median"], s["q3"]] == [xs[int(np.ceil(q * N)) - 1] for q in (0.25, 0.5, 0.75)]
    lo, hi = s.q1 - 1.5 * (s.q3 - s.q1), s.q3 + 1.5 * (s.q3 - s.q1)
    assert (s.outliers_low, s.outliers_high) == ((X < lo).sum(), (X > hi).sum())


def test_correlations_match_numpy_and_scipy(df):
    yb = (Y == "yes").astype(float)
    c = correlations(df, ["x", "k"], "y", "yes")
    assert list(c.columns) == ["x", "k", "y"]
    assert c.at["x", "k"] == pytest.approx(np.corrcoef(X, K)[0, 1])
    assert c.at["x", "y"] == pytest.approx(np.corrcoef(X, yb)[0, 1])
    sp = correlations(df, ["x"], "y", "yes", method="spearman")
    assert sp.at["x", "y"] == pytest.approx(stats.spearmanr(X, yb).statistic)


def test_cardinality_and_association(df):
    assert cardinality(df, ["c", "y"]).to_dict() == {"c": 3, "y": 2}
    r = category_rates(df, ["c"], "y", "yes")
    a = association(r).loc["c"]
    table = pd.crosstab(C, Y).to_numpy()
    chi2, p, _, _ = stats.chi2_contingency(table)
    assert a.chi2 == pytest.approx(chi2) and a.p_value == pytest.approx(p)
    assert a.cramers_v == pytest.approx(stats.contingency.association(table, method="cramer"))


def test_plots_and_stats_document(df, tmp_path):
    lake = Lake(tmp_path)
    tb, s = target_balance(df, "y", "yes"), numeric_summary(df, ["x", "k"])
    h, corr = histograms(df, ["x", "k"], "y", "yes", summary=s), correlations(df, ["x", "k"], "y", "yes")
    card, rates = cardinality(df, ["c"]), category_rates(df, ["c"], "y", "yes")
    figs = {"tb": plot_target_balance(tb), "h": plot_histograms(h), "c": plot_correlations(corr),
            "o": plot_outliers(s), "k": plot_cardinality(card, N), "r": plot_category_rates(rates, 0.3)}
    for name, fig in figs.items():
        uri = save_figure(lake, fig, "explore", f"{name}.png")
        assert open(uri, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        plt.close(fig)
    doc = explore_stats(tb, s, h, corr, card, rates, association(rates), table="t")
    text = json.dumps(doc, allow_nan=False)  # valid JSON: no NaN
    back = json.loads(text)
    assert sum(back["histograms"]["x"]["counts"]["0"]) + sum(back["histograms"]["x"]["counts"]["1"]) == N
    assert len(back["histograms"]["x"]["edges"]) == len(back["histograms"]["x"]["counts"]["0"]) + 1
    assert back["categorical"]["c"]["cardinality"] == 3
    assert _jsonable({"a": float("nan"), "b": np.int64(1)}) == {"a": None, "b": 1}


def test_explore_job_in_the_spark_image_equals_the_kernel(spark, df, tmp_path):
    "run_explore_job (the Spark image's environment, only this module and schema shipped) = explore_frames here."
    from ml_lifecycle.explore import explore_frames, run_explore_job
    L = Lake(tmp_path/"lake")
    folder = L.local_path("validated", "t", "version=v1")
    df.coalesce(1).write.parquet(str(folder))
    v = {"version": "v1", "uri": str(folder), "target": "y", "positive_label": "yes", "rows": N}
    job, here = run_explore_job(L, "t", v, bins=8, rel_error=0.0), explore_frames(df, "y", "yes", bins=8, rel_error=0.0)  # exact quantiles: the same whatever the partitioning
    assert job["kinds"] == here["kinds"]
    for k in ("target_balance", "summary", "histograms", "correlations", "category_rates"):
        pd.testing.assert_frame_equal(job[k].reset_index(drop=k != "summary" and k != "correlations"),
                                      here[k].reset_index(drop=k != "summary" and k != "correlations"), check_dtype=False)
    pd.testing.assert_series_equal(job["cardinality"], here["cardinality"], check_dtype=False)
