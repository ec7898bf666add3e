// Internal declarations shared by core/ and cpu/ (not installed). Checked through the code
// that uses them: tests/test_native*.py and tests/cpp/test_engine.cpp.
#pragma once

#include <map>
#include <string>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {

constexpr const char* kFormatName = "seqfuse-native";
constexpr int kFormatVersion = 1;

// Reads and fully validates a seqfuse safetensors weight file (docs/FORMAT.md).
// Throws FormatError naming the problem; never reads out of bounds.
void read_weight_file(const std::string& path, Config& config,
                      std::map<std::string, Tensor>& weights);

// Checks names, shapes and finiteness of weights against a config; throws InvalidArgument.
void check_weights(const Config& config, const std::map<std::string, Tensor>& weights);

}  // namespace seqfuse
