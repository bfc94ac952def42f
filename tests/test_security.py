"""Security promises, checked: the endpoint binds loopback unless told otherwise; models are never loaded from
pickle; model archives are extracted safely (no path traversal, no links); no secrets in notebooks or outputs."""
import ast, io, json, os, pickle, re, tarfile, time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import xgboost as xgb

from ml_lifecycle.platform.config import project_root
from ml_lifecycle.platform.endpoint import LocalEndpoint
from ml_lifecycle.platform.payload import ModelPackageError, ServedModel, pack_model, safe_extract
from ml_lifecycle.evaluate import EvaluationError

ROOT = project_root()
FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def booster():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)).round(3)
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                     xgb.DMatrix(X, (X[:, 0] > 0).astype(int)), 5)


@pytest.fixture(scope="module")
def model_tar(booster, tmp_path_factory):
    return pack_model(booster, {"features": FEATURES}, tmp_path_factory.mktemp("pkg")/"model.tar.gz")


def _listening(pid: int) -> list[tuple[str, int]]:
    "The (ip, port) pairs that process `pid` and its children listen on."
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sorted({(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN})


# --- binding -------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_endpoint_binds_loopback_by_default(model_tar):
    with LocalEndpoint(model_tar) as ep:
        socks = _listening(ep.pid)
        assert socks == [("127.0.0.1", ep.port)], socks
        assert ep.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_endpoint_binds_elsewhere_only_when_told(model_tar):
    with LocalEndpoint(model_tar, host="0.0.0.0") as ep:
        assert _listening(ep.pid) == [("0.0.0.0", ep.port)]
        assert requests.get(f"http://127.0.0.1:{ep.port}/ping", timeout=5).status_code == 200


def test_server_command_line_defaults_to_loopback():
    import inspect
    from ml_lifecycle.platform import endpoint
    assert inspect.signature(endpoint.LocalEndpoint).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(endpoint.serve).parameters["host"].default == "127.0.0.1"
    src = inspect.getsource(endpoint.main)
    assert re.search(r'"--host", default="127\.0\.0\.1"', src), "the CLI's --host must default to loopback"


# --- never pickle ---------------------------------------------------------------------------------------------------

UNSAFE_LOADS = re.compile(r"\b(pickle\.loads?|cPickle\.loads?|dill\.loads?|cloudpickle\.loads?|joblib\.load|"
                          r"torch\.load|pd\.read_pickle|pandas\.read_pickle|read_pickle|shelve\.open|"
                          r"marshal\.loads?|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load)")


def _library_files():
    return sorted(p for p in (ROOT/"ml_lifecycle").rglob("*.py") if p.name != "_modidx.py")


def test_library_never_loads_pickle():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _library_files()
            for i, line in enumerate(p.read_text().splitlines(), 1) if UNSAFE_LOADS.search(line)]
    assert not hits, "unsafe deserialisation in the library:\n" + "\n".join(hits)
    imports = [f"{p.relative_to(ROOT)}: {n}" for p in _library_files() for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, (ast.Import, ast.ImportFrom))
               for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
               if n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal")]
    assert not imports, imports


def test_models_are_loaded_from_xgboost_json_only():
    "Boosters are loaded only by xgb_train.load_booster or from the bytes of the package's model file; mlflow logs JSON."
    for p in _library_files():
        text = p.read_text()
        for i, line in enumerate(text.splitlines(), 1):
            if ".load_model(" in line and "def load_model" not in line and "load_model(L" not in line:
                in_load_booster = p.name == "xgb_train.py" and "booster.load_model(bytearray(f.read()))" in line
                # a load from memory elsewhere only where those bytes are the package's model file
                from_model_bytes = "load_model(bytearray(" in line and "model_files(model_dir)[0].read_bytes()" in text
                assert in_load_booster or from_model_bytes, f"{p.name}:{i}: {line.strip()}"
            assert "Booster(model_file=" not in line or "sys.argv[1]" in line, f"{p.name}:{i}: load with load_booster"
            if "log_model(" in line:
                assert 'model_format="json"' in line, f"{p.name}:{i}: a logged model must use XGBoost's JSON format"


