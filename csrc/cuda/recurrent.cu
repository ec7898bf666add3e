// The CUDA recurrence of one layer (both directions): the persistent kernel (the whole
// sequence in one launch, recurrent weights in registers, h exchanged through distributed
// shared memory of a thread-block cluster on sm_90) and the per-step fallback (weights read
// from global memory / L2, one launch per step). Exact PyTorch cell formulas with accurate
// expf/tanhf (no fast-math intrinsics). Tile plan: cuda/plan.hpp. Checked against the CPU
// loop and eager PyTorch by tests/test_native_cuda.py, which runs both paths on a GPU.
#include <cmath>

#include "cuda/cell.cuh"
#include "cuda/kernels.cuh"

namespace seqfuse {
namespace cuda {
namespace {

// The G input-projection values of unit j of sequence b at its step s (direction d).
__device__ __forceinline__ void load_gx(const LayerArgs& a, int d, int b, int j, int s, int len,
                                        float* out) {
  const int t = d == 0 ? s : len - 1 - s;
  const long long r = row_of(a.batch_first, t, b, a.T, a.B);
  const float* src;
  if (a.tokens) {
    const long long tok = a.tokens[r];
    if (tok < 0 || tok >= a.vocab) {  // never read out of bounds; poison the output instead
#pragma unroll
      for (int g = 0; g < 4; ++g) out[g] = NAN;
      return;
    }
    src = a.gx + tok * a.ldg;
  } else {
    src = a.gx + r * a.ldg;
  }
  src += (long long)d * a.G * a.H + j;
#pragma unroll
  for (int g = 0; g < 4; ++g)
    if (g < a.G) out[g] = src[(long long)g * a.H];
}

// ---- the persistent kernel -------------------------------------------------------------
// The two halves of a packed bf16 pair as floats (exact). Volatile asm: the compiler must
// not hoist the unpacked weights out of the per-sequence loop (all 128 would then live in
// registers at once and spill).
__device__ __forceinline__ float bf16_lo(uint32_t p) {
  float f;
  asm volatile("shl.b32 %0, %1, 16;" : "=f"(f) : "r"(p));
  return f;
}
__device__ __forceinline__ float bf16_hi(uint32_t p) {
  float f;
  asm volatile("and.b32 %0, %1, 0xffff0000;" : "=f"(f) : "r"(p));
  return f;
}
struct PArgs {
  LayerArgs a;
  int units, ks, kc, rows, bt, hpad;
};

// grid (cluster, dirs, batch tiles), cluster (cluster, 1, 1), block = plan.threads.
// Shared memory: h [2][bt][hpad] (double buffer, zero padded), partial sums
// [ks][bt][rows], lengths [bt]. Each step: (1) every thread multiplies its register-resident
// weight slice with h (partial dot products), (2) one thread per (sequence, unit) sums the
// partials, applies the cell and writes the new h into every cluster block's next buffer,
// (3) one cluster barrier. No grid-wide synchronization anywhere.
template <int KR, int NT, bool BF16>
__global__ void __launch_bounds__(NT, 1) persistent_kernel(const PArgs p) {
  extern __shared__ float4 smem4[];
  float* sm = reinterpret_cast<float*>(smem4);
  const LayerArgs& a = p.a;
  const int H = a.H, G = a.G, B = a.B;
  const int C = gridDim.x, rank = blockIdx.x, d = blockIdx.y;
  const int b0 = blockIdx.z * p.bt;
  const int nb = min(p.bt, B - b0);
  const int j0 = rank * p.units;
  const int nu = min(p.units, H - j0);
  const PersistentLayout lay = persistent_layout(p.hpad, p.ks, p.rows, p.bt);
  float* hbuf = sm;
  float* part = sm + lay.part;
  int* lens = reinterpret_cast<int*>(sm + lay.lens);
  // NT caps the block size (__launch_bounds__); the plan may launch fewer threads, so the
  // strided loops step by the block's real size (stepping by NT left words unwritten).
  const int tid = threadIdx.x, nt = blockDim.x;

  for (int i = tid; i < 2 * p.bt * p.hpad; i += nt) hbuf[i] = 0.f;
  for (int i = tid; i < p.bt; i += nt) lens[i] = i < nb ? clamp_len(a.lengths, b0 + i, a.T) : 0;
  __syncthreads();
  for (int i = tid; i < nb * H; i += nt) {
    const int bb = i / H, k = i - bb * H;
    hbuf[bb * p.hpad + k] = a.h0 ? a.h0[((long long)d * B + b0 + bb) * H + k] : 0.f;
  }

  // Phase-1 role: row prow (gate g of local unit jl), k-split pks; weights to registers.
  const bool in1 = tid < p.rows * p.ks;
  const int prow = tid % p.rows, pks = tid / p.rows;
  // fp32: w[i] is weight k0 + i. bf16: register i holds the pair (k0 + 2i, k0 + 2i + 1),
  // packed on the host (LayerArgs::whh_bf16; k0 is even since kc is a multiple of 4).
  constexpr int NR = BF16 ? KR / 2 : KR;
  uint32_t w[NR];
  {
    const int g = prow / p.units, jl = prow - g * p.units;
    const bool ok = in1 && jl < nu;
    const long long row = (long long)d * G * H + (long long)g * H + j0 + jl;
    const int k0 = pks * p.kc;
#pragma unroll
    for (int i = 0; i < NR; ++i) {
      const int k = k0 + (BF16 ? 2 * i : i), ik = BF16 ? 2 * i : i;
      if (BF16)
        w[i] = (ok && ik < p.kc && k < H) ? __ldg(a.whh_bf16 + row * a.ldw2 + k / 2) : 0u;
      else
        w[i] = (ok && ik < p.kc && k < H) ? __float_as_uint(__ldg(a.whh + row * H + k)) : 0u;
    }
  }
  // Phase-2 role: sequence qb of the tile, local unit qj; owns c in a register.
  const int qb = tid / p.units, qj = tid - (tid / p.units) * p.units;
  const bool in2 = qb < nb && qj < nu;
  const int j = j0 + qj, b = b0 + qb;
  float c = 0.f, bhn = 0.f;
  if (in2) {
    if (a.c0) c = a.c0[((long long)d * B + b) * H + j];
    if (a.bhn) bhn = a.bhn[d * H + j];
  }
  __syncthreads();
  int len = 0, steps = 0;
  for (int i = 0; i < nb; ++i) steps = max(steps, lens[i]);
  if (in2) len = lens[qb];
  float gcur[4] = {0.f, 0.f, 0.f, 0.f}, gnext[4] = {0.f, 0.f, 0.f, 0.f};
  if (in2 && len > 0) load_gx(a, d, b, j, 0, len, gcur);
  // Every block's h buffers are initialised before anyone writes into them remotely.
  cluster_barrier(C);

  for (int s = 0; s < steps; ++s) {
    const float* hc = hbuf + (s & 1) * p.bt * p.hpad;
    float* hnext = hbuf + ((s + 1) & 1) * p.bt * p.hpad;
    if (in2 && s + 1 < len) load_gx(a, d, b, j, s + 1, len, gnext);  // in flight during phase 1
    if (in1) {
      for (int bb = 0; bb < nb; ++bb) {
        const float4* hp = reinterpret_cast<const float4*>(hc + bb * p.hpad + pks * p.kc);
        float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll
        for (int i = 0; i < KR; i += 4) {
          if (i < p.kc) {
            const float4 hv = hp[i / 4];
            float w0, w1, w2, w3;
            if constexpr (BF16) {
              w0 = bf16_lo(w[i / 2]);
              w1 = bf16_hi(w[i / 2]);
              w2 = bf16_lo(w[i / 2 + 1]);
              w3 = bf16_hi(w[i / 2 + 1]);
            } else {
              w0 = __uint_as_float(w[i]);
              w1 = __uint_as_float(w[i + 1]);
              w2 = __uint_as_float(w[i + 2]);
              w3 = __uint_as_float(w[i + 3]);
            }
            a0 = fmaf(w0, hv.x, a0);
            a1 = fmaf(w1, hv.y, a1);
            a2 = fmaf(w2, hv.z, a2);
            a3 = fmaf(w3, hv.w, a3);
          }
        }
        part[(pks * p.bt + bb) * p.rows + prow] = (a0 + a1) + (a2 + a3);
      }
    }
    __syncthreads();
    if (in2) {
      const float hprev = hc[qb * p.hpad + j];
      float hnew = hprev;  // past its length a sequence keeps its state
      if (s < len) {
        float gh[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int g = 0; g < 4; ++g) {
          if (g < G) {
            float sum = 0.f;
            for (int q = 0; q < p.ks; ++q) sum += part[(q * p.bt + qb) * p.rows + g * p.units + qj];
            gh[g] = sum;
          }
        }
        hnew = cell_update(a.cell, gcur, gh, bhn, hprev, c);
        const int t = d == 0 ? s : len - 1 - s;
        a.y[row_of(a.batch_first, t, b, a.T, B) * a.ldy + (long long)d * H + j] = hnew;
      }
      store_all_blocks(hnext + qb * p.hpad + j, hnew, C);
    }
    cluster_barrier(C);
#pragma unroll
    for (int g = 0; g < 4; ++g) gcur[g] = gnext[g];
  }
  if (in2) {
    const long long o = ((long long)d * B + b) * H + j;
    if (a.hn) a.hn[o] = hbuf[(steps & 1) * p.bt * p.hpad + qb * p.hpad + j];
    if (a.cn) a.cn[o] = c;
  }
}

// ---- the per-step fallback ---------------------------------------------------------------
constexpr int kStepWarps = 4;  // units per block (a warp each)
constexpr int kStepBatch = 4;  // sequences per block

__global__ void init_state_kernel(int n, const float* h0, const float* c0, float* h, float* c) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  h[i] = h0 ? h0[i] : 0.f;
  c[i] = c0 ? c0[i] : 0.f;
}

__global__ void final_state_kernel(int n, const float* h, const float* c, float* hn, float* cn) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (hn) hn[i] = h[i];
  if (cn) cn[i] = c[i];
}

// grid (ceil(H / kStepWarps), dirs, ceil(B / kStepBatch)); a warp computes the G gate rows
// of one unit for kStepBatch sequences (lanes split k, coalesced weight reads), then lane bb
// finishes sequence bb. h: [dirs, B, H] ping-pong buffers; c: [dirs, B, H] in place.
__global__ void __launch_bounds__(kStepWarps * 32)
    step_kernel(const LayerArgs a, int s, const float* hcur, float* hnext, float* cbuf) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int j = blockIdx.x * kStepWarps + warp, d = blockIdx.y, b0 = blockIdx.z * kStepBatch;
  const int H = a.H, G = a.G, B = a.B;
  if (j >= H) return;
  const int nb = min(kStepBatch, B - b0);
  float acc[4][kStepBatch];
#pragma unroll
  for (int g = 0; g < 4; ++g)
#pragma unroll
    for (int q = 0; q < kStepBatch; ++q) acc[g][q] = 0.f;
  const float* wbase = a.whh + ((long long)d * G * H + j) * H;
  for (int k = lane; k < H; k += 32) {
    float hv[kStepBatch];
#pragma unroll
    for (int q = 0; q < kStepBatch; ++q)
      hv[q] = q < nb ? hcur[((long long)d * B + b0 + q) * H + k] : 0.f;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      if (g < G) {
        const float wv = __ldg(wbase + (long long)g * H * H + k);
#pragma unroll
        for (int q = 0; q < kStepBatch; ++q) acc[g][q] = fmaf(wv, hv[q], acc[g][q]);
      }
    }
  }
