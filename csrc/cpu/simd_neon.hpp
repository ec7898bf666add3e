// SIMD traits of the neon kernel set (AArch64 Advanced SIMD): the vector type and the operations
// the fused engine (cpu/engine.hpp) and its activations (cpu/simd_math.hpp) are written over.
// 4 fp32 lanes, 32 vector registers; Advanced SIMD is part of every AArch64 CPU, so the kernel
// set needs no feature check. Included first by cpu/engine_neon.cpp, which declares the kernel
// set; checked by tests/cpp/test_engine.cpp (every kernel set vs the reference), which CI
// cross-compiles and runs under qemu-aarch64 (.ci/arm), and on an ARM host by every parity test.
#pragma once

#include <arm_neon.h>

#include <cstring>

// SEQFUSE_NS: this kernel set's namespace, set by its engine_*.cpp.
namespace seqfuse {
namespace SEQFUSE_NS {

struct S {
  using V = float32x4_t;
  static constexpr int W = 4;
  static constexpr int REGS = 32;  // v0-v31
  // GEMM register tile: 6 rows x 4 vectors = 24 accumulators, 4 weight vectors, a broadcast.
  static constexpr int GEMM_MR = 6;
  static constexpr int GEMM_NV = 4;
  static constexpr int STEP_MR = 4;
  static void keep(V& v) { __asm__("" : "+w"(v)); }
  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static void store_n(float* p, V v, int n) {
    float t[4];
    vst1q_f32(t, v);
    std::memcpy(p, t, sizeof(float) * size_t(n));
  }
  static V set1(float x) { return vdupq_n_f32(x); }
  static V zero() { return vdupq_n_f32(0.0f); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V recip(V d) { return div(set1(1.0f), d); }  // simd_math.hpp's reciprocal: exact
  // FMAX and FMIN return NaN when either operand is NaN: max(lo, x) keeps a NaN x, as the
  // clamps in simd_math.hpp need (they put the possibly-NaN operand second for x86's maxps).
  static V max(V a, V b) { return vmaxq_f32(a, b); }
  static V min(V a, V b) { return vminq_f32(a, b); }
  // The bits of v shifted left by 23: an integer held in v's low mantissa bits (see
  // vsigmoid's magic constant) becomes the exponent field.
  static V shl23(V v) { return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(v), 23)); }
};

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