def test_model_package_holds_json_only(model_tar):
    with tarfile.open(model_tar) as tf:
        names = tf.getnames()
        files = sorted(m.name for m in tf.getmembers() if m.isfile())
        assert files == ["metadata/feature_metadata.json", "xgboost-model"]
        for n in files: json.loads(tf.extractfile(n).read())   # both are JSON documents


class _Boom:
    "Unpickling this creates a marker file: proof that a pickle was loaded."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (Path(self.marker).touch, ())


def _tar_of(path, files: dict):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.fixture
def evil_pickle(tmp_path):
    marker = tmp_path/"PICKLE_WAS_LOADED"
    yield pickle.dumps(_Boom(marker)), json.dumps({"features": FEATURES}).encode()
    assert not marker.exists(), "a pickle in a model package was unpickled"


def test_pickle_only_package_is_refused(evil_pickle, tmp_path):
    evil, meta = evil_pickle
    tar = _tar_of(tmp_path/"p1.tar.gz", {"model.pkl": evil, "feature_metadata.json": meta})
    with pytest.raises(ModelPackageError, match="not 'xgboost-model'"):
        LocalEndpoint(tar).start()
    from ml_lifecycle.evaluate import load_model
    from ml_lifecycle.platform.storage import Lake
    lake = Lake(tmp_path/"lake"); lake.put_file(tar, "models", "t", "j", "model.tar.gz")
    with pytest.raises(EvaluationError, match="not 'xgboost-model'"):
        load_model(lake, lake.uri("models", "t", "j", "model.tar.gz"), tmp_path/"work")


def test_pickle_disguised_as_the_json_model_is_refused_readably(evil_pickle, tmp_path):
    "A pickle under the JSON model's name: XGBoost's JSON loader never unpickles; the endpoint says what is wrong."
    evil, meta = evil_pickle
    tar = _tar_of(tmp_path/"p2.tar.gz", {"xgboost-model": evil, "metadata/feature_metadata.json": meta})
    with pytest.raises(ModelPackageError, match="xgboost-model"):
        LocalEndpoint(tar).start()


@pytest.mark.slow
def test_pickle_beside_a_good_model_is_ignored(evil_pickle, booster, tmp_path):
    evil, meta = evil_pickle
    tar = _tar_of(tmp_path/"p3.tar.gz", {"xgboost-model": bytes(booster.save_raw("json")),
                                         "metadata/feature_metadata.json": meta, "xgboost-model.json": evil,
                                         "model.pkl": evil, "model.joblib": evil})
    with LocalEndpoint(tar) as ep:
        r = requests.post(ep.url + "/invocations", data=b"0.1,0.2,0.3\n", headers={"Content-Type": "text/csv"}, timeout=10)
        assert r.status_code == 200 and 0 < float(r.text) < 1


# --- archives extracted safely --------------------------------------------------------------------------------------

def _member(name, kind=tarfile.REGTYPE, link="", data=b"pwned"):
    return name, kind, link, data   # built into a TarInfo when the archive is written


EVIL = {  # name -> members, in order
    "dotdot": [_member("../evil.txt")],
    "dotdot-deep": [_member("a/b/../../../evil.txt")],
    "dot-dotdot": [_member("./../evil.txt")],
    "absolute": [_member("/tmp/ml_lifecycle_evil_abs.txt")],
    "double-slash-absolute": [_member("//tmp/ml_lifecycle_evil_abs2.txt")],
    "symlink-out": [_member("link", tarfile.SYMTYPE, "../")],
    "symlink-abs": [_member("passwd", tarfile.SYMTYPE, "/etc/passwd")],
    "symlink-then-write-through": [_member("d", tarfile.SYMTYPE, ".."), _member("d/evil.txt")],
    "hardlink-out": [_member("hard", tarfile.LNKTYPE, "/etc/passwd")],
    "hardlink-relative-out": [_member("hard", tarfile.LNKTYPE, "../evil.txt")],
    "fifo": [_member("fifo", tarfile.FIFOTYPE)],
    "chardev": [_member("dev", tarfile.CHRTYPE)],
    "good-then-evil": [_member("xgboost-model.json", data=b"{}"), _member("../evil.txt")],
}


