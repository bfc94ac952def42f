"Unit tests of ml_lifecycle.evaluate: metrics, evaluation.json shape, the gate, safe extraction, registry."
import io, json, tarfile

import numpy as np
import pytest
import xgboost as xgb
from sklearn import metrics as skm
from sklearn.datasets import make_classification

from ml_lifecycle.platform.storage import Lake, LakeError
from ml_lifecycle.platform.model_metrics import binary_metrics, model_quality_report
from ml_lifecycle.evaluate import (EvaluationError, candidate_pointer, champion_auc, gate,
                                   lake_relpath, load_model, publish_decision, read_split,
                                   register_model, score, write_evaluation, baseline_scores)

T = "toy"

# --- a small lake in the contract's shape: features pointer, split CSVs, model.tar.gz, pointers ----------------

def _model_tar(booster, features) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in [("xgboost-model.json", bytes(booster.save_raw("json"))),
                           ("feature_metadata.json", json.dumps({"features": features}).encode())]:
            ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

def _train(L, job, X, y, features, rounds, depth, fv="fv1"):
    b = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": 0},
                  xgb.DMatrix(X, label=y, feature_names=features), rounds)
    uri = L.write_bytes(_model_tar(b, features), "models", T, job, "model.tar.gz")
    return {"job_name": job, "model_data": uri, "hyperparameters": {"max_depth": str(depth)},
            "metrics": {}, "features_version": fv}

@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    L = Lake(tmp_path_factory.mktemp("lake"))
    X, y = make_classification(n_samples=1200, n_features=8, n_informative=5, weights=[0.8], random_state=0)
    features = [f"f{i}" for i in range(X.shape[1])]
    idx = {"train": slice(0, 800), "validation": slice(800, 1000), "test": slice(1000, 1200)}
    base = ("features", T, "version=fv1")
    for split, s in idx.items():
        rows = np.column_stack([y[s], X[s]])
        L.write_bytes("\n".join(",".join([str(int(r[0]))] + [repr(float(v)) for v in r[1:]]) for r in rows).encode(),
                      *base, split, "data.csv")
    L.write_json({"features": features}, *base, "feature_metadata.json")
    L.set_pointer(T, "features", version="fv1", uri=L.uri(*base), metadata=L.uri(*base, "feature_metadata.json"),
                  n_features=len(features), **{s: L.uri(*base, s) for s in idx})
    strong = _train(L, "job-strong", X[:800], y[:800], features, 60, 4)
    weak = _train(L, "job-weak", X[:800, :], y[:800], features, 1, 1)
    return {"L": L, "features": features, "strong": strong, "weak": weak,
            "y": y[1000:], "X": X[1000:], "y_train": y[:800], "X_train": X[:800]}

# --- metrics -------------------------------------------------------------------------------------------------

def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500); s = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    for thr in (0.3, 0.5, 0.7):
        m, pred = binary_metrics(y, s, thr), (s >= thr).astype(int)
        assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
        assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s))
        assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
        assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
        assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
        assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
        assert m["threshold"] == thr and m["n"] == 500

def test_binary_metrics_known_values():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.5)
    assert (m["auc"], m["precision"], m["recall"], m["accuracy"]) == (0.75, 1.0, 0.5, 0.75)
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]
    with pytest.raises(ValueError, match="both classes"): binary_metrics([1, 1], [0.2, 0.9])

SAGEMAKER_KEYS = {  # https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html
    "confusion_matrix", "recall", "precision", "accuracy", "recall_best_constant_classifier",
    "precision_best_constant_classifier", "accuracy_best_constant_classifier", "true_positive_rate",
    "true_negative_rate", "false_positive_rate", "false_negative_rate", "receiver_operating_characteristic_curve",
    "precision_recall_curve", "auc", "f0_5", "f1", "f2", "f0_5_best_constant_classifier",
    "f1_best_constant_classifier", "f2_best_constant_classifier"}

