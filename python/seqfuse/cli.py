"""The `seqfuse` command line: train, eval, predict, generate, export, bench, convert, demo,
serve, predict-batch.

Each subcommand lives in its own module (or a class in one) exposing ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`seqfuse.SeqfuseError`) and bad arguments print
one line and exit with status 2, never a traceback (set SEQFUSE_DEBUG=1 to see one).
Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable

from seqfuse.errors import SeqfuseError
from seqfuse.version import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("seqfuse.train.cli_train", "train a seed model and write a checkpoint"),
    "eval": ("seqfuse.train.cli_eval", "report a checkpoint's test metric"),
    "predict": ("seqfuse.train.cli_predict", "classify names with a trained names model"),
    "generate": ("seqfuse.train.cli_generate", "generate text with a trained shakespeare model"),
    "export": ("seqfuse.export.cli", "export a checkpoint to verified artifacts"),
    "bench": ("seqfuse.bench.cli", "benchmark every backend side by side"),
    "convert": (
        "seqfuse.native.cli_convert",
        "turn an ONNX file's RNN/GRU/LSTM stack into a native weight file",
    ),
    "demo": ("seqfuse.demo", "train, export and benchmark the embedded default models"),
    "serve": ("seqfuse.serve.cli:ServeCommand", "serve a model over HTTP with Ray Serve"),
    "predict-batch": (
        "seqfuse.serve.cli:PredictBatchCommand",
        "run a model over a .npy/.parquet file with Ray Data",
    ),
}


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one `--help` away)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# argparse types for numeric options: nan, inf, 0 or a negative count is an argument error.
def int_at_least(lo: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    return parse


def int_within(bound: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        v = int_at_least(-bound)(s)
        if v > bound:
            raise argparse.ArgumentTypeError(f"must be <= {bound}, got {v}")
        return v

    return parse


def finite_float(lo: float, hi: float = math.inf, *, lo_open: bool = True):
    """A finite float above ``lo`` (at least ``lo`` when not ``lo_open``) and below ``hi``."""
    where = (f"> {lo:g}" if lo_open else f">= {lo:g}") + (f" and < {hi:g}" if hi < math.inf else "")

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        above = v > lo if lo_open else v >= lo
        if not (math.isfinite(v) and above and v < hi):
            raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {s!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="seqfuse",
        description="Train, export and run recurrent sequence models (LSTM, GRU, RNN) fast.",
    )
    parser.add_argument("--version", action="version", version=f"seqfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module_name, _, attr = module_name.partition(":")  # "module" or "module:Class"
        module = importlib.import_module(module_name)
        if attr:
            module = getattr(module, attr)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SeqfuseError as e:
        if os.environ.get("SEQFUSE_DEBUG"):
            raise
        print(f"seqfuse {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqfuse {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
