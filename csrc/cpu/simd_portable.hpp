// SIMD traits of the portable kernel set: the vector type and the operations the fused engine
// (cpu/engine.hpp) and its activations (cpu/simd_math.hpp) are written over. 8 lanes in a plain
// struct that the compiler vectorizes for the base ISA of the target; runs on any CPU. Included
// first by cpu/engine_portable.cpp, which declares the kernel set; checked by tests/test_native.py
// and tests/cpp/test_engine.cpp (every kernel set vs the reference) and
// tests/test_native_kernels.py (the activations).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// SEQFUSE_NS: this kernel set's namespace, set by its engine_*.cpp.
namespace seqfuse {
namespace SEQFUSE_NS {

struct S {
  struct V {
    float v[8];
  };
  static constexpr int W = 8;
  static constexpr int REGS = 16;  // what the tiles assume of an unknown target
  static constexpr int GEMM_MR = 2;
  static constexpr int GEMM_NV = 4;
  static constexpr int STEP_MR = 2;
  static void keep(V&) {}  // plain arrays: the compiler places them
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
  static V min(V a, V b) { SEQFUSE_LANES(a.v[l] < b.v[l] ? a.v[l] : b.v[l]); }  // NaN: b
  // The bits of v shifted left by 23: an integer held in v's low mantissa bits (see
  // vsigmoid's magic constant) becomes the exponent field.
  static V shl23(V v) {
    V r;
    for (int l = 0; l < 8; ++l) {
      uint32_t bits;
      std::memcpy(&bits, &v.v[l], 4);
      bits <<= 23;
      std::memcpy(&r.v[l], &bits, 4);
    }
    return r;
  }
#undef SEQFUSE_LANES
};

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
