"""Whole models built around recurrent layers, the shapes users bring to seqfuse.accelerate:
a CRNN (conv, BiLSTM, CTC head), a seq2seq model whose decoder is an nn.LSTMCell loop with
greedy decoding, and a streaming detector (causal conv + an nn.LSTMCell or nn.GRUCell) that
carries its state from one chunk to the next. Plain PyTorch, defined once here for the tests
and the benchmark.

Checked by tests/test_accelerate.py (each one accelerated equals eager within 1e-5) and
tests/test_bench.py (`seqfuse bench --models arch` rows, validated against eager).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CRNN(nn.Module):
    """Conv2d front-end over a ``[B, 1, feats, T]`` spectrogram or text-line image (time
    halved), a 2-layer BiLSTM over time, and a CTC head: ``[T // 2, B, classes]``
    log-probabilities, the layout ``F.ctc_loss`` takes (class 0 is CTC's blank)."""

    def __init__(self, feats: int = 32, channels: int = 32, hidden: int = 128, classes: int = 37):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # feats / 2, T / 2
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d((2, 1)),  # feats / 4
        )
        self.rnn = nn.LSTM(
            channels * (feats // 4), hidden, num_layers=2, bidirectional=True, batch_first=True
        )
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)  # [B, C, F', T']
        z = z.flatten(1, 2).transpose(1, 2)  # [B, T', C * F']
        y, _ = self.rnn(z)
        return self.head(y).log_softmax(-1).transpose(0, 1)


class Seq2Seq(nn.Module):
    """An nn.LSTM encoder over ``[B, T, feats]`` and an nn.LSTMCell decoder that starts from
    the encoder's final state and feeds back the embedding of its own greedy token (BOS = 0)
    for a fixed number of ``steps`` (no early stop, so every call has one shape). Returns the
    decoder's logits ``[B, steps, vocab]``; their argmax is the decoded sequence."""

    def __init__(
        self, feats: int = 40, hidden: int = 128, vocab: int = 32, embed: int = 32, steps: int = 8
    ):
        super().__init__()
        self.steps = steps
        self.encoder = nn.LSTM(feats, hidden, batch_first=True)
        self.embed = nn.Embedding(vocab, embed)
        self.decoder = nn.LSTMCell(embed, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.encoder(x)
        state = (h[-1], c[-1])
        tok = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        logits = []
        for _ in range(self.steps):
            state = self.decoder(self.embed(tok), state)
            step = self.out(state[0])
            logits.append(step)
            tok = step.argmax(-1)
        return torch.stack(logits, 1)


class StreamingDetector(nn.Module):
    """A streaming detector: a causal Conv1d over ``[B, T, feats]`` chunks (its left context
    carried as state), then an nn.LSTMCell (``cell="lstm"``) or nn.GRUCell (``"gru"``) run
    frame by frame, and a per-frame score head. ``forward(chunk, state=None) -> (scores
    [B, T, classes], state)``; feeding chunks one after another with the returned state
    equals running the whole stream at once. ``state`` is ``(context, h, c)`` (LSTM) or
    ``(context, h)``; :meth:`zero_state` gives the initial one."""

    def __init__(
        self,
        feats: int = 40,
        channels: int = 64,
        kernel: int = 3,
        hidden: int = 128,
        classes: int = 2,
        cell: str = "lstm",
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be lstm or gru, got {cell!r}")
        self.feats, self.hidden, self.context = feats, hidden, kernel - 1
        self.lstm = cell == "lstm"
        self.conv = nn.Conv1d(feats, channels, kernel)
        self.cell = (nn.LSTMCell if self.lstm else nn.GRUCell)(channels, hidden)
        self.head = nn.Linear(hidden, classes)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        ctx = torch.zeros(batch, self.context, self.feats)
        h = torch.zeros(batch, self.hidden)
        return (ctx, h, h.clone()) if self.lstm else (ctx, h)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        if state is None:
            state = self.zero_state(x.shape[0])
        z = torch.cat([state[0], x], 1)  # [B, context + T, feats]
        ctx = z[:, z.shape[1] - self.context :]
        f = self.conv(z.transpose(1, 2)).relu().permute(2, 0, 1).contiguous()  # [T, B, C]
        hx: Any = (state[1], state[2]) if self.lstm else state[1]
        scores = []
        for t in range(f.shape[0]):
            hx = self.cell(f[t], hx)
            scores.append(self.head(hx[0] if self.lstm else hx))
        new = (ctx, *hx) if self.lstm else (ctx, hx)
        return torch.stack(scores, 1), new


# name -> (class, constructor arguments, what one benchmark call feeds it). Shapes: "image"
# [B, 1, feats, T]; "features" [B, T, feats]; "chunks": T-frame chunks of a stream, the
# state carried from call to call.
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any], dict[str, Any]]] = {
    "crnn": (CRNN, {}, {"input": "image", "feats": 32, "seq_len": 100}),
    "seq2seq": (Seq2Seq, {}, {"input": "features", "feats": 40, "seq_len": 50}),
    "detector": (StreamingDetector, {}, {"input": "chunks", "feats": 40, "seq_len": 10}),
}


def build_architecture(name: str, seed: int = 0, **kwargs: Any) -> nn.Module:
    """The named architecture with seeded random weights, in eval mode."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}"
        )
    cls, defaults, _ = ARCHITECTURES[name]
    torch.manual_seed(seed)
    return cls(**{**defaults, **kwargs}).eval()


def architecture_input(name: str, batch: int, seed: int = 0, chunks: int = 1) -> Any:
    """An input of the named architecture: a tensor, or for a streaming one a list of
    ``chunks`` consecutive chunks."""
    _, _, spec = ARCHITECTURES[name]
    g = torch.Generator().manual_seed(seed)
    F, T = spec["feats"], spec["seq_len"]
    if spec["input"] == "image":
        return torch.randn(batch, 1, F, T, generator=g)
    if spec["input"] == "features":
        return torch.randn(batch, T, F, generator=g)
    return [torch.randn(batch, T, F, generator=g) for _ in range(chunks)]
