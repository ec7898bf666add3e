// The fused CPU sequence loop, written once over a SIMD traits struct S (cpu/simd_<name>.hpp,
// included first) and compiled once per kernel set by cpu/engine_<name>.cpp, each inside its
// own namespace SEQFUSE_NS (cpu/kernel_set.hpp has the registry). Checked against the scalar
// reference at every configuration by tests/test_native.py (every kernel set is forced in turn).
//
// How it is fast:
// - Weights are packed once at load. Gate rows are interleaved per W-lane group of hidden
//   units (vector v = group*G + gate) so one register tile holds every gate of the same
//   units, and grouped into panels of U groups stored [k][PV*W] (PV = U*G vectors): the
//   kernels stream each panel contiguously.
// - Input projections of all time steps: one register-blocked GEMM per layer and direction
//   (bias folded in; past a 64 MiB scratch budget, a chunk of time steps at a time). With an
//   Embedding, layer 0's projection is a [vocab, G*H] table. Batches of fused_input_rows() or
//   more skip that GEMM on LSTM, RNN and GRU (not ONNX's linear_before_reset=0) layers whose input
//   is 16 to 4H wide (fuses_x; W_ih is packed a second time for them): each step's tiles compute
//   W_ih x as the first K blocks of their own product (bias, then W_ih x, then W_hh h; GRU's W_in x
//   in a fourth accumulator per group, gru_x), which saves the projection's round trip through
//   memory and the tiles' wait for it. A stream's one-step call computes the projection of each
//   layer above the first in blocks, during the step below (project_next).
// - The recurrent product is fused with its epilogue: accumulators start from the input
//   projection (or the biases, when the step computes that projection first), then activations and
//   the c/h update run on the registers and store h'. Batch 1 uses PV independent accumulators per
//   k; batches use row x vector tiles over a second packing of W_hh, one panel per tile column (its
//   K x bng*G slice contiguous).
// - Hidden states ping-pong between two buffers by step parity: no copies, no allocation.
// - Directions run on separate threads (a truncated top layer's two run in turn on all of
//   them: split_top); a team of threads splits a direction's tile columns, or its row tiles
//   when the step's weights fit in each core's L2 (by_rows). Odd steps take the panels, or
//   the tile columns, last first: a step past L2 starts with what the one before read last.
//   At batch 1 they also take each panel's k-rows last first, so a step starts on the rows
//   still in L1 (0.95x of the time of names' GRU and GRU H=112-256 with L2-resident weights).
// - ONNX's semantics (reverse, clip, LSTM peepholes and input_forget) are run-time switches
//   of the same epilogue; a product that reads every unit's first result (GRU
//   linear_before_reset=0: W_hn (r*h); LSTM proj_size: W_hr (o*tanh(c))) is a second pass of
//   the same kernels after a team barrier (Kern).
//
// Also checked against the reference on a random grid of every option by
// tests/cpp/test_kernel_sets.cpp (the only check of the neon set, under qemu in CI).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#include "core/cell.hpp"
#include "cpu/kernel_set.hpp"
#include "cpu/simd_math.hpp"

namespace seqfuse {
namespace SEQFUSE_NS {

constexpr int W = S::W;
inline int round_up(int x, int m) { return (x + m - 1) / m * m; }
inline size_t al16(size_t n) { return (n + 15) / 16 * 16; }  // 64-byte multiples of floats
// The least weight bytes a recurrent step streams (its passes' W_hh, per 4 batch rows) for a
// team of threads to split it: below this, a barrier per step costs more than half a step
// saves. 384 KiB kept mnist's LSTM (H=128, 256 KiB a step) on one thread; teamed, LSTM H=128
// took 0.62x of the time at batch 1 and 2 and 0.69x at 4, RNN H=256 at batch 2 0.64x, and
// names' GRU (H=100) at batch 8 (262 KiB) 0.65x, at 2 threads on Zen 5. At 200 KiB (LSTM
// H=112, batch 1) a team took 0.67x or 1.15x, by which of its two speeds this host's second
// core ran at: not worth it. A batch-1 step must also have two panels or more: with one
// (RNN H=256 on avx512, 256 KiB) the second thread only meets the barriers (1.01-1.02x).
constexpr double TEAM_STEP_BYTES = 256.0 * 1024;
// The least multiply-adds of a model without recurrent layers (its head's GEMM alone) for
// two threads to share it; a larger team takes half as many per thread. On Zen 5 a
// two-thread call of 2^15 to 2^18 took 1.07-1.5x the time of one thread (waking the worker
// costs 0.3-2 us), 2^20 0.67x; the seed's linear regression (64 rows x 1 x 1) took 2.6-4.6
// us at two threads against 2.3.
constexpr double TEAM_HEAD_MACS = 1024.0 * 1024;

// What one pass of a recurrent step computes: the step kernels' template parameter. PyTorch's
// cells take one pass per step. A product that needs every unit's first result takes two,
// split by a team barrier:
// - GRU with linear_before_reset=0: gru_rz gives r*h and z for every unit, then gru_n
//   multiplies W_hn by r*h and finishes the update;
// - LSTM with a projection: lstm gives o*tanh(c) for every unit, then proj multiplies W_hr by it.
// gru_x is PyTorch's GRU pass in a batched step that computes its own input projection: W_in x
// and W_hn h need accumulators of their own (n = tanh(x_n + r * (W_hn h + b_hn))).
enum class Kern { lstm, gru, rnn_tanh, rnn_relu, gru_rz, gru_n, proj, gru_x };

// The step kernels are compiled per tile, not per pass kind: the kinds with one packed row per
// unit (rnn_tanh, rnn_relu, gru_n, proj) share Tile::one and choose their start and epilogue
// at run time (a predictable branch per tile). Four fully unrolled copies of the same tiles
// took most of the kernel sets' compile time, in every build and every sanitizer build.
enum class Tile { lstm, gru, gru_rz, one, gru_x };
constexpr Tile tile_of(Kern k) {
  return k == Kern::lstm     ? Tile::lstm
         : k == Kern::gru    ? Tile::gru
         : k == Kern::gru_rz ? Tile::gru_rz
         : k == Kern::gru_x  ? Tile::gru_x
                             : Tile::one;
}

template <Tile T>
struct TileT {
  // Packed rows (vectors) per group of W units: lstm 4 gates, gru 3, gru_rz 2 (r, z), else 1.
  static constexpr int G = T == Tile::lstm                      ? 4
                           : T == Tile::gru || T == Tile::gru_x ? 3
                           : T == Tile::gru_rz                  ? 2
                                                                : 1;
  // Accumulators per group: G, but gru_x keeps r, z, W_hn h and W_in x apart.
  static constexpr int ACC = T == Tile::gru_x ? 4 : G;
  // Most groups a batch-1 recurrent tile keeps in registers (accumulators = NG*ACC); gru_x
  // only ever runs batched tiles, of one group (BNG), a row at a time included.
  static constexpr int MAXACC = S::REGS >= 32 ? 24 : 12;
  static constexpr int MAXNG = T == Tile::gru_x ? 1 : G > 1 ? MAXACC / ACC : MAXACC * 2 / 3;
  static constexpr int BNG = G >= 3 ? 1 : G == 2 ? 2 : 4;  // groups per batched tile
  // Rows per batched tile: GRU's one group of 3 gates fills 18 accumulators at 6 rows, 24 at 8.
  static constexpr int BMR = T == Tile::gru && S::REGS >= 32 ? 8 : S::STEP_MR;
};

// TileT's facts for a pass known only at run time (the backend's constructor).
struct KernDims {
  int g, acc, maxng, bng, bmr;
};
template <Tile T>
constexpr KernDims tile_dims() {
  return {TileT<T>::G, TileT<T>::ACC, TileT<T>::MAXNG, TileT<T>::BNG, TileT<T>::BMR};
}
inline KernDims kern_dims(Kern k) {
  switch (tile_of(k)) {
    case Tile::lstm:
      return tile_dims<Tile::lstm>();
    case Tile::gru:
      return tile_dims<Tile::gru>();
    case Tile::gru_rz:
      return tile_dims<Tile::gru_rz>();
    case Tile::gru_x:
      return tile_dims<Tile::gru_x>();
    default:
      return tile_dims<Tile::one>();
  }
}
// Groups per input-projection panel: PV = U*G vectors, 8 or 12, whole GEMM column blocks on
// every kernel set (GEMM_NV 4 or 2). GRU's 3 groups (9 vectors: blocks of 4, 4 and 1) left a
// one-vector block and, at 2 threads, panels of unequal groups (16 = 9 + 7): 4 groups took
// GRU(256,256) T=100 b64 to 0.95x at 2 threads and 0.92x on the avx2 set.
constexpr int xproj_groups(Cell c) { return c == Cell::lstm ? 2 : c == Cell::gru ? 4 : 8; }

// A weight matrix packed for the kernels.
struct Packed {
  Buf buf;
  int K = 0, G = 1, H = 0, U = 1, PV = 1, ngrp = 0, nvec = 0, npanels = 0;
  size_t pstride = 0;  // floats per panel
  const float* panel(int p) const { return buf.data() + size_t(p) * pstride; }
};

// src: [G*H, K] PyTorch layout (gate-major rows). dst column (group, gate, lane) order.
inline void pack(Packed& P, const float* src, int G, int H, int K, int U) {
  P.K = K;
  P.G = G;
  P.H = H;
  P.U = U;
  P.PV = U * G;
  P.ngrp = round_up(H, W) / W;
  P.nvec = P.ngrp * G;
  P.npanels = (P.ngrp + U - 1) / U;
  P.pstride = size_t(K) * P.PV * W;
  float* d = P.buf.ensure(P.pstride * P.npanels);
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < H; ++j) {
      const int v = (j / W) * G + g, lane = j % W, p = v / P.PV, lv = v % P.PV;
      float* col = d + size_t(p) * P.pstride + size_t(lv) * W + lane;
      const float* s = src + (size_t(g) * H + j) * K;
      for (int k = 0; k < K; ++k) col[size_t(k) * P.PV * W] = s[k];
    }
}
// A [G*H] vector in the same interleaved column order (padded lanes 0). src may be null.
inline void pack_vec(Buf& out, const float* src, const float* src2, int G, int H) {
  float* d = out.ensure(size_t(round_up(H, W)) * G);
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < H; ++j)
      d[size_t((j / W) * G + g) * W + j % W] =
          (src ? src[g * H + j] : 0.f) + (src2 ? src2[g * H + j] : 0.f);
}

