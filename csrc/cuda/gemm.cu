// The CUDA GEMM of seqfuse (no cuBLAS): input projections of all timesteps of a layer in one
// launch, the Embedding table at load, and the Linear heads. A plain shared-memory tiled
// fp32 kernel (64x64 tile, k-step 16, 4x4 outputs per thread, fmaf accumulation in k
// order). Checked, through every forward pass, by tests/test_native_cuda.py.
#include "cuda/kernels.cuh"

namespace seqfuse {
namespace cuda {
namespace {

constexpr int kTM = 64, kTN = 64, kTK = 16, kPad = 4;

// C[M, N] = A[M, K] · W[N, K]^T + bias. grid (ceil(M/64), ceil(N/64)), 256 threads; thread
// (ty, tx) owns rows ty + 16i and columns tx + 16j (i, j < 4) of the tile.
__global__ void __launch_bounds__(256)
    gemm_bt_kernel(int M, int N, int K, const float* __restrict__ A, int lda,
                   const float* __restrict__ W, int ldw, const float* __restrict__ bias,
                   float* __restrict__ C, int ldc) {
  __shared__ float As[kTK][kTM + kPad];
  __shared__ float Ws[kTK][kTN + kPad];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const long long m0 = (long long)blockIdx.x * kTM;
  const long long n0 = (long long)blockIdx.y * kTN;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kTK) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int idx = tid + 256 * e, r = idx / kTK, k = idx % kTK;
      const long long m = m0 + r, n = n0 + r;
      As[k][r] = (m < M && k0 + k < K) ? A[m * lda + k0 + k] : 0.f;
      Ws[k][r] = (n < N && k0 + k < K) ? W[n * ldw + k0 + k] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTK; ++k) {
      float av[4], wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wv[j] = Ws[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], wv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const long long m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const long long n = n0 + tx + 16 * j;
      if (n < N) C[m * ldc + n] = acc[i][j] + (bias ? bias[n] : 0.f);
    }
  }
}

// grid (B), 128 threads: warp w computes outputs o = w, w+4, ... of sequence b.
__global__ void head_rows_kernel(bool last_step, int B, int T, bool batch_first,
                                 const int64_t* lengths, const float* feat, int F,
                                 const float* hn_top, int H, const float* W, const float* bias,
                                 int O, float* y) {
  const int b = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* f = nullptr;
  if (last_step) {
    const long long n = lengths ? lengths[b] : T;  // clamped: never outside feat
    const int t = int(n < 1 ? 0 : (n > T ? T - 1 : n - 1));
    f = feat + (batch_first ? (long long)b * T + t : (long long)t * B + b) * F;
  }
  for (int o = warp; o < O; o += 4) {
    const float* wr = W + (long long)o * F;
    float acc = 0.f;
    for (int k = lane; k < F; k += 32) {
      const float v = last_step ? f[k] : hn_top[((long long)(k / H) * B + b) * H + k % H];
      acc = fmaf(wr[k], v, acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) y[(long long)b * O + o] = acc + bias[o];
  }
}

}  // namespace

void prepare_gemm_kernels() {
  // Load the kernels now, not at a first launch that may fall inside a graph capture.
  cudaFuncAttributes fa;
  check(cudaFuncGetAttributes(&fa, gemm_bt_kernel), "loading the GEMM kernel");
  check(cudaFuncGetAttributes(&fa, head_rows_kernel), "loading the head kernel");
}

void gemm_bt(int M, int N, int K, const float* A, int lda, const float* W, int ldw,
             const float* bias, float* C, int ldc, cudaStream_t s) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid(unsigned((M + kTM - 1) / kTM), unsigned((N + kTN - 1) / kTN));
  gemm_bt_kernel<<<grid, 256, 0, s>>>(M, N, K, A, lda, W, ldw, bias, C, ldc);
  check(cudaGetLastError(), "launching the GEMM");
}

void head_rows(bool last_step, int B, int T, bool batch_first, const int64_t* lengths,
               const float* feat, int F, const float* hn_top, int dirs, int H, const float* W,
               const float* bias, int O, float* y, cudaStream_t s) {
  (void)dirs;  // F = dirs*H for last_hidden: the feature index k reads direction k / H
  head_rows_kernel<<<unsigned(B), 128, 0, s>>>(last_step, B, T, batch_first, lengths, feat, F,
                                               hn_top, H, W, bias, O, y);
  check(cudaGetLastError(), "launching the head");
}

}  // namespace cuda
}  // namespace seqfuse
