// The neon kernel set: the fused engine (cpu/engine.hpp) over 4-lane AArch64 Advanced SIMD
// traits. CMake adds it on AArch64 targets (seqfuse_kernel_set). Checked by
// tests/cpp/test_engine.cpp against the scalar reference (in CI under qemu-aarch64: .ci/arm).
#define SEQFUSE_NS isa_neon
// The traits first: the engine is written over them.
#include "cpu/simd_neon.hpp"
//
#include "cpu/engine.hpp"

SEQFUSE_KERNEL_SET(neon)