#pragma unroll
  for (int g = 0; g < 4; ++g)
#pragma unroll
    for (int q = 0; q < kStepBatch; ++q)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1)
        acc[g][q] += __shfl_xor_sync(0xffffffffu, acc[g][q], off);
  if (lane >= nb) return;
  float gh[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int q = 0; q < kStepBatch; ++q)
    if (q == lane)
#pragma unroll
      for (int g = 0; g < 4; ++g) gh[g] = acc[g][q];
  const int b = b0 + lane;
  const long long o = ((long long)d * B + b) * H + j;
  const int len = clamp_len(a.lengths, b, a.T);
  const float hprev = hcur[o];
  float hnew = hprev;
  if (s < len) {
    float gx[4] = {0.f, 0.f, 0.f, 0.f};
    load_gx(a, d, b, j, s, len, gx);
    const float bhn = a.bhn ? a.bhn[d * H + j] : 0.f;
    float c = cbuf[o];
    hnew = cell_update(a.cell, gx, gh, bhn, hprev, c);
    cbuf[o] = c;
    const int t = d == 0 ? s : len - 1 - s;
    a.y[row_of(a.batch_first, t, b, a.T, B) * a.ldy + (long long)d * H + j] = hnew;
  }
  hnext[o] = hnew;
}

}  // namespace