// ---- GEMM: C[r, col] = bias[col] + sum_k A[r, k] * P[k, col], for a panel slice ------------
template <int MR, int NV>
inline void gemm_mk(int K, const float* A, size_t lda, const float* wp, size_t wst,
                    const float* bias, float* C, size_t ldc, int ncols) {
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int v = 0; v < NV; ++v) {
    V b = bias ? S::load(bias + v * W) : S::zero();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][v] = b;
  }
  for (int k = 0; k < K; ++k) {
    const float* w = wp + size_t(k) * wst;
    if (MR == 1) {
      V a = S::set1(A[k]);
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) acc[0][v] = S::fma(a, S::load(w + v * W), acc[0][v]);
    } else {
      V wv[NV];
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) {
        wv[v] = S::load(w + v * W);
        S::keep(wv[v]);
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        V a = S::set1(A[size_t(r) * lda + k]);
#pragma GCC unroll 32
        for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(a, wv[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) {
      const int n = ncols - v * W;
      if (n >= W)
        S::store(C + size_t(r) * ldc + v * W, acc[r][v]);
      else if (n > 0)
        S::store_n(C + size_t(r) * ldc + v * W, acc[r][v], n);
    }
}

// nv <= S::GEMM_NV (wider tiles are not instantiated: they would not fit the registers).
template <int MR>
inline void gemm_nv(int nv, int K, const float* A, size_t lda, const float* wp, size_t wst,
                    const float* bias, float* C, size_t ldc, int ncols) {
  switch (nv) {
#define SEQFUSE_NV(n)                                                                       \
  case n:                                                                                   \
    if constexpr (n <= S::GEMM_NV) gemm_mk<MR, n>(K, A, lda, wp, wst, bias, C, ldc, ncols); \
    break;
    SEQFUSE_NV(1)
    SEQFUSE_NV(2)
    SEQFUSE_NV(3)
    SEQFUSE_NV(4)
#undef SEQFUSE_NV
    default:
      break;
  }
}

// One row against nv <= kWideNV vectors of a panel (the cases below): callers cut wider
// panels into parts.
constexpr int kWideNV = 9;
inline void gemm_wide(int nv, int K, const float* A, const float* wp, size_t wst, const float* bias,
                      float* C, int ncols) {
  switch (nv) {
#define SEQFUSE_NV(n)                                   \
  case n:                                               \
    gemm_mk<1, n>(K, A, 0, wp, wst, bias, C, 0, ncols); \
    break;
    SEQFUSE_NV(1)
    SEQFUSE_NV(2)
    SEQFUSE_NV(3)
    SEQFUSE_NV(4)
    SEQFUSE_NV(5)
    SEQFUSE_NV(6)
    SEQFUSE_NV(7)
    SEQFUSE_NV(8)
    SEQFUSE_NV(9)
#undef SEQFUSE_NV
    default:
      break;
  }
}

// The j-th of the panels [p0, p1) in the order a loop takes them: the last first when
// reversed. Loops over weight panels alternate their order so that each starts with what the
// one before read last, still in cache.
inline int in_order(int j, int p0, int p1, bool reversed) {
  return reversed ? p1 - 1 - (j - p0) : j;
}

// One row's product with panel p, over the K block [k0, k1): c = from + a[k0:k1] x P[k0:k1]
// on the panel's columns (from: indexed like c; null: 0). A panel
// wider than kWideNV vectors (W_hh's batch-1 panels) is cut in equal parts.
inline void gemm_row_panel(const float* a, const Packed& P, int p, int k0, int k1,
                           const float* from, float* c, int ncols) {
  const size_t wst = size_t(P.PV) * W;
  const int vbase = p * P.PV, nvp = std::min(P.PV, P.nvec - vbase), cbase = vbase * W;
  const int parts = (nvp + kWideNV - 1) / kWideNV, nvw = (nvp + parts - 1) / parts;
  const float* wp = P.panel(p) + size_t(k0) * wst;
  for (int v0 = 0; v0 < nvp; v0 += nvw) {
    const int c0 = cbase + v0 * W;
    if (c0 >= ncols) break;
    gemm_wide(std::min(nvw, nvp - v0), k1 - k0, a + k0, wp + v0 * W, wst,
              from ? from + c0 : nullptr, c + c0, ncols - c0);
  }
}

// C[M, ncols] (row stride ldc) = A[M, K] (row stride lda) x P + bias, panels [p0, p1), the
// last first when reversed: each column block of the weights takes every row tile in turn.
inline void gemm_rows(size_t M, const float* A, size_t lda, const Packed& P, const float* bias,
                      float* C, size_t ldc, int ncols, int p0, int p1, bool reversed) {
  const size_t wst = size_t(P.PV) * W;
  for (int j = p0; j < p1; ++j) {
    const int p = in_order(j, p0, p1, reversed);
    const int vbase = p * P.PV, nvp = std::min(P.PV, P.nvec - vbase), cbase = vbase * W;
    if (cbase >= ncols) continue;
    const float* wp = P.panel(p);
    const float* bp = bias ? bias + cbase : nullptr;
    if (M <= 2) {
      for (size_t r = 0; r < M; ++r)
        gemm_row_panel(A + size_t(r) * lda, P, p, 0, P.K, bias, C + size_t(r) * ldc, ncols);
      continue;
    }
    for (int v0 = 0; v0 < nvp; v0 += S::GEMM_NV) {
      const int nv = std::min(S::GEMM_NV, nvp - v0), c0 = cbase + v0 * W;
      if (c0 >= ncols) break;
      const float* b0 = bp ? bp + v0 * W : nullptr;
      size_t r = 0;
      if (nv == 1)  // one output vector (a narrow head): more rows keep more FMAs in flight
        for (; r + 8 <= M; r += 8)
          gemm_mk<8, 1>(P.K, A + size_t(r) * lda, lda, wp + v0 * W, wst, b0,
                        C + size_t(r) * ldc + c0, ldc, ncols - c0);
      for (; r + S::GEMM_MR <= M; r += S::GEMM_MR)
        gemm_nv<S::GEMM_MR>(nv, P.K, A + size_t(r) * lda, lda, wp + v0 * W, wst, b0,
                            C + size_t(r) * ldc + c0, ldc, ncols - c0);
      if constexpr (S::GEMM_MR > 3)  // a tall tile's remainder: 3 rows at a time first
        for (; r + 3 <= M; r += 3)
          gemm_nv<3>(nv, P.K, A + size_t(r) * lda, lda, wp + v0 * W, wst, b0,
                     C + size_t(r) * ldc + c0, ldc, ncols - c0);
      for (; r < M; ++r)
        gemm_nv<1>(nv, P.K, A + size_t(r) * lda, lda, wp + v0 * W, wst, b0,
                   C + size_t(r) * ldc + c0, ldc, ncols - c0);
    }
  }
}

// The same for any M (64-bit: B*T rows may pass 2^31), its rows in blocks whose inputs take
// about an eighth of L2 (96-384 rows): every column block then reads them from L2, where a
// whole A larger than L2 came from L3 once per column block (LSTM(256,512) T=50 b64: 3.2 MB of
// inputs, 32 column blocks). A stand-alone copy of the GEMM, Sapphire Rapids: 150 -> 165-172
// GFLOP/s at K=256, 120 -> 130-145 at K=28.
inline void gemm(size_t M, const float* A, size_t lda, const Packed& P, const float* bias, float* C,
                 size_t ldc, int ncols, int p0, int p1, bool reversed = false) {
  const size_t fit = l2_cache_bytes() / 8 / (sizeof(float) * size_t(std::max(1, P.K)));
  const size_t mb = std::clamp<size_t>(fit, 96, 384) / S::GEMM_MR * S::GEMM_MR;
  for (size_t r0 = 0; r0 < M; r0 += mb)
    gemm_rows(std::min(mb, M - r0), A + r0 * lda, lda, P, bias, C + r0 * ldc, ldc, ncols, p0, p1,
              reversed);
}

// ---- fused recurrent step -----------------------------------------------------------------
// For MR rows and NG groups of W units (starting at group grp0): the accumulators start from
// the x projection (LSTM/RNN: it includes both biases) or from b_hh (the GRU kinds, which add
// the x projection in the epilogue: n = x_n + r * (W_hn h + b_hn)) or from 0 (proj), or, for
// gru_x, from both biases into r and z and from b_hn and b_in into W_hn h and W_in x; they take
// the product with hin, then the epilogue applies the update on the registers and stores.
struct RowPtrs {
  const float* hin;  // the product's input: h (gru_n: r*h; proj: o*tanh(c))
  const float* x;    // [G*Hp] input projection row (interleaved by the cell's gates)
  float* c;          // [Hp] LSTM cell state (in place); GRU two-pass: z
  float* aux;        // [Hp] GRU two-pass: gru_rz stores r*h here, gru_n reads h_prev here;
                     // gru_x: h_prev (its first K blocks read the input through hin)
  float* hout;       // the pass's output (lstm with a projection: o*tanh(c))
};

// ONNX's extras of the epilogue; all off for PyTorch's semantics. The LSTM and GRU tiles are
// compiled with and without them (step_mk's X), so that PyTorch's models pay no test for them.
struct Epi {
  float clip = 0.f;             // > 0: each gate's pre-activation clamped to [-clip, clip]
  const float* peep = nullptr;  // LSTM peepholes [3][ld]: p_i, p_f (read c_{t-1}), p_o (c_t)
  size_t peep_ld = 0;
  bool input_forget = false;  // LSTM f = 1 - i
  bool any() const { return clip > 0 || peep || input_forget; }
};

// clamp(x, -b, b) with nb = -b, NaN kept: S::max(a, x) gives x when either is NaN.
inline V clamp_sym(V x, V nb) {
  const V neg = S::max(nb, S::sub(S::zero(), x));  // max(-b, -x) = -min(b, x)
  return S::max(nb, S::sub(S::zero(), neg));
}

// A K block of the product: k in [k0, k1). The first block starts the accumulators, the last
// runs the epilogue; a block that is not last parks the accumulators in part ([MR][NG*ACC]
// vectors) and the next block picks them up there. A batched tile also prefetches npf cache
// lines from pf into L2, one per k: its share of the next weight slice (run_dir).
struct KBlock {
  int k0, k1;
  bool first, last;
  float* part;
  const char* pf = nullptr;
  int npf = 0;
  bool cols_rev = false;  // the step takes its tile columns last first: the next lies before
  bool xseg = false;      // gru_x: the block is of W_ih x (into r, z and W_in x), not W_hh h
  bool k_rev = false;     // batch 1: k last first (step_mk's descending loop)
};

// kern: the pass's kind (what Tile::one's start and epilogue do; T = tile_of(kern)).
template <Tile T, bool X, int NG, int MR>
inline void step_mk(Kern kern, const KBlock& kb, const RowPtrs* rows, const float* bh, int grp0,
                    const float* wp, size_t wst, const Epi& ep) {
  constexpr int G = TileT<T>::G, NV = NG * G;  // weight vectors per k
  constexpr int NA = NG * TileT<T>::ACC;       // accumulators per row
  const int unit0 = grp0 * W;
  V acc[MR][NA];
  if (T == Tile::gru_x && kb.first) {
    // r and z from both biases, W_hn h from b_hn, W_in x from b_in (rows[r].x: b_ih)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
      for (int v = 0; v < NA; ++v) {
        const int gi = (grp0 + v / 4) * 3, gate = v % 4;
        const V bx = gate == 2 ? S::zero() : S::load(rows[r].x + (gi + std::min(gate, 2)) * W);
        acc[r][v] = gate == 3 || !bh ? bx : S::add(S::load(bh + (gi + gate) * W), bx);
      }
  } else if (kb.first) {
    // gru, gru_rz and gru_n start from b_hh (the cell's 3-gate order), proj from 0, the
    // others from the input projection (both biases in).
    const bool from_bh = T == Tile::gru || T == Tile::gru_rz || kern == Kern::gru_n;
    const bool from_x = T == Tile::lstm || kern == Kern::rnn_tanh || kern == Kern::rnn_relu;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) {
        if (from_bh) {
          const int gate = T == Tile::one ? 2 : v % G;
          acc[r][v] = bh ? S::load(bh + ((grp0 + v / G) * 3 + gate) * W) : S::zero();
        } else if (from_x) {
          acc[r][v] = S::load(rows[r].x + (grp0 * G + v) * W);
        } else {
          acc[r][v] = S::zero();
        }
      }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
      for (int v = 0; v < NA; ++v) acc[r][v] = S::load(kb.part + (r * NA + v) * W);
  }
  if (MR > 1 && kb.first) {
    // The next tile column's x, which its first K block (start) or last (GRU's epilogue) reads
    // for these rows: each row's x is read in pieces far apart in time, a pattern the
    // prefetchers miss; missed, it cost 8% of the batched step at H=512. Into L2: the next
    // column comes after every row tile of this one.
    const int xg = T == Tile::lstm                         ? 4
                   : T != Tile::one || kern == Kern::gru_n ? 3  // gru_x: b_ih, as wide
                   : kern == Kern::proj                    ? 0
                                                           : 1;
    const int n = NG * xg * W, next_grp = kb.cols_rev ? grp0 - NG : grp0 + NG;
#pragma GCC unroll 8
    for (int r = 0; r < MR && next_grp >= 0; ++r) {
      const float* nx = rows[r].x + next_grp * xg * W;
      for (int o = 0; o < n; o += 64 / int(sizeof(float))) __builtin_prefetch(nx + o, 0, 2);
    }
  }
  const float* h[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) h[r] = rows[r].hin;
  const int Kend = kb.k1;
  int k = kb.k0;
  if constexpr (T == Tile::gru_x) {
    // One group: its r, z and n weight vectors go to r, z, then W_in x (a block of W_ih x)
    // or W_hn h. The loop is written out for each kind of block, so that every accumulator
    // index is a compile-time constant and stays in a register (a lambda would take their
    // address), and the weights are named values, not an array: pinned as an array, GCC kept
    // a copy of it on the stack, three stores a k (1.25x the time of the GRU call).
#define SEQFUSE_GRU_X_LOOP(XS)                                                                  \
  for (; k < Kend; ++k) {                                                                       \
    const float* w = wp + size_t(k) * wst;                                                      \
    if (MR > 1 && k - kb.k0 < kb.npf) __builtin_prefetch(kb.pf + size_t(k - kb.k0) * 64, 0, 2); \
    V w0 = S::load(w), w1 = S::load(w + W), w2 = S::load(w + 2 * W);                            \
    if constexpr (MR * NA + NV + 1 <= S::REGS) {                                                \
      S::keep(w0);                                                                              \
      S::keep(w1);                                                                              \
      S::keep(w2);                                                                              \
    }                                                                                           \
    _Pragma("GCC unroll 8") for (int r = 0; r < MR; ++r) {                                      \
      const V a = S::set1(h[r][k]);                                                             \
      acc[r][0] = S::fma(a, w0, acc[r][0]);                                                     \
      acc[r][1] = S::fma(a, w1, acc[r][1]);                                                     \
      acc[r][(XS) ? 3 : 2] = S::fma(a, w2, acc[r][(XS) ? 3 : 2]);                               \
    }                                                                                           \
  }
    static_assert(NG == 1, "gru_x tiles hold one group (BNG, MAXNG)");
    if (kb.xseg) {
      SEQFUSE_GRU_X_LOOP(true)
    } else {
      SEQFUSE_GRU_X_LOOP(false)
    }
#undef SEQFUSE_GRU_X_LOOP
  } else if (MR == 1 && NV < 8) {
    // Few accumulators: split k over KS independent partial sums so the FMA latency chain
    // does not bound the step (small hidden sizes, e.g. the sine RNN).
    constexpr int KS = NV >= 4 ? 2 : NV >= 2 ? 4 : 8;
    V part[KS - 1][NV];
#pragma GCC unroll 8
    for (int q = 0; q < KS - 1; ++q)
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) part[q][v] = S::zero();
    for (; k + KS <= Kend; k += KS) {
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v)
        acc[0][v] = S::fma(S::set1(h[0][k]), S::load(wp + size_t(k) * wst + v * W), acc[0][v]);
#pragma GCC unroll 8
      for (int q = 0; q < KS - 1; ++q) {
        const float* w = wp + size_t(k + 1 + q) * wst;
#pragma GCC unroll 32
        for (int v = 0; v < NV; ++v)
          part[q][v] = S::fma(S::set1(h[0][k + 1 + q]), S::load(w + v * W), part[q][v]);
      }
    }
