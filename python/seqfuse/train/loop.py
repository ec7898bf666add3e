"""The training loop shared by every task: Adam, an LR scheduler, atomic per-epoch
checkpoints that resume exactly, metrics.json and plots; one process or many (torchrun +
DistributedDataParallel, see seqfuse.train.distributed).

Determinism: each epoch's order comes from a DistributedSampler seeded by (seed, epoch), the
same on every rank, which deals the ranks interleaved slices of it: with a global batch B
and W ranks of B/W each, step i of every world size trains on the same B items. Each
rank's RNG state is saved in the checkpoint, so 2 epochs + resume 1 equals 3 epochs.
Checked by tests/test_train.py (one process) and tests/test_distributed.py (several).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from seqfuse.errors import SeqfuseError
from seqfuse.models import build_model
from seqfuse.train import distributed as D
from seqfuse.train.checkpoint import (
    MAX_SEED,
    check_fits_task,
    is_finite_real,
    is_int,
    load_checkpoint,
    save_checkpoint,
)
from seqfuse.train.tasks import TASKS, Task, save_figure
from seqfuse.version import __version__

SCHEDULERS = ("step", "cosine", "plateau", "none")
CHECKPOINT_NAME = "checkpoint.pt"
# what --resume needs beyond a loadable checkpoint
RESUME_KEYS = ("seed", "rng_state", "optimizer_state")


@dataclass
class TrainOptions:
    task: str
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    save_dir: str = "runs/{task}"
    data_dir: str | None = None
    device: str = "auto"
    resume: str | None = None
    seed: int = 0
    scheduler: str | None = None
    step_size: int | None = None
    gamma: float | None = None
    max_batches: int | None = None  # cap on batches per epoch (short schedules)
    clip: float = 5.0
    progress: bool = True
    plots: bool = True
    quiet: bool = False


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise SeqfuseError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SeqfuseError(
            "--device cuda was asked for, but this machine has no usable CUDA device"
        )
    if device not in ("cpu", "cuda"):
        raise SeqfuseError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device(device)


def check_hparams(hp: dict[str, Any], opts: TrainOptions) -> None:
    """Every number the loop uses must make sense (nan, inf, 0 and negatives do not)."""
    for key in ("epochs", "batch_size", "step_size"):
        if not is_int(hp[key]) or hp[key] < 1:
            raise SeqfuseError(f"--{key.replace('_', '-')} must be an integer >= 1, got {hp[key]}")
    if not is_finite_real(hp["lr"]) or hp["lr"] <= 0:
        raise SeqfuseError(f"--lr must be a finite number > 0, got {hp['lr']}")
    if not is_finite_real(hp["gamma"]):
        raise SeqfuseError(f"--gamma must be a finite number, got {hp['gamma']}")
    if hp["scheduler"] in ("step", "plateau") and not 0 < hp["gamma"] < 1:
        raise SeqfuseError(f"--gamma must be in (0, 1) for the {hp['scheduler']} scheduler")
    if opts.max_batches is not None and (not is_int(opts.max_batches) or opts.max_batches < 1):
        raise SeqfuseError(f"--max-batches must be an integer >= 1, got {opts.max_batches}")
    if not is_int(opts.seed) or abs(opts.seed) > MAX_SEED:
        raise SeqfuseError(
            f"--seed must be an integer in [-{MAX_SEED}, {MAX_SEED}], got {opts.seed}"
        )
    if not is_finite_real(opts.clip) or opts.clip < 0:
        raise SeqfuseError(f"clip must be a finite number >= 0, got {opts.clip}")


def check_batch_split(task: Task, batch_size: int | None, world_size: int) -> None:
    """The global batch must split evenly across the processes (checked before launching)."""
    D.local_batch(
        task.defaults["batch_size"] if batch_size is None else batch_size,
        D.Dist(world_size=world_size),
    )


def output_files(save_dir: Path, plots: bool) -> list[Path]:
    """The files a run writes into ``save_dir`` whose names are known up front."""
    names = [CHECKPOINT_NAME, "metrics.json"] + (["loss.png"] if plots else [])
    return [save_dir / n for n in names]


def prepare_save_dir(save_dir: Path, outputs: list[Path]) -> None:
    """Create ``save_dir`` and check it takes files before any training (an unwritable folder
    or an output name taken by a folder would otherwise fail only after the first epoch)."""
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SeqfuseError(f"cannot create --save-dir {save_dir}: {e.strerror or e}") from None
    for p in outputs:
        if p.is_dir():
            raise SeqfuseError(f"cannot write {p}: it is a directory")
    try:
        with tempfile.TemporaryFile(dir=save_dir):
            pass
    except OSError as e:
        raise SeqfuseError(f"cannot write to --save-dir {save_dir}: {e.strerror or e}") from None


def make_scheduler(
    opt: torch.optim.Optimizer, kind: str, epochs: int, step_size: int, gamma: float
):
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, step_size), gamma=gamma)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=gamma, patience=1)
    if kind == "none":
        return None
    raise SeqfuseError(f"unknown scheduler '{kind}'; choose one of: {', '.join(SCHEDULERS)}")


def _restore_rng(resumed: dict[str, Any], d: D.Dist) -> None:
    """Each rank continues its own RNG stream when the process count is the checkpoint's;
    under another count rank 0 continues rank 0's and the others start fresh streams from
    (seed, rank, epoch) (they only drive per-rank randomness such as dropout masks)."""
    states = resumed.get("rng_states")
    saved_world = resumed.get("distributed", {}).get("world_size", 1)
    if states and saved_world == d.world_size and len(states) == d.world_size:
        D.set_rng_state(states[d.rank])
    elif d.rank == 0:
        D.set_rng_state(resumed["rng_state"])
    else:
        fresh = D.rank_seed(resumed["seed"], d.rank) + 7919 * int(resumed["epoch"])
        torch.manual_seed(fresh)
        random.seed(fresh)


def plot_losses(history: list[dict[str, Any]], metric: str, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    if all("test_loss" in h for h in history):
        ax.plot(epochs, [h["test_loss"] for h in history], "s-", label="test loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(h["train_loss"] > 0 for h in history):
        ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h[metric] for h in history], "g^--", label=metric)
    ax2.set_ylabel(metric)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="best")
    ax.set_title(title)
    return save_figure(fig, path)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train ``opts.task``; returns {"checkpoint", "metrics", "history", "files"}."""
    task = get_task(opts.task)
    device = resolve_device(opts.device)
    d = D.setup(device)
    out = _train(opts, task, D.device_for(d, device), d)
    D.teardown(d)  # after an error the process group is left to the worker's exit
    return out


