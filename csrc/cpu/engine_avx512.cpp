// The fused CPU engine compiled for the avx512 kernel set (see cpu/engine.hpp; the build gives
// *_avx512.cpp / *_avx2.cpp files their -m flags). Checked by tests/test_native.py, which
// forces this kernel set and compares it with the scalar reference.
#ifdef SEQFUSE_X86
// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized on their own undefined-vector
// idiom; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SEQFUSE_KSET 3
#define SEQFUSE_NS isa_avx512
#include "cpu/engine.hpp"

namespace seqfuse {

std::unique_ptr<Backend> make_avx512_backend(const Config& c, const WeightMap& w) {
  return std::unique_ptr<Backend>(new isa_avx512::FastBackend(c, w));
}

bool apply_activation_avx512(int kind, const float* x, float* y, size_t n) {
  isa_avx512::apply_activation_kernel(kind, x, y, n);
  return true;
}

}  // namespace seqfuse
#endif  // SEQFUSE_X86
