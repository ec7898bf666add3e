// SIMD traits for the fused CPU engine: one struct per kernel set (AVX-512, AVX2+FMA, and a
// portable 8-lane struct the compiler vectorizes as it can), plus the vectorized exp,
// sigmoid and tanh built on them (Cephes-style, <= 1e-6 relative error; checked against
// double precision by tests/test_native_kernels.py). Included only by the per-ISA files,
// inside their own namespace, with SEQFUSE_KSET set to 1 (portable), 2 (avx2) or 3 (avx512).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if SEQFUSE_KSET >= 2
#include <immintrin.h>
#endif

#if SEQFUSE_KSET == 3
struct S {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int GEMM_MR = 4;  // rows per GEMM micro-tile (x 4 vectors = 16 accumulators)
  static constexpr int STEP_MR = 4;  // rows per batched recurrent micro-tile
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
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V abs(V x) { return _mm512_abs_ps(x); }
  static V floor(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // a < b ? x : y, lane-wise
  static V select_lt(V a, V b, V x, V y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  // |mag| with the sign of sgn
  static V copysign(V mag, V sgn) {
    const __m512i sm = _mm512_set1_epi32(int(0x80000000u));
    __m512i m = _mm512_andnot_si512(sm, _mm512_castps_si512(mag));
    __m512i s = _mm512_and_si512(sm, _mm512_castps_si512(sgn));
    return _mm512_castsi512_ps(_mm512_or_si512(m, s));
  }
  // 2^n for integral-valued n in [-126, 127]
  static V pow2n(V n) {
    __m512i i = _mm512_cvtps_epi32(n);
    i = _mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(i);
  }
};
#elif SEQFUSE_KSET == 2
struct S {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int GEMM_MR = 2;
  static constexpr int STEP_MR = 2;
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
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V abs(V x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  static V floor(V x) { return _mm256_floor_ps(x); }
  static V select_lt(V a, V b, V x, V y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static V copysign(V mag, V sgn) {
    const V sm = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sm, mag), _mm256_and_ps(sm, sgn));
  }
  static V pow2n(V n) {
    __m256i i = _mm256_cvtps_epi32(n);
    i = _mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(i);
  }
};
#else
// Portable: 8 lanes in a plain struct; loops the compiler may vectorize for the base ISA.
struct S {
  struct V {
    float v[8];
  };
  static constexpr int W = 8;
  static constexpr int GEMM_MR = 2;
  static constexpr int STEP_MR = 2;
#define SEQFUSE_LANES(expr)                    \
  V r;                                         \
  for (int l = 0; l < 8; ++l) r.v[l] = (expr); \
  return r
  static V load(const float* p) {
    V r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, V v) { std::memcpy(p, v.v, sizeof v.v); }
  static void store_n(float* p, V v, int n) { std::memcpy(p, v.v, sizeof(float) * size_t(n)); }
  static V set1(float x) { SEQFUSE_LANES(x); }
  static V zero() { SEQFUSE_LANES(0.0f); }
  static V fma(V a, V b, V c) { SEQFUSE_LANES(a.v[l] * b.v[l] + c.v[l]); }
  static V add(V a, V b) { SEQFUSE_LANES(a.v[l] + b.v[l]); }
  static V sub(V a, V b) { SEQFUSE_LANES(a.v[l] - b.v[l]); }
  static V mul(V a, V b) { SEQFUSE_LANES(a.v[l] * b.v[l]); }
  static V div(V a, V b) { SEQFUSE_LANES(a.v[l] / b.v[l]); }
  static V max(V a, V b) { SEQFUSE_LANES(a.v[l] > b.v[l] ? a.v[l] : b.v[l]); }  // NaN: b
  static V abs(V x) { SEQFUSE_LANES(x.v[l] < 0 ? -x.v[l] : x.v[l]); }
  static V floor(V x) {
    // inputs here are within +-200 or NaN (kept: converting NaN to int is undefined)
    SEQFUSE_LANES(x.v[l] != x.v[l] ? x.v[l]
                                   : float(int(x.v[l]) - (float(int(x.v[l])) > x.v[l] ? 1 : 0)));
  }
  static V select_lt(V a, V b, V x, V y) { SEQFUSE_LANES(a.v[l] < b.v[l] ? x.v[l] : y.v[l]); }
  static V copysign(V mag, V sgn) {
    SEQFUSE_LANES((sgn.v[l] < 0 || (sgn.v[l] == 0 && std::signbit(sgn.v[l])))
                      ? -(mag.v[l] < 0 ? -mag.v[l] : mag.v[l])
                      : (mag.v[l] < 0 ? -mag.v[l] : mag.v[l]));
  }
  static V pow2n(V n) {
    V r;
    for (int l = 0; l < 8; ++l) {
      // NaN n (a NaN input on its way through): any finite scale keeps the NaN product.
      const int e = n.v[l] == n.v[l] ? int(n.v[l]) : 0;
      uint32_t bits = uint32_t(e + 127) << 23;
      std::memcpy(&r.v[l], &bits, 4);
    }
    return r;
  }
#undef SEQFUSE_LANES
};
#endif

// ---- vectorized activations (Cephes expf / tanhf) ------------------------------------------
using V = S::V;

// NaN propagation: S::max(a, b) returns b when either operand is NaN (x86 maxps semantics;
// the portable struct matches), so every clamp puts the value that may be NaN second. A NaN
// input must come out NaN, as in eager PyTorch, never as a finite number.
//
// exp(x) for x <= 0; flushes to ~exp(-87) below that (results under FLT_MIN are not needed).
static inline V vexp_neg(V x) {
  x = S::max(S::set1(-87.0f), x);
  V n = S::floor(S::fma(x, S::set1(1.44269504088896341f), S::set1(0.5f)));
  V r = S::fma(n, S::set1(-0.693359375f), x);
  r = S::fma(n, S::set1(2.12194440e-4f), r);
  V p = S::set1(1.9875691500e-4f);
  p = S::fma(p, r, S::set1(1.3981999507e-3f));
  p = S::fma(p, r, S::set1(8.3334519073e-3f));
  p = S::fma(p, r, S::set1(4.1665795894e-2f));
  p = S::fma(p, r, S::set1(1.6666665459e-1f));
  p = S::fma(p, r, S::set1(5.0000001201e-1f));
  V y = S::fma(p, S::mul(r, r), S::add(r, S::set1(1.0f)));
  return S::mul(y, S::pow2n(n));
}

static inline V vsigmoid(V x) {
  V e = vexp_neg(S::sub(S::zero(), S::abs(x)));  // exp(-|x|) in (0, 1]
  V s = S::div(S::set1(1.0f), S::add(S::set1(1.0f), e));
  return S::select_lt(x, S::zero(), S::mul(e, s), s);  // x<0: e/(1+e)
}

static inline V vtanh(V x) {
  V a = S::abs(x);
  V z = S::mul(x, x);
  V p = S::set1(-5.70498872745e-3f);
  p = S::fma(p, z, S::set1(2.06390887954e-2f));
  p = S::fma(p, z, S::set1(-5.37397155531e-2f));
  p = S::fma(p, z, S::set1(1.33314422036e-1f));
  p = S::fma(p, z, S::set1(-3.33332819422e-1f));
  V small = S::fma(S::mul(p, z), x, x);
  V e = vexp_neg(S::mul(a, S::set1(-2.0f)));
  V big = S::div(S::sub(S::set1(1.0f), e), S::add(S::set1(1.0f), e));
  return S::select_lt(a, S::set1(0.625f), small, S::copysign(big, x));
}
