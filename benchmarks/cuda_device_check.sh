#!/usr/bin/env bash
# seqfuse's GPU session in one command (docs/CUDA.md, "What ran where"): name the machine,
# build with CUDA, a first-contact script (CPU model, every CUDA path against eager, a
# backtrace if it crashes), the CUDA tests, the self-check, compute-sanitizer's four tools on
# the first contact, and the GPU rows of seqfuse bench. Run from the repository root on a
# machine with a GPU; logs go to $OUT (eight files at most: what a lent machine sends back).
# Checked by running it there: its output is the evidence docs/CUDA.md quotes.
set -u
OUT=${OUT:-/tmp/seqfuse-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
site=/tmp/seqfuse-site
t0=$SECONDS
stamp() { echo "== $1 ($((SECONDS - t0)) s)"; }

stamp machine
{
  nvidia-smi -L
  lscpu | grep -E "Model name|^CPU\(s\)|L1d|L2"
  grep -o -E -w "avx512f|avx512vl|avx512bw|avx512dq|avx2|fma|amx_tile" /proc/cpuinfo | sort -u | tr '\n' ' '
  echo
  gcc --version | head -1
  python3 -c "import sys, torch, numpy, pybind11; print(sys.version.split()[0], torch.__version__, numpy.__version__, pybind11.__version__)"
} 2>&1

stamp build
rm -rf "$site"  # pip --target keeps an existing package: a rerun would test the old build
python3 -m pip install -q --no-build-isolation --no-deps --target "$site" \
  -C cmake.define.SEQFUSE_CUDA=ON -C cmake.define.CMAKE_CXX_FLAGS=-g -C install.strip=false \
  -C build-dir=/tmp/seqfuse-build . >"$OUT/build.log" 2>&1 || {
  tail -40 "$OUT/build.log"
  exit 1
}
export PYTHONPATH=$site

stamp first-contact
cat >/tmp/first_contact.py <<'PY'
import json, sys
import torch
from seqfuse import _C
print("build_info", _C.build_info(), flush=True)
torch.manual_seed(0)
# H=200 at batch 3: a persistent cluster of 2 blocks of 416 threads (fewer than the kernel's
# 512 cap), the case whose shared-memory set-up once skipped words.
for name, mod in [("lstm", torch.nn.LSTM(8, 16, batch_first=True)),
                  ("gru2", torch.nn.GRU(8, 16, num_layers=2, batch_first=True)),
                  ("rnn200", torch.nn.RNN(8, 200, batch_first=True))]:
    print(name, "_C.Model", flush=True)
    import seqfuse.native as sn
    nm = sn.from_module(mod)
    print(name, "isa", nm.isa, flush=True)
    print(name, "config_json", nm._core.config_json, flush=True)
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        want, _ = mod(x)
    got, _ = nm(x)
    print(name, "cpu err", float((got - want).abs().max()), flush=True)
    import seqfuse.native.cuda as snc
    print("cuda unavailable_reason", snc.unavailable_reason(), flush=True)
    for path in ("auto", "step", "fused", "persistent"):
        try:
            gm = snc.CudaNativeModel(nm, device="cuda", path=path)
            print(name, path, gm.describe(3).replace("\n", " | "), flush=True)
            g, _ = gm(x.cuda())
            torch.cuda.synchronize()
            print(name, path, "cuda err", float((g.cpu() - want).abs().max()), flush=True)
        except Exception as e:  # a path that cannot run says why
            print(name, path, type(e).__name__, str(e)[:200], flush=True)
print("first contact done")
PY
python3 /tmp/first_contact.py 2>&1 | tee "$OUT/first_contact.log"
if [ "${PIPESTATUS[0]}" != 0 ]; then
  stamp backtrace
  cuda-gdb -batch -ex run -ex bt -ex 'x/8i $pc' -ex 'info registers rip' \
    --args python3 /tmp/first_contact.py >"$OUT/gdb.log" 2>&1
  grep -v "^\[New Thread\|^\[Thread" "$OUT/gdb.log" | tail -70
  exit 1
fi

stamp pytest
timeout 200 python3 -m pytest tests/test_native_cuda.py tests/test_cuda_tiling.py tests/test_bench.py \
  -k "cuda or gpu or linear or Cuda" -q -rs -p no:cacheprovider --maxfail=25 \
  >"$OUT/pytest.log" 2>&1
echo "pytest rc $?"
grep -E "passed|failed|error" "$OUT/pytest.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | cut -c1-220 | head -30

stamp self-check
timeout 90 python3 -m seqfuse.bench.cuda_check --out "$OUT" --repeats 100 >"$OUT/selfcheck.log" 2>&1
echo "self-check rc $?"
tail -30 "$OUT/selfcheck.log" | cut -c1-200

for tool in memcheck initcheck racecheck synccheck; do
  stamp "$tool"
  timeout 60 compute-sanitizer --tool "$tool" --error-exitcode 99 python3 /tmp/first_contact.py \
    >/tmp/san.log 2>&1
  rc=$?  # 99: the tool found something; 124: timed out
  grep -q "first contact done" /tmp/san.log || echo "$tool: the script did not finish"
  echo "$tool rc $rc"
  { echo "== $tool"; cat /tmp/san.log; } >>"$OUT/sanitizers.log"
  grep -E "SUMMARY|Invalid|Uninitialized|Race|first contact done" /tmp/san.log | sort | uniq -c | head -8
done

stamp bench
timeout 200 python3 -m seqfuse bench --models all,large --batches 1,64,256 --threads 1 \
  --backends eager-cuda,cuda-graphs,native-cuda,native-cuda-graphs --budget 0.3 \
  --json "$OUT/bench-gpu.json" --no-progress >"$OUT/bench.log" 2>&1
echo "bench rc $?"
tail -45 "$OUT/bench.log" | cut -c1-160
stamp done