def _train(opts: TrainOptions, task: Task, device: torch.device, d: D.Dist) -> dict[str, Any]:
    hp = dict(task.defaults)
    for k in ("epochs", "batch_size", "lr", "scheduler", "step_size", "gamma"):
        if getattr(opts, k) is not None:
            hp[k] = getattr(opts, k)
    check_hparams(hp, opts)
    local_batch = D.local_batch(hp["batch_size"], d)
    if hp["scheduler"] not in SCHEDULERS:
        raise SeqfuseError(
            f"unknown scheduler '{hp['scheduler']}'; choose one of: {', '.join(SCHEDULERS)}"
        )
    resumed = load_checkpoint(opts.resume, task=task.name) if opts.resume else None
    if resumed:
        lacking = [k for k in RESUME_KEYS if k not in resumed]
        if lacking:
            raise SeqfuseError(
                f"{opts.resume}: cannot resume: the checkpoint lacks {', '.join(lacking)} "
                "(it was not written by seqfuse train)"
            )
        rows = resumed.get("metrics", {}).get("history", [])
        if not all(isinstance(h.get(task.metric), (int, float)) for h in rows):
            raise SeqfuseError(
                f"{opts.resume}: cannot resume: its metrics history lacks {task.metric}"
            )
        if resumed["epoch"] >= hp["epochs"]:
            raise SeqfuseError(
                f"checkpoint is at epoch {resumed['epoch']}; pass --epochs N with "
                f"N > {resumed['epoch']} to train more"
            )
    save_dir = Path(opts.save_dir.replace("{task}", task.name))
    if d.is_main:  # only rank 0 writes (on multi-node runs the folder is rank 0's)
        prepare_save_dir(save_dir, output_files(save_dir, opts.plots))
    seed = resumed["seed"] if resumed else opts.seed
    torch.manual_seed(seed)  # the same on every rank: same data and initial weights
    random.seed(seed)
    td = task.data(opts.data_dir, seed)
    if resumed:
        check_fits_task(resumed["config"], td.config, opts.resume, task.name)
    model = build_model(resumed["config"] if resumed else td.config).to(device)
    if d.rank:
        torch.manual_seed(D.rank_seed(seed, d.rank))
        random.seed(D.rank_seed(seed, d.rank))
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"])
    sched = make_scheduler(opt, hp["scheduler"], hp["epochs"], hp["step_size"], hp["gamma"])
    history: list[dict[str, Any]] = []
    start = 0
    if resumed:
        try:
            model.load_state_dict(resumed["model_state"])
            opt.load_state_dict(resumed["optimizer_state"])
            if sched is not None and resumed.get("scheduler_state"):
                sched.load_state_dict(resumed["scheduler_state"])
            _restore_rng(resumed, d)
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SeqfuseError(
                f"{opts.resume}: cannot resume from this checkpoint ({first})"
            ) from None
        start = int(resumed["epoch"])
        history = list(resumed.get("metrics", {}).get("history", []))

    # DDP broadcasts rank 0's weights at construction and averages gradients in backward;
    # ``net`` trains, ``model`` (the same parameters) evaluates and is saved.
    net: torch.nn.Module = model
    if d.active:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    ckpt_path = save_dir / CHECKPOINT_NAME
    log = print if d.is_main and not opts.quiet else (lambda *a: None)
    where = f"{d.world_size} processes ({d.backend}), " if d.active else ""
    log(
        f"seqfuse train {task.name}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"device {device.type}, {where}epochs {start + 1}..{hp['epochs']}, "
        f"batch {hp['batch_size']}, lr {hp['lr']}, scheduler {hp['scheduler']}"
    )
    sampler = DistributedSampler(
        td.train,
        num_replicas=d.world_size,
        rank=d.rank,
        shuffle=task.shuffle,
        seed=seed * 100_003,
    )

    for epoch in range(start, hp["epochs"]):
        t0 = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        # the loader's own seed draw comes from g, not the global RNG (left to the model)
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        loader = DataLoader(
            td.train,
            batch_size=local_batch,
            sampler=sampler,
            generator=g,
            collate_fn=td.collate,
        )
        n_batches = len(loader) if opts.max_batches is None else min(len(loader), opts.max_batches)
        state, total, count = None, 0.0, 0
        bar = tqdm(
            loader,
            total=n_batches,
            desc=f"{task.name} epoch {epoch + 1}/{hp['epochs']}",
            disable=not (opts.progress and d.is_main),
            leave=False,
            unit="batch",
        )
        for i, batch in enumerate(bar):
            if i >= n_batches:
                break
            loss, state = task.loss(net, batch, state, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if opts.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip)
            opt.step()
            total += loss.detach().item()
            count += 1
            if i % 10 == 0:
                bar.set_postfix(loss=f"{total / count:.4g}")
        bar.close()
        # every rank's batches have the same size, so the mean of the ranks' mean losses is
        # the global batch's mean loss, as in one process
        total, count = D.reduce_sum(d, [total, float(count)])
        count = int(count)
        model.eval()
        metrics = None
        if d.is_main:  # the weights are the same on every rank: evaluate once, share it
            with torch.inference_mode():
                metrics = task.evaluate(model, td, device)
        metrics = D.broadcast(d, metrics)
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(metrics.get("test_loss", metrics[task.metric]))
        elif sched is not None:
            sched.step()
        row = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            **metrics,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        # about ten lines per run: every epoch of short runs, every k-th of long ones
        every = max(1, hp["epochs"] // 10)
        if (epoch + 1) % every == 0 or epoch + 1 in (start + 1, hp["epochs"]):
            log(
                f"  epoch {epoch + 1:3d}/{hp['epochs']}  train loss {row['train_loss']:.4g}  "
                f"{task.summary(metrics)}  ({row['seconds']:.1f}s)"
            )
        rng_states = D.gather(d, D.rng_state())
        if not d.is_main:
            continue
        save_checkpoint(
            ckpt_path,
            {
                "task": task.name,
                "config": model.config.to_dict(),
                "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer_state": opt.state_dict(),
                "scheduler_state": sched.state_dict() if sched is not None else None,
                "epoch": epoch + 1,
                "seed": seed,
                "hparams": hp,
                "rng_state": rng_states[0],
                "rng_states": rng_states,
                "distributed": d.describe(),
                "metrics": {"final": metrics, "history": history},
                "extras": td.extras,
                "seqfuse_version": __version__,
            },
        )

    final = history[-1] if history else {}
    files = [ckpt_path]
    if not d.is_main:
        return {
            "checkpoint": ckpt_path,
            "metrics": final,
            "history": history,
            "files": [],
            "model": model,
        }
    metrics_path = save_dir / "metrics.json"
    try:
        metrics_path.write_text(
            json.dumps(
                {
                    "task": task.name,
                    "hparams": hp,
                    "distributed": d.describe(),
                    "final": final,
                    "history": history,
                },
                indent=2,
            )
        )
        files.append(metrics_path)
        if opts.plots and history:
            files.append(
                plot_losses(
                    history, task.metric, save_dir / "loss.png", f"seqfuse train {task.name}"
                )
            )
            model.eval()
            with torch.inference_mode():
                files += task.plots(model, td, save_dir, device)
    except OSError as e:
        where = e.filename or save_dir
        raise SeqfuseError(
            f"cannot write {where}: {e.strerror or e} (the checkpoint {ckpt_path} was saved)"
        ) from None
    log(f"  wrote {', '.join(str(f) for f in files)}")
    return {
        "checkpoint": ckpt_path,
        "metrics": final,
        "history": history,
        "files": files,
        "model": model,
    }
