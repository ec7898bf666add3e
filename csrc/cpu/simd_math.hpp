// The vectorized activations of the fused engine (Cephes-style exp, sigmoid and tanh,
// <= 1e-6 relative error), written once over a kernel set's SIMD traits struct S
// (cpu/simd_<name>.hpp, included before this). Checked against double precision, NaN and Inf
// by tests/test_native_kernels.py and tests/test_native_robustness.py.
#pragma once

namespace seqfuse {
namespace SEQFUSE_NS {

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

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
