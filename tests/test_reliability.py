"""Reliability promises, checked: bad input, faults and load, with nothing lost.

- fuzzing: property-based malformed bodies, headers and content types against the local endpoint's public HTTP
  interface; every client mistake is answered below 500, the worker never dies, a good request answers after each;
- load: concurrent single-row and batch requests on loopback for `ML_LIFECYCLE_LOAD_SECONDS` (60) seconds: zero
  errors, stable server memory, every successful request captured;
- faults: kill -9 during ingest, the processing job and training, at deterministic points (a crash loop: every run
  killed before it finishes); the lake then holds no partial version a reader could see, pointers are unchanged,
  no job process outlives its parent, and a re-run completes, sweeps the litter and gives the version a lake that
  was never interrupted gives (rows lost counted);
- re-runs: 00_ingest, 03_prepare and 04_train each run twice on one lake: no file, pointer or version changes, no
  duplicate version or row;
- data: a corrupted delivery stops at 01_validate's gate with a readable table naming every fault and no pointer
  moves; a broken target lands nowhere, and 02/03 refuse a lake without a validated version, naming 01_validate.

Each test prints its figures (requests tried, statuses, faults injected, partial versions found)."""
import collections, hashlib, io, json, os, random, signal, socket, subprocess, sys, tarfile, textwrap, threading, time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import psutil
import pytest
import requests
import xgboost as xgb
from hypothesis import HealthCheck, given, settings, strategies as st

from ml_lifecycle.platform.capture import read_capture
from ml_lifecycle.platform.endpoint import LocalEndpoint
from ml_lifecycle.platform.payload import ServedModel, pack_model
from ml_lifecycle.platform.storage import Lake

FEATURES = ["a", "b", "c"]
ENDPOINT = "fuzz-endpoint"
GOOD = b"0.5,-1.25,3\n"
FIGURES: dict = {}   # printed at the end of the module


def _report(name, **figures):
    FIGURES[name] = figures
    print(f"\n[reliability] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3)).round(3)
    bst = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                    xgb.DMatrix(X, (X[:, 0] + X[:, 1] > 0).astype(int)), 20)
    d = tmp_path_factory.mktemp("pkg")
    tar = pack_model(bst, {"features": FEATURES}, d/"model.tar.gz")
    return tar, bst


def _family(pid: int) -> list[psutil.Process]:
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def _alive(pid: int) -> bool:
    try: return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return False


# ===================================================================================================================
# Fuzzing
# ===================================================================================================================

class Fuzz:
    "An endpoint under fuzzing, with the tally of what it answered."
    def __init__(self, ep, expected):
        self.ep, self.expected = ep, expected
        self.session = requests.Session()
        self.pids = [p.pid for p in _family(ep.pid)]
        self.status = collections.Counter()
        self.server_errors: list = []

    def send(self, method, path, body, headers):
        try:
            r = self.session.request(method, self.ep.url + path, data=body, headers=headers, timeout=30)
        except requests.ConnectionError:  # the server may close a connection on a malformed request; never die
            self.session = requests.Session(); self.status["closed"] += 1; self.check_alive(); return None
        status = r.status_code
        if status == 424:  # the Runtime route reports a container's error as ModelError: tally the container's status
            try: status = int(r.json()["OriginalStatusCode"])
            except (ValueError, KeyError, TypeError): pass
        self.status[status] += 1
        if status >= 500:
            self.server_errors.append((status, r.text[:160], method, path, headers, body[:80]))
        return r

    def check_alive(self):
        dead = [pid for pid in self.pids if not _alive(pid)]
        assert not dead, f"server process(es) {dead} died"

    def check_good(self):
        r = self.session.post(self.ep.url + f"/endpoints/{ENDPOINT}/invocations", data=GOOD,
                              headers={"Content-Type": "text/csv"}, timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        assert np.float32(r.text.split()[0]) == self.expected
        self.status["good-after-bad"] += 1
        self.check_alive()


@pytest.fixture(scope="module")
def fuzz(model, tmp_path_factory):
    tar, bst = model
    ep = LocalEndpoint(tar, endpoint_name=ENDPOINT, capture_root=tmp_path_factory.mktemp("capture")).start()
    expected = bst.predict(xgb.DMatrix(np.array([[0.5, -1.25, 3.0]])))[0]
    f = Fuzz(ep, np.float32(expected))
    yield f
    assert ep.running, "the endpoint died during fuzzing"
    ep.stop()


# --- generators ----------------------------------------------------------------------------------------------------

_num = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e309", "-1e400", "1e-400",
                                  "9" * 400, "0x10", "1_000", " 7 ", "", "١٢", "½", "٣.٥", "1,5", "true", "null",
                                  "\u00a0", "１２", "𝟙"]))
_cell = st.one_of(_num, st.text(max_size=12), st.text(alphabet="0123456789.eE+-", max_size=8))
_row = st.lists(_cell, min_size=0, max_size=6)
_sep = st.sampled_from([",", ";", "\t", " ", ",,"])
_eol = st.sampled_from(["\n", "\r\n", "\r", "\n\n", ""])


