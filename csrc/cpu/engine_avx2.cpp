// The avx2 kernel set: the fused engine (cpu/engine.hpp) over 8-lane AVX2+FMA traits.
// CMake compiles this file with the kernel set's -m flags (seqfuse_kernel_set). Checked by
// tests/test_native.py and tests/cpp/test_engine.cpp against the scalar reference.
#define SEQFUSE_NS isa_avx2
#include "cpu/engine.hpp"
#include "cpu/simd_avx2.hpp"

SEQFUSE_KERNEL_SET(avx2)
