// SIMD traits of the portable kernel set: the vector type and the operations the fused engine
// (cpu/engine.hpp) and its activations (cpu/simd_math.hpp) are written over. 4 lanes as a GCC/Clang
// vector type that the compiler lowers to the base ISA of the target; runs on any CPU. Included
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
  // GCC/Clang vector extensions, 16 bytes: one SSE2 or Advanced SIMD register (the base ISA
  // of x86-64 and AArch64; elsewhere the compiler writes scalar code). Unlike a struct of
  // floats with a loop per operation, the compiler sees whole-vector operations: the set
  // compiles in a third of the time under the sanitizers' -O1.
  typedef float V __attribute__((vector_size(16)));
  typedef int32_t VI __attribute__((vector_size(16)));
  static constexpr int W = 4;
  static constexpr int REGS = 16;  // what the tiles assume of an unknown target
  static constexpr int GEMM_MR = 2;
  static constexpr int GEMM_NV = 4;
  static constexpr int STEP_MR = 2;
  static void keep(V&) {}  // the compiler places them
  static V load(const float* p) {
    V r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static void store_n(float* p, V v, int n) { std::memcpy(p, &v, sizeof(float) * size_t(n)); }
  static V set1(float x) { return V{} + x; }
  static V zero() { return V{}; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V recip(V d) { return div(set1(1.0f), d); }  // simd_math.hpp's reciprocal: exact
  static V max(V a, V b) { return a > b ? a : b; }    // NaN: b
  static V min(V a, V b) { return a < b ? a : b; }    // NaN: b
  // The bits of v shifted left by 23: an integer held in v's low mantissa bits (see
  // vsigmoid's magic constant) becomes the exponent field.
  static V shl23(V v) {
    VI bits;
    std::memcpy(&bits, &v, sizeof v);
    bits <<= 23;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
};

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
