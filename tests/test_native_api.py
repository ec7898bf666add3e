"""The seqfuse.native API: drop-in call structure, NumPy/torch in and out, streaming, save/
load, threads, and clean errors for every bad input (never a crash or a wrong answer).

Oracle: eager PyTorch (max abs error <= 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import seqfuse.native as sn
import torch
from native_util import TOL, eager_rnn, make_rnn, max_err
from seqfuse import SeqfuseError
from seqfuse.models.presets import preset
from seqfuse.models.seq import LinearRegression, build_model, example_input
from seqfuse.native.cpu import _OutputsAhead


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(preset(name)).eval()


# ---- drop-in structure ----------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [True, False])
def test_raw_lstm_structure_and_unbatched(batch_first):
    m = make_rnn("lstm", 4, 6, 2, True, True, batch_first, 1)
    nm = sn.from_module(m)
    x = torch.randn((3, 5, 4) if batch_first else (5, 3, 4))
    out, (h, c) = nm(x)
    want_out, (wh, wc) = eager_rnn(m, x)
    assert out.shape == want_out.shape and h.shape == wh.shape and c.shape == wc.shape
    assert max_err((out, h, c), (want_out, wh, wc)) <= TOL
    # unbatched [T, D] input, as torch allows
    xu = torch.randn(5, 4)
    with torch.no_grad():
        want = m(xu)
    assert max_err(nm(xu), want) <= TOL


def test_linear_regression():
    torch.manual_seed(0)
    m = LinearRegression().eval()
    nm = sn.from_module(m)
    x = torch.randn(10, 1)
    with torch.no_grad():
        assert max_err(nm(x), m(x)) <= TOL
    y = nm(x.numpy())
    assert isinstance(y, np.ndarray) and y.shape == (10, 1)


def test_returns_same_kind_and_non_contiguous_input():
    m = _model("sine")
    nm = sn.from_module(m)
    x = torch.randn(20, 3, 1).transpose(0, 1)  # [3, 20, 1], not contiguous
    assert not x.is_contiguous()
    with torch.no_grad():
        want = m(x)
    got = nm(x)
    assert isinstance(got[0], torch.Tensor) and max_err(got, want) <= TOL
    got_np = nm(x.numpy())  # a strided NumPy view
    assert isinstance(got_np[0], np.ndarray) and max_err(got_np, want) <= TOL
    # requires_grad inputs are read without autograd
    got_g = nm(x.clone().requires_grad_(True))
    assert max_err(got_g, want) <= TOL


def test_threads_per_model_and_per_call():
    m = _model("mnist")
    x = example_input(m.config.to_dict(), batch=4, seq_len=28)
    nm = sn.from_module(m, threads=2)
    a = nm(x)
    b = nm(x, threads=1)
    for u, v in zip(a[0:1], b[0:1]):
        assert torch.equal(u, v)


# ---- streaming ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sine", "shakespeare", "hihell"])
def test_stream_equals_full_sequence(name):
    m = _model(name)
    cfg = m.config.to_dict()
    x = example_input(cfg, batch=2, seq_len=12, seed=4)
    with torch.no_grad():
        want, _ = m(x)
    nm = sn.from_module(m)
    s = nm.stream(batch=2)
    parts = [s(x[:, 0:1]), s(x[:, 1:5]), s(x[:, 5:6]), s(x[:, 6:12])]
    got = torch.cat(parts, dim=1)
    assert max_err(got, want) <= TOL
    # the carried state equals the full run's h_n
    _, h_n = nm(x)
    st = s.state
    assert max_err(st, h_n) <= TOL
    s.reset()
    again = torch.cat([s(x[:, t : t + 1]) for t in range(12)], dim=1)
    assert max_err(again, want) <= TOL
    # set the state, then continue == run with hx
    s.state = st
    y2 = s(x[:, :3])
    with torch.no_grad():
        want2, _ = m(
            x[:, :3],
            tuple(torch.from_numpy(a) for a in st)
            if isinstance(st, tuple)
            else torch.from_numpy(st),
        )
    assert max_err(y2, want2) <= TOL


def test_stream_threads_and_errors():
    m = _model("shakespeare")
    nm = sn.from_module(m)
    s1, s2 = nm.stream(1), nm.stream(1, threads=2)
    tok = torch.tensor([[7]])
    for _ in range(5):
        assert torch.equal(s1(tok), s2(tok))
    with pytest.raises(ValueError, match="shape"):
        s1(torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match="out of range"):
        s1(torch.tensor([[999]]))
    bi = sn.from_module(_model("mnist"))
    with pytest.raises(ValueError, match="unidirectional"):
        bi.stream(1)


@pytest.mark.parametrize("name", ["sine", "shakespeare", "hihell", "names"])
def test_stream_fast_path_equals_general_path(name):
    # A contiguous CPU tensor of the right dtype takes StreamSession's fast path; the same
    # values as NumPy (and a non-contiguous tensor) take the general one: same outputs.
    m = _model(name)
    if m.config.to_dict()["bidirectional"]:
        pytest.skip("streaming needs a unidirectional model")
    x = example_input(m.config.to_dict(), batch=2, seq_len=6, seed=5)
    nm = sn.from_module(m)
    fast, slow, strided = nm.stream(2), nm.stream(2), nm.stream(2)
    for t0, t1 in ((0, 1), (1, 4), (4, 6)):
        chunk = x[:, t0:t1].contiguous()
        a = fast(chunk)
        b = slow(chunk.numpy())
        c = strided(torch.stack([chunk, chunk], dim=-1)[..., 0])
        assert isinstance(a, torch.Tensor) and a.dtype == torch.float32
        np.testing.assert_array_equal(a.numpy(), b)
        np.testing.assert_array_equal(a.numpy(), c.numpy())


@pytest.mark.parametrize("name", ["shakespeare", "names"])
def test_stream_outputs_are_tensors_of_their_own(name):
    # Outputs come from batches allocated ahead (_OutputsAhead, doubling up to MAX_N): every
    # output must still be its own tensor, keep its values while later calls run, and equal
    # the general path's (NumPy input), across more than two full batches.
    m = _model(name)
    cfg = m.config.to_dict()
    nm = sn.from_module(m)
    fast, slow = nm.stream(2), nm.stream(2)
    n = 3 * _OutputsAhead.MAX_N + 3
    x = example_input(cfg, batch=2, seq_len=n, seed=6)
    outs = [fast(x[:, t : t + 1].contiguous()) for t in range(n)]
    want = [slow(x[:, t : t + 1].numpy()) for t in range(n)]
    assert len({o.data_ptr() for o in outs}) == n
    for a, b in zip(outs, want):
        assert isinstance(a, torch.Tensor) and a.dtype == torch.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("name", ["mnist", "names", "sine"])
def test_call_outputs_are_tensors_of_their_own(name):
    # The same for whole-sequence calls (y, h_n and c_n each from their own batches), with
    # the batch size changing now and then: a new shape starts a new batch.
    m = _model(name)
    cfg = m.config.to_dict()
    nm = sn.from_module(m)
    xs = {b: example_input(cfg, batch=b, seq_len=5, seed=b) for b in (1, 3)}
    sizes = [1] * (2 * _OutputsAhead.MAX_N + 5) + [3, 3, 1, 3] * 20
    got = [(b, nm(xs[b]), nm(xs[b], need_state=False)[0]) for b in sizes]

    def parts(state):  # h_n, or (h_n, c_n)
        return list(state) if isinstance(state, tuple) else [state]

    ptrs = []
    for b, (y, state), y_only in got:
        want_y, want_state = nm(xs[b].numpy())
        np.testing.assert_array_equal(y.numpy(), want_y)
        np.testing.assert_array_equal(y_only.numpy(), want_y)
        for a, w in zip(parts(state), parts(want_state), strict=True):
            np.testing.assert_array_equal(a.numpy(), w)
        ptrs += [t.data_ptr() for t in (y, y_only, *parts(state))]
    assert len(set(ptrs)) == len(ptrs)


def test_outputs_made_ahead_follow_the_inference_mode():
    # Outputs allocated ahead under torch.inference_mode() are not handed out after it: an
    # inference tensor could not be saved for backward or updated in place there.
    m = _model("names")
    nm = sn.from_module(m)
    x = example_input(m.config.to_dict(), batch=2, seq_len=5, seed=3)
    s = nm.stream(2)
    with torch.inference_mode():
        for t in range(4):  # batches of 1, 2 and 4: three tensors are left over
            y, h = nm(x)
            ys = s(x[:, t : t + 1])
        assert y.is_inference() and h.is_inference() and ys.is_inference()
    y, h = nm(x)
    ys = s(x[:, 4:5])
    assert not (y.is_inference() or h.is_inference() or ys.is_inference())
    w = torch.ones(y.shape[-1], requires_grad=True)
    ((y * w).sum() + (ys * w).sum()).backward()
    y.mul_(2)
    ys.mul_(2)


# ---- save / load ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["names", "mnist", "linear"])
def test_save_load_round_trip(tmp_path, name):
    m = _model(name)
    nm = sn.from_module(m)
    path = nm.save(tmp_path / f"{name}.safetensors")
    nm2 = sn.load(path)
    x = example_input(m.config.to_dict(), batch=3, seq_len=8)
    a, b = nm(x), nm2(x)
    assert max_err(a, b) == 0.0
    back = sn.to_module(nm2)
    with torch.no_grad():
        assert max_err(back(x), m(x)) == 0.0


def test_save_load_raw_module(tmp_path):
    m = make_rnn("gru", 3, 7, 2, True, False, False, 5)
    nm = sn.from_module(m)
    nm2 = sn.load(nm.save(tmp_path / "gru.safetensors"))
    x = torch.randn(6, 2, 3)  # batch_first=False survives the round trip
    assert max_err(nm2(x), eager_rnn(m, x)) <= TOL


# ---- bad inputs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm_nm():
    m = make_rnn("lstm", 3, 5, 2, False, True, True, 0)
    return sn.from_module(m)


def test_bad_rank_shape_dtype_device(lstm_nm):
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        lstm_nm(torch.randn(2, 3, 3, 1))
    with pytest.raises(ValueError, match="input_size=3"):
        lstm_nm(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="empty"):
        lstm_nm(torch.randn(2, 0, 3))
    with pytest.raises(TypeError, match="float32"):
        lstm_nm(torch.randn(2, 4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32"):
        lstm_nm(np.zeros((2, 4, 3)))
    with pytest.raises(TypeError, match="meta"):
        lstm_nm(torch.empty(2, 4, 3, device="meta"))
    with pytest.raises(TypeError, match="tensor or a NumPy"):
        lstm_nm([[[1.0, 2.0, 3.0]]])
    for err in (TypeError, ValueError):
        assert issubclass(sn.NativeTypeError if err is TypeError else sn.InvalidArgumentError, err)
    assert issubclass(sn.InvalidArgumentError, SeqfuseError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensor_is_a_clear_error(lstm_nm):
    with pytest.raises(TypeError, match="cuda"):
        lstm_nm(torch.randn(2, 4, 3, device="cuda"))


def test_bad_states(lstm_nm):
    x = torch.randn(2, 4, 3)
    h = torch.zeros(2, 2, 5)
    with pytest.raises(ValueError, match=r"h0 must have shape \[2, 2, 5\]"):
        lstm_nm(x, (torch.zeros(2, 3, 5), h))
    with pytest.raises(ValueError, match=r"c0 must have shape"):
        lstm_nm(x, (h, torch.zeros(1, 2, 5)))
    with pytest.raises(ValueError, match=r"\(h0, c0\)"):
        lstm_nm(x, h)
    gru = sn.from_module(make_rnn("gru", 3, 5, 1, False, True, True, 0))
    with pytest.raises(ValueError, match="not a tuple"):
        gru(x, (h, h))


def test_bad_lengths(lstm_nm):
    x = torch.randn(3, 4, 3)
    for bad in ([0, 1, 2], [1, 5, 2]):
        with pytest.raises(ValueError, match="out of range"):
            lstm_nm(x, lengths=torch.tensor(bad))
    with pytest.raises(ValueError, match=r"lengths must have shape \[3\]"):
        lstm_nm(x, lengths=torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer"):
        lstm_nm(x, lengths=torch.tensor([1.0, 2.0, 3.0]))


def test_bad_tokens():
    nm = sn.from_module(_model("names"))
    with pytest.raises(ValueError, match="out of range"):
        nm(torch.tensor([[1, 2, 500]]))
    with pytest.raises(ValueError, match="out of range"):
        nm(torch.tensor([[1, -1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        nm(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        nm(torch.tensor([1, 2, 3]))


def test_unsupported_module_options():
    # proj_size is supported (tests/test_native.py checks its values); its h is 4 wide
    proj = torch.nn.LSTM(3, 8, proj_size=4, batch_first=True)
    _, (h, c) = sn.from_module(proj)(torch.zeros(2, 5, 3))
    assert tuple(h.shape) == (1, 2, 4) and tuple(c.shape) == (1, 2, 8)
    with pytest.raises(ValueError, match=r"h0 must have shape \[1, 2, 4\]"):
        sn.from_module(proj)(torch.zeros(2, 5, 3), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))
    with pytest.raises(ValueError, match="unsupported module Linear"):
        sn.from_module(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        sn.from_module("lstm")
    with pytest.raises(ValueError, match="kernel set"):
        sn.from_module(torch.nn.GRU(3, 4), isa="sse9")


def test_device_seam():
    m = torch.nn.GRU(3, 4)
    with pytest.raises(TypeError, match="device must be"):
        sn.from_module(m, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TypeError, match="CUDA"):
            sn.from_module(m, device="cuda")


def test_concurrent_calls_from_python_threads():
    # The GIL is released during compute: calls from several threads run at once, each on its
    # own workspace and barriers, and give the single-threaded answer.
    import threading

    m = _model("mnist")
    nm = sn.from_module(m)
    x = example_input(m.config.to_dict(), batch=2, seq_len=28)
    want = nm(x)[0]
    errors: list[str] = []

    def worker(threads: int) -> None:
        for _ in range(10):
            got = nm(x, threads=threads)[0]
            if not torch.equal(got, want):
                errors.append(f"threads={threads} differs")

    ts = [threading.Thread(target=worker, args=(1 + i % 2,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@pytest.mark.parametrize("fake_kind", ["linear", "rnn"])
def test_metadata_kind_that_contradicts_the_config_is_rejected(tmp_path, fake_kind):
    # The module kind decides the output shapes Python allocates: a file whose kind was
    # edited must be refused at load, not run into a mis-sized buffer.
    import json
    import struct

    from seqfuse.models import build_model, preset

    src = tmp_path / "ok.safetensors"
    m = build_model(preset("names")).eval() if fake_kind == "rnn" else torch.nn.LSTM(3, 8)
    sn.from_module(m).save(src)
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["module"] = json.dumps({"kind": fake_kind})
    body = json.dumps(header).encode()
    body += b" " * ((8 - len(body) % 8) % 8)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n :])
    with pytest.raises(sn.WeightFileError, match="does not match the engine config"):
        sn.load(bad)


def test_threads_zero_is_an_error_not_the_default():
    nm = sn.from_module(torch.nn.GRU(3, 5))
    with pytest.raises(ValueError, match="threads"):
        nm(torch.randn(4, 2, 3), threads=0)


def test_native_cuda_alias_still_works():
    # seqfuse.native_cuda (the old module) is a deprecated alias: same objects, one warning
    import importlib
    import sys

    import seqfuse.native.cuda as cuda
    from seqfuse.bench import cuda_check

    sys.modules.pop("seqfuse.native_cuda", None)
    with pytest.warns(DeprecationWarning, match="seqfuse.native.cuda"):
        alias = importlib.import_module("seqfuse.native_cuda")
    assert alias.CudaNativeModel is cuda.CudaNativeModel
    assert alias.unavailable_reason is cuda.unavailable_reason
    assert alias.main is cuda_check.main and alias.time_per_step is cuda_check.time_per_step
