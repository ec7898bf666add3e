// Tile plan of the CUDA recurrent loop: how one layer's hidden units, gates, batch and
// reduction dimension are split over a thread-block cluster. Plain host C++ (no CUDA
// headers), so the same code drives the kernels (cuda/recurrent.cu) and is checked on any
// machine by tests/test_cuda_tiling.py (through seqfuse._C.cuda_plan): every (unit, gate,
// k) is covered exactly once, resources fit, and the fallback is chosen when nothing fits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// Layout helpers are shared with device code: the kernels carve their shared memory with the
// same functions the planner sizes it with (and the CPU test checks).
#include "../core/host_device.hpp"

namespace seqfuse {
namespace cuda {

// Register-resident variants of the persistent kernel: each thread keeps `kr` recurrent
// weights of one gate row in registers for the whole sequence; at most `max_threads` per
// block. The register file is 64K 32-bit registers per SM: 512 threads x 128 registers holds
// 64 fp32 weights per thread with no spill (checked with -Xptxas -v); a 768 x 32 variant
// spilled at its 80-register cap and held fewer weights per block, so it was dropped. The
// bf16 variant packs two bf16 weights per register: 128 weights per thread, twice the
// capacity per cluster (fp32 accumulation; a separate precision mode).
struct KernelVariant {
  int kr;           // weights per thread (compile-time register array length)
  int max_threads;  // block size cap (the kernel's __launch_bounds__)
  bool bf16;        // weights held as bf16 pairs
};
constexpr int kNumVariants = 2;
constexpr KernelVariant kVariants[kNumVariants] = {{64, 512, false}, {128, 512, true}};
constexpr int kMaxBatchTile = 8;  // per-thread accumulators (compile-time array)

struct PlanInput {
  int H = 1;                      // hidden size
  int G = 1;                      // gates: rnn 1, gru 3, lstm 4
  int B = 1;                      // batch
  int dirs = 1;                   // directions (each gets its own cluster)
  int max_cluster = 1;            // 1 without thread-block clusters (sm_80/sm_89), 8 portable, 16
  size_t smem_limit = 48 * 1024;  // dynamic shared memory a block may use (opt-in limit)
  bool bf16 = false;              // recurrent weights held as bf16 (the bf16 precision mode)
};

// Block `rank` of a cluster owns hidden units [rank*units, min(H, (rank+1)*units)) and the
// G gate rows of each (rows g*units + jl locally, g*H + j globally). Thread t < rows*ks
// computes the partial dot product of local row t % rows over k in [ (t/rows)*kc,
// (t/rows+1)*kc ) ∩ [0, H); thread t < batch_tile*units then finishes unit t % units of
// batch row t / units (sums the ks partials of its G rows, applies the cell, sends h to
// every block of the cluster through distributed shared memory).
struct Plan {
  bool persistent = false;  // false: the per-step fallback (weights read from global/L2)
  int variant = -1;         // index into kVariants
  int kr = 0;               // weights per thread
  int ks = 1;               // k-splits per row
  int kc = 0;               // k per split, a multiple of 4, <= kr
  int hpad = 0;             // ks*kc >= H: row stride of h in shared memory (zero padded)
  int cluster = 1;          // blocks per cluster (one cluster per direction and batch tile)
  int units = 0;            // hidden units per block
  int rows = 0;             // G*units
  int threads = 0;          // block size, a multiple of 32
  int batch_tile = 1;       // batch rows per cluster
  int batch_tiles = 1;      // ceil(B / batch_tile)
  size_t smem = 0;          // dynamic shared memory bytes per block
  std::string reason;       // why the fallback was chosen (empty when persistent)
};

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Shared memory of a persistent block, offsets in 4-byte words: h double buffer
// [2][bt][hpad] at 0, partial sums [ks][bt][rows] at `part`, lengths [bt] (ints) at `lens`.
// The cell state lives in the registers of the phase-2 threads.
struct PersistentLayout {
  size_t part, lens, words;
};
SEQFUSE_HD inline PersistentLayout persistent_layout(int hpad, int ks, int rows, int bt) {
  PersistentLayout o;
  o.part = size_t(2) * bt * hpad;
  o.lens = o.part + size_t(ks) * bt * rows;
  o.words = o.lens + size_t(bt);
  return o;
}
inline size_t plan_smem(int hpad, int ks, int rows, int bt) {
  return 4 * persistent_layout(hpad, ks, rows, bt).words;
}

// Picks the smallest cluster (fewest blocks to synchronize each step) that holds the layer's
// recurrent weights in registers (the first variant on ties).
inline Plan make_plan(const PlanInput& in) {
  Plan best;
  if (in.H < 1 || in.G < 1 || in.B < 1 || in.dirs < 1) {
    best.reason = "empty problem";
    return best;
  }
  const int max_c = std::max(1, std::min(in.max_cluster, 16));
  for (int v = 0; v < kNumVariants; ++v) {
    const KernelVariant kv = kVariants[v];
    if (kv.bf16 != in.bf16) continue;
    const int ks = ceil_div(in.H, kv.kr);
    const int kc = ceil_div(ceil_div(in.H, ks), 4) * 4;
    const int hpad = ks * kc;
    for (int c = 1; c <= max_c; ++c) {
      const int units = ceil_div(in.H, c);
      if (ceil_div(in.H, units) != c) continue;  // some block would own no unit
      const int rows = in.G * units;
      if (rows * ks > kv.max_threads) continue;
      int bt = std::min(in.B, kMaxBatchTile);
      auto threads_for = [&](int b) { return ceil_div(std::max(rows * ks, b * units), 32) * 32; };
      while (bt > 1 &&
             (threads_for(bt) > kv.max_threads || plan_smem(hpad, ks, rows, bt) > in.smem_limit))
        --bt;
      const int threads = threads_for(bt);
      const size_t smem = plan_smem(hpad, ks, rows, bt);
      if (threads > kv.max_threads || smem > in.smem_limit) continue;
      if (best.persistent && c >= best.cluster) break;
      best.persistent = true;
      best.variant = v;
      best.kr = kv.kr;
      best.ks = ks;
      best.kc = kc;
      best.hpad = hpad;
      best.cluster = c;
      best.units = units;
      best.rows = rows;
      best.threads = threads;
      best.batch_tile = bt;
      best.batch_tiles = ceil_div(in.B, bt);
      best.smem = smem;
      break;
    }
  }
  if (!best.persistent)
    best.reason = "recurrent weights (" + std::to_string(in.G) + "x" + std::to_string(in.H) + "x" +
                  std::to_string(in.H) + ") do not fit the registers of a cluster of " +
                  std::to_string(max_c) + " block(s)";
  return best;
}

// ---- the fused small-T kernel (cuda/fused.cu) ----------------------------------------------
// All layers of a unidirectional model and its head, for a few steps, in ONE launch: the
// streaming path. Layers run as a wavefront (one cluster barrier per tick of T + L - 1). Weights
// are read from global memory (L2-resident between calls); one cluster per batch tile; block `rank`
// owns hidden units [rank*units, min(H, (rank+1)*units)) of every layer; h of every layer is
// exchanged through distributed shared memory.
constexpr int kFusedMaxLayers = 8;    // per-layer pointers travel in the kernel parameters
constexpr int kFusedThreads = 512;    // 16 warps: warp-per-gate-row products
constexpr int kFusedMaxInput = 4096;  // float input features staged in shared memory
constexpr int kFusedMinUnits = 8;     // below this, a bigger cluster only adds barriers

struct FusedPlan {
  bool ok = false;
  int cluster = 1, units = 0, rows = 0, batch_tile = 1, batch_tiles = 1, hp = 0, dp = 0;
  size_t smem = 0;
  std::string reason;
};

// Shared memory of a fused block, offsets in 4-byte words: h [2][L][bt][hp] at 0, staged
// input [bt][dp] at `xin`, gate pre-activations of every layer in flight, input part
// [L][bt][rows] at `gxs` and recurrent part at `ghs`, cell state [L][bt][units] at `cst`.
struct FusedLayout {
  size_t xin, gxs, ghs, cst, words;
};
SEQFUSE_HD inline FusedLayout fused_layout(int L, int bt, int hp, int dp, int rows, int units) {
  FusedLayout o;
  o.xin = size_t(2) * L * bt * hp;
  o.gxs = o.xin + size_t(bt) * dp;
  o.ghs = o.gxs + size_t(L) * bt * rows;
  o.cst = o.ghs + size_t(L) * bt * rows;
  o.words = o.cst + size_t(L) * bt * units;
  return o;
}
inline size_t fused_smem(int L, int bt, int hp, int dp, int rows, int units) {
  return 4 * fused_layout(L, bt, hp, dp, rows, units).words;
}

// D: float input features of layer 0 (0 when an Embedding table feeds it).
inline FusedPlan make_fused_plan(int H, int G, int L, int D, int B, int max_cluster,
                                 size_t smem_limit) {
  FusedPlan p;
  if (H < 1 || G < 1 || L < 1 || B < 1 || D < 0) {
    p.reason = "empty problem";
    return p;
  }
  if (L > kFusedMaxLayers) {
    p.reason = "more than " + std::to_string(kFusedMaxLayers) + " layers";
    return p;
  }
  if (D > kFusedMaxInput) {
    p.reason = "more than " + std::to_string(kFusedMaxInput) + " input features";
    return p;
  }
  const int max_c = std::max(1, std::min(max_cluster, 16));
  p.units = std::min(H, std::max(kFusedMinUnits, ceil_div(H, max_c)));
  p.cluster = ceil_div(H, p.units);
  p.units = ceil_div(H, p.cluster);  // balance: every block owns at least one unit
  p.rows = G * p.units;
  p.hp = ceil_div(H, 4) * 4;
  p.dp = ceil_div(D, 4) * 4;
  int bt = std::min(B, kMaxBatchTile);
  while (bt > 1 && fused_smem(L, bt, p.hp, p.dp, p.rows, p.units) > smem_limit) --bt;
  p.batch_tile = bt;
  p.batch_tiles = ceil_div(B, bt);
  p.smem = fused_smem(L, bt, p.hp, p.dp, p.rows, p.units);
  if (p.smem > smem_limit) {
    p.reason = "the fused kernel's state does not fit in shared memory";
    return p;
  }
  p.ok = true;
  return p;
}

// ---- bf16 weights (Precision::bf16) -------------------------------------------------------
// fp32 -> bf16 -> fp32, round to nearest even (torch's .bfloat16()); NaN stays NaN.
inline float round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    if (u & 0x007fffffu) u |= 0x00400000u;  // quiet NaN: still NaN after truncation
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
  }
  u &= 0xffff0000u;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The persistent kernel's bf16 weights: row r of w [rows, H] (already rounded) becomes
// ceil(H/2) words, word q holding weight 2q in its low half and 2q + 1 in its high half
// (zero when 2q + 1 == H).
inline std::vector<uint32_t> pack_bf16_pairs(const float* w, size_t rows, int H) {
  const size_t ld = (size_t(H) + 1) / 2;
  std::vector<uint32_t> out(rows * ld, 0u);
  for (size_t r = 0; r < rows; ++r)
    for (int k = 0; k < H; ++k) {
      uint32_t u;
      std::memcpy(&u, &w[r * size_t(H) + size_t(k)], sizeof u);
      out[r * ld + size_t(k / 2)] |= (k % 2 == 0) ? (u >> 16) : (u & 0xffff0000u);
    }
  return out;
}

}  // namespace cuda
}  // namespace seqfuse
