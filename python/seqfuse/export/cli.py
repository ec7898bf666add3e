"""`seqfuse export CKPT --formats torchscript,onnx,aoti,native --out DIR`.

Writes the verified artifacts and manifest.json, then prints the verification table.
A bad checkpoint, format or output dir, or an artifact that fails verification, is a
SeqfuseError (one line, exit status 2). Checked by tests/test_export_cli.py.
"""

from __future__ import annotations

import argparse
import logging

from seqfuse.export.manifest import FORMATS, export_checkpoint, format_table, parse_formats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by `seqfuse train`")
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated formats: {', '.join(FORMATS)} or all (default: all)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="sequence length of the export input (the .pt2 keeps it; default: the task's)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no table")


def run(args: argparse.Namespace) -> int:
    formats = parse_formats(args.formats)
    notes: list[str] = []
    handler = _NoteHandler(notes)
    logger = logging.getLogger("seqfuse.export")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        manifest = export_checkpoint(
            args.checkpoint, formats, args.out, progress=not args.quiet, seq_len=args.seq_len
        )
    finally:
        logger.removeHandler(handler)
    if not args.quiet:
        for n in dict.fromkeys(notes):
            print(f"note: {n}")
        print(format_table(manifest))
        print(f"wrote {args.out}/manifest.json")
    return 0


class _NoteHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())