#pragma GCC unroll 8
    for (int q = 0; q < KS - 1; ++q)
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) acc[0][v] = S::add(acc[0][v], part[q][v]);
  }
  if constexpr (MR == 1 && NV >= 8) {
    if (kb.k_rev) {
      // Descending, on the steps that take the panels last first: the step starts on the
      // k-rows the one before read last, still in L1. The addresses fall throughout (v
      // too): one stream for the prefetchers.
      for (int kk = Kend - 1; kk >= k; --kk) {
        const float* w = wp + size_t(kk) * wst;
        const V a = S::set1(h[0][kk]);
#pragma GCC unroll 32
        for (int v = NV - 1; v >= 0; --v) acc[0][v] = S::fma(a, S::load(w + v * W), acc[0][v]);
      }
      k = Kend;
    }
  }
  for (; k < Kend; ++k) {
    const float* w = wp + size_t(k) * wst;
    if (MR == 1) {
      V a = S::set1(h[0][k]);
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) acc[0][v] = S::fma(a, S::load(w + v * W), acc[0][v]);
    } else {
      if (k - kb.k0 < kb.npf) __builtin_prefetch(kb.pf + size_t(k - kb.k0) * 64, 0, 2);
      V wv[NV];
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) {
        wv[v] = S::load(w + v * W);
        // pinned when tile, weights and a broadcast fit the registers; otherwise the weights
        // are FMA memory operands (L1-resident: the caller blocks K)
        if constexpr (MR * NV + NV + 1 <= S::REGS) S::keep(wv[v]);
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        V a = S::set1(h[r][k]);
#pragma GCC unroll 32
        for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(a, wv[v], acc[r][v]);
      }
    }
  }
  if (!kb.last) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
      for (int v = 0; v < NA; ++v) S::store(kb.part + (r * NA + v) * W, acc[r][v]);
    return;
  }
  // The epilogue: core/cell.hpp's onnx_update on vectors (PyTorch's cell_update when ep is off).
  const bool clip = X && ep.clip > 0;
  const V nb = S::set1(-ep.clip);
  auto pre = [&](V v) { return clip ? clamp_sym(v, nb) : v; };
  const float* peep = X ? ep.peep : nullptr;
  const bool input_forget = X && ep.input_forget;
  // The activations take every (row, group) pair of the tile at once: N = MR * NG
  // independent chains (simd_math.hpp's vsigmoid_n and vtanh_n). EACH_PAIR gives each pair's
  // index j, row r, first unit uo and the pass's output ho (RowPtrs::hout).
  constexpr int N = MR * NG;
#define SEQFUSE_EACH_PAIR(stmt)                               \
  _Pragma("GCC unroll 8") for (int r = 0; r < MR; ++r)        \
      _Pragma("GCC unroll 32") for (int u = 0; u < NG; ++u) { \
    const int j = r * NG + u, uo = unit0 + u * W;             \
    float* ho = rows[r].hout + uo;                            \
    (void)j;                                                  \
    (void)ho;                                                 \
    stmt;                                                     \
  }
  if constexpr (T == Tile::lstm) {
    V cp[N], i[N], f[N], g[N], o[N];
    SEQFUSE_EACH_PAIR({
      cp[j] = S::load(rows[r].c + uo);
      i[j] = acc[r][u * 4];
      f[j] = acc[r][u * 4 + 1];
      g[j] = pre(acc[r][u * 4 + 2]);
      o[j] = acc[r][u * 4 + 3];
      if (peep) {
        i[j] = S::fma(S::load(peep + uo), cp[j], i[j]);
        f[j] = S::fma(S::load(peep + ep.peep_ld + uo), cp[j], f[j]);
      }
      i[j] = pre(i[j]);
      f[j] = pre(f[j]);
    })
    vsigmoid_n<N>(i);
    if (input_forget) {
      SEQFUSE_EACH_PAIR(f[j] = S::sub(S::set1(1.0f), i[j]))
    } else {
      vsigmoid_n<N>(f);
    }
    vtanh_n<N>(g);
    V c[N];  // becomes tanh(c)
    SEQFUSE_EACH_PAIR({
      c[j] = S::fma(f[j], cp[j], S::mul(i[j], g[j]));
      S::store(rows[r].c + uo, c[j]);
      if (peep) o[j] = S::fma(S::load(peep + 2 * ep.peep_ld + uo), c[j], o[j]);
      o[j] = pre(o[j]);
    })
    vsigmoid_n<N>(o);
    vtanh_n<N>(c);
    SEQFUSE_EACH_PAIR(S::store(ho, S::mul(o[j], c[j])))
  } else if constexpr (T == Tile::gru || T == Tile::gru_x) {
    // gru: r and z from x + W_h h, n = tanh(x_n + r * (W_hn h + b_hn)); gru_x: every term in
    // the accumulators, W_in x in the fourth
    constexpr int A = TileT<T>::ACC;
    V rr[N], z[N], n[N];
    SEQFUSE_EACH_PAIR({
      if constexpr (T == Tile::gru) {
        const float* x = rows[r].x + (grp0 + u) * 3 * W;
        rr[j] = pre(S::add(S::load(x), acc[r][u * A]));
        z[j] = pre(S::add(S::load(x + W), acc[r][u * A + 1]));
      } else {
        rr[j] = pre(acc[r][u * A]);
        z[j] = pre(acc[r][u * A + 1]);
      }
    })
    vsigmoid_n<N>(rr);
    vsigmoid_n<N>(z);
    SEQFUSE_EACH_PAIR({
      if constexpr (T == Tile::gru)
        n[j] =
            pre(S::fma(rr[j], acc[r][u * A + 2], S::load(rows[r].x + (grp0 + u) * 3 * W + 2 * W)));
      else
        n[j] = pre(S::fma(rr[j], acc[r][u * A + 2], acc[r][u * A + 3]));
    })
    vtanh_n<N>(n);
    SEQFUSE_EACH_PAIR({
      const V hp = S::load((T == Tile::gru ? rows[r].hin : rows[r].aux) + uo);
      S::store(ho, S::fma(z[j], S::sub(hp, n[j]), n[j]));
    })
  } else if constexpr (T == Tile::gru_rz) {
    V rr[N], z[N];
    SEQFUSE_EACH_PAIR({
      const float* x = rows[r].x + (grp0 + u) * 3 * W;
      rr[j] = pre(S::add(S::load(x), acc[r][u * 2]));
      z[j] = pre(S::add(S::load(x + W), acc[r][u * 2 + 1]));
    })
    vsigmoid_n<N>(rr);
    vsigmoid_n<N>(z);
    SEQFUSE_EACH_PAIR({
      S::store(rows[r].aux + uo, S::mul(rr[j], S::load(rows[r].hin + uo)));
      S::store(rows[r].c + uo, z[j]);
    })
  } else {  // one branch per tile, not one per unit
    if (kern == Kern::rnn_tanh) {
      V hv[N];
      SEQFUSE_EACH_PAIR(hv[j] = pre(acc[r][u]))
      vtanh_n<N>(hv);
      SEQFUSE_EACH_PAIR(S::store(ho, hv[j]))
    } else if (kern == Kern::rnn_relu) {  // NaN stays NaN (simd.hpp)
      SEQFUSE_EACH_PAIR(S::store(ho, S::max(S::zero(), pre(acc[r][u]))))
    } else if (kern == Kern::gru_n) {
      V n[N];
      SEQFUSE_EACH_PAIR(n[j] =
                            pre(S::add(S::load(rows[r].x + (grp0 + u) * 3 * W + 2 * W), acc[r][u])))
      vtanh_n<N>(n);
      SEQFUSE_EACH_PAIR(S::store(
          ho, S::fma(S::load(rows[r].c + uo), S::sub(S::load(rows[r].aux + uo), n[j]), n[j])))
    } else {  // proj
      SEQFUSE_EACH_PAIR(S::store(ho, acc[r][u]))
    }
  }
