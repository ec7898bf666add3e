"""The `seqfuse` command line: train, eval, predict, generate, export, bench, demo.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`seqfuse.SeqfuseError`) print one line and exit
with status 2, never a traceback (set SEQFUSE_DEBUG=1 to see one).
Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from seqfuse import SeqfuseError, __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("seqfuse.train.cli_train", "train a seed model and write a checkpoint"),
    "eval": ("seqfuse.train.cli_eval", "report a checkpoint's test metric"),
    "predict": ("seqfuse.train.cli_predict", "classify names with a trained names model"),
    "generate": ("seqfuse.train.cli_generate", "generate text with a trained shakespeare model"),
    "export": ("seqfuse.export.cli", "export a checkpoint to verified artifacts"),
    "bench": ("seqfuse.bench.cli", "benchmark every backend side by side"),
    "demo": ("seqfuse.demo", "train, export and benchmark the embedded default models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqfuse",
        description="Train, export and run recurrent sequence models (LSTM, GRU, RNN) fast.",
    )
    parser.add_argument("--version", action="version", version=f"seqfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
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
