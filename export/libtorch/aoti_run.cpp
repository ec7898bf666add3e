// seqfuse-aoti: run an AOTInductor package model.pt2 written by `seqfuse export`, in LibTorch.
// Checked by tests/test_cxx_apps.py: outputs equal eager PyTorch within 1e-5; a wrong file,
// a truncated file and a wrong input shape give a message and a non-zero exit.
//
// Usage: seqfuse-aoti MODEL.pt2 INPUT.txt   (INPUT "-" = standard input)
// INPUT holds x only (the .pt2 takes no states or lengths); y, h_n (and c_n) are printed in
// the text format of common/tensor_text.hpp. The package's metadata (seqfuse.input_shape,
// seqfuse.dynamic_seq) says which dims are fixed: AOTInductor itself does not check them.
// Exit status: 0 ok, 1 the model could not be loaded or run, 2 bad usage or input.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "libtorch_common.hpp"

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) parts.push_back(item);
  return parts;
}

// An empty string if x fits the export shape, else what is wrong.
std::string check_input(const tensor_text::Tensor& x,
                        const std::unordered_map<std::string, std::string>& meta) {
  auto it = meta.find("seqfuse.input_shape");
  if (it == meta.end()) return "";  // not written by seqfuse: AOTInductor's own checks only
  std::vector<std::string> dims = split(it->second, ',');
  auto dt = meta.find("seqfuse.input_dtype");
  if (dt != meta.end() && dt->second != x.dtype)
    return "x must be " + dt->second + ", got " + x.dtype;
  if (x.shape.size() != dims.size())
    return "x must have " + std::to_string(dims.size()) + " dims [" + it->second +
           " with batch free], got " + tensor_text::shape_str(x.shape);
  auto ds = meta.find("seqfuse.dynamic_seq");
  const bool dynamic_seq = ds != meta.end() && ds->second == "1";
  if (x.shape.empty() || x.shape[0] < 1) return "x needs a batch of at least 1";
  for (size_t k = 1; k < dims.size(); ++k) {
    if (k == 1 && dynamic_seq && dims.size() >= 2) continue;
    if (std::to_string(x.shape[k]) != dims[k])
      return "x dim " + std::to_string(k) + " must be " + dims[k] + " (export shape [" +
             it->second + "], batch free" +
             (k == 1 ? "; the sequence length is fixed in a .pt2" : "") + "), got " +
             tensor_text::shape_str(x.shape);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: seqfuse-aoti MODEL.pt2 INPUT.txt (INPUT - = stdin)\n";
    return 2;
  }
  std::map<std::string, tensor_text::Tensor> in;
  try {
    in = tensor_text::read_file(argv[2]);
    if (!in.count("x")) throw tensor_text::ParseError("input has no tensor named x");
    if (in.size() != 1) throw tensor_text::ParseError("a .pt2 takes x only (no states, lengths)");
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-aoti: error: " << e.what() << "\n";
    return 2;
  }
  try {
    torch::inductor::AOTIModelPackageLoader loader(argv[1]);
    const auto meta = loader.get_metadata();
    std::string problem = check_input(in.at("x"), meta);
    if (!problem.empty()) {
      std::cerr << "seqfuse-aoti: error: " << problem << "\n";
      return 2;
    }
    std::vector<std::string> names = {"y", "h_n", "c_n"};
    auto on = meta.find("seqfuse.outputs");
    if (on != meta.end()) names = split(on->second, ',');
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> outs = loader.run({apps::to_torch(in.at("x"))});
    for (size_t k = 0; k < outs.size(); ++k) {
      apps::print(k < names.size() ? names[k] : "out" + std::to_string(k), outs[k]);
    }
  } catch (const c10::Error& e) {
    std::cerr << "seqfuse-aoti: error: " << apps::first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-aoti: error: " << apps::first_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
