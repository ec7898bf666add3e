// The fused small-T kernel: every layer of a unidirectional model and its head, for a few
// steps, in ONE launch (the streaming path: one char of a char-LSTM is one launch), layers
// as a wavefront (layer l+1 on step t-1 while layer l is on step t). Weights are read from
// global memory (they stay in L2 between calls), each warp computing whole gate rows with
// coalesced loads; h of every layer is exchanged each tick through distributed shared
// memory of a thread-block cluster (sm_90; one block elsewhere). Plan:
// cuda/plan.hpp (make_fused_plan). Checked against the CPU loop and eager PyTorch by
// tests/test_native_cuda.py (path "fused", streaming sessions).
#include "cuda/cell.cuh"
#include "cuda/kernels.cuh"

namespace seqfuse {
namespace cuda {
namespace {

struct KArgs {
  FusedArgs a;
  int units, rows, bt, hp, dp;
};

// acc[bb] += this lane's share (k = lane, lane + 32, ...) of the dot product of weight row
// w[0, n) with v[bb * ldv + k] (shared memory), for bb < nb. kUnroll loads are issued before
// their FMAs, so that several L2 reads are in flight per lane: the Shakespeare LSTM's 100
// steps took 2.72 ms on an H200 with one load at a time, 1.94 ms with 4 and 1.77 ms with 8
// (CUDA-graph replay). Each lane still adds its terms in increasing k, so the sums are the
// same as one load at a time.
constexpr int kUnroll = 8;
__device__ __forceinline__ void row_dot(const float* __restrict__ w, int n, const float* v, int ldv,
                                        int nb, int lane, float (&acc)[kMaxBatchTile]) {
  int kk = lane;
  for (; kk + 32 * (kUnroll - 1) < n; kk += 32 * kUnroll) {
    float wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = __ldg(w + kk + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int bb = 0; bb < kMaxBatchTile; ++bb)
        if (bb < nb) acc[bb] = fmaf(wv[u], v[bb * ldv + kk + 32 * u], acc[bb]);
  }
  for (; kk < n; kk += 32) {
    const float wv = __ldg(w + kk);
#pragma unroll
    for (int bb = 0; bb < kMaxBatchTile; ++bb)
      if (bb < nb) acc[bb] = fmaf(wv, v[bb * ldv + kk], acc[bb]);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// grid (cluster, 1, batch tiles), cluster (cluster, 1, 1), kFusedThreads threads.
// Per tick, for every layer l in flight (step t = tick - l): (1) warp-per-row products of
// the block's G*units gate rows with layer l's input (x_t, the Embedding table row, or layer
// l-1's h at t) and with h_l at t-1; (2) a thread per (sequence, unit) applies the cell and
// stores h into every block; (3) one cluster barrier; then the head rows the block owns for
// the top layer's step. h buffers alternate by step parity.
__global__ void __launch_bounds__(kFusedThreads, 1) fused_kernel(const KArgs k) {
  // The block is always kFusedThreads threads (run_fused), so strided loops may step by NT
  // (the persistent kernel's blocks are smaller than its cap and step by blockDim.x).
  constexpr int NT = kFusedThreads, NW = kFusedThreads / 32;
  extern __shared__ float4 smem4[];
  float* sm = reinterpret_cast<float*>(smem4);
  const FusedArgs& a = k.a;
  const int H = a.H, G = a.G, L = a.L, B = a.B, T = a.T;
  const int C = gridDim.x, rank = blockIdx.x;
  const int b0 = blockIdx.z * k.bt, nb = min(k.bt, B - b0);
  const int j0 = rank * k.units, nu = min(k.units, H - j0);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const FusedLayout lay = fused_layout(L, k.bt, k.hp, k.dp, k.rows, k.units);
  float* hbuf = sm;           // [2][L][bt][hp]
  float* xin = sm + lay.xin;  // [bt][dp]
  float* gxs = sm + lay.gxs;  // [L][bt][rows]
  float* ghs = sm + lay.ghs;  // [L][bt][rows]
  float* cst = sm + lay.cst;  // [L][bt][units]
  auto hb = [&](int par, int l) { return hbuf + ((par * L + l) * k.bt) * k.hp; };

  for (int i = tid; i < 2 * L * k.bt * k.hp; i += NT) hbuf[i] = 0.f;
  __syncthreads();
  for (int i = tid; i < L * nb * H; i += NT) {
    const int l = i / (nb * H), r = i - l * nb * H, bb = r / H, kk = r - bb * H;
    if (a.h0) hb(0, l)[bb * k.hp + kk] = a.h0[((long long)l * B + b0 + bb) * H + kk];
  }
  for (int i = tid; i < L * nb * k.units; i += NT) {
    const int l = i / (nb * k.units), r = i - l * nb * k.units, bb = r / k.units,
              jl = r - bb * k.units;
    cst[(l * k.bt + bb) * k.units + jl] =
        (a.c0 && jl < nu) ? a.c0[((long long)l * B + b0 + bb) * H + j0 + jl] : 0.f;
  }
  cluster_barrier(C);  // every block's buffers are initialised before remote stores

  // Wavefront: at tick tau, layer l works on step t = tau - l, so every layer in flight
  // shares one cluster barrier per tick (T + L - 1 barriers instead of T * L). Double
  // buffers by step parity keep it race-free: layer l reads its state hb(t&1, l) and its
  // input hb((t&1)^1, l-1), written in the previous tick, and writes hb((t&1)^1, l), which
  // no layer reads in this tick.
  for (int tick = 0; tick < T + L - 1; ++tick) {
    const int l_lo = max(0, tick - (T - 1)), l_hi = min(L - 1, tick);
    if (!a.tokens && tick < T) {  // stage x_t for layer 0 (t = tick)
      for (int i = tid; i < nb * a.D; i += NT) {
        const int bb = i / a.D, kk = i - bb * a.D;
        xin[bb * k.dp + kk] = a.x[row_of(a.batch_first, tick, b0 + bb, T, B) * a.D + kk];
      }
      __syncthreads();
    }
    // (1) gate rows of every layer in flight: warp per row, lanes over k (coalesced)
    for (int l = l_lo; l <= l_hi; ++l) {
      const int t = tick - l, par = t & 1;
      const float* hprev = hb(par, l);
      const bool table = l == 0 && a.tokens;
      const float* in = l == 0 ? xin : hb(par ^ 1, l - 1);
      const int kin = l == 0 ? a.D : H, ldin = l == 0 ? k.dp : k.hp;
      const float* wih = a.wih[l];
      const float* whh = a.whh[l];
      const float* bias = a.bias[l];
      float* gx_l = gxs + l * k.bt * k.rows;
      float* gh_l = ghs + l * k.bt * k.rows;
      for (int r = warp; r < k.rows; r += NW) {
        const int g = r / k.units, jl = r - g * k.units;
        if (jl >= nu) continue;
        const long long grow = (long long)g * H + j0 + jl;
        float ax[kMaxBatchTile], ah[kMaxBatchTile];
#pragma unroll
        for (int bb = 0; bb < kMaxBatchTile; ++bb) ax[bb] = ah[bb] = 0.f;
        row_dot(whh + grow * H, H, hprev, k.hp, nb, lane, ah);
        if (!table) row_dot(wih + grow * kin, kin, in, ldin, nb, lane, ax);
#pragma unroll
        for (int bb = 0; bb < kMaxBatchTile; ++bb) {
          if (bb < nb) {
            const float sx = warp_sum(ax[bb]), sh = warp_sum(ah[bb]);
            if (lane == 0) {
              float gx;
              if (table) {
                const long long tok = a.tokens[row_of(a.batch_first, t, b0 + bb, T, B)];
                gx = (tok < 0 || tok >= a.vocab) ? NAN : a.table[tok * a.ldt + grow];
              } else {
                gx = sx + (bias ? bias[grow] : 0.f);
              }
              gx_l[bb * k.rows + r] = gx;
              gh_l[bb * k.rows + r] = sh;
            }
          }
        }
      }
    }
    __syncthreads();
    // (2) cell updates of the block's units, every layer in flight; h to every block
    for (int l = l_lo; l <= l_hi; ++l) {
      const int t = tick - l, par = t & 1;
      const float* hprev = hb(par, l);
      float* hnew_buf = hb(par ^ 1, l);
      const float* gx_l = gxs + l * k.bt * k.rows;
      const float* gh_l = ghs + l * k.bt * k.rows;
      for (int i = tid; i < nb * k.units; i += NT) {
        const int bb = i / k.units, jl = i - bb * k.units;
        if (jl >= nu) continue;
        const int j = j0 + jl;
        float gx[4] = {0.f, 0.f, 0.f, 0.f}, gh[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int g = 0; g < 4; ++g) {
          if (g < G) {
            gx[g] = gx_l[bb * k.rows + g * k.units + jl];
            gh[g] = gh_l[bb * k.rows + g * k.units + jl];
          }
        }
        float& c = cst[(l * k.bt + bb) * k.units + jl];
        const float bhn = a.bhn[l] ? a.bhn[l][j] : 0.f;
        const float h = cell_update(a.cell, gx, gh, bhn, hprev[bb * k.hp + j], c);
        store_all_blocks(hnew_buf + bb * k.hp + j, h, C);
        if (l == L - 1 && a.head == 0) a.y[row_of(a.batch_first, t, b0 + bb, T, B) * H + j] = h;
      }
    }
    cluster_barrier(C);
    // (3) the head rows this block owns, on the top layer's h of step t = tick - (L - 1)
    const int t = tick - (L - 1);
    const bool head_now = t >= 0 && (a.head == 1 || (a.head >= 2 && t == T - 1));
    if (head_now) {
      const float* f = hb((t & 1) ^ 1, L - 1);
      const int per = (a.O + C - 1) / C, o0 = rank * per, o1 = min(a.O, o0 + per);
      for (int o = o0 + warp; o < o1; o += NW) {
        float acc[kMaxBatchTile];
#pragma unroll
        for (int bb = 0; bb < kMaxBatchTile; ++bb) acc[bb] = 0.f;
        row_dot(a.head_w + (long long)o * H, H, f, k.hp, nb, lane, acc);
#pragma unroll
        for (int bb = 0; bb < kMaxBatchTile; ++bb) {
          if (bb < nb) {
            const float sum = warp_sum(acc[bb]);
            if (lane == 0) {
              const long long row =
                  a.head == 1 ? row_of(a.batch_first, t, b0 + bb, T, B) : (long long)(b0 + bb);
              a.y[row * a.O + o] = sum + a.head_b[o];
            }
          }
        }
      }
    }
  }
  // final state of the block's units (own shared memory only: no remote access after the
  // last cluster barrier, so blocks may exit in any order)
  for (int i = tid; i < L * nb * k.units; i += NT) {
    const int l = i / (nb * k.units), r = i - l * nb * k.units, bb = r / k.units,
              jl = r - bb * k.units;
    if (jl >= nu) continue;
    const long long o = ((long long)l * B + b0 + bb) * H + j0 + jl;
    if (a.hn) a.hn[o] = hb(T & 1, l)[bb * k.hp + j0 + jl];
    if (a.cn) a.cn[o] = cst[(l * k.bt + bb) * k.units + jl];
  }
}

cudaLaunchConfig_t fused_config(const FusedPlan& p, cudaStream_t s, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(p.cluster), 1, unsigned(p.batch_tiles));
  cfg.blockDim = dim3(kFusedThreads, 1, 1);
  cfg.dynamicSmemBytes = p.smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 0;
  if (p.cluster > 1) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(p.cluster);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.numAttrs = 1;
  }
  return cfg;
}

}  // namespace

void prepare_fused_kernel(const DeviceInfo& dev) {
  check(cudaFuncSetAttribute(fused_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(dev.smem_optin)),
        "setting the fused kernel's shared memory limit");
  if (dev.clusters)
    check(cudaFuncSetAttribute(fused_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
          "allowing clusters of up to 16 blocks");
}

bool fused_fits(const FusedPlan& p, const DeviceInfo& dev) {
  if (!p.ok || (p.cluster > 1 && !dev.clusters)) return false;
  int n = 0;
  cudaError_t e;
  if (p.cluster == 1) {
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fused_kernel, kFusedThreads, p.smem);
  } else {
    cudaLaunchAttribute attr[1];
    cudaLaunchConfig_t cfg = fused_config(p, nullptr, attr);
    e = cudaOccupancyMaxActiveClusters(&n, fused_kernel, &cfg);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

void run_fused(const FusedArgs& a, const FusedPlan& p, cudaStream_t s) {
  KArgs k{a, p.units, p.rows, p.batch_tile, p.hp, p.dp};
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t cfg = fused_config(p, s, attr);
  check(cudaLaunchKernelEx(&cfg, fused_kernel, k), "launching the fused kernel");
}

}  // namespace cuda
}  // namespace seqfuse
