"""Inference on Ray with the native engine: `seqfuse serve` (Ray Serve) and `seqfuse
predict-batch` (Ray Data), against a real local Ray cluster on 127.0.0.1 started by this
module, with eager PyTorch as the oracle.

The request batching (seqfuse.serve.model.Predictor) is also checked without Ray, on a token
model with lengths. Every HTTP call, wait and subprocess has a timeout; every loop is
bounded. Without Ray installed, the Ray tests skip and say so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from seqfuse.models import build_model, preset
from seqfuse.train import save_checkpoint

TIMEOUT = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("SEQFUSE_DEBUG", None)
    return e


@pytest.fixture(scope="module")
def sine(tmp_path_factory):
    """A sine checkpoint (seeded random weights) and its eager model."""
    torch.manual_seed(5)
    cfg = preset("sine")
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("serve") / "sine.pt"
    save_checkpoint(
        path, {"task": "sine", "config": cfg, "model_state": model.state_dict(), "epoch": 0}
    )
    return path, model


def eager(model, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.asarray(x, np.float32)))[0].numpy()


# ------------------------------------------------------------------ without Ray


def test_import_seqfuse_needs_no_ray():
    code = (
        "import sys, seqfuse, seqfuse.cli, seqfuse.serve, seqfuse.serve.cli, "
        "seqfuse.serve.model; seqfuse.cli.build_parser(); "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_batched_requests_equal_eager_token_model_with_lengths():
    """Requests of different lengths, some with their own lengths, run as one padded native
    call; each gets what eager gives it alone."""
    from seqfuse import native
    from seqfuse.serve.model import Predictor

    torch.manual_seed(1)
    model = build_model(preset("names")).eval()
    p = Predictor(native.from_module(model), "names")
    vocab = model.config.vocab_size
    g = np.random.default_rng(0)
    items, want = [], []
    for b, t, with_len in [(1, 5, False), (3, 9, True), (2, 9, False), (4, 2, True)]:
        x = g.integers(1, vocab, size=(b, t)).tolist()
        n = g.integers(1, t + 1, size=b).tolist() if with_len else None
        items.append(p.check(x, n))
        with torch.inference_mode():
            lens = torch.tensor(n) if n else None
            want.append(model(torch.tensor(x), lengths=lens)[0].numpy())
    for got, ref in zip(p.run_many(items), want):
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


# -------------------------------------------------------------------- with Ray


@pytest.fixture(scope="module")
def ray_address():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[serve]')")
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install '.[serve]')")
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "30")
    ray.init(
        _node_ip_address="127.0.0.1",
        num_cpus=8,  # logical: 2 replicas, the proxy and 2 Ray Data actors fit at once
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def predict(base: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, raw = http("POST", f"{base}/v1/predict", body)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"error": raw.decode(errors="replace")}


@pytest.fixture(scope="module")
def server(ray_address, sine):
    """`seqfuse serve` joined to the cluster: 2 replicas, batches of up to 16 within 20 ms."""
    port = _free_port()
    # Started with SIGINT ignored, as everything a non-interactive shell starts in the
    # background inherits it (a CI run launched with `&`): Ctrl-C must still stop it.
    cmd = [sys.executable, "-m", "seqfuse", "serve", str(sine[0]), "--address", ray_address]
    cmd += ["--port", str(port), "--replicas", "2", "--max-batch-size", "16"]
    cmd += ["--batch-wait-ms", "20"]
    proc = subprocess.Popen(
        ["bash", "-c", 'trap "" INT; exec "$@"', "serve"] + cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http("GET", f"{base}/healthz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate(timeout=30)
        assert http("GET", f"{base}/healthz", timeout=5)[0] == 200, "never became healthy"
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _random_request(g: np.random.Generator) -> np.ndarray:
    return g.standard_normal((int(g.integers(1, 5)), int(g.integers(3, 30)), 1)).astype(np.float32)


def _burst(base: str, xs: list[np.ndarray], threads: int) -> list[tuple[int, dict]]:
    out: list = [None] * len(xs)

    def work(i: int) -> None:
        try:
            out[i] = predict(base, {"inputs": xs[i].tolist()})
        except OSError as e:  # a refused or reset connection: an error, never an answer
            out[i] = (0, {"error": f"{type(e).__name__}: {e}"})

    pool = []
    for start in range(0, len(xs), threads):
        pool = [threading.Thread(target=work, args=(i,)) for i in range(start, start + threads)
                if i < len(xs)]  # fmt: skip
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
    return out


def test_concurrent_requests_equal_eager(server, sine):
    base, _ = server
    g = np.random.default_rng(0)
    xs = [_random_request(g) for _ in range(48)]
    res = _burst(base, xs, threads=16)
    for x, (status, body) in zip(xs, res):
        assert status == 200, body
        assert body["model"] == "sine" and body["version"]
        np.testing.assert_allclose(np.asarray(body["outputs"]), eager(sine[1], x), atol=1e-5)


def test_dynamic_batching_is_visible_in_replica_metrics(server):
    base, _ = server
    g = np.random.default_rng(1)
    _burst(base, [_random_request(g) for _ in range(32)], threads=32)
    seen = {}
    for _ in range(30):  # each GET lands on one replica
        status, raw = http("GET", f"{base}/v1/metrics")
        assert status == 200
        m = json.loads(raw)
        seen[m["replica"]] = m
        if len(seen) == 2:
            break
    biggest = max(int(k) for m in seen.values() for k in m["batch_sizes"])
    assert biggest > 1, seen  # several requests shared one native call
    assert sum(m["batches"] for m in seen.values()) < sum(m["requests"] for m in seen.values())


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'{"inputs": [[[0.1]]', "malformed JSON"),
        (b"[1, 2]", 'JSON object with "inputs"'),
        ({"inputs": [[0.1, 0.2]]}, "wrong shape"),
        ({"inputs": [[[0.1, 0.2]]]}, "wrong shape"),
        ({"inputs": [[[0.1], [0.2]], [[0.3]]]}, "wrong shape"),
        ({"inputs": [[["a"], ["b"]]]}, "wrong dtype"),
        ({"inputs": [[[True]]]}, "wrong dtype"),
        ({"inputs": [[[0.0]]] * 5000}, "too large"),
        ({"inputs": [[[0.1], [0.2]]], "lengths": [3]}, "lengths must be in [1, 2]"),
        ({"inputs": [[[0.1]]], "extra": 1}, "unknown field"),
    ],
)
def test_bad_requests_get_400_with_one_line(server, payload, reason):
    status, body = predict(server[0], payload)
    assert status == 400, body
    assert reason in body["error"] and "\n" not in body["error"], body


def test_killing_a_replica_loses_no_accepted_request(server, sine, ray_address):
    """Clients keep sending while one replica is killed: every request gets its right answer
    or a clear error, never a wrong answer."""
    import ray

    base, _ = server
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::seqfuse#")
    ]  # fmt: skip
    assert len(replicas) == 2, replicas
    g = np.random.default_rng(2)
    xs = [_random_request(g) for _ in range(160)]
    results: list = [None] * len(xs)
    done_after_kill = []
    killed = threading.Event()
    lock = threading.Lock()
    next_i = [0]

    def client() -> None:
        while True:  # bounded: each index is taken once
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(xs):
                return
            try:
                results[i] = predict(base, {"inputs": xs[i].tolist()})
            except OSError as e:  # refused or reset: an error, never an answer
                results[i] = (0, {"error": f"{type(e).__name__}: {e}"})
            if killed.is_set():
                done_after_kill.append(i)

    clients = [threading.Thread(target=client) for _ in range(8)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 60
    while sum(r is not None for r in results) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    ray.kill(victim)  # mid-load: about 30 answered, the rest queued or on their way
    killed.set()
    for t in clients:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in clients)
    answered = 0
    for x, (status, body) in zip(xs, results):
        if status == 200:
            np.testing.assert_allclose(np.asarray(body["outputs"]), eager(sine[1], x), atol=1e-5)
            answered += 1
        else:
            assert body.get("error"), (status, body)  # an error, with a reason
    assert len(done_after_kill) > 20  # the load went on past the kill
    assert answered >= len(xs) // 2, f"only {answered} of {len(xs)} answered"


def test_serve_stops_cleanly_on_ctrl_c(server):
    # the server was started with SIGINT ignored (see the fixture): it installs its own handler
    _, proc = server
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "seqfuse serve: stopped" in err and "Traceback" not in err, err
    assert "/v1/predict" in out


def test_predict_batch_10k_equals_eager(ray_address, sine, tmp_path):
    g = np.random.default_rng(3)
    x = g.standard_normal((10_000, 20, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run(
        [sys.executable, "-m", "seqfuse", "predict-batch", str(sine[0])]
        + ["--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
        + ["--workers", "2", "--batch-size", "500", "--address", ray_address, "--no-progress"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (10_000, 20, 1)
    np.testing.assert_allclose(y, eager(sine[1], x), atol=1e-5, rtol=0)  # and in input order


def test_predict_batch_parquet_and_bad_input(ray_address, sine, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    g = np.random.default_rng(4)
    x = g.standard_normal((300, 7, 1)).astype(np.float32)
    pq.write_table(pa.table({"inputs": [row.tolist() for row in x]}), tmp_path / "x.parquet")
    base = [sys.executable, "-m", "seqfuse", "predict-batch", str(sine[0]), "--no-progress"]
    r = subprocess.run(
        base + ["--input", str(tmp_path / "x.parquet"), "--output", str(tmp_path / "y.parquet")]
        + ["--workers", "1", "--batch-size", "64", "--address", ray_address],
        capture_output=True, text=True, env=_env(), timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    y = np.asarray(pq.read_table(tmp_path / "y.parquet").column("outputs").to_pylist())
    np.testing.assert_allclose(y, eager(sine[1], x), atol=1e-5, rtol=0)
    r = subprocess.run(
        base + ["--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "y.npy")],
        capture_output=True, text=True, env=_env(), timeout=TIMEOUT,
    )  # fmt: skip
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--input not found" in lines[0], r.stderr
