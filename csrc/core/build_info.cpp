// Build information and the scalar reference RNN step. Checked by tests/test_build.py.
#include <cmath>

#include "seqfuse/seqfuse.hpp"

#ifndef SEQFUSE_COMPILER
#define SEQFUSE_COMPILER "unknown"
#endif
#ifndef SEQFUSE_VERSION
#error "SEQFUSE_VERSION comes from pyproject.toml through CMakeLists.txt"
#endif

namespace seqfuse {

static std::string detect_simd() {
#if defined(SEQFUSE_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
  return "portable";
}

BuildInfo build_info() {
#ifdef SEQFUSE_WITH_CUDA
  const bool cuda = true;
#else
  const bool cuda = false;
#endif
  return BuildInfo{SEQFUSE_VERSION, SEQFUSE_COMPILER, detect_simd(), cuda};
}

void rnn_tanh_step_reference(int B, int D, int H, const float* x, const float* h, const float* w_ih,
                             const float* w_hh, const float* b_ih, const float* b_hh, float* out) {
  for (int b = 0; b < B; ++b) {
    for (int j = 0; j < H; ++j) {
      double acc = (b_ih ? b_ih[j] : 0.0) + (b_hh ? b_hh[j] : 0.0);
      for (int k = 0; k < D; ++k) acc += double(w_ih[j * D + k]) * x[b * D + k];
      for (int k = 0; k < H; ++k) acc += double(w_hh[j * H + k]) * h[b * H + k];
      out[b * H + j] = static_cast<float>(std::tanh(acc));
    }
  }
}

}  // namespace seqfuse