#undef SEQFUSE_EACH_PAIR
}

template <Tile T, bool X, int MR>
inline void step_ng(Kern kern, int ng, const KBlock& kb, const RowPtrs* rows, const float* bh,
                    int grp0, const float* wp, size_t wst, const Epi& ep) {
  switch (ng) {
#define SEQFUSE_NG(n)                                               \
  case n:                                                           \
    if constexpr (n <= (MR == 1 ? TileT<T>::MAXNG : TileT<T>::BNG)) \
      step_mk<T, X, n, MR>(kern, kb, rows, bh, grp0, wp, wst, ep);  \
    break;
    SEQFUSE_NG(1)
    SEQFUSE_NG(2)
    SEQFUSE_NG(3)
    SEQFUSE_NG(4)
    SEQFUSE_NG(5)
    SEQFUSE_NG(6)
    SEQFUSE_NG(7)
    SEQFUSE_NG(8)
    SEQFUSE_NG(9)
    SEQFUSE_NG(10)
    SEQFUSE_NG(11)
    SEQFUSE_NG(12)
    SEQFUSE_NG(13)
    SEQFUSE_NG(14)
    SEQFUSE_NG(15)
    SEQFUSE_NG(16)
#undef SEQFUSE_NG
    default:
      break;
  }
}

// mr <= TileT<T>::BMR (the caller's row array): tiles taller than the kernel set's are not
// instantiated at all.
static_assert(S::STEP_MR >= 1 && S::STEP_MR <= 8 && TileT<Tile::gru>::BMR <= 8,
              "step_rows has cases for 1 to 8 rows");
template <Tile T, bool X>
inline void step_rows(Kern kern, int mr, int ng, const KBlock& kb, const RowPtrs* rows,
                      const float* bh, int grp0, const float* wp, size_t wst, const Epi& ep) {
  switch (mr) {
#define SEQFUSE_MR(n)                                                                              \
  case n:                                                                                          \
    if constexpr (n <= TileT<T>::BMR) step_ng<T, X, n>(kern, ng, kb, rows, bh, grp0, wp, wst, ep); \
    break;
    SEQFUSE_MR(1)
    SEQFUSE_MR(2)
    SEQFUSE_MR(3)
    SEQFUSE_MR(4)
    SEQFUSE_MR(5)
    SEQFUSE_MR(6)
    SEQFUSE_MR(7)
    SEQFUSE_MR(8)
#undef SEQFUSE_MR
    default:
      break;
  }
}

// ---- the backend ---------------------------------------------------------------------------
class FastBackend final : public Backend {
 public:
  FastBackend(const Config& c, const WeightMap& w) : c_(c) {
    auto get = [&](const std::string& n) -> const float* {
      auto it = w.find(n);
      return it == w.end() ? nullptr : it->second.data.data();
    };
    G_ = c.gates();
    // A model without recurrent layers (linear regression) has no hidden state: nothing may be
    // sized or divided by its (unused) hidden_size.
    H_ = c.num_layers > 0 ? c.hidden_size : 0;
    Hp_ = round_up(H_, W);
    Np_ = G_ * Hp_;
    Hs_ = c.num_layers > 0 ? c.state_size() : 0;
    Hsp_ = round_up(Hs_, W);
    // The passes of a step (Kern): a second one for a product that reads every unit's result.
    const bool gru2 = c.cell == Cell::gru && !c.linear_before_reset;
    const bool proj = c.cell == Cell::lstm && c.proj_size > 0;
    npass_ = gru2 || proj ? 2 : 1;
    pass_[0].kern = gru2                       ? Kern::gru_rz
                    : c.cell == Cell::lstm     ? Kern::lstm
                    : c.cell == Cell::gru      ? Kern::gru
                    : c.cell == Cell::rnn_tanh ? Kern::rnn_tanh
                                               : Kern::rnn_relu;
    pass_[0].units = H_;
    pass_[0].k = Hs_;
    pass_[1].kern = gru2 ? Kern::gru_n : Kern::proj;
    pass_[1].units = proj ? Hs_ : H_;
    pass_[1].k = H_;
    step_bytes_ = 0;
    for (int i = 0; i < npass_ && c.num_layers > 0; ++i)
      step_bytes_ += 4.0 * kern_dims(pass_[i].kern).g * round_up(pass_[i].units, W) * pass_[i].k;
    for (int i = 0; i < npass_ && c.num_layers > 0; ++i) {
      PassShape& ps = pass_[i];
      const KernDims dims = kern_dims(ps.kern);
      ps.g = dims.g;
      ps.acc = dims.acc;
      // Batch-1 panels: as many groups as the registers hold as accumulators, balanced
      // (e.g. AVX-512 LSTM H=128: 2 panels of 4 groups = 16 accumulators each).
      const int ngrp = round_up(ps.units, W) / W;
      int np = (ngrp + dims.maxng - 1) / dims.maxng;
      // When a step is big enough to be split by a two-thread team (threads own whole
      // panels), an even panel count whose halves hold as equal a number of groups as
      // possible, fewest panels first: e.g. H=256 as 4 panels of 4 groups, not 6+6+4 (a 6/10
      // split of the weights between the two cores), H=512 as 8 of 4, not 6+6+6+6+6+2 (18/14).
      if (np > 1 && np < ngrp && step_bytes_ >= TEAM_STEP_BYTES) {
        auto uneven = [&](int n) {
          const int first_half = std::min(ngrp, n / 2 * ((ngrp + n - 1) / n));
          return std::abs(2 * first_half - ngrp);
        };
        int best = np + np % 2;
        for (int n = best; n <= std::min(ngrp, 2 * np); n += 2)
          if (uneven(n) < uneven(best)) best = n;
        np = std::min(best, ngrp);
      }
      ps.u = (ngrp + np - 1) / np;
      // Batched steps: a tile of bmr rows x bng groups; its weight slice (K x bng*G vectors)
      // is read by every row tile of the step, so K is cut into blocks whose slice fits half
      // of this CPU's L1d.
      ps.bng = dims.bng;
      ps.bmr = dims.bmr;
      const size_t slice_row = size_t(ps.bng) * ps.g * W * sizeof(float);  // bytes per k
      ps.kblock = std::max(16, int(l1d_cache_bytes() / 2 / slice_row) / 4 * 4);
    }
    fx_pass_ = pass_[0];
    if (fx_pass_.kern == Kern::gru) {
      const KernDims dims = kern_dims(Kern::gru_x);
      fx_pass_.kern = Kern::gru_x;
      fx_pass_.acc = dims.acc;
      fx_pass_.bmr = dims.bmr;
    }
    const int L = c.num_layers, dirs = c.dirs();
    ld_.reset(new LayerDir[size_t(std::max(1, L * dirs))]);
    for (int l = 0; l < L; ++l)
      for (int d = 0; d < dirs; ++d) {
        LayerDir& x = ld_[size_t(l * dirs + d)];
        const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
        pack(x.wih, get("rnn.weight_ih" + sfx), G_, H_, c.layer_input_size(l),
             xproj_groups(c.cell));
        if (fuses_x(l))
          pack(x.wihb, get("rnn.weight_ih" + sfx), G_, H_, c.layer_input_size(l), pass_[0].bng);
        // Each pass's rows: W_hh (GRU linear_before_reset=0: its r, z rows, then its n rows,
        // multiplied by r*h in the second pass; LSTM projection: then W_hr), packed in the
        // batch-1 panels and, where they differ, once more for the batched step: one panel
        // per tile column, so that the K x bng*G slice a tile reads is contiguous. In the
        // batch-1 panels it is a strided part of every k-row, which maps onto a fraction of
        // L1's sets (e.g. 256 of every 1536 bytes: half of them) and defeats the prefetchers:
        // 10% of the batched step at H=512.
        const float* whh = get("rnn.weight_hh" + sfx);
        const float* rows[2] = {whh, gru2   ? whh + size_t(2) * H_ * H_
                                     : proj ? get("rnn.weight_hr" + sfx)
                                            : nullptr};
        for (int ip = 0; ip < npass_; ++ip) {
          const PassShape& ps = pass_[ip];
          pack(x.whh[ip], rows[ip], ps.g, ps.units, ps.k, ps.u);
          if (ps.u != ps.bng) pack(x.whhb[ip], rows[ip], ps.g, ps.units, ps.k, ps.bng);
        }
        const float* bih = get("rnn.bias_ih" + sfx);
        const float* bhh = get("rnn.bias_hh" + sfx);
        if (c.cell == Cell::gru) {
          pack_vec(x.bias_x, bih, nullptr, G_, H_);
          pack_vec(x.bias_h, bhh, nullptr, G_, H_);
        } else {
          pack_vec(x.bias_x, bih, bhh, G_, H_);
        }
        if (const float* p = get("rnn.weight_p" + sfx)) {  // [3H] -> [3][Hp], padding 0
          float* d3 = x.peep.ensure(size_t(3) * Hp_);
          for (int g = 0; g < 3; ++g) std::memcpy(d3 + size_t(g) * Hp_, p + size_t(g) * H_, 4 * H_);
        }
        if (uses_table(l)) {
          // Fold the Embedding into layer 0's input projection: table[v] = E[v] W_ih^T + b.
          float* t = x.table.ensure(size_t(c.vocab_size) * Np_);
          gemm(c.vocab_size, get("embedding.weight"), size_t(c.embed_dim), x.wih, x.bias_x.data(),
               t, size_t(Np_), Np_, 0, x.wih.npanels);
        }
      }
    if (c.head != Head::none) {
      pack(head_w_, get("head.weight"), 1, c.output_size, c.feature_size(), 8);
      pack_vec(head_b_, get("head.bias"), nullptr, 1, c.output_size);
    }
  }

