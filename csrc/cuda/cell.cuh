// Device helpers shared by the CUDA kernels (cuda/recurrent.cu, cuda/fused.cu): PyTorch's cell
// formulas with accurate expf/tanhf (no fast-math intrinsics, so fp32 parity holds) and the
// row index of (t, b) in the caller's layout. Checked through tests/test_native_cuda.py.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace cg = cooperative_groups;

namespace seqfuse {
namespace cuda {
namespace {

__device__ __forceinline__ float sigm(float x) { return 1.f / (1.f + expf(-x)); }

// cell as seqfuse::Cell: 0 rnn_tanh, 1 rnn_relu, 2 gru (r,z,n), 3 lstm (i,f,g,o).
// gx: input projections with biases (GRU n: b_in only); gh: recurrent products without
// bias; bhn: GRU's b_hn, applied inside r * (W_hn h + b_hn).
__device__ __forceinline__ float cell_update(int cell, const float* gx, const float* gh, float bhn,
                                             float hprev, float& c) {
  switch (cell) {
    case 0:
      return tanhf(gx[0] + gh[0]);
    case 1: {
      const float v = gx[0] + gh[0];
      return v < 0.f ? 0.f : v;  // keeps a NaN (bad token) visible, like torch.relu
    }
    case 2: {
      const float r = sigm(gx[0] + gh[0]);
      const float z = sigm(gx[1] + gh[1]);
      const float n = tanhf(gx[2] + r * (gh[2] + bhn));
      return (1.f - z) * n + z * hprev;
    }
    default: {
      const float i = sigm(gx[0] + gh[0]);
      const float f = sigm(gx[1] + gh[1]);
      const float g = tanhf(gx[2] + gh[2]);
      const float o = sigm(gx[3] + gh[3]);
      c = f * c + i * g;
      return o * tanhf(c);
    }
  }
}

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
