// The fused CPU engine compiled for the avx2 kernel set (see cpu/engine.hpp; the build gives
// *_avx512.cpp / *_avx2.cpp files their -m flags). Checked by tests/test_native.py, which
// forces this kernel set and compares it with the scalar reference.
#ifdef SEQFUSE_X86
#define SEQFUSE_KSET 2
#define SEQFUSE_NS isa_avx2
#include "cpu/engine.hpp"

namespace seqfuse {

std::unique_ptr<Backend> make_avx2_backend(const Config& c, const WeightMap& w) {
  return std::unique_ptr<Backend>(new isa_avx2::FastBackend(c, w));
}

bool apply_activation_avx2(int kind, const float* x, float* y, size_t n) {
  isa_avx2::apply_activation_kernel(kind, x, y, n);
  return true;
}

}  // namespace seqfuse
#endif  // SEQFUSE_X86