  void forward(const ForwardArgs& a, Workspace& ws, ThreadPool* pool) const override;

  // Whether layer l's batched step computes its own input projection, as the first K blocks
  // of its product, instead of reading it from the whole-sequence GEMM's output: LSTM (its
  // projection's pass reads no input), RNN and PyTorch's GRU (as gru_x; not GRU with
  // linear_before_reset=0, whose second pass reads x_n), without an embedding table, whose
  // input is neither tiny nor much wider than the hidden state.
  bool fuses_x(int l) const {
    const int D = c_.layer_input_size(l);
    return (c_.cell != Cell::gru || npass_ == 1) && !uses_table(l) && D >= 16 && D <= 4 * H_;
  }
  // Whether layer l's input projection is the Embedding's folded [vocab, G*H] table.
  bool uses_table(int l) const { return l == 0 && c_.vocab_size > 0; }

 private:
  struct LayerDir {
    Packed wih, whh[2];  // whh[0]: the first pass's W_hh; whh[1]: W_hn or W_hr (two passes)
    Packed wihb;         // W_ih packed like whhb[0], for the batched step's own input product
    Packed whhb[2];      // the same, packed for the batched step (empty: whh's packing is)
    Buf bias_x, bias_h, table, peep;
    const Packed& batched(int ip) const { return whhb[ip].npanels ? whhb[ip] : whh[ip]; }
  };
  // One pass of a step: its kernel, output units and product length, and its tiles.
  struct PassShape {
    Kern kern = Kern::lstm;
    int units = 0, k = 0, g = 1;
    int acc = 1;           // accumulators per group (g, but gru_x's 4)
    int u = 1;             // groups per batch-1 panel
    int bng = 1;           // groups per batched tile
    int bmr = 1;           // rows per batched tile
    int kblock = 1 << 30;  // K per block of the batched step
  };
  struct Call;  // per-call state shared by the threads
  void run_dir(const Call& k, int l, int d, int rank, int tsize, SpinBarrier& bar, float* part,
               RowPtrs* row_ptrs) const;
  // PyTorch's LSTM and GRU cells with and without ONNX's extras; gru_rz and Tile::one always
  // test for them (clip: the only extra they have).
  __attribute__((noinline)) void dispatch(Kern kern, int mr, int ng, const KBlock& kb,
                                          const RowPtrs* rows, const float* bh, int grp0,
                                          const float* wp, size_t wst, const Epi& ep) const {
#define SEQFUSE_TILE(t)                                                         \
  case Tile::t:                                                                 \
    if (ep.any())                                                               \
      step_rows<Tile::t, true>(kern, mr, ng, kb, rows, bh, grp0, wp, wst, ep);  \
    else                                                                        \
      step_rows<Tile::t, false>(kern, mr, ng, kb, rows, bh, grp0, wp, wst, ep); \
    break;
    switch (tile_of(kern)) {
      SEQFUSE_TILE(lstm)
      SEQFUSE_TILE(gru)
      SEQFUSE_TILE(gru_x)
      case Tile::gru_rz:
        step_rows<Tile::gru_rz, true>(kern, mr, ng, kb, rows, bh, grp0, wp, wst, ep);
        break;
      default:
        step_rows<Tile::one, true>(kern, mr, ng, kb, rows, bh, grp0, wp, wst, ep);
        break;
    }
#undef SEQFUSE_TILE
  }

  Config c_;
  int G_ = 1, H_ = 1, Hp_ = 1, Np_ = 1;
  int Hs_ = 1, Hsp_ = 1;  // the hidden state's width (proj_size, else H) and its padded width
  int npass_ = 1;
  PassShape pass_[2];
  double step_bytes_ = 0;  // the weight bytes of one step of one layer direction, every pass
  // The first pass as a batched step runs it when it computes its own input projection
  // (fuses_x): the same, but PyTorch's GRU keeps W_in x apart (gru_x), in a tile of its own.
  PassShape fx_pass_;
  std::unique_ptr<LayerDir[]> ld_;
  Packed head_w_;
  Buf head_b_;
};

struct FastBackend::Call {
  const ForwardArgs* a;
  int B, T, maxlen, dirs, L;
  size_t rows;       // B*T (64-bit: may pass 2^31)
  const int* order;  // rows sorted by length, longest first
  const int* nact;   // [maxlen] active rows at each step
  const int* len;    // [B]
  float* xproj;      // [dirs][xrows][Np]: rows in the caller's order, or a chunk [tchunk][B]
  size_t xrows;      // rows per direction in xproj: rows, or B*tchunk
  int tchunk;        // steps per input-projection chunk (chunked only when xrows < rows)
  float* outbuf[2];  // [rows][dirs*Hs] ping-pong layer outputs
  float* hbuf;       // [dirs][2][B][Hsp]
  float* cbuf;       // [dirs][B][Hp] LSTM c; GRU two-pass: z
  float* abuf;       // [dirs][B][Hp] two passes: r*h (GRU) or o*tanh(c) (LSTM projection)
  float* feat;       // [B][F] head input for last_step / last_hidden
  const float* in;   // this layer's input rows
  size_t in_ld;
  float* out;  // this layer's output rows (null: not stored)
  size_t out_ld;
  bool truncate_top_bwd;
  // A stream's step (see forward): the top layer's W_hh h0 plus its bias, computed first
  // (null: not), and which panels go last first: the input projections' and the lower layers'
  // steps (rev_x), the top layer's step (rev_top).
  const float* pre = nullptr;
  bool rev_x = false, rev_top = false;
  // A stream's step (see forward): each layer above the first reads its input projection
  // from xs ([Np]), the sum of the K blocks' products in xpart ([panels][Np], one block per
  // recurrent panel of the layer below), computed during that layer's step as each panel
  // produces its units (null: the whole-sequence GEMM computes the projection).
  float* xs = nullptr;
  float* xpart = nullptr;
  // The batched steps compute W_ih x themselves, on the layers that can (fuses_x): those
  // layers read no xproj.
  bool fuse_x = false;
  size_t row(int t, int b) const {
    return a->batch_first ? size_t(b) * size_t(T) + size_t(t) : size_t(t) * size_t(B) + size_t(b);
  }
};

