// The text format the export/ apps read inputs from and print outputs in (framework-free).
// Checked by tests/test_cxx_apps.py, which writes inputs with seqfuse.export.textio and
// compares the printed outputs with eager PyTorch.
//
// A file holds one or more tensors, each as a header line and then its values, row-major,
// separated by any whitespace (line breaks are free). Lines starting with '#' are comments.
//
//   tensor <name> <dtype> <ndim> <d0> ... <d(ndim-1)>
//   <v0> <v1> ...
//
// dtype is float32 or int64. Inputs are named x, h0, c0, lengths; outputs y, h_n, c_n.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tensor_text {

// Bad input text (wrong header, too few values, bad numbers): the apps exit with status 2.
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Tensor {
  std::string dtype;           // "float32" or "int64"
  std::vector<int64_t> shape;  // row-major dims
  std::vector<float> f;        // values when dtype == float32
  std::vector<int64_t> i;      // values when dtype == int64
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

// Parse every tensor of `in`; throws ParseError naming the problem.
inline std::map<std::string, Tensor> read(std::istream& in) {
  std::stringstream text;
  std::string line;
  while (std::getline(in, line)) {
    size_t p = line.find_first_not_of(" \t\r");
    if (p != std::string::npos && line[p] == '#') continue;
    text << line << '\n';
  }
  std::map<std::string, Tensor> out;
  std::string word;
  while (text >> word) {
    if (word != "tensor") throw ParseError("expected 'tensor <name> <dtype> <ndim> <dims...>'");
    Tensor t;
    std::string name;
    int64_t ndim = -1;
    if (!(text >> name >> t.dtype >> ndim) || ndim < 0 || ndim > 8)
      throw ParseError("bad tensor header after 'tensor'");
    if (t.dtype != "float32" && t.dtype != "int64")
      throw ParseError("tensor " + name + ": dtype must be float32 or int64, got " + t.dtype);
    for (int64_t k = 0; k < ndim; ++k) {
      int64_t d = -1;
      if (!(text >> d) || d < 0 || d > (int64_t{1} << 31))
        throw ParseError("tensor " + name + ": bad dimension");
      t.shape.push_back(d);
    }
    const int64_t n = t.numel();
    if (n > (int64_t{1} << 31)) throw ParseError("tensor " + name + ": too large");
    for (int64_t k = 0; k < n; ++k) {
      if (t.dtype == "float32") {
        float v;
        if (!(text >> v))
          throw ParseError("tensor " + name + ": expected " + std::to_string(n) + " values, got " +
                           std::to_string(k));
        t.f.push_back(v);
      } else {
        int64_t v;
        if (!(text >> v))
          throw ParseError("tensor " + name + ": expected " + std::to_string(n) + " values, got " +
                           std::to_string(k));
        t.i.push_back(v);
      }
    }
    if (out.count(name)) throw ParseError("tensor " + name + " given twice");
    out.emplace(name, std::move(t));
  }
  return out;
}

// Read a file, or standard input when path is "-".
inline std::map<std::string, Tensor> read_file(const std::string& path) {
  if (path == "-") return read(std::cin);
  std::ifstream f(path);
  if (!f) throw ParseError("cannot open input file " + path);
  return read(f);
}

// Print one float32 tensor in the format above (9 significant digits: exact for fp32).
inline void write(std::ostream& os, const std::string& name, const std::vector<int64_t>& shape,
                  const float* data) {
  os << "tensor " << name << " float32 " << shape.size();
  int64_t n = 1;
  for (int64_t d : shape) {
    os << ' ' << d;
    n *= d;
  }
  os << '\n';
  char buf[32];
  for (int64_t k = 0; k < n; ++k) {
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(data[k]));
    os << buf << ((k + 1) % 16 == 0 || k + 1 == n ? '\n' : ' ');
  }
}

}  // namespace tensor_text
