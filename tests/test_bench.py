"""Smoke and correctness tests of the benchmark harness (seqfuse.bench, `seqfuse bench`).

The harness must run in seconds on a tiny selection and write the table, JSON and PNG; its
validation must catch a backend whose outputs differ from eager PyTorch (reported failed,
never timed), including a streaming backend that drops its state between calls. The
napkin cost is checked against the model's own parameter sizes. Timings are not asserted:
speed is shown by `seqfuse bench` and benchmarks/, not by unit tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from seqfuse.bench import make_backends, run_benchmarks
from seqfuse.bench.backends import BACKENDS, Backend, Eager, TorchScript
from seqfuse.bench.env import fingerprint
from seqfuse.bench.harness import compare
from seqfuse.bench.plots import plot_grid, plot_summary
from seqfuse.bench.report import check_targets, format_table, update_readme, write_json
from seqfuse.bench.workloads import Workload, grid_workloads, seed_workloads
from seqfuse.cli import main

FAST = dict(budget_s=0.01, warmup=1, min_reps=3, progress=False)


class Perturbed(Eager):
    """Eager plus 1e-3 on the first output: a wrong backend."""

    name, label = "perturbed", "wrong on purpose"

    def run(self):
        y, h = super().run()
        return y + 1e-3, h


class Forgetful(Eager):
    """Streams with a fresh zero state on every call: right at step 1, wrong after."""

    name = "forgetful"

    def run(self):
        out = super().run()
        self.reset_state_only()
        return out

    def reset_state_only(self):
        i = self._i
        self.reset()
        self._i = i


class Missing(Backend):
    name = "missing"

    def available(self):
        return False, "not installed here"


def _tiny_stream() -> Workload:
    cfg = {
        "kind": "seq", "cell": "lstm", "hidden_size": 8, "input_size": 1, "vocab_size": 11,
        "embed_dim": 4, "num_layers": 2, "bidirectional": False, "bias": True, "dropout": 0.0,
        "head": "step", "output_size": 11,
    }  # fmt: skip
    return Workload("tiny/stream", "tiny", cfg, batch=1, seq_len=1, mode="stream")


def test_harness_validates_times_and_reports(tmp_path):
    wls = seed_workloads(["sine", "hihell"], batches=(1, 3))
    res = run_benchmarks(wls, ["eager", "torchscript", Perturbed(), Missing()], **FAST)
    rows = {(r["workload"], r["backend"]): r for r in res["results"]}
    assert len(rows) == 4 * 4
    for w in wls:
        eager = rows[(w.id, "eager")]
        assert eager["status"] == "ok" and eager["ratio_to_eager"] == 1.0
        assert eager["median_us"] > 0 and eager["p99_us"] >= eager["median_us"] * 0.999
        assert eager["reps"] >= 3
        ts = rows[(w.id, "torchscript")]
        assert ts["status"] == "ok" and ts["max_abs_err"] <= 1e-5
        bad = rows[(w.id, "perturbed")]
        assert bad["status"] == "failed" and "median_us" not in bad
        assert bad["max_abs_err"] == pytest.approx(1e-3, rel=1e-3)
        assert rows[(w.id, "missing")]["status"] == "skipped"
        assert rows[(w.id, "missing")]["reason"] == "not installed here"
        fastest = min(
            (rows[(w.id, b)] for b in ("eager", "torchscript")), key=lambda r: r["median_us"]
        )
        assert ts["fastest_peer"] == fastest["backend"]
    table = format_table(res)
    assert "FAILED: mismatch" in table and "SKIPPED: not installed here" in table
    path = write_json(res, tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "seqfuse.bench" and data["schema_version"] == 3
    assert data["environment"]["versions"]["torch"] == torch.__version__
    png = plot_summary(res, tmp_path / "r.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_streaming_validation_catches_lost_state():
    res = run_benchmarks([_tiny_stream()], ["eager", "torchscript", Forgetful()], **FAST)
    by = {r["backend"]: r for r in res["results"]}
    assert by["torchscript"]["status"] == "ok"
    assert by["forgetful"]["status"] == "failed"


def test_grid_plot(tmp_path):
    wls = grid_workloads("sweep", ("gru",), (1, 2), (2, 4), (4, 8), base={"seq_len": 2})
    assert len({w.id for w in wls}) == len(wls)
    res = run_benchmarks(wls, ["eager"], **FAST)
    assert all(r["status"] == "ok" for r in res["results"])
    png = plot_grid(res, tmp_path / "g.png")
    assert png is not None and png.stat().st_size > 1000


def test_cost_matches_parameter_sizes():
    for w in seed_workloads(["sine", "mnist", "names"], batches=(1,)):
        m = w.build_model()
        rec = sum(p.numel() * 4 for n, p in m.rnn.named_parameters() if "weight_hh" in n)
        assert w.cost()["recurrent_bytes"] == rec
    (sine,) = seed_workloads(["sine"], batches=(1,))
    m = sine.build_model()
    # T steps of W_hh, W_ih once (one GEMM), the head once
    expect = 4 * (20 * m.rnn.weight_hh_l0.numel() + m.rnn.weight_ih_l0.numel())
    expect += 4 * m.head.weight.numel()
    assert sine.cost()["weight_bytes"] == expect


def test_compare_shapes_and_nan():
    a = [np.zeros((2, 3), np.float32)]
    with pytest.raises(ValueError, match="shape"):
        compare(a, [np.zeros((3, 2), np.float32)])
    err, _ = compare(a, [np.full((2, 3), np.nan, np.float32)])
    assert not err <= 1e-5


def _fake(workload: str, threads: int, medians: dict[str, float]) -> dict:
    rows = [
        {"workload": workload, "threads": threads, "backend": b, "device": "cpu",
         "peer": b != "native", "status": "ok", "reason": "", "median_us": m}
        for b, m in medians.items()
    ]  # fmt: skip
    from seqfuse.bench.harness import add_ratios

    add_ratios(rows)
    return {"results": rows}


def test_targets_met_and_missed():
    res = _fake("sine/b1", 1, {"eager": 100.0, "ort": 20.0, "native": 4.0})
    t = {x["id"]: x for x in check_targets(res)}
    assert t["sine b1 vs ORT"]["status"] == "met"  # 0.2 <= 0.25
    assert t["sine b1 vs eager"]["status"] == "met"  # 0.04 <= 0.05
    res = _fake("sine/b1", 1, {"eager": 100.0, "ort": 20.0, "native": 10.0})
    t = {x["id"]: x for x in check_targets(res)}
    assert t["sine b1 vs ORT"]["status"] == "missed"
    assert "2.00x too slow" in t["sine b1 vs ORT"]["detail"]  # 0.5 / 0.25
    assert "mnist b1 vs ORT" not in t  # only targets whose workload ran
    res = _fake("mnist/b1", 1, {"eager": 100.0, "ort": 20.0})
    t = {x["id"]: x for x in check_targets(res)}
    assert t["mnist b1 vs ORT"]["status"] == "not measured"


def test_a_missed_target_below_the_roofline_floor_says_so():
    res = _fake("sine/b1", 1, {"eager": 100.0, "ort": 20.0, "native": 10.0})
    native = next(r for r in res["results"] if r["backend"] == "native")
    native["roofline"] = {"floor_us": 6.0}  # 0.25 x ORT's 20 us = 5 us: below the floor
    t = {x["id"]: x for x in check_targets(res)}["sine b1 vs ORT"]
    assert t["status"] == "missed" and t["below_floor"] is True
    assert t["target_us"] == pytest.approx(5.0) and t["floor_us"] == 6.0
    assert "the target's 5 us is below this run's roofline floor of 6 us" in t["detail"]
    native["roofline"] = {"floor_us": 4.0}  # reachable: the miss is native's own
    t = {x["id"]: x for x in check_targets(res)}["sine b1 vs ORT"]
    assert t["status"] == "missed" and t["below_floor"] is False
    assert "floor" not in t["detail"]


def test_nominal_peak_knows_zen4_runs_avx512_on_256_bit_pipes():
    from seqfuse.bench.report import roofline_peak

    env = {"cpu_flags": ["avx512f", "avx2"], "cpu_mhz_estimate": 2600.0,
           "seqfuse_build": {"simd": "avx512"}}  # fmt: skip
    zen4 = roofline_peak({**env, "cpu_id": "AuthenticAMD family 25 model 17"})
    zen5 = roofline_peak({**env, "cpu_id": "AuthenticAMD family 26 model 2"})
    assert zen4["nominal_gflops_per_core"] == pytest.approx(2.6 * 32)
    assert zen5["nominal_gflops_per_core"] == pytest.approx(2.6 * 64)
    assert "32 fp32 FLOP/cycle" in zen4["assumption"]
    # AVX2 is 32 FLOP/cycle on either; an unknown CPU keeps the SIMD width's two pipes
    assert roofline_peak(
        {**env, "seqfuse_build": {"simd": "avx2"}, "cpu_id": "AuthenticAMD family 25 model 1"}
    )["nominal_gflops_per_core"] == pytest.approx(83.2)
    assert roofline_peak(env)["nominal_gflops_per_core"] == pytest.approx(166.4)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        make_backends(["eager", "nope"])
    with pytest.raises(ValueError, match="unknown model"):
        seed_workloads(["nope"])
    with pytest.raises(ValueError, match="eager"):
        run_benchmarks(seed_workloads(["sine"], batches=(1,)), ["torchscript"], **FAST)


def test_cli_quick_writes_files_and_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nbefore\n<!-- bench:start -->\nold\n<!-- bench:end -->\nafter\n")
    argv = ["bench", "--quick", "--models", "hihell", "--backends", "eager,torchscript"]
    argv += ["--out", str(tmp_path / "o"), "--budget", "0.01", "--no-progress"]
    argv += ["--grid", "sweep", "--grid-cells", "gru", "--grid-batches", "1,2"]
    argv += ["--grid-seqs", "4", "--grid-hiddens", "8", "--grid-backends", "eager"]
    assert main([*argv, "--update-readme", str(readme)]) == 2  # no --png: a clear error
    assert "--update-readme needs --png" in capsys.readouterr().err
    argv += ["--png", str(tmp_path / "o" / "bench.png")]
    assert main([*argv, "--update-readme", str(readme)]) == 0
    out = capsys.readouterr().out
    assert "hihell/b1" in out and "targets" in out
    assert (tmp_path / "o" / "bench.json").is_file()
    assert (tmp_path / "o" / "bench.png").is_file()
    assert (tmp_path / "o" / "bench_grid.png").is_file()
    data = json.loads((tmp_path / "o" / "bench.json").read_text())
    grid_rows = [r for r in data["results"] if r["workload"].startswith("grid/gru/")]
    assert {r["backend"] for r in grid_rows} == {"eager"} and len(grid_rows) == 4
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n<!-- bench:start -->\n")
    assert text.endswith("<!-- bench:end -->\nafter\n") and "old" not in text
    assert "| hihell/b1 | 1 |" in text and "(o/bench.png)" in text
    # re-render from the JSON without measuring
    assert main(["bench", "--from-json", str(tmp_path / "o" / "bench.json"),
                 "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    assert (tmp_path / "p" / "bench.png").is_file()


def test_cli_bad_input(tmp_path, capsys):
    readme = tmp_path / "R.md"
    readme.write_text("no markers\n")
    argv = ["bench", "--quick", "--models", "hihell", "--backends", "eager", "--no-progress"]
    argv += ["--png", str(tmp_path / "b.png")]
    assert main([*argv, "--out", str(tmp_path), "--update-readme", str(readme)]) == 2
    assert "no <!-- bench:start -->" in capsys.readouterr().err
    assert main(["bench", "--backends", "eager,bogus", "--out", str(tmp_path)]) == 2
    assert "unknown backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--threads", "0"])


def test_update_readme_requires_markers(tmp_path):
    from seqfuse import SeqfuseError

    p = tmp_path / "x.md"
    p.write_text("<!-- bench:end -->\n<!-- bench:start -->\n")
    with pytest.raises(SeqfuseError):
        update_readme(p, "x")


def test_unavailable_cuda_backends_say_why():
    names = [n for n, cls in BACKENDS.items() if cls.device == "cuda"]
    assert {"eager-cuda", "cuda-graphs", "native-cuda", "native-cuda-graphs", "ort-cuda"} <= set(
        names
    )
    for b in make_backends(names):
        ok, why = b.available()
        if not torch.cuda.is_available():
            assert not ok and why, b.name
        elif b.name in ("eager-cuda", "cuda-graphs"):
            assert ok, f"{b.name}: {why}"  # torch alone serves these on any CUDA device
        else:  # need seqfuse's CUDA build / onnxruntime-gpu: available, or say why not
            assert ok or why, b.name


def test_unwritable_output_fails_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["bench", "--quick", "--models", "hihell", "--backends", "eager", "--no-progress"]
    assert main([*argv, "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(blocker) in err
    assert main([*argv, "--out", str(tmp_path / "o"), "--json", str(blocker / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o" / "bench.png").exists()  # nothing was measured or plotted


def test_torchscript_backend_streams():
    w = _tiny_stream()
    m, inp = w.build_model(), w.make_inputs()
    b = TorchScript()
    b.prepare(m, inp)
    y, state = b.run()
    assert y.shape == (1, 1, 11) and len(state) == 2


def test_native_rows_validate_when_built():
    from seqfuse import _C
    from seqfuse.bench.backends import Native

    ok, why = Native().available()
    assert ok, f"seqfuse.native is always built: {why}"
    wls = seed_workloads(["mnist", "shakespeare-stream"], batches=(2,))
    res = run_benchmarks(wls, ["eager", "native"], threads=(1, 2), **FAST)
    rows = [r for r in res["results"] if r["backend"] == "native"]
    assert len(rows) == len(wls) * 2, rows  # every workload at both thread counts
    for r in rows:
        assert r["status"] == "ok", r
        assert r["max_abs_err"] <= 1e-5
        assert r["roofline"]["gbps"] > 0
        # the roofline floor from this machine's measured peaks, and native's efficiency
        roof = r["roofline"]
        assert 0 < roof["floor_us"] < r["median_us"] * 1.5, (r["workload"], roof)
        assert 0 < roof["efficiency"] <= 1.5, (r["workload"], roof)
        assert roof["bound"] in ("FMA peak", "L2 bandwidth", "L3 bandwidth")
        assert r["isa"] in dict(_C.kernel_sets())
    peak = res["peak"]
    assert peak["measured"] and peak["gflops_per_core"] > 1 and peak["gemm_gflops_per_core"] > 1
    assert peak["fma_kernel_set"] == rows[0]["isa"]  # the FMA peak of the native rows' set
    assert peak["gbps_per_core"]["L2"] > 1 and peak["gbps_per_core"]["L3"] > 1
    assert "floor" in format_table(res) and "eff" in format_table(res)


def test_native_unsupported_is_skipped_and_other_errors_are_errors():
    """Only the engine's InvalidArgumentError at conversion (an unsupported model or
    option) makes a skipped row; any other exception is an error row, never hidden."""
    import seqfuse.native as sn
    from seqfuse.bench.backends import Native

    class Unsupported(Native):
        name = "native-unsupported"

        def _convert(self, model, threads):
            raise sn.InvalidArgumentError("option x is not supported by the native engine")

    class Broken(Native):
        name = "native-broken"

        def _convert(self, model, threads):
            raise ValueError("a bug, not an unsupported option")

    wls = seed_workloads(["hihell"], batches=(1,))
    res = run_benchmarks(wls, ["eager", Unsupported(), Broken()], **FAST)
    rows = {r["backend"]: r for r in res["results"]}
    assert rows["native-unsupported"]["status"] == "skipped"
    assert "not supported by the native engine" in rows["native-unsupported"]["reason"]
    assert rows["native-broken"]["status"] == "error"
    assert "a bug" in rows["native-broken"]["reason"]


def test_docs_describe_every_json_field(tmp_path):
    from conftest import REPO

    doc = (REPO / "docs" / "BENCHMARKS.md").read_text()
    res = run_benchmarks(seed_workloads(["hihell"], batches=(1,)), ["eager", Missing()], **FAST)
    assert f'"schema_version": {res["schema_version"]}' in doc
    keys = set(res) | set(res["environment"]) | set(res["settings"]) | set(res["peak"])
    keys |= set(res["workloads"][0]) | {k for r in res["results"] for k in r}
    keys |= set(res["results"][0]["roofline"])
    missing = sorted(k for k in keys if f'"{k}"' not in doc)
    assert not missing, f"docs/BENCHMARKS.md does not describe {missing}"


def test_bench_model_uses_the_given_weights():
    from seqfuse.bench import bench_model, model_workloads
    from seqfuse.models import build_model, preset

    model = build_model(preset("hihell")).eval()
    with torch.no_grad():
        model.head.bias.fill_(3.0)  # weights no seed would give: the model itself is timed
    res = bench_model(model, "mine", batches=(1, 2), seq_len=5, backends=["eager"], budget_s=0.01)
    assert [w["id"] for w in res["workloads"]] == ["mine/b1", "mine/b2"]
    assert all(r["status"] == "ok" for r in res["results"])
    w = res["workloads"][0]
    assert w["seq_len"] == 5 and w["config"] == preset("hihell")
    timed = model_workloads(model, "mine")[0].build_model()
    assert torch.equal(timed.head.bias, torch.full_like(timed.head.bias, 3.0))
    assert timed is not model  # a frozen copy: later training does not change the timing


def test_gpu_rows_compare_with_gpu_peers():
    from seqfuse.bench.harness import add_ratios
    from seqfuse.bench.report import add_roofline, markdown_section, roofline_peak

    rows = []
    for b, dev, med in (("eager", "cpu", 100.0), ("ort", "cpu", 20.0), ("native", "cpu", 5.0),
                        ("eager-cuda", "cuda", 300.0), ("native-cuda", "cuda", 30.0)):  # fmt: skip
        rows.append(
            {"workload": "sine/b1", "threads": 1, "backend": b, "device": dev,
             "peer": not b.startswith("native"), "status": "ok", "reason": "", "median_us": med}
        )  # fmt: skip
    add_ratios(rows)
    by = {r["backend"]: r for r in rows}
    assert by["native-cuda"]["fastest_peer"] == "eager-cuda"
    assert by["native-cuda"]["ratio_to_eager"] == pytest.approx(0.1)
    assert by["native"]["fastest_peer"] == "ort"
    (wl,) = seed_workloads(["sine"], batches=(1,))
    res = {
        "results": rows, "workloads": [wl.to_dict()], "settings": {"threads": [1]},
        "created_utc": "t", "environment": fingerprint(1), "targets": check_targets({"results": rows}),
    }  # fmt: skip
    # The roofline's peaks are the CPU's: GPU rows get no floor or efficiency.
    res["peak"] = roofline_peak(res["environment"])
    add_roofline(res)
    assert "floor_us" in by["native"]["roofline"]
    assert "roofline" not in by["native-cuda"] and "roofline" not in by["eager-cuda"]
    md = markdown_section(res, "seqfuse bench", "docs/bench.png")
    line = next(x for x in md.splitlines() if x.startswith("| sine/b1 | 1 |"))
    assert line.endswith("| 0.250x (ort) | 0.100x (eager-cuda) |")
    assert "![benchmark results](docs/bench.png)" in md


def test_native_cuda_graphs_skips_a_linear_model():
    # graph replay serves recurrent models: the Linear seed model gets an unsupported row,
    # not an error row (first seen on an H200)
    from seqfuse.native.cuda import unavailable_reason

    why = unavailable_reason()
    if why is not None:
        pytest.skip(f"CUDA backend unavailable: {why}")
    (wl,) = seed_workloads(["linear"], batches=(1,))
    res = run_benchmarks([wl], ["eager", "eager-cuda", "native-cuda-graphs"], **FAST)
    by = {r["backend"]: r for r in res["results"]}
    assert by["eager-cuda"]["status"] == "ok", by["eager-cuda"]
    row = by["native-cuda-graphs"]
    assert row["status"] == "skipped" and row["reason"].startswith("unsupported"), row
    assert "recurrent" in row["reason"], row


class Flaky(Eager):
    """Validates, then raises while being timed: one error row, the run goes on."""

    name = "flaky"

    def run(self):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > 3:
            raise RuntimeError("device lost")
        return super().run()


def test_a_backend_that_raises_while_timed_is_an_error_row():
    res = run_benchmarks(seed_workloads(["hihell"], batches=(1,)), ["eager", Flaky()], **FAST)
    by = {r["backend"]: r for r in res["results"]}
    assert by["eager"]["status"] == "ok"
    assert by["flaky"]["status"] == "error" and "device lost" in by["flaky"]["reason"]


class Logged(Eager):
    """Eager that writes its name to a shared log at every call."""

    log: list[str] = []

    def run(self):
        self.log.append(self.name)
        return super().run()


class LoggedA(Logged):
    name = "logged-a"


class LoggedB(Logged):
    name = "logged-b"


def test_backends_take_turns_in_rounds():
    """The budget is spent in rounds in which the backends take turns, in reverse order
    every other round: a-b, b-a, a-b (after one validation call each)."""
    Logged.log = []
    res = run_benchmarks(
        seed_workloads(["hihell"], batches=(1,)), [LoggedA(), LoggedB(), "eager"],
        rounds=3, **FAST,
    )  # fmt: skip
    assert all(r["status"] == "ok" for r in res["results"]) and res["settings"]["rounds"] == 3
    runs = [n for i, n in enumerate(Logged.log) if i == 0 or Logged.log[i - 1] != n]
    # validation: a, b; the rounds: a, b | b, a | a, b (consecutive calls of one merged)
    assert runs == ["logged-a", "logged-b", "logged-a", "logged-b", "logged-a", "logged-b"]
    counts = {n: Logged.log.count(n) for n in ("logged-a", "logged-b")}
    by = {r["backend"]: r for r in res["results"]}
    for n, c in counts.items():  # one validation call, and a warm-up call in every round
        assert by[n]["reps"] <= c - 1 - 3


def test_time_in_turns_alternates_and_drops_a_failure():
    """The shared turn-taking (the seed rows and --onnx): a-b | b-a | a-b, with one warm-up
    call in every round after the first's; a function that raises leaves the later rounds."""
    from seqfuse.bench.harness import time_in_turns

    log: list[str] = []

    def boom():
        log.append("c")
        raise RuntimeError("out of memory")

    fns = {k: (lambda k=k: log.append(k), lambda: None) for k in ("a", "b")}
    fns["c"] = (boom, lambda: None)
    samples, failed = time_in_turns(fns, 3, 0.003, 1, 3, 10)
    runs = [n for i, n in enumerate(log) if i == 0 or log[i - 1] != n]
    assert runs == ["a", "b", "c", "b", "a", "b"]  # c raised at its first call: gone
    assert set(failed) == {"c"} and "out of memory" in str(failed["c"])
    assert samples["c"] == [] and all(len(samples[k]) >= 3 for k in "ab")


