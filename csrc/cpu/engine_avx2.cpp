// The avx2 kernel set: the fused engine (cpu/engine.hpp) over 8-lane AVX2+FMA traits.
// CMake compiles this file with the kernel set's -m flags (seqfuse_kernel_set). Checked by
// tests/test_native.py and tests/cpp/test_engine.cpp against the scalar reference.
#define SEQFUSE_NS isa_avx2
// The traits first: the engine is written over them.
#include "cpu/simd_avx2.hpp"
//
#include "cpu/engine.hpp"

SEQFUSE_KERNEL_SET(avx2)
