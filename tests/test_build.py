"""The compiled core and its C++ package: build info, the scalar reference step, and a small
C++ app built with CMake against the installed package (find_package(seqfuse)) that loads a
weight file, runs a batch and streaming steps, and must print what seqfuse.native computes.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import seqfuse
import seqfuse.native as sn
import torch
from seqfuse import _C
from seqfuse.models.presets import preset
from seqfuse.models.seq import build_model


def test_version_is_stated_once():
    # pyproject.toml is the one source: the Python metadata, the compiled core and the
    # installed CMake package all report it.
    root = Path(__file__).resolve().parents[1]
    want = re.search(r'^version = "([^"]+)"$', (root / "pyproject.toml").read_text(), re.M)[1]
    assert seqfuse.__version__ == want
    assert seqfuse.build_info()["version"] == want
    cmake_dir = Path(
        subprocess.run(
            [sys.executable, "-m", "seqfuse", "--cmake-dir"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    text = (cmake_dir / "seqfuseConfigVersion.cmake").read_text()
    assert re.search(rf'set\(PACKAGE_VERSION "{re.escape(want)}"\)', text)
    sources = [p for d in ("csrc", "python") for p in (root / d).rglob("*") if p.is_file()]
    stated = [str(p) for p in sources if f'"{want}"' in p.read_text(errors="ignore")]
    assert stated == [], f"the version is written again in {stated}"


# Internal names that must never be exported from libseqfuse.so.
_INTERNAL = re.compile(
    r"ThreadPool|SpinBarrier|\bBuf\b|Workspace|Backend|KernelSet\b|isa_\w+::|json::|Packed"
    r"|::Impl::"
)
_PUBLIC = ("seqfuse::", "typeinfo for seqfuse::", "typeinfo name for seqfuse::",
           "vtable for seqfuse::")  # fmt: skip


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_library_exports_only_the_public_api():
    cmake_dir = subprocess.run(
        [sys.executable, "-m", "seqfuse", "--cmake-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    lib = Path(cmake_dir).parents[1] / "libseqfuse.so"
    out = subprocess.run(
        ["nm", "-D", "--defined-only", "-C", str(lib)], check=True, capture_output=True, text=True
    ).stdout
    names = [line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2]
    assert any(n.startswith("seqfuse::Model::forward") for n in names), "no public API?"
    leaked = [n for n in names if not n.startswith(_PUBLIC) or _INTERNAL.search(n)]
    assert leaked == [], f"{len(leaked)} symbols beyond the public API, e.g. {leaked[:5]}"
    assert len(names) < 120, f"{len(names)} exported symbols"


def test_build_info():
    info = seqfuse.build_info()
    assert info["version"] == seqfuse.__version__
    assert info["simd"] in ("avx512", "avx2", "portable")
    assert isinstance(info["cuda"], bool)


def test_rnn_tanh_step_reference_matches_torch():
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(3, 5)
    x, h = torch.randn(2, 3), torch.randn(2, 5)
    with torch.no_grad():
        want = cell(x, h).numpy()
    got = _C.rnn_tanh_step_reference(
        x.numpy(),
        h.numpy(),
        cell.weight_ih.detach().numpy(),
        cell.weight_hh.detach().numpy(),
        cell.bias_ih.detach().numpy(),
        cell.bias_hh.detach().numpy(),
    )
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


APP = r"""
// Test app: load a seqfuse weight file, run a batch and three streaming steps, print outputs.
#include <seqfuse/seqfuse.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    seqfuse::Model m = seqfuse::Model::load(argv[1]);
    const seqfuse::Config& c = m.config();
    const int B = 2, T = 5, O = c.output_size, S = c.num_layers, H = c.hidden_size;
    std::vector<int64_t> tok(B * T);
    for (int i = 0; i < B * T; ++i) tok[i] = (i * 7 + 3) % c.vocab_size;
    std::vector<float> y(size_t(B) * T * O), h(size_t(S) * B * H), cs(h.size());
    seqfuse::ForwardArgs a;
    a.batch = B;
    a.steps = T;
    a.tokens = tok.data();
    a.y = y.data();
    a.h_n = h.data();
    a.c_n = cs.data();
    m.forward(a);
    for (float v : y) std::printf("%.9g\n", v);
    seqfuse::Session s = m.stream(1);
    std::vector<float> ys(O);
    for (int t = 0; t < 3; ++t) {
      int64_t one = tok[t];
      s.step(nullptr, &one, 1, ys.data());
      for (float v : ys) std::printf("%.9g\n", v);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
"""

CMAKE = """
cmake_minimum_required(VERSION 3.18)
project(seqfuse_app LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
find_package(seqfuse CONFIG REQUIRED)
add_executable(app main.cpp)
target_link_libraries(app PRIVATE seqfuse::seqfuse)
"""


@pytest.mark.cxx
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cpp_app_against_installed_package(tmp_path):
    torch.manual_seed(0)
    cfg = preset("shakespeare", hidden_size=24, embed_dim=8, vocab_size=11, output_size=11)
    m = build_model(cfg).eval()
    nm = sn.from_module(m)
    weights = nm.save(tmp_path / "model.safetensors")
    src = tmp_path / "app"
    src.mkdir()
    (src / "main.cpp").write_text(textwrap.dedent(APP))
    (src / "CMakeLists.txt").write_text(CMAKE)
    cmake_dir = subprocess.run(
        [sys.executable, "-m", "seqfuse", "--cmake-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    build = tmp_path / "build"
    subprocess.run(
        ["cmake", "-S", str(src), "-B", str(build), f"-Dseqfuse_DIR={cmake_dir}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    out = subprocess.run(
        [str(build / "app"), str(weights)], check=True, capture_output=True, text=True
    ).stdout
    got = np.array([float(v) for v in out.split()], np.float32)
    tok = torch.tensor([(i * 7 + 3) % 11 for i in range(10)]).reshape(2, 5)
    y, _ = nm(tok)
    s = nm.stream(1)
    steps = [s(tok.reshape(-1)[t].reshape(1, 1)).reshape(-1) for t in range(3)]
    want = np.concatenate([y.reshape(-1).numpy()] + [v.numpy() for v in steps])
    with torch.no_grad():
        eager = m(tok)[0].reshape(-1).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got[: eager.size], eager, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def ctest_build(tmp_path_factory) -> Path:
    """libseqfuse and the C++ unit tests (tests/cpp), built once with CMake's
    SEQFUSE_BUILD_TESTS, CUDA off so that it builds in well under a minute; the library is
    left unstripped."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    root = Path(__file__).resolve().parents[1]
    build = tmp_path_factory.mktemp("ctest") / "build"
    subprocess.run(
        ["cmake", "-S", str(root), "-B", str(build), "-DSEQFUSE_BUILD_TESTS=ON",
         "-DSEQFUSE_CUDA=OFF", "-DCMAKE_BUILD_TYPE=Release"],
        check=True, capture_output=True,
    )  # fmt: skip
    # every tests/cpp/*.cpp is a ctest (CMakeLists.txt globs them): build them all
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    return build


@pytest.mark.cxx
def test_ctest_engine_against_reference(ctest_build):
    r = subprocess.run(
        ["ctest", "--output-on-failure"], cwd=ctest_build, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100% tests passed" in r.stdout


@pytest.mark.cxx
def test_no_avx_outside_the_kernel_sets(ctest_build):
    if not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        pytest.skip("checks an x86-64 Linux build (ELF, AVX kernel sets)")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    leaked = simd_outside_kernel_sets(ctest_build / "libseqfuse.so")
    assert leaked == {}, f"vector instructions outside the kernel sets: {leaked}"


def simd_outside_kernel_sets(lib: Path, kernel_code: str = "isa_avx") -> dict[str, list[str]]:
    """Functions of an unstripped x86-64 libseqfuse.so that use AVX (a v-prefixed mnemonic, a
    ymm/zmm register, an AVX-512 mask instruction) or popcnt outside the AVX kernel sets' code
    (names holding ``kernel_code``; compiler clones stay in their file and are skipped).
    Each kernel set's file is compiled with its -m flags; an inline function or template it
    instantiates (a std:: one, say) is a weak symbol the linker may pick for the whole
    library, and the portable path would then run AVX-512 code on any CPU."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", str(lib)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    # AVX (VEX/EVEX: v-mnemonics), 256/512-bit registers, AVX-512 mask instructions, and
    # popcnt (which -mavx2 implies through SSE4.2)
    simd = re.compile(r"^(v[a-z0-9]+|k[a-z]+[bwdq]|popcnt)\b|%[yz]mm")
    found: dict[str, list[str]] = {}
    func = ""
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if head:
            func = head[1]
            continue
        # A compiler's local clone ("[clone .isra.0]") never leaves the file that made it.
        if not func or kernel_code in func or "[clone " in func or "\t" not in line:
            continue
        insn = line.split("\t")[-1].strip()
        if simd.search(insn):
            found.setdefault(func, []).append(insn.split()[0])
    return {f: sorted(set(m))[:4] for f, m in found.items()}