@st.composite
def csv_bodies(draw):
    rows = draw(st.lists(_row, min_size=0, max_size=8))
    sep, eol = draw(_sep), draw(_eol)
    text = eol.join(sep.join(c for c in r) for r in rows) + draw(st.sampled_from(["", "\n", "\x00", '"', "\ufeff"]))
    if draw(st.booleans()): text = draw(st.sampled_from(["a,b,c\n", "\ufeff", "label,a,b,c\n", ""])) + text
    enc = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8"]))
    return text.encode(enc, errors="replace")


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-10**400, 10**400),
                       st.sampled_from([10**400, -(2**1024), 2**1023, 10**308, 1e308, -0.0, 5e-324]),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_json_any = st.recursive(_json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                            st.dictionaries(st.text(max_size=5), kids, max_size=4)),
                         max_leaves=20)


@st.composite
def json_bodies(draw):
    kind = draw(st.sampled_from(["instances", "instances-rows", "instances-rows", "instances-objects", "any", "deep",
                                 "broken"]))
    if kind == "instances": doc = {"instances": draw(_json_any)}
    elif kind == "instances-rows": doc = {"instances": draw(st.lists(st.lists(_json_leaf, max_size=5), max_size=4))}
    elif kind == "instances-objects":
        keys = st.sampled_from(FEATURES + ["d", "label", "", "a "])
        doc = {"instances": draw(st.lists(st.dictionaries(keys, _json_leaf, max_size=4), max_size=4))}
    elif kind == "any": doc = draw(_json_any)
    elif kind == "deep":
        n = draw(st.sampled_from([50, 1_000, 100_000]))
        return (b'{"instances": ' + b"[" * n + b"1" + b"]" * n + b"}") if draw(st.booleans()) else b'{"a":' * n + b"1" + b"}" * n
    else: return draw(st.sampled_from([b"{", b'{"instances": [[1,2,3]]', b"[1,2,3]", b"null", b'"x"', b"NaN",
                                       b'{"instances": [[1,2,3]]}garbage', b"\xff\xfe{}", b"{'instances': [[1,2,3]]}"]))
    text = json.dumps(doc, allow_nan=True)  # NaN/Infinity too: Python's parser accepts them
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16"])))


_media = st.sampled_from(["text/csv", "application/json", "TEXT/CSV", "Application/JSON", "text/plain",
                          "application/x-npy", "application/octet-stream", "application/jsonlines", "text/csv+json",
                          "multipart/form-data; boundary=x", "*/*", "", "text/", "/json", ";", "text/csv;",
                          "application/x-www-form-urlencoded", "image/png"])
_param = st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", ";charset=UTF-16", "; q=0.5", "; label_size=1",
                          "; header=present", ";;;", "; charset=\"utf-8\"", "; x"])
_garbage = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                   max_size=40)
_header_value = st.one_of(st.builds(lambda m, p: m + p, _media, _param), _garbage,
                          st.builds(lambda a, b: f"{a}, {b}", _media, _media))


_VALID_CSV = st.builds(lambda m, p: m + p, st.sampled_from(["text/csv", "TEXT/CSV", "text/csv "]), _param)
_VALID_JSON = st.builds(lambda m, p: m + p, st.sampled_from(["application/json", "Application/JSON"]), _param)


@st.composite
def requests_(draw):
    "A request as a client could send it: mostly to a real route with a plausible content type, so that the body parsers are reached."
    kind = draw(st.sampled_from(["csv", "csv", "json", "json", "bytes"]))
    body = draw({"csv": csv_bodies(), "json": json_bodies(), "bytes": st.binary(max_size=600)}[kind])
    headers = {}
    if draw(st.integers(0, 9)) < 7:   # the content type that fits the body (or the other valid one)
        ctype = draw(_VALID_JSON if kind == "json" else _VALID_CSV) if draw(st.integers(0, 4)) else draw(_VALID_CSV | _VALID_JSON)
        headers["Content-Type"] = ctype
    elif draw(st.integers(0, 5)): headers["Content-Type"] = draw(_header_value)
    if draw(st.integers(0, 2)): headers["Accept"] = draw(_header_value | _VALID_CSV | _VALID_JSON | st.just("*/*"))
    for name in ("X-Amzn-SageMaker-Target-Variant", "X-Amzn-SageMaker-Custom-Attributes",
                 "X-Amzn-SageMaker-Inference-Id", "Content-Encoding"):
        if not draw(st.integers(0, 6)): headers[name] = draw(_garbage | st.just("AllTraffic"))
    headers = {k: v.lstrip(" \t").encode("latin-1") for k, v in headers.items()}  # HTTP strips leading blanks anyway
    path = draw(st.sampled_from(["/invocations"] * 12 + [f"/endpoints/{ENDPOINT}/invocations"] * 12 + [
        "/endpoints/other/invocations", "/endpoints//invocations", "/invocations/", "/ping", "/",
        "/endpoints/%00/invocations", f"/endpoints/{ENDPOINT}/invocations?x=1", "/" + "a" * 3000]))
    method = draw(st.sampled_from(["POST"] * 20 + ["GET", "PUT", "DELETE", "PATCH"]))
    return method, path, body, headers


