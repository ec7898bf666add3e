"""Parity of seqfuse's CUDA kernels with eager PyTorch (CPU, fp32) and the native CPU loop.

A seeded randomized grid (every cell, 1-3 layers, both directions, odd sizes, batch 1..65,
T 1..200, initial states, unsorted lengths with length 1, batch_first both ways, bias on
and off), run through every kernel path: "auto", the per-step fallback "step", the
one-launch "fused" kernel (an error where it does not apply) and "persistent" where it
fits; cluster sizes up to 16 blocks; every seed preset; a CUDA-graph replay; streaming
sessions (plain and graphed, every path) against the CPU engine's session; a non-default
stream; bad inputs. fp32 tolerance 1e-5 (max abs error), the bar of the CPU engine.

Every test needing a GPU skips with the reason when torch sees no CUDA device or seqfuse was
built without CUDA; test_cuda_unavailable_is_a_clear_error runs exactly then.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import seqfuse.native as sn
import seqfuse.native.cuda as snc
import torch
from native_util import (
    CELLS,
    TOL,
    case_inputs,
    eager_rnn,
    make_rnn,
    max_err,
    module_of,
    nan_inf_case,
    random_case,
)
from seqfuse.bench import cuda_check
from seqfuse.models.presets import PRESETS, preset
from seqfuse.models.seq import build_model, example_input

WHY = snc.unavailable_reason()
needs_gpu = pytest.mark.skipif(WHY is not None, reason=f"CUDA backend unavailable: {WHY}")


def cpu(obj: Any) -> Any:
    if obj is None:
        return None
    if isinstance(obj, (tuple, list)):
        return type(obj)(cpu(o) for o in obj)
    return obj.detach().cpu()


def cuda(obj: Any) -> Any:
    if obj is None:
        return None
    if isinstance(obj, (tuple, list)):
        return type(obj)(cuda(o) for o in obj)
    return obj.cuda()


GRID = [
    random_case(
        random.Random(7000 + i), (5, 16, 37, 64, 100, 130), (1, 1, 2, 3, 7, 9, 16, 65), False
    )
    for i in range(40)
]


def test_cuda_unavailable_is_a_clear_error():
    if WHY is None:
        pytest.skip("a CUDA device is available: the error path is not reachable here")
    nm = sn.from_module(torch.nn.GRU(3, 5))
    with pytest.raises(sn.NativeTypeError, match="CUDA backend is not available"):
        snc.CudaNativeModel(nm, "cuda")


@needs_gpu
@pytest.mark.parametrize("path", ["auto", "step", "fused"])
@pytest.mark.parametrize("case", GRID, ids=[f"g{i}" for i in range(len(GRID))])
def test_cuda_grid_vs_eager_and_cpu_loop(case, path):
    m = module_of(case)
    x, hx, lengths = case_inputs(case)
    want = eager_rnn(m, x, hx, lengths)
    nm = sn.from_module(m)
    cpu_loop = nm(x, hx, lengths=lengths)
    gm = snc.CudaNativeModel(nm, "cuda", path=path)
    if path == "fused" and (case["bidir"] or lengths is not None):
        with pytest.raises(sn.InvalidArgumentError, match="fused"):
            gm(cuda(x), cuda(hx), lengths=lengths)
        return
    got = cpu(gm(cuda(x), cuda(hx), lengths=lengths))
    assert max_err(got, want) <= TOL, f"{case} {path}: vs eager {max_err(got, want):.3g}"
    assert max_err(got, cpu_loop) <= TOL, f"{case} {path}: vs CPU loop"


@needs_gpu
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("hidden", [200, 256, 300, 512])
def test_cuda_large_hidden_uses_clusters_or_fallback(cell, hidden):
    # 256 (LSTM): a cluster of 8 on sm_90; 512 (LSTM): nothing fits -> per-step fallback.
    case = dict(
        cell=cell, input_size=16, hidden=hidden, layers=2, bidir=True, bias=True,
        batch_first=True, B=3, T=17, hx=True, lengths=True, seed=hidden,
    )  # fmt: skip
    m = module_of(case)
    x, hx, lengths = case_inputs(case)
    want = eager_rnn(m, x, hx, lengths)
    gm = snc.CudaNativeModel(sn.from_module(m), "cuda")
    plan = gm.describe(case["B"])
    got = cpu(gm(cuda(x), cuda(hx), lengths=lengths))
    assert max_err(got, want) <= TOL, plan


@needs_gpu
def test_cuda_persistent_path_is_taken_where_it_fits():
    nm = sn.from_module(make_rnn("lstm", 64, 256, 2, False, True, True, 1))
    gm = snc.CudaNativeModel(nm, "cuda", path="persistent")
    major, _ = torch.cuda.get_device_capability()
    if major < 9:
        with pytest.raises(sn.InvalidArgumentError, match="persistent"):
            gm(torch.randn(1, 5, 64, device="cuda"))
        return
    assert "persistent, cluster 8" in gm.describe(1)
    x = torch.randn(2, 9, 64)
    want = nm(x)
    assert max_err(cpu(gm(x.cuda())), want) <= TOL


def _preset_case(name: str, seed: int, B: int, T: int, extra: bool):
    cfg = preset(name)
    torch.manual_seed(seed)
    m = build_model(cfg).eval()
    x = example_input(cfg, batch=B, seq_len=T, seed=seed)
    ln = h = None
    if extra and cfg.get("kind", "seq") == "seq":
        g = torch.Generator().manual_seed(seed)
        ln = torch.randint(1, T + 1, (B,), generator=g)
        ln[-1] = 1
        S = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
        h0 = torch.randn(S, B, cfg["hidden_size"], generator=g)
        c0 = torch.randn(S, B, cfg["hidden_size"], generator=g)
        h = (h0, c0) if cfg["cell"] == "lstm" else h0
    return m, x, h, ln


@needs_gpu
@pytest.mark.parametrize("path", ["auto", "step", "fused"])
@pytest.mark.parametrize("variant", ["plain", "lengths_hx"])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_cuda_presets_vs_eager_and_cpu_loop(name, variant, path):
    m, x, h, ln = _preset_case(name, 3, B=4, T=13, extra=variant == "lengths_hx")
    with torch.no_grad():
        want = m(x) if name == "linear" else m(x, h, ln)
    nm = sn.from_module(m)
    gm = snc.CudaNativeModel(nm, "cuda", path=path)
    if path == "fused" and name != "linear" and (ln is not None or nm.config["bidirectional"]):
        with pytest.raises(sn.InvalidArgumentError, match="fused"):
            gm(cuda(x), cuda(h), ln)
        return
    if name == "linear":
        got, ref = cpu(gm(x.cuda())), nm(x)
    else:
        got, ref = cpu(gm(cuda(x), cuda(h), ln)), nm(x, h, ln)
        y_only, none = gm(cuda(x), cuda(h), ln, need_state=False)
        assert none is None and max_err(cpu(y_only), want[0]) <= TOL
    assert max_err(got, want) <= TOL
    assert max_err(got, ref) <= TOL


@needs_gpu
def test_cuda_graph_replay_matches_plain_calls():
    m, x, h, ln = _preset_case("mnist", 5, B=3, T=28, extra=True)
    gm = snc.CudaNativeModel(sn.from_module(m), "cuda")
    run = gm.graphed(3, 28, hx=True, lengths=True)
    for seed in range(3):
        _, x, h, ln = _preset_case("mnist", 10 + seed, B=3, T=28, extra=True)
        got = cpu(run(cuda(x), cuda(h), ln))
        with torch.no_grad():
            want = m(x, h, ln)
        assert max_err(got, want) <= TOL


@needs_gpu
@pytest.mark.parametrize("path", ["auto", "fused", "persistent", "step"])
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("name", ["shakespeare", "sine", "hihell"])
def test_cuda_streaming_matches_cpu_session(name, graph, path):
    m, x, _, _ = _preset_case(name, 2, B=2, T=10, extra=False)
    nm = sn.from_module(m)
    if path == "persistent" and torch.cuda.get_device_capability()[0] < 9 and name == "shakespeare":
        pytest.skip("H=256 LSTM needs a thread-block cluster (sm_90) for the persistent path")
    gm = snc.CudaNativeModel(nm, "cuda", path=path)
    sess = gm.stream(batch=2, graph=graph)
    outs = [cpu(sess(cuda(x[:, t : t + 1]))).clone() for t in range(x.shape[1])]
    # The session's chunks against the CPU engine's session on the same chunks.
    ref_sess = nm.stream(batch=2)
    for t, got in enumerate(outs):
        want = ref_sess(x[:, t : t + 1])
        assert max_err(got, torch.as_tensor(want)) <= TOL, t
    h_ref = ref_sess.state
    assert max_err(cpu(sess.state), h_ref) <= TOL
    sess.reset()
    again = cpu(sess(cuda(x[:, :1])))
    assert max_err(again, outs[0]) <= TOL
    if isinstance(h_ref, tuple):
        sess.state = tuple(torch.as_tensor(a).cuda() for a in h_ref)
    else:
        sess.state = torch.as_tensor(h_ref).cuda()
    assert max_err(cpu(sess.state), h_ref) <= TOL


@needs_gpu
def test_cuda_runs_on_the_current_stream():
    m, x, h, ln = _preset_case("names", 4, B=5, T=12, extra=True)
    gm = snc.CudaNativeModel(sn.from_module(m), "cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xs, hs = cuda(x), cuda(h)
        got = gm(xs, hs, ln)
    s.synchronize()
    with torch.no_grad():
        want = m(x, h, ln)
    assert max_err(cpu(got), want) <= TOL


@needs_gpu
def test_cuda_bad_inputs_give_clear_errors():
    m, x, _, _ = _preset_case("names", 4, B=2, T=6, extra=False)
    gm = snc.CudaNativeModel(sn.from_module(m), "cuda")
    with pytest.raises(sn.NativeTypeError, match="token ids"):
        gm(x)  # a CPU tensor
    bad = x.clone().cuda()
    bad[0, 0] = 10_000
    with pytest.raises(sn.InvalidArgumentError, match="out of range"):
        gm(bad)
    with pytest.raises(sn.InvalidArgumentError, match="lengths"):
        gm(x.cuda(), None, torch.tensor([7, 1]))
    with pytest.raises(sn.InvalidArgumentError, match="h0"):
        gm(x.cuda(), torch.zeros(1, 2, 3, device="cuda"))
    # validate=False: no sync, and a bad id poisons its outputs instead of reading wild memory
    y, _ = gm(bad, validate=False)
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1]).all()
    with pytest.raises(sn.InvalidArgumentError, match="unidirectional"):
        snc.CudaNativeModel(sn.from_module(make_rnn("gru", 3, 5, 1, True, True, True, 0))).stream()


@needs_gpu
def test_cuda_time_per_step_reports_positive_finite_numbers():
    nm = sn.from_module(make_rnn("lstm", 8, 64, 1, False, True, True, 3))
    gm = snc.CudaNativeModel(nm, "cuda")
    t = cuda_check.time_per_step(gm, batch=1, short=4, long=36, repeats=3)
    assert set(t) == {"per_step", "short_call", "long_call"}
    assert 0 < t["short_call"] < t["long_call"] < 1e6


@needs_gpu
@pytest.mark.parametrize("path", ["auto", "step", "fused"])
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_bf16_weights_equal_fp32_on_bf16_rounded_module(cell, path):
    # An exact oracle for the bf16 mode: eager PyTorch on the same module with its recurrent
    # weight matrices rounded to bf16 (rounding is idempotent, so the mode rounds nothing more).
    hidden = 512 if cell == "lstm" else 300  # bf16 lets the LSTM's 512 fit a cluster of 16
    m = make_rnn(cell, 16, hidden, 2, False, True, True, 5)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("weight_"):
                p.copy_(p.bfloat16().float())
    x = torch.randn(2, 20, 16)
    want = eager_rnn(m, x)
    gm = snc.CudaNativeModel(sn.from_module(m), "cuda", path=path, precision="bf16")
    if cell == "lstm" and path == "auto" and torch.cuda.get_device_capability()[0] >= 9:
        assert "persistent, cluster 16" in gm.describe(2)
    assert max_err(cpu(gm(x.cuda())), want) <= TOL


def test_cuda_self_check_says_why_it_cannot_run(capsys):
    if WHY is None:
        pytest.skip("a CUDA device is available: the self-check runs (see the GPU test)")
    assert cuda_check.main(["--out", "unused"]) == 2
    assert "CUDA backend unavailable" in capsys.readouterr().out


@needs_gpu
def test_cuda_self_check_writes_parity_and_timings(tmp_path):
    import json

    assert cuda_check.main(["--out", str(tmp_path), "--repeats", "3"]) == 0
    report = json.loads((tmp_path / "cuda_check.json").read_text())
    assert set(report["models"]) == {"sine", "hihell", "names", "mnist", "shakespeare"}
    for name, row in report["models"].items():
        for path in ("auto", "persistent", "step", "fused"):
            if "max_err" in row.get(path, {}):
                assert row[path]["max_err"] <= TOL, (name, path)
        assert "max_err" in row["auto"] and "max_err" in row["step"]
    for name in ("names", "shakespeare"):  # token models stream one token per call
        stream = report["models"][name]["stream"]
        assert set(stream) == {"auto", "fused", "persistent", "step"}
        assert all(v["graph"][0] > 0 for v in stream.values() if "graph" in v), stream
        assert "graph" in stream["auto"] and "graph" in stream["step"]


@needs_gpu
def test_cuda_model_moves_and_saves_like_the_native_model(tmp_path):
    m = make_rnn("gru", 3, 7, 1, False, True, True, 2)
    nm = sn.from_module(m)
    gm = snc.CudaNativeModel(nm, "cuda")
    assert gm.to("cpu") is nm and gm.to("cuda") is gm
    path = gm.save(tmp_path / "m.safetensors")
    again = snc.CudaNativeModel(sn.load(path), "cuda")
    x = torch.randn(2, 5, 3)
    assert max_err(cpu(again(x.cuda())), cpu(gm(x.cuda()))) == 0.0


@needs_gpu
@pytest.mark.parametrize("path", ["auto", "step"])
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_nan_and_inf_propagate_like_eager(cell, path):
    # The CUDA twin of test_native_robustness.py's check: NaN stays NaN, Inf as in eager.
    m, x = nan_inf_case(cell)
    want, _ = eager_rnn(m, x)
    got, _ = cpu(snc.CudaNativeModel(sn.from_module(m), "cuda", path=path)(cuda(x)))
    assert torch.equal(torch.isnan(got), torch.isnan(want)), "NaN positions differ from eager"
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    torch.testing.assert_close(got, want, rtol=0, atol=TOL, equal_nan=True)
