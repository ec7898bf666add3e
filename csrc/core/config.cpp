// Model config: validation, JSON round trip and the weight names/shapes a config needs, and
// which of its ONNX semantics each backend lacks (the fused CPU kernels: other activations;
// CUDA: every one, and proj_size).
// Checked by tests/test_native_format.py and tests/test_onnx_import.py (bad configs, version 1
// and 2 files) and every parity test.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/cell.hpp"
#include "core/json.hpp"
#include "seqfuse/seqfuse.hpp"

namespace seqfuse {

Cell cell_from_string(const std::string& s) {
  if (s == "rnn_tanh") return Cell::rnn_tanh;
  if (s == "rnn_relu") return Cell::rnn_relu;
  if (s == "gru") return Cell::gru;
  if (s == "lstm") return Cell::lstm;
  throw Unsupported("unknown cell '" + s + "' (expected rnn_tanh, rnn_relu, gru or lstm)");
}
Head head_from_string(const std::string& s) {
  if (s == "none") return Head::none;
  if (s == "step") return Head::step;
  if (s == "last_step") return Head::last_step;
  if (s == "last_hidden") return Head::last_hidden;
  throw Unsupported("unknown head '" + s + "' (expected none, step, last_step or last_hidden)");
}
Isa isa_from_string(const std::string& s) {
  if (s == "auto" || s.empty()) return Isa::automatic;
  if (s == "reference") return Isa::reference;
  if (s == "portable") return Isa::portable;
  if (s == "avx2") return Isa::avx2;
  if (s == "avx512") return Isa::avx512;
  throw Unsupported("unknown kernel set '" + s +
                    "' (expected auto, reference, portable, avx2 or avx512)");
}
std::string to_string(Cell c) {
  switch (c) {
    case Cell::rnn_tanh:
      return "rnn_tanh";
    case Cell::rnn_relu:
      return "rnn_relu";
    case Cell::gru:
      return "gru";
    default:
      return "lstm";
  }
}
std::string to_string(Head h) {
  switch (h) {
    case Head::none:
      return "none";
    case Head::step:
      return "step";
    case Head::last_step:
      return "last_step";
    default:
      return "last_hidden";
  }
}
std::string to_string(Isa i) {
  switch (i) {
    case Isa::automatic:
      return "auto";
    case Isa::reference:
      return "reference";
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    default:
      return "avx512";
  }
}

namespace {
struct ActivationName {
  Activation fn;
  const char* name;
};
constexpr ActivationName kActivationNames[] = {{Activation::sigmoid, "Sigmoid"},
                                               {Activation::tanh, "Tanh"},
                                               {Activation::relu, "Relu"},
                                               {Activation::affine, "Affine"},
                                               {Activation::leaky_relu, "LeakyRelu"},
                                               {Activation::thresholded_relu, "ThresholdedRelu"},
                                               {Activation::scaled_tanh, "ScaledTanh"},
                                               {Activation::hard_sigmoid, "HardSigmoid"},
                                               {Activation::elu, "Elu"},
                                               {Activation::softsign, "Softsign"},
                                               {Activation::softplus, "Softplus"}};

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}
}  // namespace

Activation activation_from_string(const std::string& s) {
  for (const auto& a : kActivationNames)
    if (lower(s) == lower(a.name)) return a.fn;
  throw Unsupported("unknown activation '" + s +
                    "' (expected Sigmoid, Tanh, Relu, Affine, LeakyRelu, ThresholdedRelu, "
                    "ScaledTanh, HardSigmoid, Elu, Softsign or Softplus)");
}
std::string to_string(Activation a) {
  for (const auto& n : kActivationNames)
    if (n.fn == a) return n.name;
  return "Tanh";  // unreachable: every enumerator is listed
}

