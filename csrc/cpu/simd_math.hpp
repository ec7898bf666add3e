// The vectorized activations of the fused engine: tanh as a rational minimax form and sigmoid
// as 1/(1 + exp(-x)) with a short exp, both <= 1e-6 relative error (sigmoid: for values down to
// 1e-30; below that an absolute 1e-30), written once over a kernel set's SIMD traits struct S
// (cpu/simd_<name>.hpp, included before this). Checked against double precision over a sweep
// of every 97th float bit pattern plus the special values (NaN, +-Inf, +-0, denormals) by
// tests/test_native_kernels.py and tests/cpp/test_kernel_sets.cpp, and end to end against eager
// PyTorch by tests/test_native.py and tests/test_native_robustness.py.
#pragma once

namespace seqfuse {
namespace SEQFUSE_NS {

using V = S::V;

// NaN propagation: S::max(a, b) and S::min(a, b) return b when either operand is NaN (x86
// maxps/minps semantics; the other structs match or return NaN either way), so every clamp
// puts the value that may be NaN second. A NaN input must come out NaN, as in eager PyTorch.

// Each activation is written over N independent values (vtanh_n, vsigmoid_n: x[0..N) in
// place), one step of the algorithm for all of them before the next: an activation is a chain
// of about 20 dependent operations, and the epilogues hand in a tile's rows (or a batch-1
// panel's groups) together, so that the chains interleave in program order. Batched LSTM and
// GRU steps took 0.974-0.985x of the time on Zen 5 (avx512; avx2 unchanged). Each value sees
// the same operations in the same order: the results are the same bits.
#define SEQFUSE_EACH(i) _Pragma("GCC unroll 8") for (int i = 0; i < N; ++i)

// tanh(x) = x * P(x^2) / Q(x^2) on |x| <= 9, degree 4 over degree 4 in x^2: one reciprocal
// (S::recip: a divide, or an estimate and a Newton step) and no exp, blend or rounding (the exp
// form cost about twice as much). The coefficients are a
// relative-error minimax fit (linear-programming differential correction, rounded to float)
// with 2.0e-7 relative error before rounding in evaluation. P(0) = Q(0) = 1 makes tanh(x) = x
// exactly where x^2 underflows (denormals, +-0 keep their sign). The fit was constrained to
// R(9) >= 1 + 1.5e-7, so R(9) rounds to 1 or just above, and the final clamp to [-1, 1]
// gives exactly +-1 from |x| = 9 on (tanh(9) is within 3.1e-8 of 1), +-Inf included, as
// eager has it. Every coefficient is positive: no cancellation in either polynomial.
template <int N>
static inline void vtanh_n(V* x) {
  if constexpr (N > 8) {  // at most 8 chains at a time: more would spill their temporaries
    vtanh_n<8>(x);
    vtanh_n<N - 8>(x + 8);
  } else {
    V z[N], p[N], q[N];
    SEQFUSE_EACH(i) {
      x[i] = S::min(S::set1(9.0f), S::max(S::set1(-9.0f), x[i]));
      z[i] = S::mul(x[i], x[i]);
    }
    SEQFUSE_EACH(i) {
      p[i] = S::fma(S::set1(8.68950423e-09f), z[i], S::set1(1.69949853e-05f));
      q[i] = S::fma(S::set1(5.79118193e-07f), z[i], S::set1(2.91779521e-04f));
    }
    SEQFUSE_EACH(i) {
      p[i] = S::fma(p[i], z[i], S::set1(3.26709030e-03f));
      q[i] = S::fma(q[i], z[i], S::set1(2.50001606e-02f));
    }
    SEQFUSE_EACH(i) {
      p[i] = S::fma(p[i], z[i], S::set1(1.31863296e-01f));
      q[i] = S::fma(q[i], z[i], S::set1(4.65196043e-01f));
    }
    SEQFUSE_EACH(i) {
      p[i] = S::fma(p[i], z[i], S::set1(1.0f));
      q[i] = S::fma(q[i], z[i], S::set1(1.0f));
    }
    SEQFUSE_EACH(i) {
      const V t = S::mul(S::mul(x[i], p[i]), S::recip(q[i]));
      x[i] = S::min(S::set1(1.0f), S::max(S::set1(-1.0f), t));
    }
  }
}
static inline V vtanh(V x) {
  vtanh_n<1>(&x);
  return x;
}

// sigmoid(x) = 1 / (1 + exp(-x)). Unlike 0.5 * tanh(x / 2) + 0.5, which loses the relative
// accuracy of small results to cancellation (about 1e-7 absolute error, so 1e-6 relative only
// above sigmoid = 0.1), this keeps every result relative-accurate: exp(-x) is relative-accurate
// over its whole range, and 1 + e and the reciprocal add about one rounding each. No branch and
// no blend on the sign of x: 1 + e never cancels.
//
// exp(-x): n = round(-x / ln 2) by the round-to-integer magic constant 1.5 * 2^23 (whose
// low mantissa bits then hold n + 127, the biased exponent that S::shl23 moves into place);
// r = -x - n ln 2 in two steps (Cody-Waite, ln 2 split into an exact high part and a low
// part); exp(r) by a degree-5 relative minimax polynomial on |r| <= ln2 / 2 (1.2e-7 error).
// x is clamped to [-88.7, 87]: at 87, exp(-x) is still a normal float (and 1 + e == 1); at
// -88.7, n = 128 and the exponent field becomes 255, so e = +Inf and the result is exactly 0,
// as eager's sigmoid(-Inf) is (for x in [-88.7, -88.03] the true result is under 5e-39).
template <int N>
static inline void vsigmoid_n(V* x) {
  if constexpr (N > 8) {
    vsigmoid_n<8>(x);
    vsigmoid_n<N - 8>(x + 8);
  } else {
    const V magic = S::set1(12583039.0f);  // 1.5 * 2^23 + 127
    V t[N], r[N], p[N];
    SEQFUSE_EACH(i) {
      x[i] = S::min(S::set1(87.0f), S::max(S::set1(-88.7f), x[i]));
      t[i] = S::fma(x[i], S::set1(-1.44269502f), magic);
    }
    SEQFUSE_EACH(i) {
      const V n = S::sub(t[i], magic);
      r[i] = S::fma(n, S::set1(0.693359375f), x[i]);  // -(reduced argument): exact n * ln2_hi
      r[i] = S::fma(n, S::set1(-2.12194442e-04f), r[i]);
    }
    // P(r) ~ exp(-r) (the fit is in the negated argument, saving a negation)
    SEQFUSE_EACH(i) p[i] = S::fma(S::set1(-8.30799621e-03f), r[i], S::set1(4.18975651e-02f));
    SEQFUSE_EACH(i) p[i] = S::fma(p[i], r[i], S::set1(-1.66673839e-01f));
    SEQFUSE_EACH(i) p[i] = S::fma(p[i], r[i], S::set1(4.99991626e-01f));
    SEQFUSE_EACH(i) p[i] = S::fma(p[i], r[i], S::set1(-9.99999762e-01f));
    SEQFUSE_EACH(i) p[i] = S::fma(p[i], r[i], S::set1(1.0f));
    SEQFUSE_EACH(i) x[i] = S::recip(S::add(S::set1(1.0f), S::mul(p[i], S::shl23(t[i]))));
  }
}
static inline V vsigmoid(V x) {
  vsigmoid_n<1>(&x);
  return x;
}
#undef SEQFUSE_EACH

}  // namespace SEQFUSE_NS
}  // namespace seqfuse
