"""seqfuse.compile: the RNN reaches torch.compile as one fused custom op, with 0 graph breaks
(torch._dynamo.explain) and outputs equal to eager within 1e-5, on shapes, initial states
and variable lengths. Plain torch.compile's behaviour (it cannot capture nn.RNN/GRU/LSTM)
is asserted too, so the docs' claim stays true. The oracle is the eager model.
"""

from __future__ import annotations

import pytest
import torch
from seqfuse import SeqfuseError
from seqfuse.compiler import FusedSeq
from seqfuse.compiler import compile as sf_compile
from seqfuse.export.wrappers import ModelSpec
from seqfuse.models import build_model, example_input, preset
from torch.utils._pytree import tree_leaves

# rnn_tanh, gru + tokens + last_hidden, bidirectional 2-layer lstm + last_step; the
# reference kernel (eager module inside the op) checks the torch plumbing on one of them.
CASES = [
    ("sine", "reference"),
    ("sine", "native"),
    ("names", "native"),
    ("mnist", "native"),
]


def max_err(a, b) -> float:
    la, lb = tree_leaves(a), tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype
    return max(float((x - y).abs().max()) for x, y in zip(la, lb))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("task,mode", CASES)
def test_fused_op_has_no_graph_break_and_matches_eager(task, mode):
    torch.manual_seed(0)
    model = build_model(preset(task)).eval()
    spec = ModelSpec.of(model)
    x = spec.example(3, 9, seed=1)
    explain = torch._dynamo.explain(FusedSeq(model, mode))(x)
    assert explain.graph_count == 1 and explain.graph_break_count == 0, explain.break_reasons
    compiled = sf_compile(model, mode=mode, dynamic=True)
    for b, t in [(3, 9), (1, 4), (5, 13)]:
        xb = spec.example(b, t, seed=b)
        lengths = torch.tensor([t, *torch.randint(1, t + 1, (b - 1,)).tolist()])
        hx = spec.hx(spec.random_states(b, seed=t))
        with torch.no_grad():
            for args in [(xb,), (xb, hx), (xb, None, lengths)]:
                assert max_err(compiled(*args), model(*args)) <= 1e-5, (b, t, len(args))


def test_compiled_graph_calls_the_custom_op():
    model = build_model(preset("sine")).eval()
    x = ModelSpec.of(model).example(2, 5)
    explain = torch._dynamo.explain(FusedSeq(model, "reference"))(x)
    code = "\n".join(g.code for g in explain.graphs)
    assert "seqfuse.seq_forward" in code
    assert not any(isinstance(m, torch.nn.RNNBase) for g in explain.graphs for m in g.modules())


def test_plain_torch_compile_does_not_capture_the_rnn():
    """What the docs say about plain torch.compile (allow_rnn=False by default)."""
    assert torch._dynamo.config.allow_rnn is False
    model = build_model(preset("sine")).eval()
    x = ModelSpec.of(model).example(2, 5)
    explain = torch._dynamo.explain(model)(x)
    assert explain.graph_count == 0 or explain.graph_break_count > 0
    with pytest.raises(Exception, match="RNN, GRU, or LSTM"):
        torch.compile(model, fullgraph=True)(x)
    plain = sf_compile(model, mode="torch")  # still runs (eagerly for the RNN) and is right
    with torch.no_grad():
        assert max_err(plain(x), model(x)) <= 1e-5


def test_linear_model_and_bad_arguments():
    lin = build_model(preset("linear")).eval()
    x = torch.randn(4, 1)
    with torch.no_grad():
        assert max_err(sf_compile(lin, mode="reference")(x), lin(x)) <= 1e-5
    with pytest.raises(SeqfuseError, match="unknown compile mode"):
        sf_compile(lin, mode="fast")
    with pytest.raises(SeqfuseError, match="nn.Module"):
        sf_compile("model")
    with pytest.raises(SeqfuseError, match="seqfuse models"):
        FusedSeq(torch.nn.LSTM(2, 3), "reference")


def test_top_level_seqfuse_compile_is_the_function():
    import seqfuse
    import seqfuse.compiler  # importing the module must not shadow the function

    model = build_model(preset("sine")).eval()
    x = example_input(preset("sine"), batch=2, seq_len=6)
    fast = seqfuse.compile(model, mode="reference")
    with torch.inference_mode():
        torch.testing.assert_close(fast(x)[0], model(x)[0], atol=1e-5, rtol=0)
    assert callable(seqfuse.compile) and seqfuse.compiler.compile is not None