int Config::gates() const { return cell_gates(cell); }
int Config::activation_slots() const { return cell_activation_slots(cell); }
ActivationSpec Config::activation(int dir, int slot) const {
  const size_t k = size_t(dir) * size_t(activation_slots()) + size_t(slot);
  return k < activations.size() ? activations[k] : default_activation(cell, slot);
}

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string r;
  for (const auto& x : v) r += (r.empty() ? "" : ", ") + x;
  return r;
}
// Activations spelled out but equal to the cell's own are the cell's own.
bool own_activations(const Config& c) {
  for (int d = 0; d < c.dirs(); ++d)
    for (int s = 0; s < c.activation_slots(); ++s)
      if (c.activation(d, s).fn != default_activation(c.cell, s).fn) return false;
  return true;
}
}  // namespace

std::string Config::onnx_extensions() const {
  std::vector<std::string> used;
  if (reverse) used.push_back("reverse direction");
  if (cell == Cell::gru && !linear_before_reset) used.push_back("linear_before_reset=0");
  if (peepholes) used.push_back("peepholes");
  if (input_forget) used.push_back("input_forget");
  if (clip > 0) used.push_back("clip");
  if (!own_activations(*this)) used.push_back("activations");
  return join(used);
}
std::string Config::fused_kernels_lack() const {
  return own_activations(*this) ? "" : "activations";
}
std::string Config::cuda_lacks() const {
  std::vector<std::string> lack;
  const std::string onnx = onnx_extensions();
  if (!onnx.empty()) lack.push_back(onnx);
  if (proj_size > 0) lack.push_back("proj_size");
  return join(lack);
}
int Config::state_size() const { return proj_size > 0 ? proj_size : hidden_size; }
int Config::layer_input_size(int layer) const {
  return layer == 0 ? rnn_input_size() : dirs() * state_size();
}
int Config::feature_size() const {
  return num_layers == 0 ? rnn_input_size() : dirs() * state_size();
}

static void check_range(const char* name, int v, int lo, int hi) {
  if (v < lo || v > hi)
    throw InvalidArgument(std::string("config: ") + name + " must be in [" + std::to_string(lo) +
                          ", " + std::to_string(hi) + "], got " + std::to_string(v));
}

void Config::validate() const {
  check_range("num_layers", num_layers, 0, 64);
  check_range("vocab_size", vocab_size, 0, 1 << 24);
  if (vocab_size > 0) {
    check_range("embed_dim", embed_dim, 1, 1 << 16);
  } else {
    check_range("input_size", input_size, 1, 1 << 20);
  }
  // Checked whatever num_layers is: a size is never trusted unchecked, even an unused one.
  check_range("hidden_size", hidden_size, num_layers > 0 ? 1 : 0, 1 << 14);
  if (head != Head::none) check_range("output_size", output_size, 1, 1 << 20);
  if (num_layers == 0 && head != Head::step)
    throw Unsupported("config: num_layers=0 (no recurrent layer) needs head='step'");
  if (num_layers == 0 && vocab_size > 0)
    throw Unsupported("config: an Embedding (vocab_size > 0) needs num_layers >= 1");
  if (num_layers == 0 && bidirectional)
    throw Unsupported("config: num_layers=0 cannot be bidirectional");
  // The ONNX semantics (format version 2): each only where it means something.
  if (reverse && (bidirectional || num_layers == 0))
    throw InvalidArgument("config: reverse needs a unidirectional recurrent model");
  if (!linear_before_reset && cell != Cell::gru)
    throw InvalidArgument("config: linear_before_reset=false is for GRU only");
  if ((peepholes || input_forget) && cell != Cell::lstm)
    throw InvalidArgument("config: peepholes and input_forget are for LSTM only");
  if (proj_size != 0) {
    if (cell != Cell::lstm) throw InvalidArgument("config: proj_size is for LSTM only");
    if (num_layers == 0) throw InvalidArgument("config: proj_size needs a recurrent layer");
    check_range("proj_size", proj_size, 1, hidden_size - 1);
  }
  if (!(clip >= 0.f) || !std::isfinite(clip))
    throw InvalidArgument("config: clip must be a finite number >= 0 (0 = no clip)");
  if (!activations.empty()) {
    if (cell == Cell::rnn_relu)
      throw InvalidArgument("config: activations replace rnn_relu's relu; use cell rnn_tanh");
    const size_t want = size_t(dirs()) * size_t(activation_slots());
    if (activations.size() != want)
      throw InvalidArgument("config: activations needs " + std::to_string(want) +
                            " entries (directions x " + std::to_string(activation_slots()) +
                            " slots), got " + std::to_string(activations.size()));
    for (const auto& a : activations)
      if (!std::isfinite(a.alpha) || !std::isfinite(a.beta))
        throw InvalidArgument("config: activation " + to_string(a.fn) +
                              " has a non-finite alpha or beta");
  }
  // Keep every tensor addressable with int32 element counts per row/col product checks.
  for (const auto& kv : weight_shapes()) {
    int64_t n = 1;
    for (int64_t d : kv.second) n *= d;
    if (n > (int64_t(1) << 31))
      throw InvalidArgument("config: tensor " + kv.first + " would be too large");
  }
}

