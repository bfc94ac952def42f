"""Endpoint: single-row CSV latency (p50/p99) and throughput on loopback, `LocalEndpoint` against
`mlflow models serve --env-manager local` on the same XGBoost model, driven by `wrk` (closed loop, N connections)."""
from __future__ import annotations
import inspect, json, os, re, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

from ml_lifecycle.platform.processes import free_port
from common import CACHE, features_fixture, loadavg, median, model_fixture, read_split, row

HOW = ("wrk 4.1 (1 thread, closed loop) on 127.0.0.1, POST /invocations with one CSV row of the test split; "
       "c=1 for latency, c=16 for throughput; {dur}s per measurement after a 3 s warm-up per server, "
       "{reps} interleaved repeats, median; same model, same worker count; mlflow gets the same row with a header "
       "line (its CSV format needs one)")

LUA = r"""
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY_FILE") and io.open(os.getenv("WRK_BODY_FILE")):read("*a") or ""
wrk.headers["Content-Type"] = "text/csv"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d}\n',
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout + e.status, e.status))
end
"""


def wrk(url: str, body_file: Path, lua: Path, connections: int, seconds: int) -> dict:
    "One wrk measurement; latencies in ms, throughput in requests/s."
    if not shutil.which("wrk"): raise RuntimeError("wrk not found: `apt-get install wrk` (make bench does it as root)")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(lua), url],
                         capture_output=True, text=True, env={**os.environ, "WRK_BODY_FILE": str(body_file)}, check=True).stdout
    d = json.loads(re.search(r"WRKJSON (\{.*\})", out).group(1))
    if d["errors"]: raise RuntimeError(f"wrk saw {d['errors']} errors ({d['non2xx']} non-2xx) at {url}:\n{out}")
    return {"p50_ms": d["p50_us"] / 1e3, "p90_ms": d["p90_us"] / 1e3, "p99_ms": d["p99_us"] / 1e3,
            "rps": d["requests"] / (d["duration_us"] / 1e6)}


def in_process(model_dir: Path, line: str, n: int = 2000) -> dict:
    "Latency floor without HTTP: parse_csv + ServedModel.predict + format_predictions of the same row, in this process."
    from ml_lifecycle.platform.payload import ServedModel, format_predictions, parse_csv
    m = ServedModel(model_dir, nthread=1); body = (line + "\n").encode(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); format_predictions(m.predict(parse_csv(body, m.features)), "text/csv")
        ts.append(time.perf_counter() - t0)
    ms = np.array(ts[n // 10:]) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


class MlflowServer:
    "`mlflow models serve --env-manager local` of an MLflow model, in its own process group."
    def __init__(self, model_uri: Path, workers: int): self.model_uri, self.workers, self.proc = model_uri, workers, None
    def start(self, timeout: float = 120):
        import requests
        self.port = free_port(); t0 = time.perf_counter()
        self.log = open(Path(tempfile.gettempdir())/f"bench-mlflow-{self.port}.log", "w+b")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent/"mlflow"), "models", "serve", "-m", str(self.model_uri),
                                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workers)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None: break
            try:
                if requests.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    self.startup_s = time.perf_counter() - t0; return self
            except requests.RequestException: pass
            time.sleep(0.1)
        self.log.seek(0); tail = self.log.read().decode(errors="replace")[-3000:]; self.stop()
        raise RuntimeError(f"mlflow models serve did not come up:\n{tail}")
    @property
    def url(self): return f"http://127.0.0.1:{self.port}"
    def stop(self):
        if self.proc and self.proc.poll() is None:
            try: os.killpg(self.proc.pid, signal.SIGTERM); self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try: os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError: pass
        self.proc = None


def mlflow_model(model_dir: Path, features: list[str]) -> Path:
    "The same booster saved as an MLflow model (mlflow.xgboost.save_model), with the feature names as its columns."
    import mlflow, xgboost as xgb
    out = CACHE/("mlflow-model-" + model_dir.parent.name)
    if (out/"MLmodel").exists(): return out
    from ml_lifecycle.scripts.xgb_train import load_booster, MODEL_FILE
    b = load_booster(model_dir/MODEL_FILE)
    b.feature_names = list(features)  # mlflow's CSV input has a header; the trees are unchanged
    mlflow.xgboost.save_model(b, str(out))
    return out


def endpoint_workers_param() -> str | None:
    from ml_lifecycle.platform.endpoint import LocalEndpoint
    ps = inspect.signature(LocalEndpoint).parameters
    return next((p for p in ("workers", "n_workers", "num_workers") if p in ps), None)