def test_evaluation_json_shape():
    y, s = [0, 0, 0, 1, 1, 0], [0.2, 0.6, 0.7, 0.9, 0.4, 0.1]
    rep = json.loads(json.dumps(model_quality_report(y, s, 0.5)))  # JSON round trip: plain types only
    assert list(rep) == ["binary_classification_metrics"]
    bcm = rep["binary_classification_metrics"]
    assert set(bcm) == SAGEMAKER_KEYS | {"pr_auc"}
    for k, v in bcm.items():
        if k not in ("confusion_matrix", "receiver_operating_characteristic_curve", "precision_recall_curve"):
            assert set(v) == {"value", "standard_deviation"} and v["standard_deviation"] == "NaN", k
            assert isinstance(v["value"], float)
    cm = skm.confusion_matrix(y, (np.array(s) >= 0.5).astype(int))
    assert bcm["confusion_matrix"] == {"0": {"0": int(cm[0, 0]), "1": int(cm[0, 1])},
                                       "1": {"0": int(cm[1, 0]), "1": int(cm[1, 1])}}
    roc = bcm["receiver_operating_characteristic_curve"]
    assert set(roc) == {"false_positive_rates", "true_positive_rates"}
    assert len(roc["false_positive_rates"]) == len(roc["true_positive_rates"]) >= 2
    assert set(bcm["precision_recall_curve"]) == {"precisions", "recalls"}
    assert bcm["auc"]["value"] == pytest.approx(skm.roc_auc_score(y, s))
    assert bcm["precision_best_constant_classifier"]["value"] == pytest.approx(2 / 6)  # always "positive"

def test_sagemaker_documented_example():
    bcm = model_quality_report([0, 0, 0, 1], [0.2, 0.6, 0.7, 0.9])["binary_classification_metrics"]
    assert bcm["confusion_matrix"] == {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}
    assert bcm["f1"]["value"] == pytest.approx(0.5) and bcm["f2"]["value"] == pytest.approx(0.7142857142857143)
    assert bcm["f1_best_constant_classifier"]["value"] == pytest.approx(0.4)
    assert bcm["false_positive_rate"]["value"] == pytest.approx(2 / 3)

# --- the gate ------------------------------------------------------------------------------------------------

def test_gate_thresholds_reject():
    ok = gate({"auc": 0.9, "f1": 0.7}, min_auc=0.85, min_f1=0.6)
    assert ok["approved"] and ok["reasons"] == []
    low_auc = gate({"auc": 0.80, "f1": 0.7}, min_auc=0.85, min_f1=0.6)
    assert not low_auc["approved"] and low_auc["reasons"][0].startswith("auc >= min_auc failed")
    low_f1 = gate({"auc": 0.9, "f1": 0.5}, min_auc=0.85, min_f1=0.6)
    assert not low_f1["approved"] and "f1 >= min_f1" in low_f1["reasons"][0]
    assert not gate({"auc": 0.9, "f1": 0.7}, 0.85, 0.6, baseline_auc=0.9)["approved"]  # must *beat* the baseline

def test_gate_never_approves_worse_than_champion():
    rng = np.random.default_rng(0)
    for _ in range(200):
        auc, champ = rng.uniform(0.86, 1.0, 2)
        d = gate({"auc": auc, "f1": 0.9}, 0.85, 0.6, baseline_auc=0.5, champion={"job_name": "c", "auc": champ})
        assert d["approved"] == (auc >= champ)
        if auc < champ: assert any("champion" in r for r in d["reasons"])

def test_worse_candidate_than_lake_champion_is_rejected(lake, tmp_path):
    L, f = lake["L"], lake["features"]
    strong, weak = lake["strong"], lake["weak"]
    L.set_pointer(T, "champion", **strong, threshold=0.5)
    L.set_pointer(T, "approved", **strong, threshold=0.5)
    b, _ = load_model(L, weak["model_data"], tmp_path/"cand")
    m = binary_metrics(lake["y"], score(b, lake["X"]))
    champ = champion_auc(L, T, weak, f, lake["y"], lake["X"], tmp_path/"champ")
    assert champ["how"] == "re-scored on this test split" and champ["auc"] > m["auc"]
    d = gate(m, min_auc=0.0, min_f1=0.0, champion=champ)  # clears the thresholds, still worse than the champion
    assert not d["approved"] and "champion" in d["reasons"][0]
    assert publish_decision(L, T, weak, m, 0.5, "uri", d) is None
    assert L.pointer(T, "approved")["job_name"] == L.pointer(T, "champion")["job_name"] == "job-strong"
    # the champion itself is not compared with itself
    assert champion_auc(L, T, strong, f, lake["y"], lake["X"], tmp_path/"self")["auc"] is None

def test_publish_decision_moves_pointers(tmp_path):
    L = Lake(tmp_path/"lake")
    cand = {"job_name": "j1", "model_data": L.uri("models", T, "j1", "model.tar.gz"), "features_version": "fv1"}
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    p = publish_decision(L, T, cand, m, 0.5, "eval-uri", {"approved": True, "reasons": [], "checks": []})
    for name in ("approved", "champion"):
        ptr = L.pointer(T, name)
        assert ptr["job_name"] == "j1" and ptr["threshold"] == 0.5 and ptr["evaluation"] == "eval-uri"
        assert ptr["metrics"]["test:auc"] == pytest.approx(0.75)
    assert p["model_data"] == cand["model_data"]

