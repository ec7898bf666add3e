"""`seqfuse eval CKPT`: rebuild a checkpoint's model and report its test metric.

Checked by tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import json

import torch

from seqfuse.train.checkpoint import check_fits_task, model_from_checkpoint
from seqfuse.train.loop import get_task, resolve_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by seqfuse train")
    p.add_argument("--data-dir", help="data folder (default: $SEQFUSE_DATA_DIR)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def evaluate_checkpoint(path, data_dir=None, device="auto") -> dict:
    model, ckpt = model_from_checkpoint(path)  # every field's type checked
    task = get_task(ckpt["task"])
    dev = resolve_device(device)
    td = task.data(data_dir, ckpt.get("seed", 0))
    check_fits_task(ckpt["config"], td.config, path, task.name)
    for k, v in ckpt.get("extras", {}).items():  # the data's own facts win
        td.extras.setdefault(k, v)
    model.to(dev).eval()
    with torch.inference_mode():
        return {"task": task.name, "epoch": ckpt["epoch"], **task.evaluate(model, td, dev)}


def run(args: argparse.Namespace) -> int:
    m = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        task = get_task(m["task"])
        print(f"{m['task']} (epoch {m['epoch']}): {task.summary(m)}")
    return 0