FUZZ_EXAMPLES = int(os.environ.get("ML_LIFECYCLE_FUZZ_EXAMPLES", 400))


@pytest.mark.slow
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), print_blob=True)
@given(req=requests_())
def test_fuzz_http_requests(fuzz, req):
    method, path, body, headers = req
    fuzz.send(method, path, body, headers)   # 5xx answers are tallied; test_fuzz_figures fails on any
    fuzz.check_good()                        # the hard invariants: still alive, still right, after every request


@pytest.mark.slow
@settings(max_examples=max(FUZZ_EXAMPLES // 4, 20), deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda junk: b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + junk, st.binary(max_size=300)),
    st.builds(lambda n, b: b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: "
              + str(n).encode() + b"\r\n\r\n" + b, st.integers(0, 10**7), st.binary(max_size=50)),
    st.sampled_from([b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
                     b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     b"POST /invocations HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"a" * 70_000 + b"\r\n\r\n",
                     b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n1,2,3"])))
def test_fuzz_raw_http(fuzz, raw):
    "Bytes straight onto the socket (bad request lines, lying lengths, a TLS hello): the server survives."
    host, port = fuzz.ep.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            s.sendall(raw); s.shutdown(socket.SHUT_WR)
            head = s.recv(64)
        except (socket.timeout, ConnectionError): head = b""
    fuzz.status["raw"] += 1
    if head.startswith(b"HTTP/1.1 5"):
        fuzz.server_errors.append(("RAW", raw[:120], head)); fuzz.status["raw-5xx"] += 1
    fuzz.check_good()
    assert not head.startswith(b"HTTP/1.1 5"), (raw[:200], head)


@pytest.mark.slow
def test_fuzz_figures(fuzz):
    "Runs after the fuzzers: the tally, and the endpoint still alive with the same processes."
    fuzz.check_good()
    s = fuzz.status
    tried = sum(v for k, v in s.items() if isinstance(k, int)) + s["closed"] + s["raw"]
    fx = sum(v for k, v in s.items() if isinstance(k, int) and 400 <= k < 500)
    f5 = sum(v for k, v in s.items() if isinstance(k, int) and k >= 500) + s["raw-5xx"]
    _report("fuzz", requests_tried=tried, statuses=dict(sorted((str(k), v) for k, v in s.items())), status_4xx=fx,
            status_5xx=f5, good_after_bad=s["good-after-bad"], server_processes_alive=len(fuzz.pids))
    kinds = collections.Counter(e[1].split(":")[1] if e[0] != "RAW" else "raw" for e in fuzz.server_errors)
    first = {}
    for e in fuzz.server_errors: first.setdefault(e[1].split(":")[1] if e[0] != "RAW" else "raw", e)
    for k, e in first.items(): print(f"  5xx x{kinds[k]}: {e}")
    assert tried >= 50 and s["good-after-bad"] >= tried - s["raw"]
    assert f5 == 0, f"{f5} client mistakes were answered with 5xx, of {len(first)} kinds: {list(first.values())}"


@pytest.mark.parametrize("body", [
    b'{"instances": [[' + b"9" * 400 + b', 1, 2]]}',                       # an integer too large for a float
    b'{"instances": [{"a": -' + b"1" * 400 + b'}]}',
    b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",             # nesting deeper than the parser's stack
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"instances": [[' + b"9" * 5_000 + b', 1, 2]]}',                     # more digits than Python parses
], ids=["huge-int-list", "huge-int-object", "deep-arrays", "deep-objects", "too-many-digits"])
def test_json_client_mistakes_are_4xx(fuzz, body):
    "The 5xx kinds the fuzzer found, pinned as plain examples: each is the client's mistake, so a 4xx."
    r = fuzz.send("POST", "/invocations", body, {"Content-Type": "application/json"})
    fuzz.check_good()
    assert r.status_code < 500, (r.status_code, r.text[:200])


# ===================================================================================================================
# Load
# ===================================================================================================================

LOAD_SECONDS = float(os.environ.get("ML_LIFECYCLE_LOAD_SECONDS", 60))


@pytest.mark.slow
def test_load_zero_errors_stable_memory(model, tmp_path):
    tar, bst = model
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(50, 3)).round(4)
    batch_body = "\n".join(",".join(map(str, r)) for r in batch).encode() + b"\n"
    batch_expected = bst.predict(xgb.DMatrix(batch))
    capture = tmp_path/"capture"
    with LocalEndpoint(tar, endpoint_name="load-endpoint", capture_root=capture) as ep:
        pids = [p.pid for p in _family(ep.pid)]
        latencies, errors, stop = [], collections.Counter(), threading.Event()
        lock = threading.Lock()

        def client(i):
            s, lat, k = requests.Session(), [], 0
            while not stop.is_set():
                single = k % 4 != 3; k += 1
                body = GOOD if single else batch_body
                url = ep.url + ("/invocations" if i % 2 else "/endpoints/load-endpoint/invocations")
                t0 = time.perf_counter()
                try:
                    r = s.post(url, data=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=30)
                    ok = r.status_code == 200 and len(r.text.split()) == (1 if single else len(batch))
                    if ok and not single: ok = np.allclose(np.float32(r.text.split()), batch_expected)
                except requests.RequestException as e: ok, r = False, e
                lat.append(time.perf_counter() - t0)
                if not ok:
                    with lock: errors[str(getattr(r, "status_code", type(r).__name__))] += 1
            with lock: latencies.extend(lat)

        rss = []
        def rss_now(): return sum(p.memory_info().rss for p in _family(ep.pid))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        t0 = time.perf_counter()
        for t in threads: t.start()
        while time.perf_counter() - t0 < LOAD_SECONDS:
            time.sleep(1); rss.append((time.perf_counter() - t0, rss_now()))
        stop.set()
        for t in threads: t.join()
        elapsed = time.perf_counter() - t0
        assert all(_alive(p) for p in pids), "a server process died under load"
        time.sleep(0.5)
        records = read_capture(capture, "load-endpoint")
    n = len(latencies)
    warm = [v for t, v in rss if t >= min(10, LOAD_SECONDS / 3)]
    start_rss, end_rss, peak_rss = warm[0], rss[-1][1], max(warm)
    lat = np.array(latencies) * 1000
    _report("load", seconds=round(elapsed, 1), clients=8, requests=n, errors=sum(errors.values()),
            requests_per_s=round(n / elapsed, 1), p50_ms=round(float(np.percentile(lat, 50)), 2),
            p99_ms=round(float(np.percentile(lat, 99)), 2),
            rss_mib=f"{rss[0][1] / 2**20:.1f} (start) {start_rss / 2**20:.1f} (after warm-up) → {end_rss / 2**20:.1f} (end), peak {peak_rss / 2**20:.1f}",
            captured=len(records), capture_lost=n - sum(errors.values()) - len(records))
    assert not errors, dict(errors)
    assert n > 100
    assert peak_rss - start_rss < max(64 * 2**20, 0.25 * start_rss), "server memory grew under steady load"
    assert len(records) == n, f"{n - len(records)} successful requests were not captured"


# ===================================================================================================================
# Faults: kill -9 during ingest, processing, training
# ===================================================================================================================

TABLE = "faults"

# A fault point: the child patches `target` so that, when `when(*args)` holds, it touches the marker file and
# waits to be killed. The parent waits for the marker and sends SIGKILL: the kill lands at exactly that point.
CHILD = textwrap.dedent('''
    import importlib, os, sys, time, json
    from pathlib import Path
    marker, point, stage, lake_root, work = sys.argv[1:6]
    os.environ["ML_LIFECYCLE_WORK"] = work
    def pause(*a, **k):
        Path(marker).write_text(json.dumps({"pid": os.getpid()})); time.sleep(600)
    def at(modname, attr, when=lambda *a, **k: True):
        mod = importlib.import_module(modname); orig = getattr(mod, attr)
        def wrapper(*a, **k):
            if when(*a, **k): pause()
            return orig(*a, **k)
        setattr(mod, attr, wrapper)
    import ml_lifecycle.platform.storage as storage
    name = lambda p: Path(str(p)).name
    POINTS = {
        "staged": lambda: at("os", "replace", lambda src, dst, *a, **k: name(src).startswith(".") and name(src).endswith(".tmp") and os.path.isdir(src)),
        "pointer-tmp-written": lambda: at("os", "replace", lambda src, dst, *a, **k: name(dst) in ("raw.json", "features.json", "trained.json")),
        "before-pointer": lambda: setattr(storage.Lake, "set_pointer", (lambda orig: lambda self, *a, **k: (pause(), orig(self, *a, **k))[1])(storage.Lake.set_pointer)),
        "before-metrics": lambda: at("os", "replace", lambda src, dst, *a, **k: name(dst) == "metrics.json"),
        "model-tmp-written": lambda: at("os", "replace", lambda src, dst, *a, **k: name(dst) == "model.tar.gz"),
        "job-running": lambda: None,   # the parent kills when the job's process is up and working
        "none": lambda: None,
    }
    POINTS[point]()
    from ml_lifecycle.platform.storage import Lake
    L = Lake(lake_root)
    if stage == "ingest":
        from ml_lifecycle.ingest import ingest
        from ml_lifecycle.platform.schema import clean_columns
        import pandas as pd
        df, _ = clean_columns(pd.read_csv(Path(lake_root).parent/"source.csv"))
        m = ingest(df, L, "faults", "source.csv", "y", "yes")
        print(json.dumps({"version": m["version"]}))
    elif stage == "prepare":
        from ml_lifecycle.prepare import run_prepare
        p = run_prepare(L, "faults", seed=1, via="processing")
        print(json.dumps({"version": p["version"]}))
    elif stage == "train":
        from ml_lifecycle.train import train_model
        p = train_model(L, "faults", {"num_round": 1500, "early_stopping_rounds": 1500}, seed=1, work_dir=work)
        print(json.dumps({"version": p["job_name"]}))
''')


def _source(n=1200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(0, 10, size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    logit = 1.5 * x1 - 0.3 * x2 + (plan == "pro") * 1.2
    y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"x1": x1.round(4), "x2": x2.round(3), "calls": rng.integers(0, 9, n), "plan": plan, "y": y})


def _spawn(tmp: Path, stage: str, point: str):
    marker = tmp/f"marker-{stage}-{point}"
    marker.unlink(missing_ok=True)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), point, stage, str(tmp/"lake"), str(tmp/"work")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "SPARK_VERSION": "3.5"})
    return p, marker