# --- safe extraction and loading -----------------------------------------------------------------------------

def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path

def _file(name, data=b"x"):
    ti = tarfile.TarInfo(name); ti.size = len(data); return ti, data

@pytest.mark.parametrize("name", ["../escape.txt", "model/../../escape.txt", "/tmp/abs-escape.txt"])
def test_load_model_refuses_unsafe_archives(tmp_path, name):
    "An archive that would write outside its folder, holds a link, or is no tar at all: an EvaluationError, nothing extracted."
    L = Lake(str(tmp_path/"lake"))
    link = tarfile.TarInfo("model/link"); link.type = tarfile.SYMTYPE; link.linkname = "/etc/passwd"
    for case, tar in (("outside", _tar(tmp_path/"evil.tar.gz", [_file("ok.txt"), _file(name)])),
                      ("link", _tar(tmp_path/"l.tar.gz", [(link, None)]))):
        L.put_file(tar, "models", T, "j", "model.tar.gz")
        with pytest.raises(EvaluationError, match=case): load_model(L, L.uri("models", T, "j", "model.tar.gz"), tmp_path/"w")
        assert not (tmp_path/"escape.txt").exists() and not (tmp_path/"w"/"model"/"ok.txt").exists()  # nothing extracted
    L.write_bytes(b"not a tar", "models", T, "j", "model.tar.gz")
    with pytest.raises(EvaluationError, match="model.tar.gz"): load_model(L, L.uri("models", T, "j", "model.tar.gz"), tmp_path/"w")

def test_load_model_roundtrip_and_errors(lake, tmp_path):
    L = lake["L"]
    b, meta = load_model(L, lake["strong"]["model_data"], tmp_path/"m")
    assert meta["features"] == lake["features"] and b.num_features() == len(lake["features"])
    assert skm.roc_auc_score(lake["y"], score(b, lake["X"])) > 0.85
    L.write_bytes(_tar(tmp_path/"x.tar.gz", [_file("model.pkl")]).read_bytes(), "models", T, "nojson", "model.tar.gz")
    with pytest.raises(EvaluationError, match="not 'xgboost-model'"):
        load_model(L, L.uri("models", T, "nojson", "model.tar.gz"), tmp_path/"n")

def test_lake_relpath(lake):
    L = lake["L"]
    assert lake_relpath(L, L.uri("a", "b.csv")) == "a/b.csv"
    for bad in ["/etc/passwd", L.uri("a") + "/../../x", L.root]:
        with pytest.raises(EvaluationError, match="not inside the lake"): lake_relpath(L, bad)

def test_read_split_and_baseline(lake):
    L, n = lake["L"], len(lake["features"])
    y, X = read_split(L, L.pointer(T, "features")["test"], n)
    assert X.shape == (200, n) and set(np.unique(y)) == {0, 1}
    np.testing.assert_allclose(X, lake["X"])
    with pytest.raises(EvaluationError, match="columns"): read_split(L, L.pointer(T, "features")["test"], n + 1)
    auc = skm.roc_auc_score(y, baseline_scores(lake["X_train"], lake["y_train"], X))
    assert 0.7 < auc < 1

# --- which model ---------------------------------------------------------------------------------------------

def test_candidate_pointer(tmp_path, capsys):
    L = Lake(tmp_path/"lake")
    with pytest.raises(LakeError, match="04_train"): candidate_pointer(L, T)
    L.set_pointer(T, "trained", job_name="train-1", model_data="m1", features_version="fv2")
    assert candidate_pointer(L, T, "fv2")["job_name"] == "train-1"
    assert "no 'tuned' pointer" in capsys.readouterr().out
    L.set_pointer(T, "tuned", job_name="tune-1", model_data="m2", features_version="fv2")
    assert candidate_pointer(L, T, "fv2")["job_name"] == "tune-1"
    L.set_pointer(T, "tuned", job_name="tune-0", model_data="m0", features_version="fv1")  # stale tuning
    assert candidate_pointer(L, T, "fv2")["job_name"] == "train-1"
    assert "not the current 'fv2'" in capsys.readouterr().out
    L.set_pointer(T, "tuned", job_name="../evil", model_data="m0", features_version="fv2")
    with pytest.raises(EvaluationError, match="not a valid job name"): candidate_pointer(L, T, "fv2")

# --- outputs and registry ------------------------------------------------------------------------------------

def test_write_evaluation(tmp_path):
    L = Lake(tmp_path/"lake")
    rep = model_quality_report([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.6])
    uri = write_evaluation(L, T, "job-1", rep, {"approved": True, "reasons": []})
    assert uri == L.uri("evaluation", T, "job-1", "evaluation.json")
    assert L.read_json("evaluation", T, "job-1", "evaluation.json") == rep
    assert L.read_json("evaluation", T, "job-1", "gate.json")["approved"] is True

