// The kernel-set registry of the CPU engine. A kernel set is one compiled variant of the
// fused loop (cpu/engine.hpp over one SIMD traits header, cpu/simd_<name>.hpp) in one
// translation unit, cpu/engine_<name>.cpp, which declares it with SEQFUSE_KERNEL_SET. CMake
// adds a kernel set with one call, seqfuse_kernel_set(NAME FEATURES...): the call order is the
// preference order of "auto", the features become the file's -m flags and the CPU check.
// "reference" (cpu/reference.cpp, the scalar oracle) is registered too, never picked by auto.
// Checked by tests/test_native_kernels.py (build_info and the engine agree under every
// SEQFUSE_ISA value) and by every parity test, which runs each kernel set the CPU supports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/backend.hpp"

namespace seqfuse {

struct KernelSet {
  const char* name;      // "avx512", "avx2", "portable", "reference", ...
  const char* features;  // CPU features it needs, space-separated ("" = any CPU)
  std::unique_ptr<Backend> (*make)(const Config& c, const WeightMap& w);
  // The vectorized sigmoid (kind 0) / tanh (kind 1) over an array, for the accuracy tests;
  // null for the reference.
  void (*activation)(int kind, const float* x, float* y, size_t n);
  // The FMA peak probe (engine.hpp's fma_probe_kernel): FLOPs done; null for the reference.
  uint64_t (*fma_probe)(int64_t reps, float* sink);
  // The cache read probe (engine.hpp's read_probe_kernel): `reps` passes of vector loads over
  // p[0, n), returning the last pass's sum; null for the reference.
  float (*read_probe)(const float* p, size_t n, int64_t reps);
};

// Every kernel set compiled into this build, most preferred first, then "reference".
const std::vector<const KernelSet*>& kernel_set_table();
// Whether this CPU has every feature a kernel set needs.
bool cpu_supports(const KernelSet& k);
// The kernel set a name resolves to: "auto" (or "") is SEQFUSE_ISA when set, else the first
// one this CPU supports. Throws Unsupported for an unknown name or one this CPU cannot run.
const KernelSet& resolve_kernel_set(const std::string& name);

}  // namespace seqfuse

// Declares this translation unit's kernel set: the engine of namespace seqfuse::SEQFUSE_NS,
// with the CPU features CMake gave it (SEQFUSE_KSET_FEATURES). Registered by the table that
// CMake generates from the seqfuse_kernel_set() calls. The entry points are named functions
// of SEQFUSE_NS (not lambdas, which some compilers name after no namespace) so that every
// function compiled with the kernel set's -m flags carries its namespace:
// tests/test_build.py checks that no other function of the library uses vector instructions.
#define SEQFUSE_KERNEL_SET(NAME)                                                                \
  namespace seqfuse {                                                                           \
  namespace SEQFUSE_NS {                                                                        \
  static std::unique_ptr<Backend> make_backend(const Config& c, const WeightMap& w) {           \
    return std::unique_ptr<Backend>(new FastBackend(c, w));                                     \
  }                                                                                             \
  static void activation(int kind, const float* x, float* y, size_t n) {                        \
    apply_activation_kernel(kind, x, y, n);                                                     \
  }                                                                                             \
  static uint64_t fma_probe(int64_t reps, float* sink) { return fma_probe_kernel(reps, sink); } \
  static float read_probe(const float* p, size_t n, int64_t reps) {                             \
    return read_probe_kernel(p, n, reps);                                                       \
  }                                                                                             \
  }                                                                                             \
  extern const KernelSet kernel_set_##NAME;                                                     \
  const KernelSet kernel_set_##NAME = {#NAME,                                                   \
                                       SEQFUSE_KSET_FEATURES,                                   \
                                       &SEQFUSE_NS::make_backend,                               \
                                       &SEQFUSE_NS::activation,                                 \
                                       &SEQFUSE_NS::fma_probe,                                  \
                                       &SEQFUSE_NS::read_probe};                                \
  }
