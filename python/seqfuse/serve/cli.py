"""`seqfuse serve` and `seqfuse predict-batch`: argparse fronts of seqfuse.serve.app and
seqfuse.serve.batch. Importing this module does not import Ray (the CLI lists every command
on a core install); running either command without Ray is a one-line error. Checked by
tests/test_serve.py and tests/test_cli.py (--help).
"""

from __future__ import annotations

import argparse

from seqfuse.cli import finite_float, int_at_least

MODEL_HELP = "a training checkpoint (.pt), a native weight file (.safetensors) or ONNX (.onnx)"


class ServeCommand:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
        p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
        p.add_argument("--replicas", type=int_at_least(1), default=1, help="Ray Serve replicas")
        p.add_argument("--threads", type=int_at_least(1), default=1, help="threads per replica")
        p.add_argument(
            "--max-batch-size", type=int_at_least(1), default=16,
            help="requests one native call may take (1: no dynamic batching)",
        )  # fmt: skip
        p.add_argument(
            "--batch-wait-ms", type=finite_float(0, lo_open=False), default=5.0,
            help="how long a replica waits to fill a batch",
        )  # fmt: skip
        p.add_argument("--host", default="127.0.0.1", help="HTTP address")
        p.add_argument("--port", type=int_at_least(1), default=8000, help="HTTP port")
        p.add_argument("--address", metavar="RAY_ADDRESS", help="join this Ray cluster")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from seqfuse.serve.app import serve_main

        return serve_main(
            args.model,
            replicas=args.replicas,
            threads=args.threads,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            host=args.host,
            port=args.port,
            address=args.address,
        )


class PredictBatchCommand:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
        p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
        p.add_argument("--input", required=True, help=".npy (batch first) or .parquet ('inputs')")
        p.add_argument("--output", required=True, help=".npy or .parquet ('outputs')")
        p.add_argument("--workers", type=int_at_least(1), default=2, help="Ray Data actors")
        p.add_argument("--threads", type=int_at_least(1), default=1, help="threads per actor")
        p.add_argument("--batch-size", type=int_at_least(1), default=256, help="rows per call")
        p.add_argument("--address", metavar="RAY_ADDRESS", help="join this Ray cluster")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from seqfuse.serve.batch import predict_batch

        r = predict_batch(
            args.model,
            args.input,
            args.output,
            workers=args.workers,
            threads=args.threads,
            batch_size=args.batch_size,
            address=args.address,
            progress=not args.no_progress,
        )
        print(f"seqfuse predict-batch: {r['rows']} sequences -> {r['output']}")
        return 0