def run(quick: bool = False) -> dict:
    from ml_lifecycle.platform.endpoint import LocalEndpoint
    feat = features_fixture(quick); model_dir = model_fixture(feat, quick)
    X, _ = read_split(feat["test"])
    line = (Path(feat["test"])/"data.csv").read_text().splitlines()[0].split(",", 1)[1]  # first test row, no label
    dur, reps, conns = (1, 1, 4) if quick else (10, 3, 16)
    wparam = endpoint_workers_param()
    workers = [1] + ([2] if wparam and not quick else [])
    rows, details = [], {"workers_param": wparam}
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        tmp = Path(tmp)
        (tmp/"ours.csv").write_text(line + "\n"); (tmp/"empty").write_text(""); (tmp/"mlflow.csv").write_text(",".join(feat["features"]) + "\n" + line + "\n")
        (tmp/"post.lua").write_text(LUA); (tmp/"get.lua").write_text(LUA.replace('"POST"', '"GET"'))
        mlm = mlflow_model(model_dir, feat["features"])
        floor = in_process(model_dir, line, 200 if quick else 2000)
        for w in workers:
            kw = {wparam: w} if wparam else {}
            ours = LocalEndpoint(model_dir, nthread=1, **kw).start()
            theirs = MlflowServer(mlm, w).start()
            try:
                import requests
                a = requests.post(ours.url + "/invocations", data=line + "\n", headers={"Content-Type": "text/csv"}).text
                b = requests.post(theirs.url + "/invocations", data=(tmp/"mlflow.csv").read_bytes(), headers={"Content-Type": "text/csv"}).text
                pa, pb = float(a.split()[0]), float(re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?", b)[0])
                assert abs(pa - pb) < 1e-5, f"the two servers disagree: {a!r} vs {b!r}"
                servers = {"LocalEndpoint": (ours.url + "/invocations", tmp/"ours.csv"),
                           "mlflow models serve": (theirs.url + "/invocations", tmp/"mlflow.csv")}
                for url, body in servers.values(): wrk(url, body, tmp/"post.lua", 4, 1 if quick else 3)  # warm-up, not counted
                res = {k: {"c1": [], "cN": []} for k in servers}
                load0 = loadavg()
                for _ in range(reps):
                    for k, (url, body) in servers.items():
                        res[k]["c1"].append(wrk(url, body, tmp/"post.lua", 1, dur))
                        res[k]["cN"].append(wrk(url, body, tmp/"post.lua", conns, dur))
                ping = wrk(ours.url + "/ping", tmp/"empty", tmp/"get.lua", 1, dur)  # the HTTP stack without the model
                load1 = loadavg()
            finally:
                ours.stop(); theirs.stop()
            m = {k: {f"{c}_{q}": median([x[q] for x in v[c]]) for c in ("c1", "cN") for q in ("p50_ms", "p99_ms", "rps")}
                 for k, v in res.items()}
            case = f"{w} worker(s), {len(feat['features'])} features" + ("" if wparam else " (LocalEndpoint has no workers argument)")
            o, t = m["LocalEndpoint"], m["mlflow models serve"]
            how = HOW.format(dur=dur, reps=reps)
            rows += [row(case, "LocalEndpoint p50 / p99, c=1", f"{o['c1_p50_ms']:.2f} / {o['c1_p99_ms']:.2f}", "ms", "p99 ≤ 5 ms", o["c1_p99_ms"] <= 5, how),
                     row(case, "mlflow serve p50 / p99, c=1", f"{t['c1_p50_ms']:.2f} / {t['c1_p99_ms']:.2f}", "ms"),
                     row(case, f"LocalEndpoint p50 / p99, c={conns}", f"{o['cN_p50_ms']:.2f} / {o['cN_p99_ms']:.2f}", "ms"),
                     row(case, f"mlflow serve p50 / p99, c={conns}", f"{t['cN_p50_ms']:.2f} / {t['cN_p99_ms']:.2f}", "ms"),
                     row(case, f"throughput LocalEndpoint / mlflow, c={conns}", f"{o['cN_rps']:.0f} / {t['cN_rps']:.0f}", "req/s"),
                     row(case, "throughput ratio", round(o["cN_rps"] / t["cN_rps"], 2), "×", "≥ 2×", o["cN_rps"] / t["cN_rps"] >= 2),
                     row(case, "LocalEndpoint GET /ping p50 / p99, c=1 (HTTP stack alone)", f"{ping['p50_ms']:.2f} / {ping['p99_ms']:.2f}", "ms"),
                     row(case, "in-process parse + predict + format p50 / p99 (no HTTP)", f"{floor['p50_ms']:.2f} / {floor['p99_ms']:.2f}", "ms"),
                     row(case, "start-up to /ping 200: LocalEndpoint / mlflow", f"{ours.startup_s:.1f} / {theirs.startup_s:.1f}", "s")]
            details[case] = {"raw": res, "median": m, "ping": ping, "in_process": floor, "load_during": [load0, load1]}
    return {"rows": rows, "details": details, "how": HOW.format(dur=dur, reps=reps)}


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
