"""`seqfuse train TASK --nproc N`: start the training workers with torchrun's own launcher
(torch.distributed.run), and report a failed job in one line.

The workers are `python -m seqfuse train TASK ...` under torchrun's elastic agent, exactly
as `torchrun --nproc-per-node N -m seqfuse train TASK ...` starts them; when one rank fails
(an error, a crash, SIGTERM) the agent stops the others, and this module names the rank
that failed first and the checkpoint left behind. Checked by tests/test_distributed.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from seqfuse.errors import SeqfuseError
from seqfuse.train.distributed import EXIT_PEER_LOST


def _quiet_torchrun_logs() -> None:
    """torchrun logs each worker's exit and its stop signals as multi-line warnings and
    errors; this launcher reports a failure itself, in one line (SEQFUSE_DEBUG keeps them)."""
    if os.environ.get("SEQFUSE_DEBUG"):
        return
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _root_cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that failed first: a worker's own recorded error, else a signal, else an exit
    code other than 'a peer was lost'. Within a kind, the order torchrun saw them in: it
    records the failures it found, then the ranks it stopped (timestamps are whole seconds
    and often tie)."""

    def kind(f) -> int:
        if f.error_file_data.get("seqfuse"):
            return 0  # written by seqfuse.train.distributed.record_error
        if f.exitcode < 0:
            return 1
        return 3 if f.exitcode == EXIT_PEER_LOST else 2

    order = {r: i for i, r in enumerate(failures)}
    rank = min(failures, key=lambda r: (kind(failures[r]), order[r]))
    return rank, failures[rank]


def _checkpoint_note(ckpt: Path) -> str:
    from seqfuse.train.checkpoint import load_checkpoint

    if not ckpt.is_file():
        return f"no checkpoint was written yet ({ckpt})"
    try:
        epoch = load_checkpoint(ckpt)["epoch"]
    except SeqfuseError as e:
        return f"the checkpoint {ckpt} cannot be read ({e})"
    return f"the last checkpoint {ckpt} (epoch {epoch}) is intact: continue with --resume {ckpt}"


def launch(
    worker_argv: list[str],
    *,
    nproc: int,
    nnodes: int,
    node_rank: int,
    rdzv_endpoint: str | None,
    checkpoint: Path,
) -> int:
    """Run ``python -m seqfuse <worker_argv>`` as ``nproc`` ranks on this node (of ``nnodes``).

    One node: torchrun's c10d rendezvous on a free local port. Several: a static rendezvous
    at ``rdzv_endpoint`` (host:port), where node 0 serves it.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nnodes > 1 and not rdzv_endpoint:
        raise SeqfuseError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address)")
    if node_rank >= nnodes:
        raise SeqfuseError(f"--node-rank must be < --nnodes ({nnodes}), got {node_rank}")
    # torchrun would set 1 with a multi-line warning; a share of this node's cores is better
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // nproc)))
    targs = [f"--nproc-per-node={nproc}", f"--nnodes={nnodes}", "--max-restarts=0"]
    if rdzv_endpoint:
        targs += [f"--node-rank={node_rank}", f"--rdzv-endpoint={rdzv_endpoint}"]
    targs += ["--module", "seqfuse", *worker_argv]
    args = get_args_parser().parse_args(targs)
    _quiet_torchrun_logs()
    try:
        run(args)
    except ChildFailedError as e:
        rank, f = _root_cause(e.failures)
        if f.error_file_data.get("seqfuse"):
            why = f.message
        elif f.exitcode < 0:
            why = f"rank {rank} was stopped by {f.signal_name()}"
        else:
            why = f"rank {rank} exited with code {f.exitcode}"
        where = _checkpoint_note(checkpoint) if node_rank == 0 else "see node 0's checkpoint"
        raise SeqfuseError(f"{why}; every rank was stopped; {where}") from None
    except SignalException as e:
        name = signal.Signals(e.sigval).name
        where = _checkpoint_note(checkpoint) if node_rank == 0 else "see node 0's checkpoint"
        if e.sigval == signal.SIGINT:  # Ctrl-C: the CLI's "interrupted", status 130
            print(f"seqfuse train: interrupted; every rank was stopped; {where}", file=sys.stderr)
            return 130
        raise SeqfuseError(f"stopped by {name}; every rank was stopped; {where}") from None
    return 0
