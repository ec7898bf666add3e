"""The exporters: TorchScript, ONNX, torch.export + AOTInductor, and the native weight file.

Each writes one artifact and returns facts for the manifest; none of them trusts its own
output: :mod:`seqfuse.export.verify` reloads every artifact in the runtime that will run it
and compares it with eager PyTorch. Checked by tests/test_export.py.

- TorchScript: scripted (through a scriptable re-statement of the model), traced only if
  scripting fails, then frozen. torch >= 2.10 deprecates torch.jit; the warning is caught
  here and turned into one line (:data:`TORCHSCRIPT_NOTE`); the replacement is the
  AOTInductor ``.pt2`` (docs/EXPORT.md).
- ONNX: both the dynamo exporter and the legacy TorchScript-based exporter are run; each
  result is checked with ``onnx.checker`` (full check) and verified in ONNX Runtime, and the
  first that verifies (dynamo preferred) is kept. The dynamo path has mis-exported GRU
  before (linear_before_reset) and specializes the sequence length of nn.RNN, so this is
  decided by measurement, per model. Initial states become optional graph inputs.
- AOTInductor: torch.export with a dynamic batch; the sequence length is fixed at export
  time because torch.export of nn.RNN/GRU/LSTM fails with a dynamic one ("Constraints
  violated"), which the manifest records.
- native: seqfuse.native's safetensors file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqfuse.export.quiet import error_line, quiet_torch
from seqfuse.export.verify import AOTI_SEQ_LIMIT, verify_onnx
from seqfuse.export.wrappers import (
    FlatIO,
    FlatIOLengthsLSTM,
    FlatIOLengthsRNN,
    FlatIOStates,
    ModelSpec,
    scriptable,
)

log = logging.getLogger("seqfuse.export")

TORCHSCRIPT_NOTE = (
    "torch {ver} deprecates TorchScript (torch.jit.script/trace); seqfuse still writes and "
    "verifies model.ts.pt, and model.pt2 (AOTInductor) is its replacement"
)


class FormatUnavailable(Exception):
    """This format cannot be produced for this model; the message says why."""


# ---- TorchScript ------------------------------------------------------------------------


def torchscript_with_info(
    model: nn.Module, example_inputs: tuple[Any, ...]
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Script (else trace) and freeze ``model``; return the module and how it was made."""
    ModelSpec.of(model)
    model = model.eval()
    notes: list[str] = []
    method = "script"
    script_error = None
    with quiet_torch(notes):
        try:
            sm = torch.jit.script(scriptable(model))
        except Exception as e:  # a model TorchScript's compiler does not accept
            script_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            method = "trace"
            sm = torch.jit.trace(model, example_inputs, check_trace=False, strict=False)
        sm = torch.jit.freeze(sm.eval())
    deprecated = any("torch.jit" in n for n in notes)
    info: dict[str, Any] = {
        "exporter": f"torch.jit.{method} + torch.jit.freeze",
        "deprecated": deprecated,
    }
    if script_error:
        info["script_error"] = script_error
        info["limits"] = ["traced: control flow fixed to the example inputs"]
    if deprecated:
        log.info(TORCHSCRIPT_NOTE.format(ver=torch.__version__.split("+")[0]))
        info["note"] = TORCHSCRIPT_NOTE.format(ver=torch.__version__.split("+")[0])
    return sm, info


def to_torchscript(model: nn.Module, example_inputs: tuple[Any, ...]) -> torch.jit.ScriptModule:
    """A frozen TorchScript module computing ``model.forward`` (same signature and outputs).

    Scripted where TorchScript can compile the model, traced on ``example_inputs``
    otherwise. torch's deprecation warning is handled here and logged as one line on the
    ``seqfuse.export`` logger.
    """
    return torchscript_with_info(model, example_inputs)[0]


# ---- ONNX ----------------------------------------------------------------------------------

ONNX_OPSET_LEGACY = 17
RNN_OPS = {"LSTM", "GRU", "RNN"}


def _onnx_dynamic_axes(spec: ModelSpec, lengths: bool) -> dict[str, dict[int, str]]:
    if not spec.is_seq:
        return {"x": {0: "batch"}, "y": {0: "batch"}}
    axes: dict[str, dict[int, str]] = {"x": {0: "batch", 1: "seq"}}
    for n in spec.state_names:
        axes[n] = {1: "batch"}
    if lengths:
        axes["lengths"] = {0: "batch"}
    head = spec.config["head"]
    axes["y"] = {0: "batch", 1: "seq"} if head in ("none", "step") else {0: "batch"}
    for n in spec.output_names[1:]:
        axes[n] = {1: "batch"}
    return axes


