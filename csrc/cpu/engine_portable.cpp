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
  isa_portable::apply_activation_kernel(kind, x, y, n);
  return true;
}

}  // namespace seqfuse
