// The fused CPU engine compiled for the portable kernel set (see cpu/engine.hpp; the build gives
// *_avx512.cpp / *_avx2.cpp files their -m flags). Checked by tests/test_native.py, which
// forces this kernel set and compares it with the scalar reference.
#define SEQFUSE_KSET 1
#define SEQFUSE_NS isa_portable
#include "cpu/engine.hpp"

namespace seqfuse {

std::unique_ptr<Backend> make_portable_backend(const Config& c, const WeightMap& w) {
  return std::unique_ptr<Backend>(new isa_portable::FastBackend(c, w));
}

bool apply_activation_portable(int kind, const float* x, float* y, size_t n) {
  using namespace isa_portable;
  float in[W], out[W];
  for (size_t i = 0; i < n; i += W) {
    const size_t m = std::min(size_t(W), n - i);
    std::memset(in, 0, sizeof in);
    std::memcpy(in, x + i, m * sizeof(float));
    S::store(out, kind == 0 ? vsigmoid(S::load(in)) : vtanh(S::load(in)));
    std::memcpy(y + i, out, m * sizeof(float));
  }
  return true;
}

}  // namespace seqfuse
