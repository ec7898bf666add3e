// Internal test hooks of libseqfuse, for seqfuse._C's accuracy tests
// (tests/test_native_kernels.py, tests/test_native_robustness.py). Not installed and not part
// of the API: the one internal header the bindings include. Exported in seqfuse::testing only.
#pragma once

#include <cstddef>
#include <string>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {
namespace testing {

// A kernel set's vectorized sigmoid (kind 0) or tanh (kind 1) over x[0, n) into y. Throws
// Unsupported when the kernel set is unknown, cannot run on this CPU or has no vector path.
SEQFUSE_API void activation(const std::string& kernel_set, int kind, const float* x, float* y,
                            size_t n);

}  // namespace testing
}  // namespace seqfuse