def _has_openvino() -> bool:
    from seqfuse.bench.backends import OpenVINO

    return OpenVINO().available()[0]


def test_new_peers_openvino_and_int8_on_tiny_workloads():
    """OpenVINO and dynamic int8 are validated against eager like every backend; int8 is
    reduced precision (its own tolerance) and never the fastest peer; an RNN has no int8
    kernel; OpenVINO carries the streaming state; without openvino the row says why."""
    wls = [*seed_workloads(["hihell"], batches=(2,)), _tiny_stream()]
    cfg = {**_tiny_stream().config, "cell": "gru", "vocab_size": 0, "input_size": 3}
    wls.append(Workload("tinygru/b2", "tinygru", {**cfg, "head": "none"}, batch=2, seq_len=5))
    names = ["eager", "ort", "openvino", "torch-int8", "native"]
    res = run_benchmarks(wls, names, onnx_exporter="torch", **FAST)
    rows = {(r["workload"], r["backend"]): r for r in res["results"]}
    assert rows[("hihell/b2", "torch-int8")]["status"] == "skipped"
    assert "LSTM and GRU only" in rows[("hihell/b2", "torch-int8")]["reason"]
    for wid in ("tiny/stream", "tinygru/b2"):
        q = rows[(wid, "torch-int8")]
        assert q["status"] == "ok", q
        assert q["precision"] == "int8 dynamic" and not q["peer"] and q["tolerance"] == 0.1
        assert rows[(wid, "native")]["fastest_peer"] != "torch-int8"
        assert rows[(wid, "native")]["precision"] == "fp32"
    for wl in wls:
        ov = rows[(wl.id, "openvino")]
        if not _has_openvino():
            assert ov["status"] == "skipped" and "openvino not installed" in ov["reason"]
            continue
        assert ov["status"] == "ok", ov
        assert ov["max_abs_err"] <= 1e-4 and ov["peer"]
    table = format_table(res)
    assert "torch-int8 ‡" in table and "reduced precision" in table