@pytest.mark.slow
def test_register_model_no_duplicates_and_status(lake, tmp_path):
    from mlflow import MlflowClient
    L, uri = lake["L"], "sqlite:///" + str(tmp_path/"mlflow.db")
    b, _ = load_model(L, lake["strong"]["model_data"], tmp_path/"m")
    args = dict(artifact_location=str(tmp_path/"artifacts"), files=[], X_example=None)
    ok, no = {"approved": True, "reasons": []}, {"approved": False, "reasons": ["auc >= min_auc failed"]}
    r1 = register_model(uri, "toy-xgboost", "toy-evaluation", lake["strong"], b, {"test_auc": 0.9}, ok, **args)
    r2 = register_model(uri, "toy-xgboost", "toy-evaluation", lake["strong"], b, {"test_auc": 0.9}, ok, **args)
    assert r1["created"] and not r2["created"] and r1["version"] == r2["version"]
    r3 = register_model(uri, "toy-xgboost", "toy-evaluation", lake["weak"], b, {"test_auc": 0.6}, no, **args)
    c = MlflowClient(uri)
    versions = c.search_model_versions("name='toy-xgboost'")
    assert len(versions) == 2
    v1, v3 = c.get_model_version("toy-xgboost", r1["version"]), c.get_model_version("toy-xgboost", r3["version"])
    assert v1.tags["approval_status"] == "Approved" and "champion" in v1.aliases
    assert v3.tags["approval_status"] == "Rejected" and v3.tags["approval_reasons"] == "auc >= min_auc failed"
    assert c.get_model_version_by_alias("toy-xgboost", "champion").version == v1.version
    assert (tmp_path/"artifacts").is_dir()  # artifacts stay where we said, not in ./mlruns

# --- business cost, attributions, bias ----------------------------------------------------------------------------

def test_expected_cost_and_threshold_choice():
    from ml_lifecycle.evaluate import expected_cost, choose_threshold
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400); s = np.clip(y * 0.35 + rng.uniform(0, 0.65, 400), 0, 1)
    ts = np.array([0.0, 0.3, 0.5, 1.01])
    c = expected_cost(y, s, ts, 500, 100)
    for t, ci in zip(ts, c):  # by hand: 500 per missed positive, 100 per flagged row
        flagged = s >= t
        assert abs(ci - (500 * ((~flagged) & (y == 1)).sum() + 100 * flagged.sum()) / len(y)) < 1e-9
    assert abs(c[0] - 100) < 1e-9 and abs(c[-1] - 500 * y.mean()) < 1e-9  # offer everyone / no one
    ch = choose_threshold(y, s, 500, 100)
    assert ch["cost_per_customer"] == ch["costs"].min() <= c.min() + 1e-9
    assert ch["threshold"] < 0.5  # a 5:1 cost ratio pushes the threshold down

def test_shap_contributions_sum_to_margin():
    from ml_lifecycle.evaluate import shap_values, mean_abs_shap
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)); y = (X[:, 0] + 0.2 * rng.normal(size=300) > 0).astype(int)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), 20)
    sh = shap_values(b, X, ["a", "b", "c", "d"])
    assert list(sh.columns) == ["a", "b", "c", "d", "bias"]
    assert np.allclose(sh.sum(axis=1), b.predict(xgb.DMatrix(X), output_margin=True), atol=1e-4)
    assert mean_abs_shap(sh, 2).index[0] == "a"  # the only informative feature leads

def test_bias_metrics_clarify_definitions():
    from ml_lifecycle.evaluate import facet_mask
    from ml_lifecycle.platform.model_metrics import pretraining_bias, posttraining_bias
    X = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    meta = {"numeric": [], "categorical": {"plan": ["no", "yes"]}, "features": ["plan=no", "plan=yes"]}
    d = facet_mask(X, meta, "plan", "yes")
    assert d.tolist() == [False] * 4 + [True] * 2
    pre = pretraining_bias([1, 0, 0, 0, 1, 1], d)
    assert abs(pre["CI"] - 1/3) < 1e-12 and abs(pre["DPL"] - (0.25 - 1.0)) < 1e-12
    post = posttraining_bias([1, 0, 0, 0, 1, 0], d)
    assert abs(post["DPPL"] - (0.25 - 0.5)) < 1e-12 and abs(post["DI"] - 2.0) < 1e-12
    with pytest.raises(EvaluationError, match="is not a level of 'plan'"): facet_mask(X, meta, "plan", "maybe")
    with pytest.raises(ValueError, match="both facets"): pretraining_bias([0, 1], np.array([True, True]))