std::map<std::string, std::vector<int64_t>> Config::weight_shapes() const {
  std::map<std::string, std::vector<int64_t>> m;
  const int64_t H = hidden_size, GH = int64_t(gates()) * hidden_size;
  if (vocab_size > 0) m["embedding.weight"] = {vocab_size, embed_dim};
  for (int l = 0; l < num_layers; ++l) {
    for (int d = 0; d < dirs(); ++d) {
      std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      m["rnn.weight_ih" + sfx] = {GH, layer_input_size(l)};
      m["rnn.weight_hh" + sfx] = {GH, state_size()};
      if (bias) {
        m["rnn.bias_ih" + sfx] = {GH};
        m["rnn.bias_hh" + sfx] = {GH};
      }
      if (peepholes) m["rnn.weight_p" + sfx] = {3 * H};
      if (proj_size > 0) m["rnn.weight_hr" + sfx] = {proj_size, H};
    }
  }
  if (head != Head::none) {
    m["head.weight"] = {output_size, feature_size()};
    m["head.bias"] = {output_size};
  }
  return m;
}

std::string Config::to_json() const {
  std::ostringstream o;
  o << "{\"cell\": " << json::quote(to_string(cell)) << ", \"input_size\": " << input_size
    << ", \"vocab_size\": " << vocab_size << ", \"embed_dim\": " << embed_dim
    << ", \"hidden_size\": " << hidden_size << ", \"num_layers\": " << num_layers
    << ", \"bidirectional\": " << (bidirectional ? "true" : "false")
    << ", \"bias\": " << (bias ? "true" : "false") << ", \"head\": " << json::quote(to_string(head))
    << ", \"output_size\": " << output_size;
  if (proj_size > 0) o << ", \"proj_size\": " << proj_size;
  // The ONNX keys only when they differ from PyTorch's defaults, so that a PyTorch model's
  // config reads as it did in format version 1.
  o << std::setprecision(9);  // every float round-trips
  if (reverse) o << ", \"reverse\": true";
  if (!linear_before_reset) o << ", \"linear_before_reset\": false";
  if (peepholes) o << ", \"peepholes\": true";
  if (input_forget) o << ", \"input_forget\": true";
  if (clip > 0) o << ", \"clip\": " << clip;
  if (!activations.empty()) {
    o << ", \"activations\": [";
    for (size_t k = 0; k < activations.size(); ++k)
      o << (k ? ", " : "") << "{\"fn\": " << json::quote(to_string(activations[k].fn))
        << ", \"alpha\": " << activations[k].alpha << ", \"beta\": " << activations[k].beta << "}";
    o << "]";
  }
  o << "}";
  return o.str();
}

