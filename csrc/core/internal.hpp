// Internal declarations shared by core/ and cpu/ (not installed). Checked through the code
// that uses them: tests/test_native*.py and tests/cpp/test_engine.cpp.
#pragma once

#include <map>
#include <string>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {

constexpr const char* kFormatName = "seqfuse-native";
// The version written; the reader takes every version from 1 (PyTorch's semantics only) up to
// it (2: the ONNX semantics' config keys and peephole weights; docs/FORMAT.md).
constexpr int kFormatVersion = 2;

// Reads and fully validates a seqfuse safetensors weight file (docs/FORMAT.md).
// Throws FormatError naming the problem; never reads out of bounds.
void read_weight_file(const std::string& path, Config& config,
                      std::map<std::string, Tensor>& weights);

// Checks names, shapes and finiteness of weights against a config; throws InvalidArgument.
void check_weights(const Config& config, const std::map<std::string, Tensor>& weights);

// The checks of a forward call that every backend shares (shapes, which inputs and states
// the config takes, sizes that must not wrap); throws InvalidArgument. Each backend then
// checks its own fields (and, where the memory is the host's, the values of tokens and
// lengths).
void check_call(const Config& config, const CallArgs& args);

}  // namespace seqfuse
