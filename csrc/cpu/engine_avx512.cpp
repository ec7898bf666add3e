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
  using namespace isa_avx512;
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
#endif  // SEQFUSE_X86