// ---- host side ---------------------------------------------------------------------------
PlanInput plan_input(const LayerArgs& a, const DeviceInfo& dev, int max_cluster) {
  PlanInput in;
  in.H = a.H;
  in.G = a.G;
  in.B = a.B;
  in.dirs = a.dirs;
  in.max_cluster = dev.clusters ? max_cluster : 1;
  in.smem_limit = dev.smem_optin;
  return in;
}

using KernelFn = void (*)(PArgs);

template <int V>
constexpr KernelFn variant_kernel() {
  return persistent_kernel<kVariants[V].kr, kVariants[V].max_threads, kVariants[V].bf16>;
}

static KernelFn kernel_of(int variant) {
  static_assert(kNumVariants == 2, "instantiate every variant here");
  return variant == 1 ? variant_kernel<1>() : variant_kernel<0>();
}

void prepare_recurrent_kernels(const DeviceInfo& dev) {
  // Load every kernel now (lazy module loading would otherwise do it at the first launch,
  // which may fall inside a CUDA-graph capture).
  cudaFuncAttributes fa;
  check(cudaFuncGetAttributes(&fa, step_kernel), "loading the per-step kernel");
  check(cudaFuncGetAttributes(&fa, init_state_kernel), "loading the state kernels");
  check(cudaFuncGetAttributes(&fa, final_state_kernel), "loading the state kernels");
  for (int v = 0; v < kNumVariants; ++v) {
    check(cudaFuncSetAttribute(kernel_of(v), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               int(dev.smem_optin)),
          "setting the persistent kernel's shared memory limit");
    if (dev.clusters)
      check(cudaFuncSetAttribute(kernel_of(v), cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
            "allowing clusters of up to 16 blocks");
  }
}

static cudaLaunchConfig_t launch_config(const Plan& p, int dirs, cudaStream_t s,
                                        cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(p.cluster), unsigned(dirs), unsigned(p.batch_tiles));
  cfg.blockDim = dim3(unsigned(p.threads), 1, 1);
  cfg.dynamicSmemBytes = p.smem;
  cfg.stream = s;
  cfg.numAttrs = 0;
  cfg.attrs = attr;
  if (p.cluster > 1) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(p.cluster);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.numAttrs = 1;
  }
  return cfg;
}