def _evil_tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, link, data in members:
            ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link
            if kind == tarfile.REGTYPE: ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def _snapshot(d: Path) -> set:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_crafted_archive_is_refused_and_writes_nothing_outside(tmp_path, case):
    "The one safe extraction (platform.payload's: the endpoint's and 06_evaluate's) refuses every crafted archive."
    extract = safe_extract
    box = tmp_path/"box"; box.mkdir()
    tar = _evil_tar(box/"model.tar.gz", EVIL[case])
    dest = box/"a"/"dest"
    before = _snapshot(box)
    with pytest.raises((ModelPackageError, EvaluationError)):
        extract(tar, dest)
    assert _snapshot(box) - before <= {"a", "a/dest"}, _snapshot(box) - before   # nothing beside or above dest
    assert not any(dest.iterdir()), "a refused archive must not be extracted partly"
    assert not Path("/tmp/ml_lifecycle_evil_abs.txt").exists() and not Path("/tmp/ml_lifecycle_evil_abs2.txt").exists()


@pytest.mark.slow
def test_endpoint_refuses_crafted_archive(tmp_path):
    tar = _evil_tar(tmp_path/"model.tar.gz", EVIL["symlink-then-write-through"])
    with pytest.raises(ModelPackageError):
        LocalEndpoint(tar).start()
    assert not (tmp_path/"evil.txt").exists()


def test_every_extractall_uses_the_data_filter():
    "No bare `extractall` in the library: each call passes filter='data' after checking the members."
    for p in _library_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("extractall", "extract"):
                kw = {k.arg: k.value for k in node.keywords}
                assert "filter" in kw and getattr(kw["filter"], "value", None) == "data", f"{p.name}:{node.lineno}"


# --- secrets --------------------------------------------------------------------------------------------------------

AWS_EXAMPLE_ACCOUNTS = {"111122223333", "123456789012", "444455556666", "777788889999", "000000000000"}
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_?secret_?access_?key\W{0,5}[=:]\s*[\"']?([A-Za-z0-9/+=]{40})\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    "bearer/api token": re.compile(r"(?i)(api[_-]?key|secret|token|password)\s*[=:]\s*[\"'][A-Za-z0-9_\-/+=]{24,}[\"']"),
}
ACCOUNT_IN_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
ACCOUNT_IN_HOST = re.compile(r"\b(\d{12})\.dkr\.ecr\.")
# AWS's documented example keys are fine to show (e.g. AKIAIOSFODNN7EXAMPLE)
ALLOWED = re.compile(r"EXAMPLE|AKIAIOSFODNN7|wJalrXUtnFEMI/K7MDENG")
# AWS-owned image registries (algorithm, framework and Model Monitor images): the account ids the SageMaker SDK
# itself resolves image URIs with, read from its `image_uri_config/*.json` (public, documented per region)
def _sdk_registries() -> set[str]:
    import sagemaker.core
    ids = set()
    for f in (Path(sagemaker.core.__file__).parent/"image_uri_config").glob("*.json"):
        ids |= set(re.findall(r'"(\d{12})"', f.read_text()))
    return ids
PUBLIC_ECR = _sdk_registries()


def scan_text(text: str) -> list[str]:
    "Secrets (by kind) found in `text`."
    found = []
    for kind, rx in SECRET_PATTERNS.items():
        for m in rx.finditer(text):
            if not ALLOWED.search(text[max(0, m.start() - 10): m.end() + 10]): found.append(f"{kind}: {m.group(0)[:24]}…")
    for rx in (ACCOUNT_IN_ARN, ACCOUNT_IN_HOST):
        for m in rx.finditer(text):
            if m.group(1) not in AWS_EXAMPLE_ACCOUNTS | PUBLIC_ECR: found.append(f"AWS account id: {m.group(1)}")
    return found