inline void FastBackend::run_dir(const Call& k, int l, int d, int rank, int tsize, SpinBarrier& bar,
                                 float* part, RowPtrs* row_ptrs) const {
  const ForwardArgs& a = *k.a;
  const LayerDir& x = ld_[size_t(l * k.dirs + d)];
  RowPtrs* x_ptrs = row_ptrs + k.B;  // the same rows reading their input (fuse_x)
  const int B = k.B, H = H_, Hp = Hp_, Hs = Hs_, Hsp = Hsp_, Np = Np_;
  const bool top = l == k.L - 1;
  const bool trunc = top && d == 1 && k.truncate_top_bwd;
  const bool backward = d == 1 || c_.reverse;  // reads each sequence from its last valid step
  const int nsteps = trunc ? 1 : k.maxlen;
  const bool use_table = uses_table(l);
  const bool gru_cell = c_.cell == Cell::gru;
  // Steps that compute their own input projection (fuse_x, fuses_x).
  const bool fx = k.fuse_x && fuses_x(l);
  if (fx && rank == 0) count_fused_input_run();
  // A stream's projections (k.xs): this layer's blocks were computed during the step of the
  // layer below, the next layer's are computed during this one's.
  const bool x_done = k.xs && l > 0, x_next = k.xs && l + 1 < k.L;
  // This layer's projections (null when it reads none: the buffer may have no room for them)
  float* xp = use_table || fx ? nullptr : x_done ? k.xs : k.xproj + size_t(d) * k.xrows * Np;
  // Past the scratch budget the projections are computed a chunk of steps at a time, just
  // before the steps that read them (project_chunk).
  const bool chunked = !use_table && !fx && !x_done && !trunc && k.xrows < k.rows;
  const int q0 = rank * x.wih.npanels / tsize, q1 = (rank + 1) * x.wih.npanels / tsize;
  // The projections of steps [s0, min(s0 + tchunk, maxlen)): each sequence's rows of those
  // steps are consecutive in time (a backward direction's too, in reverse), so one GEMM per
  // sequence writes them to chunk rows j * B + b, j counted from the chunk's earliest t.
  auto project_chunk = [&](int s0) {
    const int s1 = std::min(nsteps, s0 + k.tchunk);
    const size_t lda = a.batch_first ? k.in_ld : size_t(B) * k.in_ld;
    for (int b = 0; b < B; ++b) {
      const int n = std::min(s1, k.len[b]) - s0;
      if (n <= 0) continue;
      const int t0 = backward ? k.len[b] - s0 - n : s0;
      gemm(size_t(n), k.in + k.row(t0, b) * k.in_ld, lda, x.wih, x.bias_x.data(),
           xp + size_t(b) * Np, size_t(B) * Np, Np, q0, q1);
    }
  };
  // 1. input projections for all steps (or, truncated, each row's last valid step); a
  // stream's, the sum of its blocks in a fixed order (any thread count: the same result), on
  // this thread's columns, from the biases (or, the top layer's product computed first, from
  // that: onto_pre below)
  if (x_done) {
    const int nblk = ld_[size_t((l - 1) * k.dirs + d)].whh[0].npanels;
    const int c0 = std::min(Np, q0 * x.wih.PV * W), c1 = std::min(Np, q1 * x.wih.PV * W);
    const float* from = top && k.pre && !gru_cell ? k.pre : x.bias_x.data();
    for (int c = c0; c < c1; c += W) {
      V acc = S::load(from + c);
      for (int b = 0; b < nblk; ++b) acc = S::add(acc, S::load(k.xpart + size_t(b) * Np + c));
      S::store(xp + c, acc);
    }
  }
  if (!use_table && !fx && !x_done && !chunked) {
    if (trunc) {
      for (int b = 0; b < B; ++b)
        gemm(1, k.in + k.row(k.len[b] - 1, b) * k.in_ld, k.in_ld, x.wih, x.bias_x.data(),
             xp + size_t(b) * Np, size_t(Np), Np, q0, q1);
    } else {
      const bool onto_pre = top && k.pre && !gru_cell;  // xp = W_ih x + (W_hh h0 + biases)
      gemm(k.rows, k.in, k.in_ld, x.wih, onto_pre ? k.pre : x.bias_x.data(), xp, size_t(Np), Np, q0,
           q1, k.rev_x);
    }
  }
  // 2. initial state (rank 0), visible to the team after the barrier
  float* hb[2] = {k.hbuf + size_t(d) * 2 * B * Hsp, k.hbuf + (size_t(d) * 2 + 1) * B * Hsp};
  float* cb = k.cbuf + size_t(d) * B * Hp;
  float* ab = k.abuf ? k.abuf + size_t(d) * B * Hp : nullptr;
  const size_t hslot = size_t(l * k.dirs + d) * B * Hs, cslot = size_t(l * k.dirs + d) * B * H;
  if (rank == 0) {
    for (int b = 0; b < B; ++b) {
      float* h = hb[0] + size_t(b) * Hsp;
      if (a.h0)
        std::memcpy(h, a.h0 + hslot + size_t(b) * Hs, sizeof(float) * Hs);
      else
        std::memset(h, 0, sizeof(float) * Hs);
      std::memset(h + Hs, 0, sizeof(float) * (Hsp - Hs));
      if (c_.cell == Cell::lstm) {
        float* c = cb + size_t(b) * Hp;
        if (a.c0)
          std::memcpy(c, a.c0 + cslot + size_t(b) * H, sizeof(float) * H);
        else
          std::memset(c, 0, sizeof(float) * H);
        std::memset(c + H, 0, sizeof(float) * (Hp - H));
      }
    }
  }
  bar.wait();
  // 3. the recurrence
  // GRU's accumulators start from b_hn (or, its product done first, from W_hh h0 + b_hh)
  const bool pre_done = top && k.pre;
  const float* bh = !gru_cell ? nullptr : pre_done ? k.pre : x.bias_h.data();
  const float* table = x.table.data();
  Epi ep;
  ep.clip = c_.clip;
  ep.peep = x.peep.size() ? x.peep.data() : nullptr;
  ep.peep_ld = size_t(Hp);
  ep.input_forget = c_.input_forget;
  // This thread's panels of each pass (no division in the step loop), in the batch-1 packing
  // (pp) and the batched one (bp), and the output units it writes either way: its panels of
  // the last pass (a step split by rows, by_rows, writes every unit of its rows instead).
  int pp0[2], pp1[2], bp0[2], bp1[2];
  for (int ip = 0; ip < npass_; ++ip) {
    const int n1 = x.whh[ip].npanels, nb = x.batched(ip).npanels;
    pp0[ip] = rank * n1 / tsize;
    pp1[ip] = (rank + 1) * n1 / tsize;
    bp0[ip] = rank * nb / tsize;
    bp1[ip] = (rank + 1) * nb / tsize;
  }
  // Whether the batched step's weights (every pass's, and W_ih where the step computes its
  // input projection) fit in half of each core's L2: then a team may split rows (by_rows).
  size_t step_w = fx ? x.wihb.pstride * x.wihb.npanels : 0;
  for (int ip = 0; ip < npass_; ++ip) step_w += x.batched(ip).pstride * x.batched(ip).npanels;
  const bool rows_fit = step_w * sizeof(float) <= l2_cache_bytes() / 2;
  // K per block of a step computing its own input projection: far more than the L1-sized
  // blocks of W_hh alone (fused_kblock_bytes: most often one block per segment).
  const int fx_kblock =
      fx ? std::max(16, int(fused_kblock_bytes() / (size_t(x.wihb.PV) * W * sizeof(float))) / 4 * 4)
         : 0;
  bool split_rows = false;  // some step of this thread split rows (testing::row_split_runs)
  const PassShape& last = pass_[npass_ - 1];
  const int il = npass_ - 1;
  const int uo[2][2] = {
      {std::min(Hs, pp0[il] * last.u * W), std::min(Hs, pp1[il] * last.u * W)},
      {std::min(Hs, bp0[il] * last.bng * W), std::min(Hs, bp1[il] * last.bng * W)}};
  // Without an initial state h is zero at step 0, so W_hh h is too (weights are finite:
  // check_weights refuses NaN and Inf), and so is GRU's r*h: step 0 runs the epilogue alone.
  // So does a top layer whose product was computed first.
  const int k_first = a.h0 == nullptr || pre_done ? 0 : Hs;
  const bool rev = top ? k.rev_top : k.rev_x;
  // Block p of the next layer's projection (x_next): the product of the units of h' that
  // recurrent panel p just computed, [u0, u1), with those rows of its W_ih. Interleaved so,
  // a stream's step reads its weights in an order the next call can reverse (forward).
  auto project_next = [&](int p, int u0, int u1, const float* h, bool reversed) {
    const Packed& nw = ld_[size_t((l + 1) * k.dirs + d)].wih;
    for (int j = 0; j < nw.npanels; ++j)
      gemm_row_panel(h, nw, in_order(j, 0, nw.npanels, reversed), u0, u1, nullptr,
                     k.xpart + size_t(p) * Np, Np);
  };
  // The step loop, compiled for one pass and for two (PyTorch's cells pay nothing for the
  // second pass's bookkeeping).
  auto run_steps = [&](auto two_passes) {
    constexpr int NPASS = decltype(two_passes)::value ? 2 : 1;
    int cs0 = 0, cs1 = 0;  // the projection chunk holding step s (chunked)
    for (int s = 0; s < nsteps; ++s) {
      if (chunked && s == cs1) {  // every thread is past step s-1: the old chunk is read
        cs0 = s;
        cs1 = std::min(nsteps, s + k.tchunk);
        project_chunk(s);
        bar.wait();
      }
      const int na = a.lengths ? k.nact[s] : B;
      float* hin = hb[s & 1];
      float* hout = hb[(s + 1) & 1];
      int r0 = 0, r1 = na;  // the active rows this thread steps (the last pass's)
      bool all_units = false;
      auto t_of = [&](int b) { return backward ? k.len[b] - 1 - s : s; };  // row b's time step
      for (int ip = 0; ip < NPASS; ++ip) {
        const PassShape& ps = pass_[ip];
        if (ip > 0 && tsize > 1) bar.wait();  // the second pass reads every unit of the first
        const int K = ps.kern == Kern::proj ? H : s == 0 ? k_first : ps.k;
        auto ptrs = [&](int i, RowPtrs& rp) {  // the i-th active row's pointers
          const int b = k.order[i], t = t_of(b);
          float* hp = hin + size_t(b) * Hsp;
          float* hn = hout + size_t(b) * Hsp;
          float* av = ab ? ab + size_t(b) * Hp : nullptr;
          rp.c = cb + size_t(b) * Hp;
          if (ip == 0) {  // product of h; lstm with a projection stores o*tanh(c) in aux
            rp.hin = hp;
            rp.aux = fx && fx_pass_.kern == Kern::gru_x ? hp : av;  // gru_x reads h_prev there
            rp.hout = NPASS == 2 && ps.kern == Kern::lstm ? av : hn;
          } else {  // product of aux (r*h or o*tanh(c)); gru_n reads h_prev as aux
            rp.hin = av;
            rp.aux = hp;
            rp.hout = hn;
          }
          if (use_table)
            rp.x = table + size_t(a.tokens[k.row(t, b)]) * Np;
          else if (fx)  // the product starts from the biases (its first K blocks: W_ih x)
            rp.x = x.bias_x.data();
          else if (chunked)
            rp.x = xp + (size_t(backward ? std::min(cs1, k.len[b]) - 1 - s : s - cs0) * B + b) * Np;
          else if (trunc)
            rp.x = xp + size_t(b) * Np;
          else
            rp.x = xp + k.row(t, b) * Np;
        };
        if (na == 1 && !fx) {
          const Packed& P = x.whh[ip];
          RowPtrs rp;
          ptrs(0, rp);
          // Odd steps take the panels in reverse order: the panels a step read last are still
          // in cache when the next one starts with them. Past L2 (LSTM H=512: 4 MB) that halves
          // what each step streams from L3 (LSTM(256,512) T=50 0.73x of the time). Their k-rows
          // go last first too (k_rev): in L2, the first L1's worth then comes from L1 (Zen 4:
          // GRU H=112 0.945x, LSTM H=64 0.90x; past L2 no change).
          const bool reversed = (s + rev) & 1;
          for (int j = pp0[ip]; j < pp1[ip]; ++j) {
            const int p = in_order(j, pp0[ip], pp1[ip], reversed);
            const int grp0 = p * ps.u, ng = std::min(ps.u, P.ngrp - grp0);
            KBlock kb{0, K, true, true, nullptr};
            kb.k_rev = reversed;
            dispatch(ps.kern, 1, ng, kb, &rp, bh, grp0, P.panel(p), size_t(P.PV) * W, ep);
            if (x_next) project_next(p, grp0 * W, std::min(Hs, (grp0 + ng) * W), rp.hout, reversed);
          }
          continue;
        }
        // Batched: each tile column (bng groups, one panel of the batched packing) takes every
        // row tile in turn, so its weight slice is reused from L1 by all of them; a slice larger
        // than half of L1 is cut into K blocks (the accumulators wait in part between blocks).
        // The rows' pointers are worked out once per pass, not once per tile and block.
        // While a slice is in use, its row tiles prefetch the next one (the next K block, the
        // next column, or this thread's first at the next step) into L2, a line per k each:
        // past L2 (H=512: 4 MB) the weights come from L3 at every step, and the prefetchers
        // alone left 12% of the step waiting for them (LSTM H=512 b64; H=1024 20%).
        const Packed& P = x.batched(ip);
        const size_t wst = size_t(P.PV) * W;
        // The product's segments, each cut into K blocks: W_ih x first when the step computes
        // its own input projection (the same rows, reading their input; fx_pass_), then W_hh h.
        const bool own_x = fx && ip == 0;
        const PassShape& ts = own_x ? fx_pass_ : ps;  // the tile's kind and shape
        const int bmr = ts.bmr;
        // A team whose step's weights fit in each core's L2 splits the row tiles instead of the
        // tile columns (by_rows): each thread then reads every weight, from its own L2, and no
        // thread waits on a spare column (names' GRU, H=100: 7 columns on 2 threads).
        const int ntiles = (na + bmr - 1) / bmr;
        const bool by_rows = tsize > 1 && rows_fit && ntiles >= tsize;
        const int pb0 = by_rows ? 0 : bp0[ip], pb1 = by_rows ? P.npanels : bp1[ip];
        r0 = by_rows ? rank * ntiles / tsize * bmr : 0;
        r1 = by_rows ? std::min(na, (rank + 1) * ntiles / tsize * bmr) : na;
        all_units = by_rows;
        split_rows |= by_rows;
        for (int i = r0; i < r1; ++i) ptrs(i, row_ptrs[i]);
        if (own_x)
          for (int i = r0; i < r1; ++i) {
            const int b = k.order[i];
            x_ptrs[i] = row_ptrs[i];
            x_ptrs[i].hin = k.in + k.row(t_of(b), b) * k.in_ld;
          }
        const int nseg = own_x ? 2 : 1;
        const int kblock = own_x ? fx_kblock : ps.kblock;
        const Packed* seg_w[2] = {own_x ? &x.wihb : &P, &P};
        const int seg_k[2] = {own_x ? int(k.in_ld) : K, K};
        const RowPtrs* seg_rows[2] = {own_x ? x_ptrs : row_ptrs, row_ptrs};
        auto seg_from = [&](int sg) {  // the first segment from sg with a product (nseg: none)
          while (sg < nseg && seg_k[sg] == 0) ++sg;
          return sg;
        };
        const int sg0 = seg_from(0);
        // A step without products (step 0 without an initial state) runs the epilogue alone.
        const int sg_start = sg0 < nseg ? sg0 : nseg - 1;
        // Odd steps take the tile columns last first, as the batch-1 steps do their panels: a
        // step whose weights are past L2 (LSTM(256,512): 6 MB) then starts with what the one
        // before read last, still in L2, where it used to read all of them from L3.
        const bool rev_cols = s & 1;
        for (int j = pb0; j < pb1; ++j) {
          const int p = in_order(j, pb0, pb1, rev_cols);
          const int grp0 = p * ps.bng, n = std::min(ps.bng, P.ngrp - grp0);
          int sg = sg_start, k0 = 0;
          for (bool first = true;; first = false) {
            const int ks = seg_k[sg], k1 = std::min(ks, k0 + kblock);
            const int nsg = k1 < ks ? sg : seg_from(sg + 1), nk0 = k1 < ks ? k1 : 0;
            const bool last = nsg >= nseg;
            // the block after this one: in this column, or this thread's next column (after its
            // last, the next step's first: this one)
            const int np = !last || j + 1 == pb1 ? p : rev_cols ? p - 1 : p + 1;
            const int qs = last ? sg_start : nsg, qk = last ? 0 : nk0;
            const float* next = seg_w[qs]->panel(np) + size_t(qk) * wst;
            const int nk = std::min(seg_k[qs], qk + kblock) - qk;
            const float* wp = seg_w[sg]->panel(p);
            int lines = int(size_t(nk) * wst * sizeof(float) / 64);
            for (int i = r0; i < r1; i += bmr) {
              const int mr = std::min(bmr, r1 - i), npf = std::min(lines, k1 - k0);
              const KBlock kb{k0,
                              k1,
                              first,
                              last,
                              part + size_t(i) * n * ts.acc * W,
                              reinterpret_cast<const char*>(next),
                              npf,
                              rev_cols,
                              own_x && sg == 0};
              next += size_t(npf) * 64 / sizeof(float);
              lines -= npf;
              dispatch(ts.kern, mr, n, kb, seg_rows[sg] + i, bh, grp0, wp, wst, ep);
            }
            if (last) break;
            sg = nsg;
            k0 = nk0;
          }
        }
      }
      // this thread's slice of h' into the layer output: its units of every row, or (by_rows)
      // every unit of its rows
      const int u0 = all_units ? 0 : uo[na > 1 || fx][0];
      const int u1 = all_units ? Hs : uo[na > 1 || fx][1];
      if (k.out && u1 > u0) {
        for (int i = r0; i < r1; ++i) {
          const int b = k.order[i];
          std::memcpy(k.out + k.row(t_of(b), b) * k.out_ld + size_t(d) * Hs + u0,
                      hout + size_t(b) * Hsp + u0, sizeof(float) * (u1 - u0));
        }
      }
      bar.wait();
    }
  };
  if (npass_ == 2)
    run_steps(std::true_type{});
  else
    run_steps(std::false_type{});
  if (split_rows && rank == 0) count_row_split_run();
  if (tsize > 1 && rank == 0) count_team_run();
  // 4. final states (each row's own last step), padded outputs zero
  if (rank == 0) {
    const int F = c_.feature_size();
    for (int b = 0; b < B; ++b) {
      const int done = std::min(nsteps, k.len[b]);
      const float* h = hb[done & 1] + size_t(b) * Hsp;
      if (a.h_n) std::memcpy(a.h_n + hslot + size_t(b) * Hs, h, sizeof(float) * Hs);
      if (a.c_n) std::memcpy(a.c_n + cslot + size_t(b) * H, cb + size_t(b) * Hp, sizeof(float) * H);
      if (top && k.feat)
        std::memcpy(k.feat + size_t(b) * F + size_t(d) * Hs, h, sizeof(float) * Hs);
      if (k.out && a.lengths)
        for (int t = k.len[b]; t < k.T; ++t)
          std::memset(k.out + k.row(t, b) * k.out_ld + size_t(d) * Hs, 0, sizeof(float) * Hs);
    }
  }
}

