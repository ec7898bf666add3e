// Internal test hooks of libseqfuse, for seqfuse._C's accuracy tests
// (tests/test_native_kernels.py, tests/test_native_robustness.py) and the C++ tests. Not installed
// and not part of the API: the one internal header the bindings include. Exported in
// seqfuse::testing only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {
namespace testing {

// A kernel set's vectorized sigmoid (kind 0) or tanh (kind 1) over x[0, n) into y. Throws
// Unsupported when the kernel set is unknown, cannot run on this CPU or has no vector path.
SEQFUSE_API void activation(const std::string& kernel_set, int kind, const float* x, float* y,
                            size_t n);

// The FMA peak probe of a kernel set, for the benchmark's roofline (seqfuse.bench.machine
// times it): `reps` rounds of independent vector multiply-adds held in registers. Returns the
// FLOPs done (0 for the reference, which has no vector loop) and sets *resolved (when given)
// to the kernel set's name ("auto" resolved). Throws Unsupported for an unknown kernel set
// or one this CPU cannot run.
SEQFUSE_API uint64_t fma_probe(const std::string& kernel_set, int64_t reps,
                               std::string* resolved = nullptr);

// The cache read probe of a kernel set, for the benchmark's roofline (seqfuse.bench.machine
// times it over arrays sized to L2 and L3): `reps` passes of vector loads over p[0, n) (reps
// >= 1), with *sum set to the last pass's sum. Returns false, leaving *sum alone, for the
// reference (no vector loop), and sets *resolved as fma_probe does. Throws as fma_probe does.
SEQFUSE_API bool read_probe(const std::string& kernel_set, const float* p, size_t n, int64_t reps,
                            float* sum, std::string* resolved = nullptr);

// One step of a tanh RNN cell (PyTorch's nn.RNNCell) in double, the simplest oracle:
//   x: [B, D] input, h: [B, H] previous state, w_ih: [H, D], w_hh: [H, H], b_ih, b_hh: [H]
//   (either may be null), out: [B, H] = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), aliasing
//   neither input.
SEQFUSE_API void rnn_tanh_step_reference(int B, int D, int H, const float* x, const float* h,
                                         const float* w_ih, const float* w_hh, const float* b_ih,
                                         const float* b_hh, float* out);

// The most scratch memory a forward call spends on input projections before it computes them
// a chunk of time steps at a time (default 64 MiB, see cpu/backend.hpp). Tests make it tiny so
// that small models take the chunked path. Returns the previous value.
SEQFUSE_API size_t set_projection_budget_bytes(size_t bytes);

// The smallest batch whose batched steps compute their own input projections (default 32, see
// cpu/backend.hpp). Tests make it 1 so that small batches take that path, or huge so that
// large ones do not. Returns the previous value.
SEQFUSE_API int set_fused_input_rows(int rows);

// The most weight bytes a K block spans in a batched step that computes its own input
// projection (default 0: a quarter of L2, see cpu/backend.hpp). Tests make it small so that
// those steps cut both products into several K blocks. Returns the previous value.
SEQFUSE_API size_t set_fused_kblock_bytes(size_t bytes);

// How many layer directions have run with steps computing their own input projections, in
// this process so far: tests check that a path they mean to exercise ran.
SEQFUSE_API uint64_t fused_input_runs();

// How many layer direction runs have had a team of threads split some batched step by rows
// rather than by columns, in this process so far (engine.hpp's by_rows): tests check that the
// path ran.
SEQFUSE_API uint64_t row_split_runs();

// How many layer direction runs a team of two threads or more has shared, plus the calls of
// models without recurrent layers whose head's GEMM a team shared, in this process so far
// (engine.hpp's TEAM_STEP_BYTES and TEAM_HEAD_MACS decide when one forms): tests check where
// teams form.
SEQFUSE_API uint64_t team_runs();

}  // namespace testing
}  // namespace seqfuse
