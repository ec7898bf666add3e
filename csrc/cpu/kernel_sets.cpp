// The kernel-set table (cpu/kernel_set.hpp): the kernel sets CMake compiled in, in its
// preference order (generated kernel_sets.inc), plus the scalar reference; the CPU checks and
// the resolution of "auto" and SEQFUSE_ISA. ISA-neutral code: nothing here runs a kernel set's
// instructions. Checked by tests/test_native_kernels.py and every parity test.
#include <cstdlib>
#include <sstream>

#include "core/testing.hpp"
#include "cpu/kernel_set.hpp"

namespace seqfuse {

#define SEQFUSE_KERNEL_SET_ENTRY(NAME) extern const KernelSet kernel_set_##NAME;
#include "kernel_sets.inc"
#undef SEQFUSE_KERNEL_SET_ENTRY
extern const KernelSet kernel_set_reference;

const std::vector<const KernelSet*>& kernel_set_table() {
  static const std::vector<const KernelSet*> table = {
#define SEQFUSE_KERNEL_SET_ENTRY(NAME) &kernel_set_##NAME,
#include "kernel_sets.inc"
#undef SEQFUSE_KERNEL_SET_ENTRY
      &kernel_set_reference};
  return table;
}

// One CPU feature by name (the names seqfuse_kernel_set() takes).
static bool cpu_has(const std::string& f) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
#endif
  (void)f;
  return false;  // a feature this build cannot check is a feature it does not count on
}

bool cpu_supports(const KernelSet& k) {
  std::istringstream in(k.features);
  for (std::string f; in >> f;)
    if (!cpu_has(f)) return false;
  return true;
}

static std::string names() {
  std::string s = "auto";
  for (const KernelSet* k : kernel_set_table()) s += std::string(", ") + k->name;
  return s;
}

const KernelSet& resolve_kernel_set(const std::string& name) {
  std::string want = name;
  if (want.empty() || want == "auto") {
    const char* env = std::getenv("SEQFUSE_ISA");
    want = env && *env ? env : "auto";
  }
  if (want == "auto") {
    for (const KernelSet* k : kernel_set_table())
      if (k != &kernel_set_reference && cpu_supports(*k)) return *k;
    return kernel_set_reference;  // unreachable: the portable set runs anywhere
  }
  for (const KernelSet* k : kernel_set_table())
    if (want == k->name) {
      if (!cpu_supports(*k))
        throw Unsupported("kernel set '" + want + "' is not supported on this CPU");
      return *k;
    }
  throw Unsupported("unknown kernel set '" + want + "' (this build has " + names() + ")");
}

}  // namespace seqfuse

namespace seqfuse {
namespace testing {

void activation(const std::string& kernel_set, int kind, const float* x, float* y, size_t n) {
  const KernelSet& k = resolve_kernel_set(kernel_set);
  if (!k.activation)
    throw Unsupported("kernel set '" + std::string(k.name) + "' has no vector activations");
  k.activation(kind, x, y, n);
}

uint64_t fma_probe(const std::string& kernel_set, int64_t reps, std::string* resolved) {
  const KernelSet& k = resolve_kernel_set(kernel_set);
  if (resolved) *resolved = k.name;
  if (!k.fma_probe) return 0;  // the scalar reference: no vector FMA loop
  float sink = 0;
  const uint64_t flops = k.fma_probe(reps, &sink);
  volatile float keep = sink;  // the chains' result is used
  (void)keep;
  return flops;
}

bool read_probe(const std::string& kernel_set, const float* p, size_t n, int64_t reps, float* sum,
                std::string* resolved) {
  const KernelSet& k = resolve_kernel_set(kernel_set);
  if (resolved) *resolved = k.name;
  if (!k.read_probe) return false;  // the scalar reference: no vector loop
  *sum = k.read_probe(p, n, reps);
  return true;
}

}  // namespace testing
}  // namespace seqfuse