def _run_to_end(tmp: Path, stage: str, timeout=600) -> str:
    p, _ = _spawn(tmp, stage, "none")
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])["version"]


def _job_started(p: psutil.Process, stage: str) -> bool:
    "The stage's job process is up and doing its work (a JVM for the Spark job; a training round for XGBoost)."
    kids = p.children(recursive=True)
    if stage == "prepare": return any("java" in (k.name() or "") for k in kids)
    return any("xgb_train" in " ".join(k.cmdline()) for k in kids if k.is_running())


def _kill_at(tmp: Path, stage: str, point: str, timeout=300) -> dict:
    "Run `stage` in a child, SIGKILL it at `point`; returns what was running then and what outlived the kill."
    p, marker = _spawn(tmp, stage, point)
    proc, t0 = psutil.Process(p.pid), time.time()
    while True:
        assert p.poll() is None, f"{stage} ended before the fault point {point}: {p.stderr.read()[-3000:]}"
        if point == "job-running":
            if _job_started(proc, stage):
                time.sleep(3 if stage == "prepare" else 1.0)
                assert _job_started(proc, stage), f"the {stage} job ended before the kill: the fault point was missed"
                break
        elif marker.exists(): break
        assert time.time() - t0 < timeout, f"fault point {point} of {stage} never reached"
        time.sleep(0.05)
    family = [k for k in proc.children(recursive=True)]
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(k.pid) for k in family): time.sleep(0.2)
    orphans = [(k.pid, " ".join(k.cmdline())[:80]) for k in family if _alive(k.pid)]
    for k in family:  # never leave them behind, whatever the test finds
        try: k.kill()
        except psutil.NoSuchProcess: pass
    return {"killed_after_s": round(time.time() - t0, 1), "children": len(family), "orphans": orphans}


