"""`seqfuse train TASK`: argparse front of seqfuse.train.loop.train. Checked by tests/test_cli.py."""

from __future__ import annotations

import argparse

from seqfuse.cli import finite_float, int_at_least, int_within
from seqfuse.train.checkpoint import MAX_SEED
from seqfuse.train.loop import SCHEDULERS, TrainOptions, train
from seqfuse.train.tasks import TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("task", metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--epochs", type=int_at_least(1), help="total epochs (default: per task)")
    p.add_argument("--batch-size", type=int_at_least(1), help="batch size (default: per task)")
    p.add_argument("--lr", type=finite_float(0), help="Adam learning rate (default: per task)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="LR scheduler (default: step)")
    p.add_argument("--step-size", type=int_at_least(1), help="StepLR step size in epochs")
    p.add_argument(
        "--gamma", type=finite_float(0, 1), help="StepLR / ReduceLROnPlateau decay factor"
    )
    p.add_argument(
        "--max-batches", type=int_at_least(1), help="cap on batches per epoch (short schedules)"
    )
    p.add_argument("--save-dir", default="runs/{task}", help="output folder")
    p.add_argument("--data-dir", help="data folder (default: $SEQFUSE_DATA_DIR)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint")
    p.add_argument("--seed", type=int_within(MAX_SEED), default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    from seqfuse.train.loop import get_task

    get_task(args.task)  # unknown task: one-line error before any work
    train(
        TrainOptions(
            task=args.task,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            save_dir=args.save_dir,
            data_dir=args.data_dir,
            device=args.device,
            resume=args.resume,
            seed=args.seed,
            scheduler=args.scheduler,
            step_size=args.step_size,
            gamma=args.gamma,
            max_batches=args.max_batches,
            progress=not args.no_progress,
            plots=not args.no_plots,
        )
    )
    return 0
