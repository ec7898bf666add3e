// SIMD traits of the avx2 kernel set: the vector type and the operations the fused engine
// (cpu/engine.hpp) and its activations (cpu/simd_math.hpp) are written over. 8 fp32 lanes; needs
// AVX2 and FMA. Included first by cpu/engine_avx2.cpp, which declares the kernel set; checked by
// tests/test_native.py and tests/cpp/test_engine.cpp (every kernel set vs the reference) and
// tests/test_native_kernels.py (the activations).
#pragma once

#include <immintrin.h>

// SEQFUSE_NS: this kernel set's namespace, set by its engine_*.cpp.
namespace seqfuse {
namespace SEQFUSE_NS {

struct S {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int REGS = 16;  // ymm0-15
  // GEMM register tile: 6 rows x 2 vectors = 12 accumulators, plus the 2 weight vectors and a
  // broadcast: 15 of the 16 ymm registers (the 6x16 tile of MLAS's FMA3 SGEMM).
  static constexpr int GEMM_MR = 6;
  static constexpr int GEMM_NV = 2;
  // Batched step tile: 3 rows x one LSTM group (4 vectors) = 12 accumulators; the weights
  // stay FMA memory operands (L1-resident, K-blocked), which measured faster than 2 rows with
  // the weights pinned (a longer FMA dependency slack).
  static constexpr int STEP_MR = 3;
  // Pins a value in a register: without it gcc folds the weight loads into every row's FMA
  // (a memory operand per FMA), and the loads, not the FMAs, bound the tile.
  static void keep(V& v) { __asm__("" : "+x"(v)); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(p, m, v);
  }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V zero() { return _mm256_setzero_ps(); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  // The divide: the 12-bit estimate with one Newton step breaks tanh(x) = x where x^2
  // underflows (rcp(1) * (2 - rcp(1)) rounds below 1); a second step's gain is unmeasured.
  static V recip(V d) { return div(set1(1.0f), d); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  // The bits of v as int32 shifted left by 23: an integer held in v's low mantissa bits
  // (see vsigmoid's magic constant) becomes the exponent field.
  static V shl23(V v) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(v), 23)); }
};

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