def test_secret_scanner_finds_what_it_should():
    assert scan_text("key = AKIA" + "Z" * 16) and scan_text("ASIA" + "Q7" * 8)
    assert scan_text('aws_secret_access_key = "' + "a1B2" * 10 + '"')
    assert scan_text("-----BEGIN RSA " + "PRIVATE KEY-----")
    assert scan_text("arn:aws:iam::" + "987654321098" + ":role/x")
    assert not scan_text("arn:aws:iam::111122223333:role/SageMakerRole arn:aws:iam::123456789012:role/x")
    assert not scan_text("156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer")  # AWS's image
    assert scan_text("987654321098.dkr.ecr.us-east-1.amazonaws.com/my-private-image")
    assert not scan_text("AKIAIOSFODNN7EXAMPLE aws_access_key_id='local'")


def _notebook_texts(nb_path: Path):
    "Sources and outputs (text, errors, HTML, JSON; not images) of a notebook."
    nb = json.loads(nb_path.read_text())
    for c in nb.get("cells", []):
        yield "".join(c.get("source", ""))
        for o in c.get("outputs", []):
            yield "".join(o.get("text", "")) + "\n".join(o.get("traceback", []))
            for mime, v in (o.get("data") or {}).items():
                if not mime.startswith("image/"): yield v if isinstance(v, str) else "".join(v) if isinstance(v, list) else json.dumps(v)


def _scan_targets():
    nbs = sorted((ROOT/"nbs").rglob("*.ipynb"))
    runs = sorted((ROOT/"runs").glob("*/**/*.ipynb")) if (ROOT/"runs").is_dir() else []
    docs = [p for d in (ROOT/"_site", ROOT/"docs") if d.is_dir() for p in d.rglob("*")
            if p.suffix in (".html", ".md", ".txt", ".json", ".py", ".ipynb") and p.is_file()]
    lib = _library_files() + sorted((ROOT/"tests").glob("*.py")) + sorted((ROOT/"scripts").glob("*"))
    extra = [ROOT/n for n in ("README.md", "settings.ini", "setup.py", "Makefile") if (ROOT/n).exists()]
    return nbs, runs, docs, lib + extra


def test_no_secrets_in_notebooks_outputs_docs_or_code():
    nbs, runs, docs, code = _scan_targets()
    assert nbs, "no notebooks found"
    hits = []
    for p in nbs + runs:
        for t in _notebook_texts(p): hits += [f"{p.relative_to(ROOT)}: {h}" for h in scan_text(t)]
    for p in docs + code:
        if p.resolve() == Path(__file__).resolve(): continue   # this file spells the patterns out
        hits += [f"{p.relative_to(ROOT)}: {h}" for h in scan_text(p.read_text(errors="replace"))]
    print(f"\nsecrets scan: {len(nbs)} notebooks, {len(runs)} executed notebooks, {len(docs)} docs files, "
          f"{len(code)} code files; {len(hits)} findings")
    assert not hits, "\n".join(hits)


@pytest.mark.notebooks
def test_no_secrets_in_the_series_run(series):
    "The executed notebooks of the test run and every JSON/text file the run wrote to its lake."
    run_dir = Path(series.run_dir)
    files = sorted(run_dir.rglob("*.ipynb"))
    lake_files = [p for p in Path(series.lake).rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv", ".md", ".txt", ".log")
                  and p.stat().st_size < 20_000_000]
    hits = [f"{p}: {h}" for p in files for t in _notebook_texts(p) for h in scan_text(t)]
    hits += [f"{p}: {h}" for p in lake_files for h in scan_text(p.read_text(errors="replace"))]
    print(f"\nsecrets scan of the run: {len(files)} executed notebooks, {len(lake_files)} lake files; {len(hits)} findings")
    assert files and not hits, "\n".join(hits)
