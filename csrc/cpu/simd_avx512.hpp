// SIMD traits of the avx512 kernel set: the vector type and the operations the fused engine
// (cpu/engine.hpp) and its activations (cpu/simd_math.hpp) are written over. 16 fp32 lanes; needs
// AVX-512 F, VL, DQ, BW and FMA. Included first by cpu/engine_avx512.cpp, which declares the kernel
// set; checked by tests/test_native.py and tests/cpp/test_engine.cpp (every kernel set vs the
// reference) and tests/test_native_kernels.py (the activations).
#pragma once

#include <immintrin.h>

#include <limits>

// SEQFUSE_NS: this kernel set's namespace, set by its engine_*.cpp.
namespace seqfuse {
namespace SEQFUSE_NS {

struct S {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int REGS = 32;  // zmm0-31
  // GEMM micro-tile: 6 rows x 4 vectors = 24 accumulators, 4 weight vectors and a broadcast.
  // A column block's weights (K x 256 B) outgrow L1 at K > 192 and stream from L2 once per row
  // tile: 6 rows instead of 4 took a GEMM-bound LSTM(1024,64) T=100 b64 call to 0.82x.
  static constexpr int GEMM_MR = 6;
  static constexpr int GEMM_NV = 4;
  // Batched recurrent micro-tile: 6 rows x one group's 4 LSTM gates = 24 accumulators (4 rows:
  // 0.89-0.97x of the time at b8-b64, LSTM H=128-512).
  static constexpr int STEP_MR = 6;
  // Pins a value in a register (any of zmm0-31): keeps weight vectors out of the FMAs' memory
  // operands.
  static void keep(V& v) { __asm__("" : "+v"(v)); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), v);
  }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V zero() { return _mm512_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  // 1 / d to about 1 ulp for d > 0: the 14-bit estimate and one Newton step, instead of the
  // slow zmm divide (the activations' 2-6% of batch-1 calls and 1.5% of LSTM(256,512) b64 on
  // Sapphire Rapids). +Inf gives 0 (the step alone would make it NaN), NaN stays NaN.
  static V recip(V d) {
    const V r = _mm512_rcp14_ps(d);
    const V n = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
    return _mm512_mask_mov_ps(
        n,
        _mm512_cmp_ps_mask(d, _mm512_set1_ps(std::numeric_limits<float>::infinity()), _CMP_EQ_OQ),
        r);
  }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  // The bits of v as int32 shifted left by 23: an integer held in v's low mantissa bits
  // (see vsigmoid's magic constant) becomes the exponent field.
  static V shl23(V v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(v), 23)); }
};

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
