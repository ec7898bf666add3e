"""Data-parallel training glue: the process group torchrun sets up, and the few collectives
the training loop needs (loss reduction, metrics broadcast, RNG-state gather).

A process is a torchrun worker when torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) is set; it then joins the process group with gloo on CPU and nccl
on CUDA. Without that environment the same code runs as one process, world size 1, with no
process group. Checked by tests/test_distributed.py (2 gloo processes against 1, two
"nodes" on one machine, a killed rank).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from seqfuse.errors import SeqfuseError

# A worker that stops because another rank failed (its collective lost the peer) exits
# with this code, so the launcher can tell the rank that failed first from the ones that
# only followed it.
EXIT_PEER_LOST = 3
# How long a collective may wait for a silent peer before it fails (a dead peer's closed
# socket fails it at once; this bounds a peer that hangs).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def in_torchrun() -> bool:
    """Whether this process was started by torchrun (or a launcher that sets its env)."""
    return all(k in os.environ for k in _TORCHRUN_ENV)


@dataclass
class Dist:
    """Where this process sits in the job. ``backend`` is None for a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What metrics.json and the checkpoint record about how the run was distributed."""
        return {"world_size": self.world_size, "backend": self.backend or "none"}


def env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise SeqfuseError(f"${name} must be an integer, got {os.environ[name]!r}") from None


def setup(device: torch.device) -> Dist:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA), or return a 1-process Dist.

    On CUDA each local rank takes the GPU of its index; fewer GPUs than local ranks is an error.
    """
    if not in_torchrun():
        return Dist()
    rank, world, local = env_int("RANK"), env_int("WORLD_SIZE"), env_int("LOCAL_RANK")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise SeqfuseError(
                f"local rank {local} has no GPU: this node has {n}; use --nproc-per-node <= {n}"
            )
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return Dist(rank=rank, world_size=world, local_rank=local, backend=backend)


def teardown(d: Dist) -> None:
    """Leave the process group after a finished run: every rank first meets at a barrier, so
    that none closes its connections while another is still in its last collective or
    writing the checkpoint, then the group is destroyed. Not called after an error: a peer
    may be gone, and destroying the group could wait on it; the worker's exit closes the
    connections (seqfuse.train.cli_train)."""
    if d.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def device_for(d: Dist, device: torch.device) -> torch.device:
    return torch.device("cuda", d.local_rank) if device.type == "cuda" and d.active else device


def local_batch(global_batch: int, d: Dist) -> int:
    """The per-rank batch of a global batch; it must split evenly across the ranks."""
    if global_batch % d.world_size:
        raise SeqfuseError(
            f"--batch-size {global_batch} is the global batch and must be a multiple of the "
            f"{d.world_size} processes (each takes {global_batch}/{d.world_size})"
        )
    return global_batch // d.world_size


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the run's seed (a 1-process run is unchanged); rank r gets its own stream
    for what differs per rank (dropout masks)."""
    return seed + 1_000_003 * rank


def reduce_sum(d: Dist, values: list[float]) -> list[float]:
    """Sum ``values`` over every rank (float64, on the collective's device)."""
    if not d.active:
        return values
    dev = torch.device("cuda", d.local_rank) if d.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def broadcast(d: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (metrics computed once, so every scheduler agrees)."""
    if not d.active:
        return obj
    box = [obj if d.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(d: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))


def is_peer_lost(e: BaseException) -> bool:
    """Whether ``e`` came from a collective whose peer went away (not this rank's own fault)."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(
        s in text
        for s in (
            "Connection closed by peer",
            "Connection reset by peer",
            "Broken pipe",
            "NCCL communicator was aborted",
            "ProcessGroupGloo",
            "gloo",
        )
    )


def record_error(message: str) -> bool:
    """Hand a worker's one-line error to torchrun (its error file, which torchrun and
    ``seqfuse train --nproc`` report); False when there is no error file to write."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return False
    try:
        with open(path, "w") as f:
            json.dump({"message": message, "timestamp": int(time.time()), "seqfuse": True}, f)
    except OSError:
        return False
    return True