def _export_onnx_once(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    x: torch.Tensor,
    dynamo: bool,
    notes: list[str],
    lengths: bool = False,
) -> None:
    B, states = x.shape[0], spec.zero_states(x.shape[0])
    in_names = ["x", *spec.state_names]
    args: tuple[Any, ...] = (x, *states)
    if not spec.is_seq:
        wrapper: nn.Module = FlatIO(model, spec)
    elif lengths:
        wrapper = (FlatIOLengthsLSTM if spec.is_lstm else FlatIOLengthsRNN)(model, spec)
        T = int(x.shape[1])  # unequal example lengths, so nothing folds to "all full"
        args = (*args, torch.tensor([T - (k % 2) * (T // 2) for k in range(B)]))
        in_names.append("lengths")
    else:
        wrapper = FlatIOStates(model, spec)
    wrapper = wrapper.eval()
    with quiet_torch(notes):
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=65536)
            shapes: dict[str, Any] = {"x": {0: batch}}
            if spec.is_seq:
                shapes["x"][1] = torch.export.Dim("seq", min=1, max=65536)
                shapes["h0"] = {1: batch}
                if spec.is_lstm:
                    shapes["c0"] = {1: batch}
                if lengths:
                    shapes["lengths"] = {0: batch}
            torch.onnx.export(
                wrapper, args, str(path), input_names=in_names,
                output_names=spec.output_names, dynamo=True, dynamic_shapes=shapes,
                optimize=True, external_data=False, verbose=False,
            )  # fmt: skip
        else:
            torch.onnx.export(
                wrapper, args, str(path), input_names=in_names,
                output_names=spec.output_names, dynamo=False,
                dynamic_axes=_onnx_dynamic_axes(spec, lengths), opset_version=ONNX_OPSET_LEGACY,
            )  # fmt: skip


def _make_states_optional(path: Path, spec: ModelSpec) -> None:
    """Give h0/c0 zero defaults so ONNX Runtime callers may leave them out.

    ONNX has no "optional tensor input" for a plain graph; the standard device is a graph
    input that is also an initializer (its default value, overridable since IR 4). The
    default is ``[L*dirs, 1, H]`` zeros, broadcast to the batch by an Expand node, so a
    caller's ``[L*dirs, B, H]`` state passes through unchanged.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    names = {i.name for i in g.input}
    new_nodes = []
    x_name = g.input[0].name
    new_nodes.append(
        helper.make_node("Shape", [x_name], ["sf_batch"], start=0, end=1, name="sf_batch")
    )
    new_nodes.append(
        helper.make_node(
            "Constant",
            [],
            ["sf_one"],
            name="sf_one",
            value=helper.make_tensor("sf_one_v", TensorProto.INT64, [1], [1]),
        )  # fmt: skip
    )
    new_nodes.append(
        helper.make_node(
            "Concat",
            ["sf_one", "sf_batch", "sf_one"],
            ["sf_state_shape"],
            axis=0,
            name="sf_state_shape",
        )  # fmt: skip
    )
    H = spec.config["hidden_size"]
    for s in spec.state_names:
        if s not in names:
            continue  # the exporter dropped an unused state input (never seen; be safe)
        inner = f"{s}_batched"
        for node in g.node:
            for k, v in enumerate(node.input):
                if v == s:
                    node.input[k] = inner
        for out in g.output:  # a state passed straight through (never for RNNs; be safe)
            if out.name == s:
                raise RuntimeError(f"ONNX graph returns input {s} unchanged")
        new_nodes.append(
            helper.make_node("Expand", [s, "sf_state_shape"], [inner], name=f"sf_expand_{s}")
        )
        g.initializer.append(
            numpy_helper.from_array(np.zeros((spec.state_layers, 1, H), np.float32), s)
        )
        for inp in g.input:
            if inp.name == s:  # the state's batch is 1 (default) or the input's batch
                inp.type.tensor_type.shape.dim[1].ClearField("dim_value")
                inp.type.tensor_type.shape.dim[1].dim_param = "state_batch"
    if "lengths" in names:
        # default [-1] = "every sequence is full length": Where(lengths < 0, T, lengths)
        inner = "lengths_resolved"
        for node in g.node:
            for k, v in enumerate(node.input):
                if v == "lengths":
                    node.input[k] = inner
        new_nodes += [
            helper.make_node("Shape", [x_name], ["sf_seq"], start=1, end=2, name="sf_seq"),
            helper.make_node("Expand", ["sf_seq", "sf_batch"], ["sf_seq_b"], name="sf_seq_b"),
            helper.make_node("Expand", ["lengths", "sf_batch"], ["sf_len_b"], name="sf_len_b"),
            helper.make_node(
                "Constant", [], ["sf_zero"], name="sf_zero",
                value=helper.make_tensor("sf_zero_v", TensorProto.INT64, [], [0]),
            ),
            helper.make_node("Less", ["sf_len_b", "sf_zero"], ["sf_len_default"], name="sf_lt"),
            helper.make_node(
                "Where", ["sf_len_default", "sf_seq_b", "sf_len_b"], [inner], name="sf_len"
            ),
        ]  # fmt: skip
        g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "lengths"))
        for inp in g.input:
            if inp.name == "lengths":
                inp.type.tensor_type.shape.dim[0].ClearField("dim_value")
                inp.type.tensor_type.shape.dim[0].dim_param = "lengths_batch"
    for k, node in enumerate(new_nodes):
        g.node.insert(k, node)
    if m.ir_version < 4:
        m.ir_version = 4
    onnx.save(m, str(path))


def onnx_graph_facts(path: Path) -> dict[str, Any]:
    """Checker result, ops used, opset and inputs of an ONNX file."""
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    inits = {i.name for i in m.graph.initializer}
    gru = [n for n in m.graph.node if n.op_type == "GRU"]
    facts: dict[str, Any] = {
        "opset": max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "ops": ops,
        "inputs": [
            {"name": i.name, "optional": i.name in inits, "shape": _onnx_shape(i)}
            for i in m.graph.input
        ],
        "outputs": [{"name": o.name, "shape": _onnx_shape(o)} for o in m.graph.output],
    }
    if gru:
        attrs = {a.name: a.i for a in gru[0].attribute}
        facts["gru_linear_before_reset"] = int(attrs.get("linear_before_reset", 0))
    return facts


def _onnx_shape(v: Any) -> list[Any]:
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_inputs: tuple[Any, ...],
    verify_fn: Any = None,
) -> dict[str, Any]:
    """Export ``model`` to ONNX at ``path``, trying the dynamo and the legacy exporter.

    Each candidate must pass ``onnx.checker.check_model(full_check=True)``, use native
    LSTM/GRU/RNN nodes (not an unrolled loop) and verify in ONNX Runtime against eager
    (``verify_fn(candidate_path) -> verification dict``; by default the checks of
    :func:`seqfuse.export.verify.verify_onnx`). The dynamo result is kept if it verifies,
    else the legacy one. Returns the facts for the manifest, including every candidate's
    outcome. Raises RuntimeError naming each candidate's error if none verifies.
    """
    spec = ModelSpec.of(model)
    model = model.eval()
    path = Path(path)
    x = example_inputs[0]
    if verify_fn is None:

        def verify_fn(p: Path, with_lengths: bool) -> dict[str, Any]:
            return verify_onnx(p, model, spec, x.shape, lengths=with_lengths)

    candidates: dict[str, dict[str, Any]] = {}
    chosen = None
    # Variable lengths go in as ONNX's sequence_lens where the exporter manages it; the
    # legacy exporter without lengths is the last resort.
    plan = [("dynamo", True, spec.is_seq), ("legacy", False, spec.is_seq)]
    for name, dynamo, with_lengths in plan + [("legacy_no_lengths", False, False)]:
        if name == "legacy_no_lengths" and (chosen is not None or not spec.is_seq):
            break
        cand = path.with_name(f".{path.name}.{name}")
        notes: list[str] = []
        rec: dict[str, Any] = {
            "exporter": f"torch.onnx.export(dynamo={dynamo})",
            "lengths_input": with_lengths,
        }
        t0 = time.perf_counter()
        try:
            _export_onnx_once(model, spec, cand, x, dynamo, notes, lengths=with_lengths)
            if spec.is_seq:
                _make_states_optional(cand, spec)
            facts = onnx_graph_facts(cand)
            if spec.is_seq and not RNN_OPS & set(facts["ops"]):
                raise RuntimeError(f"no native RNN node in the graph (ops: {facts['ops']})")
            check = verify_fn(cand, with_lengths)
            rec.update(facts=facts, verification=check)
            rec["ok"] = check["ok"]
            if not check["ok"]:
                rec["error"] = check["error"]
        except Exception as e:
            rec["ok"] = False
            rec["error"] = error_line(e)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        if notes:
            rec["notes"] = notes
        candidates[name] = rec
        if rec["ok"] and chosen is None:
            chosen = name
            os.replace(cand, path)
        else:
            cand.unlink(missing_ok=True)
    if chosen is None:
        errs = "; ".join(f"{k}: {v['error']}" for k, v in candidates.items())
        raise RuntimeError(f"no ONNX exporter produced a model that verifies ({errs})")
    if chosen == "dynamo":
        why = "dynamo exporter verified (preferred: it is torch's maintained exporter)"
    elif chosen == "legacy":
        why = f"dynamo exporter did not verify ({candidates['dynamo']['error']})"
    else:
        why = (
            "no exporter verified with a lengths input (dynamo: "
            f"{candidates['dynamo']['error']}; legacy: {candidates['legacy']['error']})"
        )
    info = {
        "exporter": candidates[chosen]["exporter"],
        "chosen": chosen,
        "why": why,
        "lengths_input": candidates[chosen]["lengths_input"],
        "candidates": {k: {kk: vv for kk, vv in v.items() if kk != "verification"}
                       for k, v in candidates.items()},
        "facts": candidates[chosen]["facts"],
        "verification": candidates[chosen]["verification"],
    }  # fmt: skip
    return info


# ---- torch.export + AOTInductor -------------------------------------------------------------


def aoti_with_info(
    model: nn.Module, path: str | os.PathLike, example_inputs: tuple[Any, ...]
) -> tuple[Path, dict[str, Any]]:
    """torch.export (dynamic batch) + AOTInductor package; returns the path and facts."""
    spec = ModelSpec.of(model)
    model = model.eval()
    path = Path(path)
    x = example_inputs[0]
    wrapper = FlatIO(model, spec).eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    info: dict[str, Any] = {"exporter": "torch.export.export + aoti_compile_and_package"}
    notes: list[str] = []
    dynamic_seq = False
    with quiet_torch(notes), torch.no_grad():
        if spec.is_seq:
            try:  # measured, not assumed: a future torch may take a dynamic sequence length
                seq = torch.export.Dim("seq", min=1, max=65536)
                ep = torch.export.export(wrapper, (x,), dynamic_shapes=({0: batch, 1: seq},))
                dynamic_seq = True
            except Exception as e:
                info["dynamic_seq_error"] = error_line(e)
                ep = torch.export.export(wrapper, (x,), dynamic_shapes=({0: batch},))
        else:
            ep = torch.export.export(wrapper, (x,), dynamic_shapes=({0: batch},))
        meta = {
            "seqfuse.input_shape": ",".join(str(d) for d in x.shape),
            "seqfuse.input_dtype": str(x.dtype).replace("torch.", ""),
            "seqfuse.dynamic_batch": "1",
            "seqfuse.dynamic_seq": "1" if dynamic_seq else "0",
            "seqfuse.outputs": ",".join(spec.output_names),
        }
        t0 = time.perf_counter()
        # cpp_extension logs "No CUDA runtime is found" on CPU-only machines: not our news
        cpp_log = logging.getLogger("torch.utils.cpp_extension")
        old_level = cpp_log.level
        cpp_log.setLevel(logging.ERROR)
        tmp = path.with_name(f".{path.stem}.tmp.pt2")  # the packager insists on .pt2
        try:
            torch._inductor.aoti_compile_and_package(
                ep, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": meta}
            )
            os.replace(tmp, path)
        finally:
            cpp_log.setLevel(old_level)
            tmp.unlink(missing_ok=True)
        info["compile_seconds"] = round(time.perf_counter() - t0, 1)
    info["dynamic"] = {"batch": True, "seq": dynamic_seq} if spec.is_seq else {"batch": True}
    if spec.is_seq and not dynamic_seq:
        info["limits"] = [AOTI_SEQ_LIMIT.format(ver=torch.__version__.split("+")[0])]
        info["seq_len"] = int(x.shape[1])
    if spec.is_seq:
        info.setdefault("limits", []).append(
            "inputs: x only (initial states are zeros, no lengths): torch.export needs one "
            "fixed signature; use TorchScript or native for states and variable lengths"
        )
    info["metadata"] = meta
    if notes:
        info["notes"] = notes
    return path, info


def to_aoti(model: nn.Module, path: str | os.PathLike, example_inputs: tuple[Any, ...]) -> Path:
    """torch.export + AOTInductor ``.pt2`` package of ``model`` at ``path``.

    The package takes ``x`` and returns the flat outputs ``(y, h_n[, c_n])`` (``(y,)`` for
    linear). The batch is dynamic; the sequence length is the one of ``example_inputs``
    (see :data:`AOTI_SEQ_LIMIT`), stored in the package metadata as
    ``seqfuse.input_shape``.
    """
    return aoti_with_info(model, path, example_inputs)[0]


# ---- native -------------------------------------------------------------------------------


def to_native(model: nn.Module, path: str | os.PathLike) -> Path:
    """The native engine's safetensors weight file (``model.seqfuse.safetensors``)."""
    ModelSpec.of(model)
    import seqfuse.native as native  # on first use: the other formats do not need it

    try:
        nm = native.from_module(model.eval())
    except (ValueError, NotImplementedError, TypeError) as e:
        raise FormatUnavailable(f"seqfuse.native does not take this model: {e}") from None
    path = Path(path)
    nm.save(str(path))
    return path
