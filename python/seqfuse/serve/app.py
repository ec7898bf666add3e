"""`seqfuse serve MODEL`: a Ray Serve application whose replicas each hold a native model and
batch concurrent requests into one call (@serve.batch).

Routes: POST /v1/predict ({"inputs", "lengths"?} -> {"outputs", "model", "version"}),
GET /healthz (answers once the replica is up), GET /v1/metrics (this replica's request and
batch counts: dynamic batching made visible). A bad request gets HTTP 400 and
{"error": one line}. Checked by tests/test_serve.py against a real local Ray cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

from seqfuse.errors import SeqfuseError
from seqfuse.serve.model import BadRequest, Predictor, load_bytes

APP_NAME = "seqfuse"


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise SeqfuseError(
            "this command needs Ray: pip install 'seqfuse[serve]' (from a checkout: "
            "pip install '.[serve]')"
        ) from None


def init_ray(address: str | None) -> None:
    """Join ``address``, or start a local Ray instance on 127.0.0.1 (quiet: Ray's own logs
    go to its log folder unless SEQFUSE_DEBUG is set)."""
    import ray

    debug = bool(os.environ.get("SEQFUSE_DEBUG"))
    kw: dict[str, Any] = dict(
        logging_level=logging.INFO if debug else logging.ERROR,
        log_to_driver=debug,
        include_dashboard=False,
    )
    if not debug:
        for name in ("ray", "ray.serve", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    # Serve marks a proxy that is not ready within 5 s unhealthy and restarts it, forever, on
    # a busy small machine; the local instance inherits these longer bounds from os.environ.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "30")
    try:
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(_node_ip_address="127.0.0.1", **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local instance"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SeqfuseError(f"cannot start or join Ray ({where}): {first}") from None


def build_app(
    weights: bytes,
    name: str,
    *,
    replicas: int = 1,
    threads: int = 1,
    max_batch_size: int = 16,
    batch_wait_ms: float = 5.0,
):
    """The bound Ray Serve application (deploy it with serve.run)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(
        name="SeqfuseModel",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads},
        # requests a replica may hold at once: enough to fill several batches
        max_ongoing_requests=max(16, 4 * max_batch_size),
    )
    class SeqfuseModel:
        def __init__(self) -> None:
            self.predictor = Predictor(load_bytes(weights, threads=threads), name)
            self.threads = threads
            self.handle.set_max_batch_size(max_batch_size)
            self.handle.set_batch_wait_timeout_s(batch_wait_ms / 1000.0)
            self.requests = 0
            self.batches: Counter[int] = Counter()
            from ray.serve.metrics import Histogram

            self.batch_metric = Histogram(
                "seqfuse_batch_size",
                description="requests per native call",
                boundaries=[1, 2, 4, 8, 16, 32, 64, 128],
            )
            ctx = serve.get_replica_context()
            rid = getattr(ctx, "replica_id", None)
            self.replica = str(getattr(rid, "unique_id", None) or getattr(ctx, "replica_tag", "?"))

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def handle(self, items: list[tuple[Any, Any]]) -> list[Any]:
            self.batches[len(items)] += 1
            self.batch_metric.observe(len(items))
            loop = asyncio.get_running_loop()
            # compute off the event loop, so the replica keeps taking requests meanwhile
            return await loop.run_in_executor(None, self.predictor.run_many, items, self.threads)

        async def __call__(self, request: Request):
            path = request.url.path.rstrip("/")
            if path == "/healthz" and request.method == "GET":
                return JSONResponse({"status": "ok", **self.predictor.describe()})
            if path == "/v1/metrics" and request.method == "GET":
                return JSONResponse(
                    {
                        "replica": self.replica,
                        "requests": self.requests,
                        "batches": sum(self.batches.values()),
                        "batch_sizes": {str(k): v for k, v in sorted(self.batches.items())},
                    }
                )
            if path != "/v1/predict":
                return JSONResponse({"error": f"no route {request.method} {path}"}, 404)
            if request.method != "POST":
                return JSONResponse({"error": "use POST /v1/predict"}, 405)
            try:
                size = int(request.headers.get("content-length") or 0)
                if size > 0 and size > (32 << 20):
                    raise BadRequest(f"too large: the body is {size} bytes, the limit {32 << 20}")
                x = self.predictor.parse(await request.body())
            except BadRequest as e:
                return JSONResponse({"error": str(e)}, 400)
            self.requests += 1
            y = await self.handle(x)
            return JSONResponse({"outputs": y.tolist(), **self.predictor.describe()})

    return SeqfuseModel.bind()


def serve_main(
    model: str,
    *,
    replicas: int,
    threads: int,
    max_batch_size: int,
    batch_wait_ms: float,
    host: str,
    port: int,
    address: str | None,
) -> int:
    """Deploy MODEL and serve until Ctrl-C or SIGTERM, then remove the application (and the
    Ray instance this command started)."""
    require_ray()
    from ray import serve

    from seqfuse.serve.model import model_bytes

    weights, name = model_bytes(model)  # a bad MODEL: one line before Ray starts
    init_ray(address)
    import ray

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Both installed explicitly: a process started in the background of a non-interactive
    # shell inherits SIGINT ignored, and then Ctrl-C (or `kill -INT`) would never stop it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        serve.start(http_options={"host": host, "port": port})
        app = build_app(
            weights,
            name,
            replicas=replicas,
            threads=threads,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
        )
        serve.run(app, name=APP_NAME, route_prefix="/")
        print(
            f"seqfuse serve: {name} ({model}) at http://{host}:{port}/v1/predict "
            f"(GET /healthz); {replicas} replica(s) x {threads} thread(s), batches of up to "
            f"{max_batch_size} within {batch_wait_ms:g} ms; Ctrl-C stops",
            flush=True,
        )
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if address:
                serve.delete(APP_NAME)  # a shared cluster keeps its other applications
            else:
                serve.shutdown()
        finally:
            ray.shutdown()
    print("seqfuse serve: stopped", file=sys.stderr, flush=True)
    return 0
