"""`seqfuse predict CKPT NAME...`: classify surnames with a trained names model.

Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse

import torch

from seqfuse.cli import int_at_least
from seqfuse.data.datasets import encode_name
from seqfuse.errors import SeqfuseError
from seqfuse.train.checkpoint import model_from_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a names checkpoint")
    p.add_argument("names", nargs="+", metavar="NAME", help="surnames to classify")
    p.add_argument("--top", type=int_at_least(1), default=3, help="how many languages to show")


def predict_names(path, names: list[str], top: int = 3) -> list[list[tuple[str, float]]]:
    model, ckpt = model_from_checkpoint(path, task="names")  # every field's type checked
    classes = ckpt["extras"]["classes"]
    if len(classes) != model.config.output_size:
        raise SeqfuseError(
            f"{path}: the checkpoint names {len(classes)} classes but its model has "
            f"{model.config.output_size} outputs"
        )
    seqs = [encode_name(n) for n in names]
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    with torch.inference_mode():
        probs = torch.softmax(model(x, lengths=lengths)[0], dim=-1)
    k = max(1, min(top, len(classes)))
    vals, idx = probs.topk(k, dim=-1)
    return [[(classes[int(i)], float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(vals, idx)]


def run(args: argparse.Namespace) -> int:
    try:
        results = predict_names(args.checkpoint, args.names, args.top)
    except KeyError as e:
        raise SeqfuseError(f"{args.checkpoint}: checkpoint lacks {e}") from None
    for name, res in zip(args.names, results):
        print(f"{name:>16}: " + ", ".join(f"{lang} {p:.1%}" for lang, p in res))
    return 0
