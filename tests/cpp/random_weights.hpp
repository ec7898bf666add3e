// Random weights for a config, named and shaped as Config::weight_shapes() says: shared by the
// C++ tests in tests/cpp (test_engine.cpp, test_concurrency.cpp).
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "seqfuse/seqfuse.hpp"

inline std::map<std::string, seqfuse::Tensor> random_weights(const seqfuse::Config& c,
                                                             std::mt19937& g, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::map<std::string, seqfuse::Tensor> w;
  for (const auto& [name, shape] : c.weight_shapes()) {
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    seqfuse::Tensor t{shape, std::vector<float>(n)};
    for (auto& v : t.data) v = u(g);
    w[name] = std::move(t);
  }
  return w;
}
