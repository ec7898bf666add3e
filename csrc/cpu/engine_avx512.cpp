// The avx512 kernel set: the fused engine (cpu/engine.hpp) over 16-lane AVX-512 traits.
// CMake compiles this file with the kernel set's -m flags (seqfuse_kernel_set). Checked by
// tests/test_native.py and tests/cpp/test_engine.cpp against the scalar reference.
// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized on their own undefined-vector idiom;
// the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define SEQFUSE_NS isa_avx512
// The traits first: the engine is written over them.
#include "cpu/simd_avx512.hpp"
//
#include "cpu/engine.hpp"

SEQFUSE_KERNEL_SET(avx512)
