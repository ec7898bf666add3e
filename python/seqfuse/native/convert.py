"""Conversion between PyTorch modules and the native engine's (config, weights) form.

``module_to_engine(m)`` reads a raw ``nn.RNN``/``nn.GRU``/``nn.LSTM`` or a seqfuse model
(``SeqModel``, ``LinearRegression``) into the engine config (csrc/core/config.cpp's JSON),
the weights by their file names (docs/FORMAT.md), and the Python-side module description
that decides the call's output shapes. ``engine_to_module`` rebuilds the module.

Checked by tests/test_native.py (every cell and option against eager PyTorch) and
tests/test_native_format.py (round trips through weight files).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from seqfuse.models.seq import LinearRegression, SeqModel, build_model, cell_of, make_rnn
from seqfuse.native.contract import ONNX_KEYS, InvalidArgumentError


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _rnn_config(rnn: nn.RNNBase) -> dict[str, Any]:
    cell = cell_of(rnn)
    if cell is None and isinstance(rnn, nn.RNN):
        raise InvalidArgumentError(f"nn.RNN nonlinearity={rnn.nonlinearity!r} is not supported")
    if cell is None:
        raise InvalidArgumentError(f"unsupported recurrent module {type(rnn).__name__}")
    cfg = {
        "cell": cell,
        "input_size": int(rnn.input_size),
        "hidden_size": int(rnn.hidden_size),
        "num_layers": int(rnn.num_layers),
        "bidirectional": bool(rnn.bidirectional),
        "bias": bool(rnn.bias),
    }
    if getattr(rnn, "proj_size", 0):  # the engine's config names it only when set
        cfg["proj_size"] = int(rnn.proj_size)
    return cfg


def module_to_engine(
    m: nn.Module,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """(engine config, weights by file name, python-side module description)."""
    if isinstance(m, SeqModel):
        c = m.config
        cfg = {
            "cell": c.cell,
            "input_size": int(c.input_size) if c.vocab_size == 0 else 0,
            "vocab_size": int(c.vocab_size),
            "embed_dim": int(c.embed_dim),
            "hidden_size": int(c.hidden_size),
            "num_layers": int(c.num_layers),
            "bidirectional": bool(c.bidirectional),
            "bias": bool(c.bias),
            "head": c.head,
            "output_size": int(c.output_size) if c.head != "none" else 0,
        }
        weights = {k: _np(v) for k, v in m.state_dict().items()}
        return cfg, weights, {"kind": "seq", "config": c.to_dict()}
    if isinstance(m, LinearRegression):
        c = m.config
        cfg = {
            "cell": "rnn_tanh",
            "input_size": int(c.in_features),
            "vocab_size": 0,
            "embed_dim": 0,
            "hidden_size": 1,
            "num_layers": 0,
            "bidirectional": False,
            "bias": True,
            "head": "step",
            "output_size": int(c.out_features),
        }
        weights = {"head.weight": _np(m.linear.weight), "head.bias": _np(m.linear.bias)}
        return cfg, weights, {"kind": "linear", "config": c.to_dict()}
    if isinstance(m, (nn.RNN, nn.GRU, nn.LSTM)):
        cfg = {
            **_rnn_config(m),
            "vocab_size": 0,
            "embed_dim": 0,
            "head": "none",
            "output_size": 0,
        }
        weights = {"rnn." + k: _np(v) for k, v in m.state_dict().items()}
        info = {"kind": "rnn", "module": type(m).__name__, "batch_first": bool(m.batch_first)}
        return cfg, weights, info
    raise InvalidArgumentError(
        f"from_module: unsupported module {type(m).__name__}; expected nn.RNN, nn.GRU, nn.LSTM, "
        "SeqModel or LinearRegression"
    )


def engine_to_module(
    config: dict[str, Any], weights: dict[str, np.ndarray], info: dict[str, Any]
) -> nn.Module:
    """The PyTorch module a (config, weights, module description) triple came from."""
    w = {k: torch.from_numpy(v) for k, v in weights.items()}
    if info["kind"] in ("seq", "linear") and "config" in info:
        m = build_model(info["config"])
        if info["kind"] == "linear":
            w = {"linear.weight": w["head.weight"], "linear.bias": w["head.bias"]}
        m.load_state_dict(w)
        return m.eval()
    onnx_only = sorted(set(config) & ONNX_KEYS)
    if onnx_only:
        raise InvalidArgumentError(
            f"this model uses ONNX semantics that torch's modules lack ({', '.join(onnx_only)}); "
            "it has no nn.Module"
        )
    c = config
    m = make_rnn(
        c["cell"],
        input_size=c["input_size"],
        hidden_size=c["hidden_size"],
        num_layers=c["num_layers"],
        bias=c["bias"],
        batch_first=info.get("batch_first", True),
        bidirectional=c["bidirectional"],
        **({"proj_size": c["proj_size"]} if c.get("proj_size") else {}),
    )
    m.load_state_dict({k[len("rnn.") :]: v for k, v in w.items()})
    return m.eval()
