"""`seqfuse train TASK`: argparse front of seqfuse.train.loop.train, one process or many.

`--nproc N` starts N workers through torchrun (seqfuse.train.launch); a process that torchrun
started runs as one rank and hands its errors to torchrun instead of printing them. Checked
by tests/test_cli.py and tests/test_distributed.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from seqfuse.cli import finite_float, int_at_least, int_within
from seqfuse.errors import SeqfuseError
from seqfuse.train.checkpoint import MAX_SEED
from seqfuse.train.loop import SCHEDULERS, TrainOptions, train
from seqfuse.train.tasks import TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("task", metavar="TASK", help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--epochs", type=int_at_least(1), help="total epochs (default: per task)")
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        help="global batch size, split evenly across the processes (default: per task)",
    )
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
    g = p.add_argument_group(
        "data-parallel training (torchrun + DDP; docs/SCALE.md)",
        "--nproc N starts N processes on this node through torchrun; the other flags are "
        "torchrun's own, for several nodes (run the same line on each, with its --node-rank)",
    )
    g.add_argument("--nproc", type=int_at_least(1), help="processes on this node")
    g.add_argument("--nnodes", type=int_at_least(1), default=1, help="number of nodes")
    g.add_argument("--node-rank", type=int_at_least(0), default=0, help="this node's rank")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's rendezvous address")


# the options a worker gets unchanged from the launcher's command line
_PASSED = (
    "epochs", "batch_size", "lr", "scheduler", "step_size", "gamma", "max_batches",
    "save_dir", "data_dir", "device", "resume", "seed",
)  # fmt: skip


def _worker_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train", args.task]
    for key in _PASSED:
        value = getattr(args, key)
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    argv += ["--no-progress"] * args.no_progress + ["--no-plots"] * args.no_plots
    return argv


def _launch(args: argparse.Namespace) -> int:
    from seqfuse.train.launch import launch
    from seqfuse.train.loop import CHECKPOINT_NAME, check_batch_split, get_task

    if os.environ.get("TORCHELASTIC_RUN_ID"):
        raise SeqfuseError("--nproc starts torchrun itself; under torchrun, leave it out")
    check_batch_split(get_task(args.task), args.batch_size, args.nproc * args.nnodes)
    if args.resume:  # a bad file: one line now, not one per rank after the launch
        from seqfuse.train.checkpoint import load_checkpoint

        load_checkpoint(args.resume, task=args.task)
    save_dir = Path(args.save_dir.replace("{task}", args.task))
    return launch(
        _worker_argv(args),
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        rdzv_endpoint=args.rdzv_endpoint,
        checkpoint=save_dir / CHECKPOINT_NAME,
    )


def _as_worker(fn) -> NoReturn:
    """Run ``fn`` as one torchrun rank and end the process: the rank that fails first records
    its one-line error for torchrun (which stops the others, and which `seqfuse train --nproc`
    reports); a rank that only lost its peers, or was interrupted, exits quietly.

    The process ends with os._exit once its output is flushed, skipping the interpreter's
    finalization: with gloo's threads still about, that can abort a rank whose work is done
    ("terminate called without an active exception", seen under a loaded CI machine), and
    torchrun would then report a finished run, or a peer's failure, as this rank's crash."""
    code = _worker_status(fn)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _worker_status(fn) -> int:
    from seqfuse.train import distributed as D

    rank = os.environ.get("RANK", "?")
    try:
        return fn()
    except KeyboardInterrupt:
        return 130
    except SeqfuseError as e:
        if os.environ.get("SEQFUSE_DEBUG"):
            traceback.print_exc()
        if not D.record_error(f"rank {rank}: {e}"):
            print(f"seqfuse train: error: {e}", file=sys.stderr)  # as seqfuse.cli.main does
        return 2
    except Exception as e:
        if D.is_peer_lost(e) and not os.environ.get("SEQFUSE_DEBUG"):
            return D.EXIT_PEER_LOST
        first = (str(e).strip().splitlines() or [""])[0]
        D.record_error(f"rank {rank}: {type(e).__name__}: {first}")
        traceback.print_exc()
        return 1


def run(args: argparse.Namespace) -> int:
    from seqfuse.train.distributed import in_torchrun
    from seqfuse.train.loop import get_task

    get_task(args.task)  # unknown task: one-line error before any work
    if args.nproc is not None:
        return _launch(args)
    if args.nnodes != 1 or args.node_rank or args.rdzv_endpoint:
        raise SeqfuseError("--nnodes, --node-rank and --rdzv-endpoint go with --nproc N")
    if in_torchrun():
        return _as_worker(lambda: _train(args))
    return _train(args)


def _train(args: argparse.Namespace) -> int:
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