VOLATILE = ("updated", "seconds", "created")  # when a pointer moved or a version was first written, how long a job took


def _content(name: str, data: bytes) -> bytes:
    """`data` with the volatile fields of JSON documents (also inside .tar.gz archives) left out; Parquet by content
    (parquet-mr lists a column chunk's encodings in hash-set order, so equal data can differ in a few footer bytes)."""
    if name.endswith(".parquet"):
        t = pq.read_table(io.BytesIO(data))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w: w.write_table(t)
        return sink.getvalue().to_pybytes()
    if name.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            return b"".join(m.name.encode() + b"\0" + _content(m.name, t.extractfile(m).read())
                            for m in t.getmembers() if m.isfile())
    if not name.endswith(".json"): return data
    doc = json.loads(data)
    if isinstance(doc, dict): doc = {k: v for k, v in doc.items() if k not in VOLATILE}
    return json.dumps(doc, sort_keys=True).encode()


def lake_state(root: Path) -> dict:
    "Checksums of every file in the lake except the volatile ones (summaries, MLflow, timings); hidden names included."
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not rel.startswith(("_summaries", "_mlflow")):
            out[rel] = hashlib.sha256(_content(p.name, p.read_bytes())).hexdigest()[:16]
    return out


def partial_versions(root: Path) -> list[str]:
    "What a reader could see half-written: version folders without their completion marker, model folders without their files."
    bad = []
    for zone in ("raw", "features"):
        for v in root.glob(f"{zone}/*/*"):
            if v.name.startswith("version=") and not (v/"_SUCCESS").exists(): bad.append(f"{v.relative_to(root)}: no _SUCCESS")
            if zone == "raw" and v.name.startswith("version=") and not (v/"_manifest.json").exists(): bad.append(f"{v.relative_to(root)}: no manifest")
    for job in root.glob("models/*/*"):
        if job.is_dir() and not {"model.tar.gz", "metrics.json"} <= {p.name for p in job.iterdir()}:
            bad.append(f"{job.relative_to(root)}: incomplete model folder {sorted(p.name for p in job.iterdir())}")
    return bad


def leftovers(root: Path) -> list[str]:
    "Hidden temporary files and folders of killed writers (invisible to readers; the next writer sweeps them)."
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))
            and not str(p.relative_to(root)).startswith("_mlflow") and not any(q.name.endswith((".tmp", ".old")) for q in p.relative_to(root).parents)]


def _pointers(root: Path) -> dict:
    return {p.stem: {k: v for k, v in json.loads(p.read_text()).items() if k not in VOLATILE}
            for p in sorted((root/"_pointers"/TABLE).glob("*.json"))}


