"""The seed tasks: data, loss, evaluation and plots for each, behind one small interface.

Each task says how to build its data and model config, how to compute a batch's loss (the
sine task carries its hidden state across batches), how to evaluate (the primary metric) and
which plots people want. Checked by tests/test_train.py (each task reaches its bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seqfuse import data as D
from seqfuse.models import preset
from seqfuse.models.presets import HIHELL_CHARS


@dataclass
class TaskData:
    train: Dataset
    test: Dataset
    config: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    collate: Any = None


def save_figure(fig, path: Path) -> Path:
    """Lay out, write as PNG and close a matplotlib figure (every plot seqfuse train makes)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class Task:
    name = ""
    metric = ""  # primary metric in evaluate()'s dict
    shuffle = True
    needs_data = False
    defaults: dict[str, Any] = {}

    def data(self, data_dir: str | None, seed: int) -> TaskData:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch, state, device) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, td: TaskData, device) -> dict[str, float]:
        raise NotImplementedError

    def plots(self, model: nn.Module, td: TaskData, out_dir: Path, device) -> list[Path]:
        return []

    def summary(self, metrics: dict[str, Any]) -> str:
        return f"{self.metric} {metrics[self.metric]:.4g}"


def _classify_eval(model, loader, device, with_lengths: bool):
    correct = total = 0
    loss_sum = 0.0
    preds, labels = [], []
    for batch in loader:
        if with_lengths:
            x, lengths, y = batch
            logits, _ = model(x.to(device), lengths=lengths)
        else:
            x, y = batch
            logits, _ = model(x.to(device))
        y = y.to(device)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        p = logits.argmax(-1)
        correct += int((p == y).sum())
        total += len(y)
        preds.append(p.cpu())
        labels.append(y.cpu())
    return (
        {"accuracy": correct / total, "test_loss": loss_sum / total},
        torch.cat(preds),
        torch.cat(labels),
    )


class LinearTask(Task):
    name, metric = "linear", "mse"
    defaults = dict(epochs=300, batch_size=10, lr=0.1, scheduler="step", step_size=100, gamma=0.5)

    def data(self, data_dir, seed):
        ds = D.linear_tensors()
        return TaskData(ds, ds, preset("linear"))

    def loss(self, model, batch, state, device):
        x, y = (t.to(device) for t in batch)
        return F.mse_loss(model(x), y), None

    def evaluate(self, model, td, device):
        x, y = td.test.tensors
        pred = model(x.to(device)).cpu()
        w = float(model.linear.weight.flatten()[0])
        b = float(model.linear.bias.flatten()[0])
        return {"mse": float(F.mse_loss(pred, y)), "w": w, "b": b}

    def summary(self, m):
        return f"mse {m['mse']:.3g}  w {m['w']:.4f}  b {m['b']:.4f}  (data: y = 0.5 x + 1)"


class HihellTask(Task):
    name, metric = "hihell", "accuracy"
    defaults = dict(epochs=100, batch_size=1, lr=0.1, scheduler="step", step_size=50, gamma=0.5)

    def data(self, data_dir, seed):
        ds = D.hihell_tensors()
        return TaskData(ds, ds, preset("hihell"))

    def loss(self, model, batch, state, device):
        x, y = (t.to(device) for t in batch)
        logits, _ = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), None

    def evaluate(self, model, td, device):
        x, y = td.test.tensors
        logits, _ = model(x.to(device))
        pred = logits.argmax(-1).cpu()[0]
        text = "".join(HIHELL_CHARS[i] for i in pred)
        return {"accuracy": float((pred == y[0]).float().mean()), "predicted": text}

    def summary(self, m):
        return f"'hihell' -> '{m['predicted']}'  (accuracy {m['accuracy']:.2f})"


