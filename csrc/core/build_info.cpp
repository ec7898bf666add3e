// Build information, and the scalar reference RNN step (a test hook; its public name is
// deprecated). Checked by tests/test_build.py.
#include <cmath>

#include "core/testing.hpp"
#include "cpu/kernel_set.hpp"

#ifndef SEQFUSE_COMPILER
#define SEQFUSE_COMPILER "unknown"
#endif
#ifndef SEQFUSE_VERSION
#error "SEQFUSE_VERSION comes from pyproject.toml through CMakeLists.txt"
#endif

namespace seqfuse {

// The same rule the engine applies to "auto" (cpu/kernel_sets.cpp): never a second one.
static std::string default_kernel_set() {
  try {
    return resolve_kernel_set("auto").name;
  } catch (const Unsupported& e) {  // SEQFUSE_ISA names a kernel set that cannot run here
    return std::string("none (") + e.what() + ")";
  }
}

BuildInfo build_info() {
#ifdef SEQFUSE_WITH_CUDA
  const bool cuda = true;
#else
  const bool cuda = false;
#endif
  return BuildInfo{SEQFUSE_VERSION, SEQFUSE_COMPILER, default_kernel_set(), cuda};
}

namespace testing {
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

}  // namespace testing

// The deprecated public alias of testing::rnn_tanh_step_reference.
void rnn_tanh_step_reference(int B, int D, int H, const float* x, const float* h, const float* w_ih,
                             const float* w_hh, const float* b_ih, const float* b_hh, float* out) {
  testing::rnn_tanh_step_reference(B, D, H, x, h, w_ih, w_hh, b_ih, b_hh, out);
}

}  // namespace seqfuse