Config Config::from_json(const std::string& text) {
  json::Value v = json::parse(text, "config");
  if (v.type != json::Value::Object) throw FormatError("config: expected a JSON object");
  Config c;
  auto get_int = [&](const char* key, int& out, bool required) {
    const json::Value* f = v.find(key);
    if (!f) {
      if (required) throw FormatError(std::string("config: missing '") + key + "'");
      return;
    }
    if (f->type != json::Value::Number || !f->is_int || f->i < 0 || f->i > (int64_t(1) << 30))
      throw FormatError(std::string("config: '") + key + "' must be a non-negative integer");
    out = int(f->i);
  };
  auto get_bool = [&](const char* key, bool& out) {
    const json::Value* f = v.find(key);
    if (!f) throw FormatError(std::string("config: missing '") + key + "'");
    if (f->type != json::Value::Bool)
      throw FormatError(std::string("config: '") + key + "' must be true or false");
    out = f->b;
  };
  auto get_str = [&](const char* key) {
    const json::Value* f = v.find(key);
    if (!f) throw FormatError(std::string("config: missing '") + key + "'");
    if (f->type != json::Value::String)
      throw FormatError(std::string("config: '") + key + "' must be a string");
    return f->str;
  };
  static const char* known[] = {
      "cell",        "input_size",          "vocab_size",    "embed_dim",
      "hidden_size", "num_layers",          "bidirectional", "bias",
      "head",        "output_size",         "reverse",       "peepholes",
      "clip",        "linear_before_reset", "input_forget",  "activations",
      "proj_size"};
  for (const auto& kv : v.obj) {
    bool ok = false;
    for (const char* k : known) ok = ok || kv.first == k;
    if (!ok) throw FormatError("config: unknown key '" + kv.first + "'");
  }
  try {
    c.cell = cell_from_string(get_str("cell"));
    c.head = head_from_string(get_str("head"));
  } catch (const InvalidArgument& e) {
    throw FormatError(e.what());
  }
  get_int("input_size", c.input_size, true);
  get_int("vocab_size", c.vocab_size, true);
  get_int("embed_dim", c.embed_dim, true);
  get_int("hidden_size", c.hidden_size, true);
  get_int("num_layers", c.num_layers, true);
  get_int("output_size", c.output_size, true);
  get_bool("bidirectional", c.bidirectional);
  get_bool("bias", c.bias);
  get_int("proj_size", c.proj_size, false);
  // Format version 2's optional keys (absent: PyTorch's semantics).
  auto opt_bool = [&](const char* key, bool& out) {
    if (v.find(key)) get_bool(key, out);
  };
  auto get_num = [&](const json::Value& f, const std::string& what) {
    if (f.type != json::Value::Number || !std::isfinite(f.num) || std::fabs(f.num) > 3.4e38)
      throw FormatError("config: " + what + " must be a finite number");
    return float(f.num);
  };
  opt_bool("reverse", c.reverse);
  opt_bool("linear_before_reset", c.linear_before_reset);
  opt_bool("peepholes", c.peepholes);
  opt_bool("input_forget", c.input_forget);
  if (const json::Value* f = v.find("clip")) c.clip = get_num(*f, "'clip'");
  if (const json::Value* f = v.find("activations")) {
    if (f->type != json::Value::Array || f->arr.size() > 6)
      throw FormatError("config: 'activations' must be a list of at most 6 entries");
    for (const auto& e : f->arr) {
      const json::Value* fn = e.type == json::Value::Object ? e.find("fn") : nullptr;
      if (!fn || fn->type != json::Value::String || e.obj.size() > 3)
        throw FormatError(
            "config: each activation must be {\"fn\": name, \"alpha\": a, \"beta\": b}");
      ActivationSpec a;
      try {
        a.fn = activation_from_string(fn->str);
      } catch (const InvalidArgument& err) {
        throw FormatError(std::string("config: ") + err.what());
      }
      for (const auto& kv : e.obj) {
        if (kv.first == "alpha") {
          a.alpha = get_num(kv.second, "activation alpha");
        } else if (kv.first == "beta") {
          a.beta = get_num(kv.second, "activation beta");
        } else if (kv.first != "fn") {
          throw FormatError("config: unknown activation key '" + kv.first + "'");
        }
      }
      c.activations.push_back(a);
    }
  }
  try {
    c.validate();
  } catch (const InvalidArgument& e) {
    throw FormatError(e.what());
  }
  return c;
}

}  // namespace seqfuse
