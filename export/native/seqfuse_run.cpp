// seqfuse-run: run a native weight file (model.seqfuse.safetensors) through libseqfuse, the
// framework-free engine, found with find_package(seqfuse) from the installed wheel.
// Checked by tests/test_cxx_apps.py: outputs equal eager PyTorch within 1e-5; a wrong file,
// a truncated file and a wrong input shape give a message and a non-zero exit.
//
// Usage: seqfuse-run MODEL.seqfuse.safetensors INPUT.txt [--threads N]  (INPUT - = stdin)
// INPUT holds x ([B, T, D] float32, or [B, T] int64 token ids; [N, D] for linear regression)
// and optionally h0 ([L*dirs, B, Hs], Hs = proj_size or H), c0 ([L*dirs, B, H]) and lengths
// ([B] int64), in the text format of
// common/tensor_text.hpp. y, h_n (and c_n for LSTM) are printed in the same format.
// Exit status: 0 ok, 1 the model could not be loaded or run, 2 bad usage or input.
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <seqfuse/seqfuse.hpp>
#include <string>
#include <vector>

#include "tensor_text.hpp"

namespace {

using tensor_text::ParseError;
using tensor_text::shape_str;
using Shape = std::vector<int64_t>;

const tensor_text::Tensor* find(const std::map<std::string, tensor_text::Tensor>& in,
                                const std::string& name, const std::string& dtype,
                                const Shape& shape) {
  auto it = in.find(name);
  if (it == in.end()) return nullptr;
  if (it->second.dtype != dtype) throw ParseError(name + " must be " + dtype);
  if (it->second.shape != shape)
    throw ParseError(name + " must have shape " + shape_str(shape) + ", got " +
                     shape_str(it->second.shape));
  return &it->second;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  if (argc == 5 && std::string(argv[3]) == "--threads") {
    threads = std::atoi(argv[4]);
  } else if (argc != 3) {
    std::cerr << "usage: seqfuse-run MODEL.seqfuse.safetensors INPUT.txt [--threads N]\n";
    return 2;
  }
  if (threads < 1) {
    std::cerr << "seqfuse-run: error: --threads must be >= 1\n";
    return 2;
  }
  std::map<std::string, tensor_text::Tensor> in;
  try {
    in = tensor_text::read_file(argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-run: error: " << e.what() << "\n";
    return 2;
  }
  std::unique_ptr<seqfuse::Model> model;
  try {
    model = std::make_unique<seqfuse::Model>(seqfuse::Model::load(argv[1]));
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-run: error: " << e.what() << "\n";
    return 1;
  }
  const seqfuse::Config& c = model->config();
  const bool linear = c.num_layers == 0, lstm = c.cell == seqfuse::Cell::lstm;
  seqfuse::ForwardArgs a;
  a.threads = threads;
  std::vector<float> y, h_n, c_n;
  Shape y_shape, s_shape, c_shape;  // s_shape: h's (Hs wide), c_shape: c's (H wide)
  try {
    for (const auto& [name, t] : in) {
      if (name != "x" && name != "h0" && name != "c0" && name != "lengths")
        throw ParseError("unknown input " + name + " (expected x, h0, c0, lengths)");
    }
    auto xi = in.find("x");
    if (xi == in.end()) throw ParseError("input has no tensor named x");
    const tensor_text::Tensor& x = xi->second;
    if (linear) {  // LinearRegression: x [N, D] is a batch of N one-step sequences
      if (x.dtype != "float32" || x.shape.size() != 2 || x.shape[1] != c.input_size)
        throw ParseError("x must be float32 [N, " + std::to_string(c.input_size) + "], got " +
                         x.dtype + " " + shape_str(x.shape));
      if (in.size() != 1) throw ParseError("a linear model takes x only");
      a.batch = static_cast<int>(x.shape[0]);
      a.steps = 1;
      a.x = x.f.data();
      y_shape = {x.shape[0], c.output_size};
    } else {
      const bool tokens = c.vocab_size > 0;
      const size_t want = tokens ? 2 : 3;
      if (x.shape.size() != want || (tokens && x.dtype != "int64") ||
          (!tokens && (x.dtype != "float32" || x.shape[2] != c.input_size)))
        throw ParseError(std::string("x must be ") +
                         (tokens ? "int64 token ids [B, T]"
                                 : "float32 [B, T, " + std::to_string(c.input_size) + "]") +
                         ", got " + x.dtype + " " + shape_str(x.shape));
      const int64_t B = x.shape[0], T = x.shape[1];
      if (B < 1 || T < 1) throw ParseError("x needs B >= 1 and T >= 1");
      a.batch = static_cast<int>(B);
      a.steps = static_cast<int>(T);
      if (tokens) {
        a.tokens = x.i.data();
      } else {
        a.x = x.f.data();
      }
      s_shape = {int64_t{c.num_layers} * c.dirs(), B, c.state_size()};
      c_shape = {s_shape[0], B, c.hidden_size};
      if (auto* h0 = find(in, "h0", "float32", s_shape)) a.h0 = h0->f.data();
      if (in.count("c0") && !lstm) throw ParseError("c0 is for LSTM models only");
      if (auto* c0 = find(in, "c0", "float32", c_shape)) a.c0 = c0->f.data();
      if (auto* len = find(in, "lengths", "int64", {B})) a.lengths = len->i.data();
      const int64_t feat = c.feature_size();
      switch (c.head) {
        case seqfuse::Head::none:
          y_shape = {B, T, feat};
          break;
        case seqfuse::Head::step:
          y_shape = {B, T, c.output_size};
          break;
        default:
          y_shape = {B, c.output_size};
          break;
      }
      h_n.resize(static_cast<size_t>(s_shape[0] * B * c.state_size()));
      a.h_n = h_n.data();
      if (lstm) {
        c_n.resize(static_cast<size_t>(c_shape[0] * B * c.hidden_size));
        a.c_n = c_n.data();
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-run: error: " << e.what() << "\n";
    return 2;
  }
  int64_t ny = 1;
  for (int64_t d : y_shape) ny *= d;
  y.resize(static_cast<size_t>(ny));
  a.y = y.data();
  try {
    model->forward(a);
  } catch (const seqfuse::InvalidArgument& e) {
    std::cerr << "seqfuse-run: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-run: error: " << e.what() << "\n";
    return 1;
  }
  tensor_text::write(std::cout, "y", y_shape, y.data());
  if (!linear) tensor_text::write(std::cout, "h_n", s_shape, h_n.data());
  if (lstm && !linear) tensor_text::write(std::cout, "c_n", c_shape, c_n.data());
  return 0;
}
