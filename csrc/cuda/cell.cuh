// Device helpers shared by the CUDA kernels (cuda/recurrent.cu, cuda/fused.cu): PyTorch's cell
// formulas from core/cell.hpp with accurate expf/tanhf (no fast-math intrinsics, so fp32
// parity holds) and the row index of (t, b) in the caller's layout. Checked through
// tests/test_native_cuda.py.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cell.hpp"

namespace cg = cooperative_groups;

namespace seqfuse {
namespace cuda {
namespace {

// PyTorch's cell formulas, written once for every engine: seqfuse::cell_update
// (core/cell.hpp), here with float and CUDA's expf/tanhf.
using seqfuse::cell_update;

// Sequence b's length (T without lengths), clamped to [0, T]: a bad device value can never
// index outside the arrays (the Python layer validates lengths before they get here).
__device__ __forceinline__ int clamp_len(const int64_t* lengths, int b, int T) {
  if (!lengths) return T;
  const long long v = lengths[b];
  return v < 0 ? 0 : (v > T ? T : int(v));
}

__device__ __forceinline__ long long row_of(bool batch_first, int t, int b, int T, int B) {
  return batch_first ? (long long)b * T + t : (long long)t * B + b;
}

// A barrier over the thread-block cluster (sm_90; C == 1 or older GPUs: the block).
__device__ __forceinline__ void cluster_barrier(int C) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (C > 1) {
    cg::this_cluster().sync();  // release/acquire: remote h writes are visible after it
    return;
  }
#endif
  __syncthreads();
}

// Stores v at the same shared-memory address in every block of the cluster (distributed
// shared memory on sm_90; the block's own shared memory when C == 1).
__device__ __forceinline__ void store_all_blocks(float* addr, float v, int C) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (C > 1) {
    cg::cluster_group cl = cg::this_cluster();
    for (int q = 0; q < C; ++q) *cl.map_shared_rank(addr, q) = v;
    return;
  }
#endif
  *addr = v;
}

}  // namespace
}  // namespace cuda
}  // namespace seqfuse
