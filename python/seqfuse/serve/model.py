"""The model a Ray replica or Ray Data actor holds, and the request contract of
`POST /v1/predict`: check one request's JSON, run many requests as one native call.

A MODEL is a training checkpoint (loaded through seqfuse.train.checkpoint), a native weight
file, or an ONNX file when seqfuse.native has from_onnx. The driver turns it into native
weight-file bytes once (every bad file is one line before anything is deployed); each
replica loads those bytes, so replicas on other nodes need no copy of MODEL. Plain Python:
no Ray. Checked by tests/test_serve.py (outputs equal eager, bad requests get one-line
reasons).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from seqfuse import native
from seqfuse.errors import SeqfuseError
from seqfuse.version import __version__

# Request limits (a bigger request gets HTTP 400 "too large"): the body, sequences per
# request and numbers per request.
MAX_BODY_BYTES = 32 << 20
MAX_SEQUENCES = 4096
MAX_VALUES = 1 << 22


class BadRequest(SeqfuseError):
    """A request that does not fit the model; its message is the one-line HTTP 400 reason."""


def model_bytes(path: str | os.PathLike) -> tuple[bytes, str]:
    """MODEL as native weight-file bytes, and its display name; a bad MODEL is a
    :class:`SeqfuseError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise SeqfuseError(f"model not found: {path}" + (" (a directory)" if path.is_dir() else ""))
    suffix = path.name.lower()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.seqfuse.safetensors"
        if suffix.endswith(".safetensors"):
            native.load(path)  # validates the whole file before it is shipped
            return path.read_bytes(), path.name.split(".")[0]
        if suffix.endswith(".onnx"):
            from_onnx = getattr(native, "from_onnx", None)
            if from_onnx is None:
                raise SeqfuseError(
                    f"{path}: ONNX models need seqfuse.native.from_onnx, which this build lacks; "
                    "serve a checkpoint or a native weight file"
                )
            from_onnx(path).save(out)
            return out.read_bytes(), path.stem
        from seqfuse.train.checkpoint import model_from_checkpoint

        module, ckpt = model_from_checkpoint(path)
        native.from_module(module).save(out)
        return out.read_bytes(), str(ckpt["task"])


def load_bytes(data: bytes, threads: int = 1) -> Any:
    """A native model from weight-file bytes (written to a private temp file, then loaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "model.seqfuse.safetensors"
        p.write_bytes(data)
        return native.load(p, threads=threads)


class Predictor:
    """Checks requests against one native model and runs several as one call."""

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        cfg, info = model.config, model.module_info
        self.kind = info["kind"]  # seq (SeqModel), rnn (a bare nn.RNN/GRU/LSTM), linear
        self.tokens = cfg["vocab_size"] > 0
        self.vocab = cfg["vocab_size"]
        self.features = cfg["input_size"]
        self.batch_first = info.get("batch_first", True)
        self.per_step = self.kind != "linear" and cfg["head"] in ("step", "none")

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "version": __version__}

    def expected(self) -> str:
        if self.kind == "linear":
            return f"[B, {self.features}]"
        return "[B, T] token ids" if self.tokens else f"[B, T, {self.features}]"

    # -- one request
    def parse(self, body: bytes | str) -> tuple[np.ndarray, np.ndarray | None]:
        """A request body -> (inputs, lengths or None); bad ones raise :class:`BadRequest`."""
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(
                f"too large: the body is {len(body)} bytes, the limit {MAX_BODY_BYTES}"
            )
        try:
            req = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"malformed JSON: {str(e).splitlines()[0][:120]}") from None
        if not isinstance(req, dict) or "inputs" not in req:
            raise BadRequest(
                'the body must be a JSON object with "inputs" (and optional "lengths")'
            )
        extra = set(req) - {"inputs", "lengths"}
        if extra:
            raise BadRequest(f"unknown field(s): {', '.join(sorted(extra))}")
        return self.check(req["inputs"], req.get("lengths"))

    def check(self, inputs: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        if not isinstance(inputs, (list, np.ndarray)):
            raise BadRequest(f"inputs must be a batch-first nested list of shape {self.expected()}")
        try:
            x = np.asarray(inputs)
        except (ValueError, RecursionError):
            raise BadRequest("wrong shape: inputs is ragged (rows of different lengths)") from None
        if x.size > MAX_VALUES or (x.ndim and x.shape[0] > MAX_SEQUENCES):
            raise BadRequest(
                f"too large: {x.shape[0] if x.ndim else 0} sequences / {x.size} numbers "
                f"(limits {MAX_SEQUENCES} / {MAX_VALUES})"
            )
        want_ndim = 2 if (self.kind == "linear" or self.tokens) else 3
        if x.dtype == object or x.ndim != want_ndim or 0 in x.shape:
            shape = "ragged" if x.dtype == object else list(x.shape)
            raise BadRequest(f"wrong shape: inputs must be {self.expected()}, got {shape}")
        if self.tokens:
            if x.dtype.kind not in "iu":
                raise BadRequest(f"wrong dtype: inputs must be integer token ids, got {x.dtype}")
            if x.min() < 0 or x.max() >= self.vocab:
                raise BadRequest(
                    f"token ids must be in [0, {self.vocab}), got {x.min()}..{x.max()}"
                )
            x = x.astype(np.int64)
        else:
            if x.dtype.kind not in "iuf":
                raise BadRequest(f"wrong dtype: inputs must be numbers, got {x.dtype}")
            if x.shape[-1] != self.features:
                raise BadRequest(
                    f"wrong shape: inputs must be {self.expected()}, got {list(x.shape)}"
                )
            x = x.astype(np.float32)
        if lengths is None:
            return x, None
        if self.kind == "linear":
            raise BadRequest("lengths apply to sequence models only")
        try:
            n = np.asarray(lengths)
        except ValueError:
            n = np.asarray([None])
        if n.ndim != 1 or n.dtype.kind not in "iu" or len(n) != x.shape[0]:
            raise BadRequest(f"lengths must be a list of {x.shape[0]} integers, one per sequence")
        if n.min() < 1 or n.max() > x.shape[1]:
            raise BadRequest(f"lengths must be in [1, {x.shape[1]}], got {n.min()}..{n.max()}")
        return x, n.astype(np.int64)

    # -- many requests, one call
    def run(self, x: np.ndarray, lengths: np.ndarray | None = None, threads: int | None = None):
        if self.kind == "linear":
            return self.model(x, threads=threads)
        if not self.batch_first:  # a bare time-major module: the contract stays batch-first
            y, _ = self.model(np.ascontiguousarray(np.swapaxes(x, 0, 1)), lengths=lengths,
                              threads=threads, need_state=False)  # fmt: skip
            return np.swapaxes(y, 0, 1) if self.per_step else y
        y, _ = self.model(x, lengths=lengths, threads=threads, need_state=False)
        return y

    def run_many(self, items: list[tuple[np.ndarray, np.ndarray | None]], threads=None):
        """Outputs of several requests from one native call: equal lengths concatenate, others
        are zero-padded to the longest with per-sequence lengths (pack_padded semantics, so
        each output is what its request alone would get)."""
        sizes = [x.shape[0] for x, _ in items]
        if self.kind == "linear":
            y = self.run(np.concatenate([x for x, _ in items]), None, threads)
        else:
            steps = [x.shape[1] for x, _ in items]
            t = max(steps)
            if all(n is None for _, n in items) and min(steps) == t:
                y = self.run(np.concatenate([x for x, _ in items]), None, threads)
            else:
                pad = [np.pad(x, [(0, 0), (0, t - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
                       for x, _ in items]  # fmt: skip
                lens = [n if n is not None else np.full(x.shape[0], x.shape[1], np.int64)
                        for x, n in items]  # fmt: skip
                y = self.run(np.concatenate(pad), np.concatenate(lens), threads)
        out, at = [], 0
        for i, b in enumerate(sizes):
            part = y[at : at + b]
            if self.per_step:
                part = part[:, : items[i][0].shape[1]]
            out.append(part)
            at += b
        return out
