"""`seqfuse generate CKPT --prompt TEXT`: sample text from a trained shakespeare model.

Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse

from seqfuse.cli import finite_float, int_at_least, int_within
from seqfuse.errors import SeqfuseError
from seqfuse.models.sampling import sample_text
from seqfuse.train.checkpoint import MAX_SEED, model_from_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a shakespeare checkpoint")
    p.add_argument("--prompt", default="ROMEO:", help="text to continue")
    p.add_argument("--length", type=int_at_least(0), default=300, help="characters to generate")
    p.add_argument(
        "--temperature", type=finite_float(0, lo_open=False), default=0.8, help="0 = greedy"
    )
    p.add_argument("--seed", type=int_within(MAX_SEED), default=0)


def run(args: argparse.Namespace) -> int:
    model, ckpt = model_from_checkpoint(args.checkpoint, task="shakespeare")  # types checked
    vocab = ckpt.get("extras", {}).get("vocab")
    if not vocab:
        raise SeqfuseError(f"{args.checkpoint}: checkpoint has no vocabulary (extras.vocab)")
    c = model.config
    if not (len(vocab) == c.vocab_size == c.output_size and c.head == "step"):
        raise SeqfuseError(
            f"{args.checkpoint}: its vocabulary of {len(vocab)} characters does not fit its "
            f"model (vocab_size {c.vocab_size}, output_size {c.output_size}, head {c.head})"
        )
    try:
        text = sample_text(model, vocab, args.prompt, args.length, args.temperature, args.seed)
    except ValueError as e:
        raise SeqfuseError(str(e)) from None
    print(text)
    return 0