def test_int8_is_never_the_best_fp32_peer():
    from seqfuse.bench.harness import add_ratios

    rows = [
        {"workload": "names/b64", "threads": 1, "backend": b, "device": "cpu",
         "peer": BACKENDS[b].peer, "status": "ok", "reason": "", "median_us": m}
        for b, m in (("eager", 100.0), ("ort", 50.0), ("torch-int8", 10.0), ("native", 40.0))
    ]  # fmt: skip
    add_ratios(rows)
    nat = next(r for r in rows if r["backend"] == "native")
    assert nat["fastest_peer"] == "ort" and nat["ratio_to_fastest_peer"] == pytest.approx(0.8)
    t = {x["id"]: x for x in check_targets({"results": rows})}
    assert t["names b64 vs best fp32 peer"]["status"] == "met"  # 0.8 <= 0.9, int8 ignored


def test_cli_isa_forces_the_native_kernel_set(tmp_path, capsys):
    from seqfuse import _C

    runs = [n for n, ok in _C.kernel_sets() if ok]
    isa = "portable" if "portable" in runs else runs[-1]
    argv = ["bench", "--quick", "--models", "hihell", "--backends", "eager,native"]
    argv += ["--budget", "0.01", "--no-progress", "--out", str(tmp_path / "o")]
    assert main([*argv, "--isa", isa]) == 0
    assert f"native kernel set: {isa} (forced by --isa {isa})" in capsys.readouterr().out
    data = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert data["settings"]["isa"] == isa
    nat = [r for r in data["results"] if r["backend"] == "native"]
    assert nat and all(r["status"] == "ok" and r["isa"] == isa for r in nat)
    assert data["peak"]["fma_kernel_set"] == isa  # efficiencies against that set's peak
    assert data["peak"]["gbps_source"].startswith(f"the {isa} kernel set's read probe")
    lo, hi = data["peak"]["gbps_range"]["L2"]  # the schema: the extremes around the median
    assert 0 < lo <= data["peak"]["gbps_per_core"]["L2"] <= hi
    bad = ["bogus"] + [n for n, ok in _C.kernel_sets() if not ok]
    for name in bad:
        out = tmp_path / f"bad-{name}"
        assert main([*argv[:-1], str(out), "--isa", name]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "--isa" in err and repr(name) in err
        assert not (out / "bench.json").exists()  # failed before measuring
    with pytest.raises(ValueError, match="unknown kernel set"):
        run_benchmarks(seed_workloads(["hihell"], batches=(1,)), ["eager"], isa="nope", **FAST)
    # the scalar reference has no vector FMA loop: its run's peak is torch.mm's, and says so
    ref = run_benchmarks(
        seed_workloads(["hihell"], batches=(1,)), ["eager", "native"], isa="reference", **FAST
    )
    peak = ref["peak"]
    assert peak["fma_kernel_set"] == "reference" and "torch.mm" in peak["gflops_source"]
    assert peak["gflops_per_core"] == peak["gemm_gflops_per_core"] > 0
    assert "torch sum/dot" in peak["gbps_source"]  # nor a vector read loop
    assert "torch sum/dot" in peak["assumption"]
    assert [r["isa"] for r in ref["results"] if r["backend"] == "native"] == ["reference"]


def test_large_group(tmp_path):
    from seqfuse.bench.workloads import large_workloads

    ids = [w.id for w in large_workloads()]
    assert ids == [f"{m}/b{b}" for m in ("lstm256x512", "gru256x256") for b in (1, 8, 64)]
    w = large_workloads(["lstm256x512"], batches=(1,))[0]
    assert (w.group, w.seq_len, w.config["input_size"], w.hidden) == ("large", 50, 256, 512)
    g = large_workloads(["gru256x256"], batches=(1,))[0]
    assert (g.seq_len, g.config["input_size"], g.hidden, g.cell) == (100, 256, 256, "gru")
    m = w.build_model()
    assert isinstance(m.rnn, torch.nn.LSTM) and m.rnn.batch_first and m.head is None
    assert w.cost()["step_weight_bytes"] == 4 * m.rnn.weight_hh_l0.numel()
    with pytest.raises(ValueError, match="unknown large model"):
        large_workloads(["nope"])
    # not in the default set; selected by --models large (eager only: about a second)
    assert not any(x.group == "large" for x in seed_workloads())
    argv = ["bench", "--models", "large", "--batches", "1", "--backends", "eager"]
    argv += ["--threads", "1", "--budget", "0.01", "--min-reps", "2", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [x["id"] for x in data["workloads"]] == ["lstm256x512/b1", "gru256x256/b1"]
    assert {x["group"] for x in data["workloads"]} == {"large"}


# ---- seqfuse bench --onnx: native (from_onnx) against ONNX Runtime on one file ----------------------
@pytest.fixture
def name_gru_onnx(tmp_path):
    """An Embedding -> GRU -> Linear -> LogSoftmax model exported by torch.onnx (dynamic batch
    and length): token ids in, the graph native runs as one model plus the LogSoftmax."""
    pytest.importorskip("onnxruntime")
    import warnings

    class NameGRU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(13, 6)
            self.rnn = torch.nn.GRU(6, 7, batch_first=True)
            self.fc = torch.nn.Linear(7, 4)

        def forward(self, x):
            return torch.log_softmax(self.fc(self.rnn(self.emb(x))[0][:, -1]), dim=-1)

    torch.manual_seed(0)
    path = tmp_path / "names.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(NameGRU().eval(), (torch.randint(0, 13, (2, 5)),), str(path),
                          input_names=["x"], dynamo=False, opset_version=17,
                          dynamic_axes={"x": {0: "b", 1: "t"}})  # fmt: skip
    return path


def test_bench_onnx_file_validates_then_times(name_gru_onnx):
    import onnxruntime as ort
    import seqfuse.native as sn
    from seqfuse.bench.onnx_file import TOLERANCE, bench_onnx_file, format_table, make_feeds

    res = bench_onnx_file(name_gru_onnx, batches=(1, 3), threads=(1,), steps=5,
                          budget_s=0.01, warmup=1, min_reps=3, rounds=2)  # fmt: skip
    assert res["schema"] == "seqfuse.bench.onnx" and res["model"] == str(name_gru_onnx)
    assert res["settings"]["rounds"] == 2  # ONNX Runtime and native take turns
    assert res["inputs"] == {"x": {"shape": [3, 5], "dtype": "int64"}}
    rows = res["results"]
    assert [(r["batch"], r["backend"]) for r in rows] == [
        (1, "ort"), (1, "native"), (3, "ort"), (3, "native"),
    ]  # fmt: skip
    for ort_row, nat in zip(rows[::2], rows[1::2]):
        assert ort_row["status"] == nat["status"] == "ok"
        assert nat["max_err_vs_ort"] <= TOLERANCE
        assert ort_row["reps"] >= 3 and nat["reps"] >= 3
        assert nat["ratio_median"] == pytest.approx(nat["median_us"] / ort_row["median_us"])
        assert nat["ratio_p99"] == pytest.approx(nat["p99_us"] / ort_row["p99_us"])
    # the feeds it timed: token ids inside the vocabulary, the same outputs as ONNX Runtime
    model = sn.from_onnx(name_gru_onnx)
    feeds = make_feeds(model, 3, 5)
    assert feeds["x"].shape == (3, 5) and feeds["x"].min() >= 0 and feeds["x"].max() < 13
    want = ort.InferenceSession(str(name_gru_onnx)).run(None, feeds)[0]
    assert np.max(np.abs(model(feeds["x"]) - want)) <= 1e-5
    table = format_table(res)
    assert "median / ORT" in table and f"{rows[1]['ratio_median']:.2f}x" in table


def test_bench_onnx_file_reports_a_mismatch_untimed(name_gru_onnx, monkeypatch):
    from seqfuse.bench import onnx_file

    monkeypatch.setattr(onnx_file, "TOLERANCE", -1.0)  # no error is small enough
    res = onnx_file.bench_onnx_file(name_gru_onnx, steps=3, budget_s=0.01, warmup=1, min_reps=3)
    nat = next(r for r in res["results"] if r["backend"] == "native")
    assert nat["status"] == "failed" and nat["reason"].startswith("mismatch: max err")
    assert "median_us" not in nat and "ratio_median" not in nat


def test_cli_bench_onnx(name_gru_onnx, tmp_path, capsys):
    argv = ["bench", "--onnx", str(name_gru_onnx), "--quick", "--onnx-steps", "4"]
    argv += ["--budget", "0.01", "--warmup", "1", "--min-reps", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "native (from_onnx) vs ONNX Runtime" in out and "| 1 | 1 | native |" in out
    data = json.loads((tmp_path / "bench_onnx.json").read_text())
    assert data["settings"]["threads"] == [1] and data["settings"]["steps"] == 4
    assert {r["backend"] for r in data["results"]} == {"ort", "native"}
    assert all(r["status"] == "ok" for r in data["results"])
    assert main([*argv, "--update-readme", str(tmp_path / "README.md")]) == 2
    assert "--onnx prints its own table" in capsys.readouterr().err


def test_arch_rows_validate_accelerated_and_ort(tmp_path):
    """`--models arch`: the whole-model architectures, each row checked against eager
    before it is timed (the harness's own oracle); accelerate and ONNX Runtime must match."""
    from seqfuse.bench.workloads import ARCH_MODELS, arch_workloads

    wls = arch_workloads()
    assert [w.id for w in wls] == [f"{m}/b1" for m in ARCH_MODELS]
    assert {w.group for w in wls} == {"arch"} and wls[-1].mode == "stream"
    with pytest.raises(ValueError, match="unknown architecture"):
        arch_workloads(["nope"])
    names = ["eager", "accelerate", "native"] + (["ort"] if _has_ort() else [])
    res = run_benchmarks(wls, names, **FAST)
    rows = {(r["workload"], r["backend"]): r for r in res["results"]}
    for w in wls:
        for b in names:
            r = rows[(w.id, b)]
            if b == "native":  # a whole model is not one the engine converts
                assert r["status"] == "skipped" and "unsupported" in r["reason"]
                continue
            assert r["status"] == "ok", r
            assert r["max_abs_err"] <= r["tolerance"]
    assert res["workloads"][0]["flops"] > 0  # counted by FlopCounterMode
    assert "crnn/b1" in format_table(res)
    # the CLI selects them by group name or by model name
    argv = ["bench", "--models", "detector", "--backends", "eager", "--threads", "1"]
    argv += ["--budget", "0.01", "--min-reps", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [x["id"] for x in data["workloads"]] == ["detector/b1"]


def _has_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
