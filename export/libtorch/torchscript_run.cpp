// seqfuse-torchscript: run a TorchScript model.ts.pt written by `seqfuse export`, in LibTorch.
// Checked by tests/test_cxx_apps.py: outputs equal eager PyTorch within 1e-5; a wrong file,
// a truncated file and a wrong input shape give a message and a non-zero exit.
//
// Usage: seqfuse-torchscript MODEL.ts.pt INPUT.txt   (INPUT "-" = standard input)
// INPUT holds x and optionally h0, c0 (LSTM) and lengths, in the text format of
// common/tensor_text.hpp; y, h_n (and c_n) are printed in the same format.
// Exit status: 0 ok, 1 the model could not be loaded or run, 2 bad usage or input text.
#include <torch/script.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "libtorch_common.hpp"

namespace {

void flatten(const c10::IValue& v, std::vector<at::Tensor>& out) {
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) flatten(e, out);
  } else if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorVector()) out.push_back(t);
  } else {
    throw std::runtime_error("model returned a " + v.tagKind() + ", expected tensors");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: seqfuse-torchscript MODEL.ts.pt INPUT.txt (INPUT - = stdin)\n";
    return 2;
  }
  std::map<std::string, tensor_text::Tensor> in;
  try {
    in = tensor_text::read_file(argv[2]);
    if (!in.count("x")) throw tensor_text::ParseError("input has no tensor named x");
    for (const auto& [name, t] : in) {
      if (name != "x" && name != "h0" && name != "c0" && name != "lengths")
        throw tensor_text::ParseError("unknown input " + name + " (expected x, h0, c0, lengths)");
    }
    if (in.count("c0") && !in.count("h0")) throw tensor_text::ParseError("c0 given without h0");
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-torchscript: error: " << e.what() << "\n";
    return 2;
  }
  try {
    torch::jit::Module module = torch::jit::load(argv[1]);
    module.eval();
    const size_t nargs = module.get_method("forward").function().getSchema().arguments().size() - 1;
    std::vector<c10::IValue> args{apps::to_torch(in.at("x"))};
    const bool has_state = in.count("h0") > 0, has_len = in.count("lengths") > 0;
    if (nargs >= 2) {  // SeqModel: forward(x, hx=None, lengths=None)
      if (in.count("c0")) {
        args.emplace_back(
            c10::ivalue::Tuple::create({apps::to_torch(in.at("h0")), apps::to_torch(in.at("c0"))}));
      } else if (has_state) {
        args.emplace_back(apps::to_torch(in.at("h0")));
      } else {
        args.emplace_back(c10::IValue());
      }
      args.emplace_back(has_len ? c10::IValue(apps::to_torch(in.at("lengths"))) : c10::IValue());
    } else if (has_state || has_len) {
      std::cerr << "seqfuse-torchscript: error: this model takes x only\n";
      return 2;
    }
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> outs;
    flatten(module.forward(args), outs);
    static const char* names[] = {"y", "h_n", "c_n"};
    for (size_t k = 0; k < outs.size(); ++k) {
      apps::print(k < 3 ? names[k] : "out" + std::to_string(k), outs[k]);
    }
  } catch (const c10::Error& e) {
    std::cerr << "seqfuse-torchscript: error: " << apps::first_line(e.what_without_backtrace())
              << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seqfuse-torchscript: error: " << apps::first_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