inline void FastBackend::forward(const ForwardArgs& a, Workspace& ws, ThreadPool* pool) const {
  const int B = a.batch, T = a.steps, L = c_.num_layers, dirs = c_.dirs(), Hs = Hs_;
  const int F = c_.feature_size(), O = c_.output_size;
  const size_t rows = size_t(B) * size_t(T);
  int nt = pool ? std::min(a.threads, pool->size()) : 1;
  // Splitting one direction's step across threads costs a barrier per step: worth it only
  // when a step streams enough weights (or rows). Directions get their own thread (except in
  // a truncated top layer: split_top below).
  const bool team_ok = step_bytes_ * ((B + 3) / 4) >= TEAM_STEP_BYTES &&
                       (B > 1 || (L > 0 && ld_[0].whh[0].npanels >= 2));
  if (nt > 1 && L > 0) nt = std::min(nt, dirs * (team_ok ? nt : 1));
  // A model without recurrent layers (linear regression) has only its head's GEMM to share.
  if (nt > 1 && L == 0) {
    const double fed = std::floor(double(rows) * F * O / (TEAM_HEAD_MACS / 2));  // threads
    nt = int(std::min(double(nt), std::max(1.0, fed)));
    if (nt > 1) count_team_run();
  }
  Call k;
  k.a = &a;
  k.B = B;
  k.T = T;
  k.rows = rows;
  k.dirs = dirs;
  k.L = L;
  int* iw = ws.ensure_ints(size_t(2 * B + T));
  int* len = iw;
  int* order = iw + B;
  int* nact = iw + 2 * B;
  k.maxlen = T;
  for (int b = 0; b < B; ++b) {
    len[b] = a.lengths ? int(a.lengths[b]) : T;
    order[b] = b;
  }
  if (a.lengths) {
    // stable insertion sort by length, longest first (active rows at step s are a prefix)
    for (int i = 1; i < B; ++i) {
      const int v = order[i];
      int j = i;
      for (; j > 0 && len[order[j - 1]] < len[v]; --j) order[j] = order[j - 1];
      order[j] = v;
    }
    k.maxlen = len[order[0]];
    int n = B;
    for (int s = 0; s < T; ++s) {
      while (n > 0 && len[order[n - 1]] <= s) --n;
      nact[s] = n;
    }
  }
  k.order = order;
  k.nact = nact;
  k.len = len;
  const Head hd = c_.head;
  k.truncate_top_bwd = a.head_only && hd == Head::last_step && dirs == 2 && L > 0;
  // last_step reads the output at each row's last valid step: the final state only for a
  // forward direction (a backward one computes that output first).
  const bool top_store =
      hd == Head::none || hd == Head::step ||
      (hd == Head::last_step && (dirs == 2 || c_.reverse) && !k.truncate_top_bwd);
  const bool use_feat = L > 0 && (hd == Head::last_hidden || (hd == Head::last_step && !top_store));
  // Input projections: all steps at once within the scratch budget, else chunks of steps.
  k.tchunk = T;
  k.xrows = rows;
  if (L > 0) {
    const size_t per_step = size_t(dirs) * B * Np_ * sizeof(float);
    if (size_t(T) * per_step > projection_budget_bytes()) {
      k.tchunk =
          int(std::max<size_t>(1, std::min<size_t>(T, projection_budget_bytes() / per_step)));
      if (k.tchunk < T) k.xrows = size_t(B) * k.tchunk;
    }
  }
  // Batches from fused_input_rows() on compute their input projections in their steps, on
  // the layers that can (fuses_x): a stream's step (batch 1) never does.
  k.fuse_x = B >= std::max(2, fused_input_rows());
  bool need_x = false;  // some layer reads the whole-sequence projection
  for (int l = 0; l < L; ++l) need_x |= !uses_table(l) && !(k.fuse_x && fuses_x(l));
  const size_t n_x = need_x ? size_t(dirs) * k.xrows * Np_ : 0;
  const size_t n_out = L > 0 ? size_t(rows) * dirs * Hs : 0;
  const size_t n_h = size_t(dirs) * 2 * B * Hsp_, n_c = size_t(dirs) * B * Hp_;
  const size_t n_a = npass_ == 2 ? n_c : 0;
  const size_t n_f = size_t(B) * F;
  // One step of one sequence in a stream (Session::step, whose call count's parity is
  // ws.stream_phase) reads every weight once: past L2 (the Shakespeare LSTM's 3 MB on a 2 MB
  // L2) each call streamed them all from L3. So consecutive calls are ordered to start with
  // what the one before read last, still in L2. Even calls take the input projections and the
  // lower layers' steps last panel first and the top layer's step in order; odd calls compute
  // the top layer's W_hh h0 (plus bias) first, last panel first, then the rest in order, and
  // the top layer's step adds its input projection to it (GRU: starts from it, as from b_hh).
  // A cell with a second pass (GRU linear_before_reset=0, an LSTM projection), or an LSTM/RNN
  // whose single layer reads the embedding table, takes every panel last first in odd calls.
  const int phase =
      ws.stream_phase >= 0 && T == 1 && B == 1 && L > 0 && dirs == 1 ? ws.stream_phase & 1 : -1;
  const bool hh_first_ok =
      npass_ == 1 && a.h0 && !(L == 1 && c_.vocab_size > 0 && c_.cell != Cell::gru);
  const bool hh_first = phase == 1 && hh_first_ok;
  k.rev_x = (phase == 0 && hh_first_ok) || (phase == 1 && !hh_first_ok);
  k.rev_top = phase == 1 && !hh_first_ok;
  const size_t n_pre = hh_first ? size_t(Np_) : 0;
  // With one pass, the input projections of the layers above the first are computed during
  // the steps below them (Call::xs, run_dir's project_next): block by block, each right
  // after the recurrent panel that produced its units, so that the next call can read nearly
  // all of this one's weights in reverse. A whole projection waited for the whole step below:
  // under LRU the orders above then kept 1.5 of the Shakespeare LSTM's 3 MB in L2 per call,
  // block-wise up to 2 (its one-thread call: 100 -> 86 us, Sapphire Rapids).
  const bool interleave = phase >= 0 && npass_ == 1 && L >= 2;
  const size_t n_xs = interleave ? size_t(Np_) : 0;
  const size_t n_xpart = interleave ? size_t(ld_[0].whh[0].npanels) * Np_ : 0;
  // each thread's parked accumulators of the K-blocked batched step: [B][bng*ACC] vectors
  size_t tile_vecs = size_t(fx_pass_.bng) * fx_pass_.acc;
  for (int i = 0; i < npass_; ++i)
    tile_vecs = std::max(tile_vecs, size_t(pass_[i].bng) * pass_[i].acc);
  const size_t part_ld = L > 0 ? al16(size_t(B) * tile_vecs * W) : 0;
  // and its rows' pointers for the batched step, [2B] RowPtrs: each row reading h and, when
  // the step computes its input projection, reading its input (pointers only: the float
  // scratch holds them)
  static_assert(sizeof(RowPtrs) % sizeof(float) == 0, "RowPtrs fits whole floats");
  const size_t rows_ld = L > 0 ? al16(size_t(2 * B) * (sizeof(RowPtrs) / sizeof(float))) : 0;
  const size_t thread_ld = part_ld + rows_ld;
  auto al = al16;
  // The ping-pong layer outputs in use: layer l < L-1 writes outbuf[l & 1]; the top layer
  // writes the caller's y (head none), outbuf[(L-1) & 1] (a head that reads every step), or
  // nothing. A one-layer model without such a head needs neither.
  bool used[2] = {false, false};
  for (int l = 0; l + 1 < L; ++l) used[l & 1] = true;
  if (L > 0 && top_store && hd != Head::none) used[(L - 1) & 1] = true;
  const size_t n_out0 = used[0] ? n_out : 0, n_out1 = used[1] ? n_out : 0;
  float* base = ws.f.ensure(al(n_x) + al(n_out0) + al(n_out1) + al(n_h) + al(n_c) + al(n_a) +
                            al(n_f) + al(n_pre) + al(n_xs) + al(n_xpart) + size_t(nt) * thread_ld);
  k.xproj = base;
  k.outbuf[0] = used[0] ? base + al(n_x) : nullptr;
  k.outbuf[1] = used[1] ? base + al(n_x) + al(n_out0) : nullptr;
  k.hbuf = base + al(n_x) + al(n_out0) + al(n_out1);
  k.cbuf = k.hbuf + al(n_h);
  k.abuf = n_a ? k.cbuf + al(n_c) : nullptr;
  float* feat = k.cbuf + al(n_c) + al(n_a);
  float* pre = feat + al(n_f);
  float* xs = pre + al(n_pre);
  float* xpart = xs + al(n_xs);
  float* part = xpart + al(n_xpart);
  k.pre = hh_first ? pre : nullptr;
  k.xs = interleave ? xs : nullptr;
  k.xpart = interleave ? xpart : nullptr;
  auto row_ptrs = [&](int tid) {
    return reinterpret_cast<RowPtrs*>(part + size_t(tid) * thread_ld + part_ld);
  };
  k.feat = use_feat ? feat : nullptr;
  k.in = nullptr;
  k.in_ld = 0;
  k.out = nullptr;
  k.out_ld = size_t(dirs) * Hs;

  const bool split = dirs == 2 && nt >= 2;
  // Except in a truncated top layer (a head that reads the last step only): its backward
  // direction runs one step, and the thread that ran it would then wait through the forward
  // direction's. Where a step is worth splitting, the whole team takes the two in turn
  // (mnist's BiLSTM at batch 64 on 2 threads: 6.2 -> 4.4 ms).
  const bool split_top = split && !(k.truncate_top_bwd && team_ok);
  // Barriers live on this call's stack: concurrent calls never share one.
  SpinBarrier bar_all, bar_team[2];
  bar_all.reset(nt);
  bar_team[0].reset((nt + 1) / 2);
  bar_team[1].reset(nt / 2);
  const float* top_out = L > 0 ? k.outbuf[(L - 1) & 1] : a.x;
  auto job = [&](int tid) {
    if (hh_first) {  // this thread's panels of the top layer's step
      const LayerDir& x = ld_[size_t(L - 1)];
      const Packed& P = x.whh[0];
      gemm(1, a.h0 + size_t(L - 1) * Hs, size_t(Hs), P,
           c_.cell == Cell::gru ? x.bias_h.data() : x.bias_x.data(), pre, size_t(Np_), Np_,
           tid * P.npanels / nt, (tid + 1) * P.npanels / nt, true);
      if (L == 1) bar_all.wait();  // the input projection's panels split differently
    }
    for (int l = 0; l < L; ++l) {
      Call kl = k;
      kl.in = l == 0 ? a.x : k.outbuf[(l - 1) & 1];
      kl.in_ld = size_t(c_.layer_input_size(l));
      if (l < L - 1)
        kl.out = k.outbuf[l & 1];
      else if (top_store)
        kl.out = hd == Head::none ? a.y : k.outbuf[l & 1];
      const bool by_dir = l == L - 1 ? split_top : split;
      if (by_dir) {
        const int team = tid & 1;
        run_dir(kl, l, team, tid >> 1, team == 0 ? (nt + 1) / 2 : nt / 2, bar_team[team],
                part + size_t(tid) * thread_ld, row_ptrs(tid));
      } else {
        for (int d = 0; d < dirs; ++d)
          run_dir(kl, l, d, tid, nt, bar_all, part + size_t(tid) * thread_ld, row_ptrs(tid));
      }
      // One team ran every direction: its last step's barrier already published this layer's
      // output, and what rank 0 does after it (final states) touches nothing the next layer
      // reads before its own initial-state barrier. Padding zeros (lengths) still need one.
      if (by_dir || l == L - 1 || a.lengths) bar_all.wait();
    }
    if (hd == Head::step) {
      const size_t r0 = size_t(tid) * rows / size_t(nt), r1 = size_t(tid + 1) * rows / size_t(nt);
      if (r1 > r0)
        gemm(r1 - r0, top_out + size_t(r0) * F, size_t(F), head_w_, head_b_.data(),
             a.y + size_t(r0) * O, size_t(O), O, 0, head_w_.npanels);
    } else if (hd != Head::none && tid == 0) {
      if (!use_feat)  // last_step with the whole top output stored (a backward direction)
        for (int b = 0; b < B; ++b)
          std::memcpy(feat + size_t(b) * F, top_out + k.row(len[b] - 1, b) * F, sizeof(float) * F);
      gemm(B, feat, size_t(F), head_w_, head_b_.data(), a.y, size_t(O), O, 0, head_w_.npanels);
    }
  };
  if (nt > 1)
    pool->run(nt, job);
  else
    job(0);
}