@pytest.fixture(scope="module")
def fault_lake(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    _source().to_csv(tmp/"source.csv", index=False)
    return tmp


# Each stage is killed at every point in turn (a crash loop: each run is killed before it can finish), then run to
# the end once to recover, then once more to show the recovered lake is stable.
FAULTS = {"ingest": ["staged", "pointer-tmp-written", "before-pointer"],
          "prepare": ["job-running", "staged", "before-pointer"],
          "train": ["job-running", "staged", "before-pointer"]}
POINTER = {"ingest": ("raw", "version"), "prepare": ("features", "version"), "train": ("trained", "job_name")}
ZONE = {"ingest": "raw", "prepare": "features", "train": "models"}
FAULT_LOG: list = []


def _validated_from_raw(root: Path):
    "Stand-in for 01_validate (tested on its own): the `validated` pointer = the `raw` pointer + checks."
    L = Lake(root/"lake")
    raw = L.pointer(TABLE, "raw")
    L.set_pointer(TABLE, "validated", **{k: raw[k] for k in ("version", "uri", "manifest", "rows", "columns", "target",
                                                                "positive_label")}, checks={"failed": 0})


def rows_lost(root: Path, stage: str, n_source: int) -> int:
    "Rows (or models) the lake should hold after the stage and does not: source rows minus what the pointed version holds."
    L = Lake(root)
    if stage == "ingest":
        return n_source - len(pd.read_parquet(Path(L.pointer(TABLE, "raw")["manifest"]).parent/"part-00000.parquet"))
    if stage == "prepare":
        f = L.pointer(TABLE, "features")
        got = sum(len(pd.read_csv(Path(f[s])/"data.csv", header=None)) for s in ("train", "validation", "test"))
        return L.pointer(TABLE, "validated")["rows"] - got
    t = L.pointer(TABLE, "trained")
    with tarfile.open(t["model_data"]) as tar: ok = "xgboost-model" in tar.getnames()
    return 0 if ok else 1


CRASHED: set = set()  # the stages `crash_and_recover` has been through on the module's fault lake


def crash_and_recover(fault_lake: Path, stage: str):
    """Kill `stage` at each of its fault points, checking the lake after every kill, then recover it by re-running,
    twice. The stages before it are crashed and recovered first, so that any one test can run alone."""
    for earlier in list(FAULTS)[:list(FAULTS).index(stage)]:
        if earlier not in CRASHED: crash_and_recover(fault_lake, earlier)
    tmp, root = fault_lake, fault_lake/"lake"
    if stage == "prepare": _validated_from_raw(tmp)
    ptr, key = POINTER[stage]
    for point in FAULTS[stage]:
        before_ptr = _pointers(root)
        info = _kill_at(tmp, stage, point)
        partial, litter = partial_versions(root), leftovers(root)
        after_ptr = _pointers(root)
        moved = sorted(k for k in after_ptr if after_ptr[k] != before_ptr.get(k))
        FAULT_LOG.append({"stage": stage, "point": point, **info, "partial_versions": len(partial),
                          "hidden_leftovers": len(litter), "pointers_moved": moved})
        print(f"\n[fault] {stage} killed at {point}: {FAULT_LOG[-1]}")
        assert not info["orphans"], f"processes outlived the killed {stage}: {info['orphans']}"
        assert not partial, f"partial versions after kill -9 of {stage} at {point}: {partial}"
        assert not moved, f"pointers moved by a {stage} killed at {point}: {moved}"
    # the re-run completes and sweeps the litter; a second re-run changes nothing and adds no version
    v1 = _run_to_end(tmp, stage)
    assert not partial_versions(root)
    assert not leftovers(root), f"the re-run did not sweep what the killed {stage} left: {leftovers(root)}"
    assert _pointers(root)[ptr][key] == v1
    state, versions = lake_state(root), sorted(p.name for p in (root/ZONE[stage]/TABLE).iterdir())
    assert _run_to_end(tmp, stage) == v1
    assert lake_state(root) == state, "re-running after recovery changed the lake"
    assert sorted(p.name for p in (root/ZONE[stage]/TABLE).iterdir()) == versions == [v1 if stage == "train" else f"version={v1}"]
    lost = rows_lost(root, stage, len(_source()))
    log = [f for f in FAULT_LOG if f["stage"] == stage]
    _report(f"faults-{stage}", injected=len(log), points=FAULTS[stage], partial_versions_found=sum(f["partial_versions"] for f in log),
            hidden_leftovers_after_kills=max(f["hidden_leftovers"] for f in log), hidden_leftovers_after_rerun=len(leftovers(root)), pointers_moved=sum(len(f["pointers_moved"]) for f in log),
            orphans=sum(len(f["orphans"]) for f in log), versions_after_rerun=len(versions), data_lost=lost)
    assert lost == 0
    CRASHED.add(stage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(FAULTS))
def test_kill9_leaves_no_partial_version_and_rerun_completes(fault_lake, stage):
    "kill -9 at every fault point of `stage` leaves no partial version and moves no pointer; re-runs recover it."
    crash_and_recover(fault_lake, stage)


@pytest.mark.slow
def test_recovered_lake_equals_a_clean_one(fault_lake, tmp_path):
    "The lake recovered from every kill holds the same raw/features/model versions as a lake never interrupted."
    root = fault_lake/"lake"
    for stage in FAULTS:
        if stage not in CRASHED: crash_and_recover(fault_lake, stage)
    clean = tmp_path
    (clean/"source.csv").write_bytes((fault_lake/"source.csv").read_bytes())
    got = {"raw": _run_to_end(clean, "ingest")}
    _validated_from_raw(clean)
    got["features"] = _run_to_end(clean, "prepare")
    got["trained"] = _run_to_end(clean, "train")
    ptr = _pointers(root)
    assert got == {"raw": ptr["raw"]["version"], "features": ptr["features"]["version"], "trained": ptr["trained"]["job_name"]}
    same = lambda p: {k: v for k, v in lake_state(p).items() if k.startswith(("raw/", "features/", "models/"))}
    assert same(root) == same(clean/"lake"), "recovered data differs from a clean run's"
    lost = sum(rows_lost(root, s, len(_source())) for s in FAULTS)
    _report("faults-total", injected=len(FAULT_LOG), partial_versions_found=sum(f["partial_versions"] for f in FAULT_LOG),
            orphans=sum(len(f["orphans"]) for f in FAULT_LOG), differs_from_clean_lake=0, data_lost=lost)
    assert lost == 0


# ===================================================================================================================
# Data: corrupted input stops at the quality gate
# ===================================================================================================================

from ml_lifecycle.platform.config import make_params, project_root
from ml_lifecycle.platform.runner import NotebookFailed, run_notebook
from ml_lifecycle.platform.storage import LakeError

NBS = project_root()/"nbs"


def _corrupt(df: pd.DataFrame, seed=5) -> tuple[pd.DataFrame, dict]:
    """A delivery gone wrong: negative counts, a complete column half empty, a far-off number (a broken target is
    stopped earlier, by 00_ingest's parameter check: see the next test)."""
    rng, bad = np.random.default_rng(seed), df.copy()
    hit = lambda share: rng.uniform(size=len(bad)) < share
    bad["calls"] = np.where(hit(0.2), -bad["calls"] - 1, bad["calls"])          # counts can't be negative
    bad["x1"] = np.where(hit(0.5), np.nan, bad["x1"])                          # was complete
    bad["x2"] = np.where(hit(0.05), 1e6, bad["x2"])                            # far outside [0, 10]
    return bad, {"calls": "negative", "x1": "null", "x2": "out of range"}


def _deliver(tmp: Path, df: pd.DataFrame, name: str) -> tuple[Lake, str, dict]:
    "Write `df` as the CSV `name` and ingest it as 00_ingest does; returns the lake, table and notebook parameters."
    from ml_lifecycle.ingest import ingest
    from ml_lifecycle.platform.schema import clean_columns
    csv = tmp/"data"/name; csv.parent.mkdir(exist_ok=True); df.to_csv(csv, index=False)
    params = {"lake": str(tmp/"lake"), "dataset": str(csv), "target": "y", "positive_label": "yes"}
    table, L = make_params(**params).table, Lake(tmp/"lake")
    clean, renamed = clean_columns(pd.read_csv(csv))
    ingest(clean, L, table, str(csv), "y", "yes", renamed=renamed)
    return L, table, params


def _downstream(L: Lake, table: str) -> dict:
    return {n: L.read_json("_pointers", table, f"{n}.json") if L.exists("_pointers", table, f"{n}.json") else None
            for n in ("validated", "features", "trained")}


@pytest.mark.slow
@pytest.mark.notebooks
def test_corrupted_delivery_stops_at_the_gate(tmp_path):
    "A good delivery passes 01_validate; a corrupted later one stops there with a readable table and moves nothing."
    src = _source(600, seed=2)
    L, table, params = _deliver(tmp_path, src, "churn_feed.csv")
    run_notebook(NBS/"01_validate.ipynb", tmp_path/"01_good.ipynb", params)
    good = _downstream(L, table)
    assert good["validated"]["version"] == L.pointer(table, "raw")["version"]

    bad, injected = _corrupt(src)
    _, _, params = _deliver(tmp_path, bad, "churn_feed.csv")
    bad_version = L.pointer(table, "raw")["version"]
    assert bad_version != good["validated"]["version"]
    with pytest.raises(NotebookFailed) as e:
        run_notebook(NBS/"01_validate.ipynb", tmp_path/"01_bad.ipynb", params)
    msg = e.value.evalue
    print(f"\n[data] 01_validate on the corrupted version stopped with {e.value.ename}:\n{msg}")
    assert e.value.ename == "QualityGateError" and "NOT moved" in msg and bad_version in msg
    lines = msg.splitlines()[1:]
    assert lines[0].split() == ["constraint", "column", "check", "message"], "the report is a table with a header"
    caught = {c for c in injected if any(f" {c} " in f" {l} " for l in lines[1:])}
    assert caught == set(injected), f"faults not named in the report: {set(injected) - caught}"
    assert _downstream(L, table) == good, "a pointer moved after the gate failed"
    report = L.read_json("quality", table, f"version={bad_version}", "verification.json")  # saved before the gate
    assert report["failed"] >= len(lines) - 1 and report["status"] == "Error"
    _report("data-gate", faults_injected=len(injected), faults_reported=len(caught), failed_checks=len(lines) - 1,
            pointers_moved=0, rows_delivered=len(bad))


@pytest.mark.slow
@pytest.mark.notebooks
def test_broken_first_delivery_lands_nowhere(tmp_path):
    """A target holding numbers next to 'yes'/'no' stops 00_ingest in its first cell; a lake without a validated version
    makes 02 and 03 refuse before any work, naming 01_validate."""
    src = _source(400, seed=3)
    broken = src.assign(y=np.where(np.arange(len(src)) % 3 == 0, "1", src["y"]))
    csv = tmp_path/"data"/"first_feed.csv"; csv.parent.mkdir(); broken.to_csv(csv, index=False)
    params = {"lake": str(tmp_path/"lake"), "dataset": str(csv), "target": "y", "positive_label": "yes"}
    with pytest.raises(NotebookFailed) as e:
        run_notebook(NBS/"00_ingest.ipynb", tmp_path/"00.ipynb", params)
    print(f"\n[data] broken target: 00_ingest stopped in cell {e.value.cell}: {e.value.ename}: {e.value.evalue}")
    assert e.value.ename == "ParameterError" and "['1', 'no', 'yes']" in e.value.evalue and "exactly 2" in e.value.evalue
    assert not (tmp_path/"lake").exists() or not any((tmp_path/"lake").rglob("*.parquet")), "broken data landed"
    # the repaired delivery is ingested, but not validated yet: nothing downstream may run on it
    L, table, params = _deliver(tmp_path, src, "first_feed.csv")
    refused = {}
    for nb in ("02_explore", "03_prepare"):
        t0 = time.perf_counter()
        with pytest.raises(NotebookFailed) as e:
            run_notebook(NBS/f"{nb}.ipynb", tmp_path/f"{nb}.ipynb", params)
        assert e.value.ename == "LakeError" and "run 01_validate first" in e.value.evalue, (nb, e.value)
        refused[nb] = round(time.perf_counter() - t0, 1)
    with pytest.raises(LakeError, match="01_validate"): L.pointer(table, "validated")
    assert _downstream(L, table) == {"validated": None, "features": None, "trained": None}
    assert not L.exists("features", table) and not L.exists("explore", table)
    _report("data-first-delivery", broken_rows=int((broken.y == "1").sum()), rows_landed=0,
            stages_refused=len(refused), refusal_seconds=refused, pointers_moved=0)


# ===================================================================================================================
# Re-runs: the same notebook twice on the same lake
# ===================================================================================================================

def _table_pointers(root: Path, table: str) -> dict:
    return {p.stem: {k: v for k, v in json.loads(p.read_text()).items() if k not in VOLATILE}
            for p in sorted((root/"_pointers"/table).glob("*.json"))}


@pytest.mark.slow
@pytest.mark.notebooks
def test_notebooks_rerun_give_same_outputs_no_duplicates(tmp_path):
    """00_ingest, 03_prepare and 04_train, each run twice on the same lake: the second run changes no file, pointer or
    version, and adds no version, model or row (01_validate's re-run is part of the series test)."""
    root, work = tmp_path/"lake", tmp_path/"work"
    params = {"lake": str(root)}
    table, L = make_params(**params).table, Lake(root)
    figures = {}
    for nb, extra in [("00_ingest", {}), ("03_prepare", {}), ("04_train", {"work_dir": str(work)})]:
        if nb == "03_prepare":   # stand-in for 01_validate (its gate has its own tests): validated = raw + checks
            raw = L.pointer(table, "raw")
            L.set_pointer(table, "validated", **{k: raw[k] for k in ("version", "uri", "manifest", "rows", "columns",
                                                                     "target", "positive_label")}, checks={"failed": 0})
        zone = {"00_ingest": "raw", "03_prepare": "features", "04_train": "models"}[nb]
        runs = []
        for i in (1, 2):
            t0 = time.perf_counter()
            run_notebook(NBS/f"{nb}.ipynb", tmp_path/f"{nb}-{i}.ipynb", {**params, **extra})
            runs.append({"seconds": round(time.perf_counter() - t0, 1), "state": lake_state(root),
                         "pointers": _table_pointers(root, table), "versions": sorted(L.ls(zone, table))})
        first, second = runs
        changed = sorted(k for k in first["state"].keys() | second["state"].keys()
                         if first["state"].get(k) != second["state"].get(k))
        figures[nb] = {"files": len(second["state"]), "changed_by_rerun": len(changed),
                       "versions": len(second["versions"]), "seconds": [r["seconds"] for r in runs]}
        print(f"\n[rerun] {nb}: {figures[nb]}" + (f" changed: {changed[:10]}" if changed else ""))
        assert not changed, f"re-running {nb} changed {changed}"
        assert first["pointers"] == second["pointers"]
        assert second["versions"] == first["versions"] and len(second["versions"]) == 1, second["versions"]
    rows = len(pd.read_parquet(root/"raw"/table/L.ls("raw", table)[0]/"part-00000.parquet"))
    splits = L.pointer(table, "features")["rows"]
    assert sum(splits.values()) == rows == L.pointer(table, "raw")["rows"], (splits, rows)  # no row twice, none lost
    _report("reruns", notebooks=len(figures), files_changed=sum(f["changed_by_rerun"] for f in figures.values()),
            duplicate_versions=sum(f["versions"] - 1 for f in figures.values()), rows=rows, **{k: v["seconds"] for k, v in figures.items()})