class SineTask(Task):
    """Next-value prediction on sine waves, state carried across consecutive windows."""

    name, metric, shuffle = "sine", "mse", False
    defaults = dict(epochs=60, batch_size=16, lr=0.01, scheduler="step", step_size=20, gamma=0.5)

    def data(self, data_dir, seed):
        return TaskData(
            D.sine_streams(n_streams=16, seed=seed),
            D.sine_streams(n_streams=16, n_windows=10, seed=seed + 1),
            preset("sine"),
            extras={"n_streams": 16, "dt": 0.1, "seq_len": 20},
        )

    def loss(self, model, batch, state, device):
        x, y = (t.to(device) for t in batch)
        if state is not None and state.shape[1] != x.shape[0]:
            state = None  # a short last batch starts fresh streams
        pred, h = model(x, state)
        return F.mse_loss(pred, y), _detach(h)

    def predict_streams(self, model, td, device):
        loader = DataLoader(td.test, batch_size=td.extras["n_streams"], shuffle=False)
        state, preds, targets = None, [], []
        for x, y in loader:
            pred, state = model(x.to(device), state)
            preds.append(pred.cpu())
            targets.append(y)
        # [windows, streams, T, 1] -> [streams, windows*T]
        p = torch.stack(preds).squeeze(-1).transpose(0, 1).flatten(1)
        t = torch.stack(targets).squeeze(-1).transpose(0, 1).flatten(1)
        return p, t

    def evaluate(self, model, td, device):
        p, t = self.predict_streams(model, td, device)
        return {"mse": float(F.mse_loss(p, t))}

    def plots(self, model, td, out_dir, device):
        import matplotlib.pyplot as plt

        p, t = self.predict_streams(model, td, device)
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(t[0].numpy(), label="target (next value)", lw=2)
        ax.plot(p[0].numpy(), "--", label="RNN prediction, state carried")
        ax.set_xlabel("time step")
        ax.set_title("sine: next-value prediction on a held-out stream")
        ax.legend()
        return [save_figure(fig, out_dir / "sine_prediction.png")]


class NamesTask(Task):
    name, metric, needs_data = "names", "accuracy", True
    defaults = dict(epochs=5, batch_size=64, lr=0.003, scheduler="step", step_size=3, gamma=0.3)

    def data(self, data_dir, seed):
        train, test = D.load_names(data_dir)
        return TaskData(
            train, test, preset("names"), {"classes": train.classes}, collate=D.collate_padded
        )

    def loss(self, model, batch, state, device):
        x, lengths, y = batch
        logits, _ = model(x.to(device), lengths=lengths)
        return F.cross_entropy(logits, y.to(device)), None

    def _eval(self, model, td, device):
        loader = DataLoader(td.test, batch_size=512, collate_fn=D.collate_padded)
        return _classify_eval(model, loader, device, with_lengths=True)

    def evaluate(self, model, td, device):
        return self._eval(model, td, device)[0]

    def plots(self, model, td, out_dir, device):
        import matplotlib.pyplot as plt

        _, pred, label = self._eval(model, td, device)
        k = len(td.extras["classes"])
        cm = torch.zeros(k, k)
        cm.index_put_((label, pred), torch.ones(len(label)), accumulate=True)
        cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
        fig, ax = plt.subplots(figsize=(8, 7))
        im = ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), td.extras["classes"], rotation=90)
        ax.set_yticks(range(k), td.extras["classes"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("names: confusion matrix (rows normalized), names_test")
        fig.colorbar(im)
        return [save_figure(fig, out_dir / "names_confusion.png")]


class MnistTask(Task):
    name, metric, needs_data = "mnist", "accuracy", True
    defaults = dict(epochs=8, batch_size=64, lr=0.002, scheduler="step", step_size=4, gamma=0.3)

    def data(self, data_dir, seed):
        train, test, split = D.load_mnist(data_dir, seed=0)
        return TaskData(train, test, preset("mnist"), {"split": split})

    def loss(self, model, batch, state, device):
        x, y = (t.to(device) for t in batch)
        logits, _ = model(x)
        return F.cross_entropy(logits, y), None

    def evaluate(self, model, td, device):
        loader = DataLoader(td.test, batch_size=500)
        return _classify_eval(model, loader, device, with_lengths=False)[0]


class ShakespeareTask(Task):
    name, metric, needs_data = "shakespeare", "val_loss", True
    defaults = dict(epochs=1, batch_size=64, lr=0.003, scheduler="step", step_size=5, gamma=0.5)
    max_eval_batches = 8

    def data(self, data_dir, seed):
        train, val, vocab = D.load_shakespeare(data_dir)
        cfg = preset("shakespeare", vocab_size=len(vocab), output_size=len(vocab))
        return TaskData(train, val, cfg, {"vocab": vocab})

    def loss(self, model, batch, state, device):
        x, y = (t.to(device) for t in batch)
        logits, _ = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), None

    def evaluate(self, model, td, device):
        loader = DataLoader(td.test, batch_size=64)
        total, n = 0.0, 0
        for i, (x, y) in enumerate(loader):
            if i >= self.max_eval_batches:
                break
            logits, _ = model(x.to(device))
            total += float(
                F.cross_entropy(logits.flatten(0, 1), y.to(device).flatten(), reduction="sum")
            )
            n += y.numel()
        val = total / n
        return {"val_loss": val, "val_bits_per_char": val / math.log(2)}


TASKS: dict[str, Task] = {
    t.name: t
    for t in (LinearTask(), HihellTask(), SineTask(), NamesTask(), MnistTask(), ShakespeareTask())
}