// The vectorized activations over an array, for tests/test_native_kernels.py's accuracy
// check (kind 0 = sigmoid, 1 = tanh); the tail is padded to a full vector.
inline void apply_activation_kernel(int kind, const float* x, float* y, size_t n) {
  // Eight vectors at a time, as the epilogues interleave them (vsigmoid_n), then one at a time
  // (the zero-padded tail included): the sweep checks both forms.
  constexpr int NW = 8;
  size_t i = 0;
  for (; i + NW * W <= n; i += NW * W) {
    V v[NW];
    for (int j = 0; j < NW; ++j) v[j] = S::load(x + i + size_t(j) * W);
    if (kind == 0)
      vsigmoid_n<NW>(v);
    else
      vtanh_n<NW>(v);
    for (int j = 0; j < NW; ++j) S::store(y + i + size_t(j) * W, v[j]);
  }
  float in[W], out[W];
  for (; i < n; i += W) {
    const size_t m = std::min(size_t(W), n - i);
    std::memset(in, 0, sizeof in);
    std::memcpy(in, x + i, m * sizeof(float));
    S::store(out, kind == 0 ? vsigmoid(S::load(in)) : vtanh(S::load(in)));
    std::memcpy(y + i, out, m * sizeof(float));
  }
}

// The sum of a vector's lanes, in lane order: the probes' results.
inline float lane_sum(V v) {
  float lanes[W], sum = 0;
  S::store(lanes, v);
  for (int i = 0; i < W; ++i) sum += lanes[i];
  return sum;
}

// The FMA peak probe (seqfuse.bench.machine times it): `reps` rounds of FMA_PROBE_CHAINS
// independent multiply-add chains on this kernel set's vectors, with no memory traffic.
// Enough chains cover two FMA pipes of up to 6 cycles' latency and fit in 16 registers with
// the two constants. Each chain converges to 1 (x = 0.999999 x + 1e-6), so no value goes
// denormal. Returns the FLOPs done (2 per lane and multiply-add); the sum of the chains goes
// to `sink` so that the compiler keeps every one.
constexpr int FMA_PROBE_CHAINS = 12;
inline uint64_t fma_probe_kernel(int64_t reps, float* sink) {
  V acc[FMA_PROBE_CHAINS];
  for (int i = 0; i < FMA_PROBE_CHAINS; ++i) acc[i] = S::set1(float(i));
  V a = S::set1(0.999999f), b = S::set1(1e-6f);
  S::keep(a);
  S::keep(b);
  for (int64_t r = 0; r < reps; ++r) {
#pragma GCC unroll 12
    for (int i = 0; i < FMA_PROBE_CHAINS; ++i) acc[i] = S::fma(acc[i], a, b);
  }
  V sum = S::zero();
  for (int i = 0; i < FMA_PROBE_CHAINS; ++i) sum = S::add(sum, acc[i]);
  *sink = lane_sum(sum);
  return uint64_t(reps > 0 ? reps : 0) * FMA_PROBE_CHAINS * 2 * W;
}

// The cache read probe (seqfuse.bench.machine times it): `reps` passes over p[0, n), each vector
// added into one of READ_PROBE_CHAINS running sums, so that loads, not the adds' latency, set
// the pace, as the batch-1 matrix-vector loops read their weights. Sized to a cache level, the
// array gives that level's read bandwidth for this kernel set's vectors. Returns the last
// pass's sum (the tests compare it with NumPy's), which also keeps the loads alive.
constexpr int READ_PROBE_CHAINS = 8;
inline float read_probe_kernel(const float* p, size_t n, int64_t reps) {
  constexpr size_t step = size_t(READ_PROBE_CHAINS) * W;
  float total = 0;
  for (int64_t r = 0; r < reps; ++r) {
    V acc[READ_PROBE_CHAINS];
    for (int i = 0; i < READ_PROBE_CHAINS; ++i) acc[i] = S::zero();
    size_t j = 0;
    for (; j + step <= n; j += step) {
#pragma GCC unroll 8
      for (int i = 0; i < READ_PROBE_CHAINS; ++i) acc[i] = S::add(acc[i], S::load(p + j + i * W));
    }
    for (; j + W <= n; j += W) acc[0] = S::add(acc[0], S::load(p + j));
    // every pass's sums escape (only the last one's is returned): no pass may be dropped
    for (int i = 0; i < READ_PROBE_CHAINS; ++i) S::keep(acc[i]);
    for (int i = 1; i < READ_PROBE_CHAINS; ++i) acc[0] = S::add(acc[0], acc[i]);
    total = lane_sum(acc[0]);
    for (; j < n; ++j) total += p[j];
  }
  return total;
}

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
