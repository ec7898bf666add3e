// seqfuse public C++ API: the one header an application includes. Framework-free C++17.
// Checked by tests/test_build.py (through seqfuse._C) and the C++ apps in export/.
#pragma once

#include <string>

namespace seqfuse {

// What this binary was built with: compiler, the SIMD level picked at run time on this CPU,
// and whether the CUDA backend is compiled in.
struct BuildInfo {
  std::string version;   // seqfuse version, e.g. "0.1.0"
  std::string compiler;  // e.g. "GNU 12.2.0"
  std::string simd;      // best kernel set usable on this CPU: "avx512", "avx2", "portable"
  bool cuda;             // true if the CUDA backend is compiled in
};
BuildInfo build_info();

// Scalar reference for one step of a tanh RNN cell (PyTorch's nn.RNNCell), the simplest
// oracle the fused loops are grown from.
//   x:    [B, D]   input at this step
//   h:    [B, H]   previous hidden state
//   w_ih: [H, D]   input weights;  w_hh: [H, H] recurrent weights
//   b_ih, b_hh: [H] biases (either may be null for bias=False)
//   out:  [B, H]   h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh); may alias neither input
void rnn_tanh_step_reference(int B, int D, int H, const float* x, const float* h,
                             const float* w_ih, const float* w_hh, const float* b_ih,
                             const float* b_hh, float* out);

}  // namespace seqfuse
