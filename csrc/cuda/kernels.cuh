// Internal declarations of the CUDA backend: kernel launchers shared by cuda/gemm.cu,
// cuda/recurrent.cu and cuda/model.cu (not installed). Checked through tests/test_native_cuda.py.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/plan.hpp"
#include "seqfuse/seqfuse.hpp"

namespace seqfuse {
namespace cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("seqfuse CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// Loads the GEMM and head kernels (call once per device, outside any stream capture).
void prepare_gemm_kernels();

// C[M, N] = A[M, K] · W[N, K]^T (+ bias[N]); row strides lda, ldw, ldc (elements).
void gemm_bt(int M, int N, int K, const float* A, int lda, const float* W, int ldw,
             const float* bias, float* C, int ldc, cudaStream_t s);

// Heads that read one feature row per sequence: y[b, :] = W · f_b + bias with
//   last_step:   f_b = feat row (len_b - 1, b) of [rows, F] in the caller's row order;
//   last_hidden: f_b = [h_top_fwd[b], h_top_bwd[b]] from hn_top [dirs, B, H].
void head_rows(bool last_step, int B, int T, bool batch_first, const int64_t* lengths,
               const float* feat, int F, const float* hn_top, int dirs, int H, const float* W,
               const float* bias, int O, float* y, cudaStream_t s);

// One layer (both directions) of the recurrence. gx holds the input projections with the
// biases folded in (b_ih + b_hh, except GRU's n gate: b_in only), one row per (t, b) in the
// caller's order, dir d's gate g of unit j at column d*G*H + g*H + j (ldg = dirs*G*H); with
// tokens != null, gx is the [vocab, ldg] Embedding table and row (t, b) is gx[tokens[row]].
struct LayerArgs {
  int B = 1, T = 1, H = 1, G = 1, dirs = 1;
  Cell cell = Cell::lstm;
  bool batch_first = true;
  const float* gx = nullptr;
  int ldg = 0;
  const int64_t* tokens = nullptr;
  int vocab = 0;
  const float* whh = nullptr;  // [dirs, G*H, H] recurrent weights
  // bf16 mode: [dirs, G*H, ldw2] the same weights as bf16 pairs (weight 2q in the low half,
  // 2q + 1 in the high half, a zero pad when H is odd); ldw2 = ceil(H / 2). Else null.
  const uint32_t* whh_bf16 = nullptr;
  int ldw2 = 0;
  const float* bhn = nullptr;        // [dirs, H] GRU b_hn, or null
  const int64_t* lengths = nullptr;  // [B] on the device, or null (all T)
  const float* h0 = nullptr;         // [dirs, B, H] or null (zeros)
  const float* c0 = nullptr;         // [dirs, B, H] or null (zeros); LSTM only
  float* hn = nullptr;               // [dirs, B, H] or null
  float* cn = nullptr;               // [dirs, B, H] or null
  float* y = nullptr;                // rows as gx, dir d's unit j at column d*H + j
  int ldy = 0;
};

// Device limits the planner needs.
struct DeviceInfo {
  int major = 0, minor = 0, sms = 0;
  size_t smem_optin = 48 * 1024;
  bool clusters = false;  // thread-block cluster launch supported (sm_90+)
};

PlanInput plan_input(const LayerArgs& a, const DeviceInfo& dev, int max_cluster);
// Sets the kernels' attributes (dynamic shared memory, non-portable cluster size) once per
// device; call before any launch (outside stream capture).
void prepare_recurrent_kernels(const DeviceInfo& dev);
// True if the persistent kernel with this plan can be resident (cluster occupancy > 0).
bool persistent_fits(const Plan& p, const DeviceInfo& dev);
void run_persistent(const LayerArgs& a, const Plan& p, cudaStream_t s);
// The fallback: one launch per step; scratch: 2*dirs*B*H (h ping-pong) + dirs*B*H (c) floats.
void run_stepwise(const LayerArgs& a, float* scratch, cudaStream_t s);

// The fused small-T kernel (cuda/fused.cu): all layers and the head of a unidirectional model
// in one launch. Per-layer weights as in the persistent path (biases folded, GRU b_hn apart).
struct FusedArgs {
  int B = 1, T = 1, H = 1, G = 1, L = 1, D = 0;
  Cell cell = Cell::lstm;
  int head = 0;  // 0 none (y = top h, [rows, H]), 1 step, 2 last_step, 3 last_hidden
  int O = 0;
  bool batch_first = true;
  const float* x = nullptr;         // [rows, D] when D > 0
  const int64_t* tokens = nullptr;  // [rows] when an Embedding table feeds layer 0
  const float* table = nullptr;     // [vocab, ldt]
  int vocab = 0, ldt = 0;
  const float* wih[kFusedMaxLayers] = {};   // [G*H, layer input]
  const float* whh[kFusedMaxLayers] = {};   // [G*H, H]
  const float* bias[kFusedMaxLayers] = {};  // [G*H] or null
  const float* bhn[kFusedMaxLayers] = {};   // [H] or null
  const float* h0 = nullptr;                // [L, B, H] or null
  const float* c0 = nullptr;                // [L, B, H] or null
  float* hn = nullptr;                      // [L, B, H] or null (may alias h0)
  float* cn = nullptr;                      // [L, B, H] or null (may alias c0)
  float* y = nullptr;
  const float* head_w = nullptr;  // [O, H]
  const float* head_b = nullptr;  // [O]
};
void prepare_fused_kernel(const DeviceInfo& dev);
bool fused_fits(const FusedPlan& p, const DeviceInfo& dev);
void run_fused(const FusedArgs& a, const FusedPlan& p, cudaStream_t s);

}  // namespace cuda
}  // namespace seqfuse
