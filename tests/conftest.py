"""Shared pytest fixtures: the real-data folder, trained seed checkpoints, and the native
engine's threshold for steps that compute their own input projection.

Real data comes from $SEQFUSE_DATA_DIR or ../shared/data beside the repository; tests that
need it skip with the reason when it is absent. ``trained_checkpoint(task)`` trains a seed
model once per run on a short schedule and returns its checkpoint path.

The suite runs on pytest-xdist workers (README's test command): each worker gets one torch thread
(two processes with two spinning OpenMP threads each on two cores ran training 20x slower), and
the workers share the trained checkpoints (a file lock: the first to ask trains, the others
read its result).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SEQFUSE_DATA_DIR") or REPO.parent / "shared" / "data")

# Short schedules: enough to pass each task's bar in seconds on 2 cores.
SHORT = {
    "linear": dict(),
    "hihell": dict(),
    "sine": dict(),
    "names": dict(epochs=3),
    # 5 = one epoch past the LR step (step_size 4): before it, accuracy swings by 3 points
    # with the CPU's ISA and the seed (0.897..0.931 at epoch 3); after it, 0.9495..0.969
    "mnist": dict(epochs=5),
    "shakespeare": dict(epochs=1, max_batches=60, batch_size=32),
}


def _data_dir_or_skip() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(
            f"real data sets not found at {DATA_DIR}: set SEQFUSE_DATA_DIR or put the shared "
            "data folder beside the repository (see README 'Data')"
        )
    return DATA_DIR


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and the CLI processes a test starts


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _data_dir_or_skip()


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """Factory: task name -> (checkpoint path, final metrics), trained once per run."""
    from seqfuse.train.loop import TrainOptions, train
    from seqfuse.train.tasks import TASKS

    # xdist workers' base temp dirs share a parent: one trained model per run, not per worker
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    cache: dict[str, tuple[Path, dict]] = {}

    def get(task: str) -> tuple[Path, dict]:
        if task not in cache:
            data = str(_data_dir_or_skip()) if TASKS[task].needs_data else None
            out = base / f"trained_{task}"
            done = out / "trained.json"
            with FileLock(str(out) + ".lock"):
                if not done.exists():
                    r = train(
                        TrainOptions(
                            task=task,
                            save_dir=str(out),
                            data_dir=data,
                            progress=False,
                            plots=False,
                            quiet=True,
                            **SHORT[task],
                        )
                    )
                    done.write_text(json.dumps([str(r["checkpoint"]), r["metrics"]]))
                ckpt, metrics = json.loads(done.read_text())
            cache[task] = (Path(ckpt), metrics)
        return cache[task]

    return get


@pytest.fixture
def fused_input_rows():
    """Sets the smallest batch whose steps compute their own input projection (returns the
    setter for the test to change it); restores the default after."""
    from seqfuse import _C

    old = _C.set_fused_input_rows(32)
    yield _C.set_fused_input_rows
    _C.set_fused_input_rows(old)