bool persistent_fits(const Plan& p, const DeviceInfo& dev) {
  if (!p.persistent || (p.cluster > 1 && !dev.clusters)) return false;
  const KernelFn kernel = kernel_of(p.variant);
  int n = 0;
  cudaError_t e;
  if (p.cluster == 1) {
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, p.threads, p.smem);
  } else {
    cudaLaunchAttribute attr[1];
    cudaLaunchConfig_t cfg = launch_config(p, 1, nullptr, attr);
    e = cudaOccupancyMaxActiveClusters(&n, kernel, &cfg);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not a sticky error: "does not fit" is an answer here
    return false;
  }
  return n > 0;
}

void run_persistent(const LayerArgs& a, const Plan& p, cudaStream_t s) {
  PArgs pa{a, p.units, p.ks, p.kc, p.rows, p.batch_tile, p.hpad};
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t cfg = launch_config(p, a.dirs, s, attr);
  check(cudaLaunchKernelEx(&cfg, kernel_of(p.variant), pa),
        "launching the persistent recurrent kernel");
}

void run_stepwise(const LayerArgs& a, float* scratch, cudaStream_t s) {
  const int n = a.dirs * a.B * a.H;
  float* h[2] = {scratch, scratch + n};
  float* c = scratch + 2 * n;
  const int tb = 256;
  init_state_kernel<<<(n + tb - 1) / tb, tb, 0, s>>>(n, a.h0, a.c0, h[0], c);
  check(cudaGetLastError(), "launching the state initialisation");
  const dim3 grid(unsigned((a.H + kStepWarps - 1) / kStepWarps), unsigned(a.dirs),
                  unsigned((a.B + kStepBatch - 1) / kStepBatch));
  for (int t = 0; t < a.T; ++t) {
    step_kernel<<<grid, kStepWarps * 32, 0, s>>>(a, t, h[t & 1], h[(t + 1) & 1], c);
    check(cudaGetLastError(), "launching the per-step recurrent kernel");
  }
  final_state_kernel<<<(n + tb - 1) / tb, tb, 0, s>>>(n, h[a.T & 1], c, a.hn, a.cn);
  check(cudaGetLastError(), "launching the final-state copy");
}

}  // namespace cuda
}  // namespace seqfuse
