"""`seqfuse generate CKPT --prompt TEXT`: sample text from a trained shakespeare model.

Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse

from seqfuse import SeqfuseError
from seqfuse.models.sampling import sample_text
from seqfuse.train.checkpoint import model_from_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a shakespeare checkpoint")
    p.add_argument("--prompt", default="ROMEO:", help="text to continue")
    p.add_argument("--length", type=int, default=300, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    model, ckpt = model_from_checkpoint(args.checkpoint, task="shakespeare")
    vocab = ckpt.get("extras", {}).get("vocab")
    if not vocab:
        raise SeqfuseError(f"{args.checkpoint}: checkpoint has no vocabulary (extras.vocab)")
    try:
        text = sample_text(model, vocab, args.prompt, args.length, args.temperature, args.seed)
    except ValueError as e:
        raise SeqfuseError(str(e)) from None
    print(text)
    return 0
