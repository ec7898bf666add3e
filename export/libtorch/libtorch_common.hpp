// Helpers shared by the LibTorch apps (seqfuse-torchscript, seqfuse-aoti): text tensors to
// and from at::Tensor, and one-line error messages. Checked by tests/test_cxx_apps.py.
#pragma once

#include <ATen/ATen.h>

#include <iostream>
#include <string>
#include <vector>

#include "tensor_text.hpp"

namespace apps {

inline at::Tensor to_torch(const tensor_text::Tensor& t) {
  if (t.dtype == "float32") {
    return at::tensor(t.f, at::kFloat).reshape(t.shape).clone();
  }
  return at::tensor(t.i, at::kLong).reshape(t.shape).clone();
}

inline void print(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kFloat).contiguous().cpu();
  std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
  tensor_text::write(std::cout, name, shape, c.data_ptr<float>());
}

// The first non-empty line of an exception message (c10::Error messages carry backtraces).
inline std::string first_line(const std::string& what) {
  size_t start = 0;
  while (start < what.size()) {
    size_t end = what.find('\n', start);
    if (end == std::string::npos) end = what.size();
    std::string line = what.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
    start = end + 1;
  }
  return what.empty() ? "unknown error" : what;
}

}  // namespace apps
