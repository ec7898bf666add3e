"""Benchmark workloads: the seed models at batch 1 and 64, the streaming step, the large
group (LSTM(256,512) T=50 and GRU(256,256) T=100 at batch 1, 8 and 64), the grid, and the
whole-model architectures of seqfuse.models.architectures (CRNN, seq2seq, streaming
detector; `--models arch`).

A workload is a model config plus the inputs every backend receives (the same tensors,
generated from a fixed seed), and the napkin cost of one call (weight bytes read and
FLOPs, split into the input-projection GEMM phase and the recurrent steps) used by the
roofline columns. Checked by tests/test_bench.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqfuse.models import architectures, build_model, example_input, preset
from seqfuse.models.seq import GATES

# (preset name, sequence length the tutorial uses)
SEED_MODELS: dict[str, int] = {
    "sine": 20,
    "names": 12,
    "mnist": 28,
    "hihell": 6,
    "linear": 1,
    "shakespeare": 100,
}
SEED_BATCHES = (1, 64)
# Classifiers: the user reads the head's output only, so an engine may skip the rest
# (native runs them with need_state=False; MNIST's top backward direction needs one step).
Y_ONLY = {"mnist", "names"}

GRID_CELLS = ("rnn_tanh", "gru", "lstm")
GRID_BATCHES = (1, 8, 64, 256)
GRID_SEQS = (16, 128, 1024)
GRID_HIDDENS = (32, 128, 256, 512, 1024)
GRID_BASE = {"batch": 1, "seq_len": 128, "hidden": 128}
GRID_INPUT = 64  # input features of grid models (one layer, unidirectional, no head)

# The large group (`seqfuse bench --models large`): one-layer cores with no head, so a call
# is the nn.LSTM / nn.GRU's own (batch_first). name -> (cell, input size, hidden, T).
LARGE_MODELS: dict[str, tuple[str, int, int, int]] = {
    "lstm256x512": ("lstm", 256, 512, 50),
    "gru256x256": ("gru", 256, 256, 100),
}
LARGE_BATCHES = (1, 8, 64)

STREAM_STEPS = 16  # distinct one-char inputs the streaming workload cycles through


@dataclass
class Inputs:
    """What every backend is given. ``mode`` "batch": one call = ``model(x)``.

    ``mode`` "stream": one call = one step ``model(steps[i], state)`` with the state carried
    from the previous call (a fresh session starts from zeros); calls cycle through ``steps``.
    """

    mode: str
    x: torch.Tensor
    steps: list[torch.Tensor] = field(default_factory=list)
    need_state: bool = True
    onnx_exporter: str | None = None  # forces the ONNX exporter (a model seqfuse's can't take)

    def example_args(self, model: nn.Module) -> tuple[Any, ...]:
        """Positional example inputs for exporters (stream: the step plus a zero state)."""
        if self.mode == "batch":
            return (self.x,)
        return (self.steps[0], zero_state(model, self.steps[0].shape[0]))


def zero_state(model: nn.Module, batch: int) -> Any:
    """A zero initial state in torch's layout: h0, or (h0, c0) for an LSTM (a model with a
    ``zero_state(batch)`` method, e.g. a streaming architecture, gives its own)."""
    if hasattr(model, "zero_state"):
        return model.zero_state(batch)
    rnn = model.rnn
    h = torch.zeros(rnn.num_layers * (2 if rnn.bidirectional else 1), batch, rnn.hidden_size)
    return (h, h.clone()) if isinstance(rnn, nn.LSTM) else h


@dataclass
class Workload:
    """One benchmark cell: a model, a batch size, a sequence length and a call mode."""

    id: str
    model_name: str
    config: dict[str, Any]
    batch: int
    seq_len: int
    mode: str = "batch"  # "batch" | "stream"
    group: str = "seed"  # "seed" | "large" | "grid"
    sweep: str = ""  # grid only: "batch" | "seq" | "hidden" | "full"
    need_state: bool = True
    seed: int = 0
    note: str = ""

    @property
    def cell(self) -> str:
        return self.config.get("cell", "linear")

    @property
    def hidden(self) -> int:
        return int(self.config.get("hidden_size", 0))

    @property
    def steps_per_call(self) -> int:
        return self.seq_len if self.mode == "batch" else 1

    def build_model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return build_model(self.config).eval()

    def make_inputs(self) -> Inputs:
        if self.mode == "stream":
            x = example_input(self.config, batch=self.batch, seq_len=STREAM_STEPS, seed=self.seed)
            steps = [x[:, i : i + 1].contiguous() for i in range(STREAM_STEPS)]
            return Inputs("stream", x=steps[0], steps=steps)
        x = example_input(self.config, batch=self.batch, seq_len=self.seq_len, seed=self.seed)
        return Inputs("batch", x=x.contiguous(), need_state=self.need_state)

    def cost(self) -> dict[str, Any]:
        """Napkin cost of one call of the minimal work the outputs need.

        ``weight_bytes``: fp32 weights read per call, assuming the input projections of all
        steps are one GEMM (their weights read once) and the recurrent weights are read once
        per step (batch rows share the read); an Embedding folded into layer 1 is a lookup
        (counted as the rows read). ``flops``: 2 per multiply-add. MNIST-style last-step
        heads with y-only outputs count one step for the top layer's backward direction.

        The same split in two phases, for the roofline floor: ``gemm_flops`` /
        ``gemm_bytes`` (input projections, lookups and the head) and ``step_flops`` /
        ``step_bytes`` (the recurrent products of every step); ``step_weight_bytes`` is the
        largest recurrent matrix of one layer and direction, the one a step streams.
        """
        c = self.config
        if c.get("kind") == "linear":
            w = c["in_features"] * c["out_features"] + c["out_features"]
            return {
                "weight_bytes": 4 * w,
                "flops": 2 * self.batch * w,
                "recurrent_bytes": 0,
                "gemm_flops": 2 * self.batch * w,
                "gemm_bytes": 4 * w,
                "step_flops": 0,
                "step_bytes": 0,
                "step_weight_bytes": 0,
            }
        B, T = self.batch, self.steps_per_call
        g, H, L = GATES[c["cell"]], c["hidden_size"], c["num_layers"]
        D = 2 if c["bidirectional"] else 1
        emb = c.get("vocab_size", 0) > 0
        rec_bytes = gemm_bytes = gemm_flops = step_bytes = step_flops = 0
        for layer in range(L):
            inp = (c["embed_dim"] if emb else c["input_size"]) if layer == 0 else D * H
            for d in range(D):
                steps = T
                top = layer == L - 1
                if top and d == 1 and c["head"] == "last_step" and not self.need_state:
                    steps = 1
                rec_bytes += 4 * g * H * H
                step_bytes += 4 * g * H * H * steps
                if layer == 0 and emb:
                    gemm_bytes += 4 * g * H * B * steps  # table rows looked up
                else:
                    gemm_bytes += 4 * g * H * inp
                    gemm_flops += 2 * B * steps * g * H * inp
                step_flops += 2 * B * steps * g * H * H
        if c["head"] != "none":
            feat, outs = D * H, c["output_size"]
            gemm_bytes += 4 * feat * outs
            gemm_flops += 2 * B * (T if c["head"] == "step" else 1) * feat * outs
        return {
            "weight_bytes": gemm_bytes + step_bytes,
            "flops": gemm_flops + step_flops,
            "recurrent_bytes": rec_bytes,
            "gemm_flops": gemm_flops,
            "gemm_bytes": gemm_bytes,
            "step_flops": step_flops,
            "step_bytes": step_bytes,
            "step_weight_bytes": 4 * g * H * H,
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cell"] = self.cell
        d["hidden"] = self.hidden
        d["steps_per_call"] = self.steps_per_call
        d.update(self.cost())
        return d


def seed_workloads(
    models: list[str] | None = None, batches: tuple[int, ...] = SEED_BATCHES
) -> list[Workload]:
    """Every seed model at each batch size, plus the Shakespeare streaming step."""
    names = list(SEED_MODELS) if models is None else models
    out: list[Workload] = []
    for name in names:
        base = name.removesuffix("-stream")
        if base not in SEED_MODELS:
            raise ValueError(f"unknown model {name!r}; expected one of {', '.join(SEED_MODELS)}")
        cfg = preset(base)
        if base == "shakespeare":
            # the model's real use is generation: one char, batch 1, state in and out
            out.append(
                Workload(
                    "shakespeare/stream",
                    base,
                    cfg,
                    batch=1,
                    seq_len=1,
                    mode="stream",
                    note="one char per call, batch 1, state carried between calls",
                )
            )
            if name.endswith("-stream"):
                continue
        for b in batches:
            if base == "shakespeare" and models is None:
                continue  # the default set times the shakespeare model as a stream only
            note = "y only (native: need_state=False)" if base in Y_ONLY else ""
            out.append(
                Workload(
                    f"{base}/b{b}",
                    base,
                    cfg,
                    batch=b,
                    seq_len=SEED_MODELS[base],
                    need_state=base not in Y_ONLY,
                    note=note,
                )
            )
    return out


def large_workloads(
    models: list[str] | None = None, batches: tuple[int, ...] = LARGE_BATCHES
) -> list[Workload]:
    """The large group: LSTM(256,512) T=50 and GRU(256,256) T=100 (raw one-layer cores,
    batch_first, no head) at each batch size. Not in the default set: minutes on 2 cores."""
    names = list(LARGE_MODELS) if models is None else models
    out: list[Workload] = []
    for name in names:
        if name not in LARGE_MODELS:
            raise ValueError(
                f"unknown large model {name!r}; expected one of {', '.join(LARGE_MODELS)}"
            )
        cell, inp, hidden, T = LARGE_MODELS[name]
        cfg = grid_config(cell, hidden, inp)
        for b in batches:
            out.append(
                Workload(
                    f"{name}/b{b}",
                    name,
                    cfg,
                    batch=b,
                    seq_len=T,
                    group="large",
                    note="one-layer core, no head: the nn.Module's own call",
                )
            )
    return out


def grid_config(cell: str, hidden: int, input_size: int = GRID_INPUT) -> dict[str, Any]:
    return {
        "kind": "seq",
        "cell": cell,
        "hidden_size": hidden,
        "input_size": input_size,
        "vocab_size": 0,
        "embed_dim": 0,
        "num_layers": 1,
        "bidirectional": False,
        "bias": True,
        "dropout": 0.0,
        "head": "none",
        "output_size": 1,
    }


def grid_workloads(
    kind: str = "sweep",
    cells: tuple[str, ...] = GRID_CELLS,
    batches: tuple[int, ...] = GRID_BATCHES,
    seqs: tuple[int, ...] = GRID_SEQS,
    hiddens: tuple[int, ...] = GRID_HIDDENS,
    base: dict[str, int] | None = None,
) -> list[Workload]:
    """Single-layer models with no head over batch, sequence length and hidden size.

    ``kind`` "sweep": three one-at-a-time sweeps around ``base`` (batch 1, T 128, H 128),
    which is what the latency-vs-batch and latency-vs-length plots need. ``kind`` "full":
    the whole cartesian product (large: hours on a small machine at the biggest cells).
    """
    if kind not in ("sweep", "full"):
        raise ValueError(f"unknown grid kind {kind!r}; expected sweep or full")
    for c in cells:
        if c not in GATES:
            raise ValueError(f"unknown cell {c!r}; expected one of {', '.join(GATES)}")
    b0 = {**GRID_BASE, **(base or {})}
    points: list[tuple[str, int, int, int]] = []
    if kind == "full":
        points = [("full", b, t, h) for b in batches for t in seqs for h in hiddens]
    else:
        points += [("batch", b, b0["seq_len"], b0["hidden"]) for b in batches]
        points += [("seq", b0["batch"], t, b0["hidden"]) for t in seqs]
        points += [("hidden", b0["batch"], b0["seq_len"], h) for h in hiddens]
    out: list[Workload] = []
    seen: set[str] = set()
    for cell in cells:
        for sweep, b, t, h in points:
            wid = f"grid/{cell}/b{b}-t{t}-h{h}"
            if wid in seen:  # the base point belongs to every sweep; time it once
                for w in out:
                    if w.id == wid and sweep not in w.sweep.split("+"):
                        w.sweep += f"+{sweep}"
                continue
            seen.add(wid)
            out.append(
                Workload(wid, f"grid-{cell}", grid_config(cell, h), b, t, group="grid", sweep=sweep)
            )
    return out


# The whole-model architectures (`seqfuse bench --models arch`, or some of these names):
# name -> what a row's note says about the model and its ONNX file.
ARCH_MODELS: dict[str, str] = {
    "crnn": "Conv2d x2, 2-layer BiLSTM(256->128), CTC head (log_softmax), T=100 -> 50",
    "seq2seq": (
        "LSTM(40,128) encoder over T=50, LSTMCell(32,128) greedy decoder, 8 steps; the ONNX "
        "file is the decoder loop unrolled by tracing (8 steps fixed)"
    ),
    "detector": (
        "streaming: 10-frame chunks, causal Conv1d + LSTMCell(64,128) per frame, conv context "
        "and (h, c) carried between calls"
    ),
}
ARCH_BATCHES = (1,)


@dataclass
class ArchWorkload(Workload):
    """A whole model of seqfuse.models.architectures (``config["arch"]`` names it). Its cost
    is counted, not derived: the FLOPs torch's FlopCounterMode sees in one eager call, and
    every parameter read once (no recurrent/GEMM split: the roofline floor is rough)."""

    group: str = "arch"

    def build_model(self) -> nn.Module:
        return architectures.build_architecture(self.config["arch"], seed=self.seed)

    def make_inputs(self) -> Inputs:
        name = self.config["arch"]
        if self.mode == "stream":
            steps = architectures.architecture_input(name, self.batch, self.seed, chunks=8)
            return Inputs("stream", x=steps[0], steps=steps, onnx_exporter="torch")
        x = architectures.architecture_input(name, self.batch, self.seed)
        return Inputs("batch", x=x, onnx_exporter="torch")

    def cost(self) -> dict[str, Any]:
        from torch.utils.flop_counter import FlopCounterMode

        model, inputs = self.build_model(), self.make_inputs()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(*inputs.example_args(model))
        flops = int(counter.get_total_flops())
        params = 4 * sum(p.numel() for p in model.parameters())
        return {
            "weight_bytes": params,
            "flops": flops,
            "recurrent_bytes": 0,
            "gemm_flops": flops,
            "gemm_bytes": params,
            "step_flops": 0,
            "step_bytes": 0,
            "step_weight_bytes": params,
        }


def arch_workloads(
    models: list[str] | None = None, batches: tuple[int, ...] = ARCH_BATCHES
) -> list[Workload]:
    """The whole-model architectures at each batch size: one call is the model's forward
    (the detector: one chunk, state in and out)."""
    names = list(ARCH_MODELS) if models is None else models
    out: list[Workload] = []
    for name in names:
        if name not in ARCH_MODELS:
            raise ValueError(
                f"unknown architecture {name!r}; expected one of {', '.join(ARCH_MODELS)}"
            )
        spec = architectures.ARCHITECTURES[name][2]
        stream = spec["input"] == "chunks"
        cfg = {"kind": "arch", "arch": name, "cell": "lstm", "hidden_size": 128}
        for b in batches:
            out.append(
                ArchWorkload(
                    f"{name}/b{b}",
                    name,
                    cfg,
                    batch=b,
                    seq_len=spec["seq_len"],
                    mode="stream" if stream else "batch",
                    note=ARCH_MODELS[name],
                )
            )
    return out
