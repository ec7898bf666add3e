// ctest unit test of the ONNX semantics in the C++ API (Config's format-version-2 fields),
// without Python. Each check runs a model with some ONNX field set that must give the same
// numbers (max abs error 1e-5) as a plain one (the fused kernels run both, except other
// activations, which run on the scalar reference; tests/cpp/test_kernel_sets.cpp compares
// every option with the reference on a random grid):
//   - a reverse-only model equals the backward half of a bidirectional one (lengths, h0);
//   - zero peepholes and a clip no value reaches equal a plain LSTM;
//   - ScaledTanh(alpha=1, beta=1) in place of tanh equals tanh;
//   - a GRU with linear_before_reset=0 and W_hn = 0, b_hn = 0 equals the PyTorch GRU;
// and checks the kernel-set routing (other activations: reference, with the reason; the rest
// fused), the config's JSON round
// trip (proj_size included) and its one-line validation errors. The values themselves are checked
// against ONNX Runtime and the onnx conformance cases by tests/test_onnx_import.py. Built with
// -DSEQFUSE_BUILD_TESTS=ON; run by ctest and by tests/test_build.py.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "random_weights.hpp"
#include "seqfuse/seqfuse.hpp"

namespace {

using Weights = std::map<std::string, seqfuse::Tensor>;
constexpr int B = 4, T = 7;

struct Out {
  std::vector<float> y, hn, cn;
};

// One forward call, [T, B, ...] layout, lengths {7, 1, 4, 6}, random h0 (and c0).
Out run(const seqfuse::Model& m, const std::vector<float>& x, const std::vector<float>& h0,
        const std::vector<float>& c0) {
  const seqfuse::Config& c = m.config();
  static const std::vector<int64_t> lengths = {7, 1, 4, 6};
  Out o;
  o.y.assign(size_t(T) * B * c.dirs() * c.hidden_size, 0.f);
  o.hn.assign(h0.size(), 0.f);
  o.cn.assign(h0.size(), 0.f);
  const bool lstm = c.cell == seqfuse::Cell::lstm;
  seqfuse::ForwardArgs a;
  a.batch = B;
  a.steps = T;
  a.batch_first = false;
  a.x = x.data();
  a.lengths = lengths.data();
  a.h0 = h0.data();
  a.c0 = lstm ? c0.data() : nullptr;
  a.y = o.y.data();
  a.h_n = o.hn.data();
  a.c_n = lstm ? o.cn.data() : nullptr;
  m.forward(a);
  return o;
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float w = 0.f;
  for (size_t i = 0; i < a.size(); ++i) w = std::fmax(w, std::fabs(a[i] - b[i]));
  return w;
}

std::vector<float> randn(size_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& e : v) e = d(g);
  return v;
}

// The same model twice, `onnx` with some ONNX field set so that it must equal `plain`.
void same(const std::string& what, const seqfuse::Config& plain, const Weights& wp,
          const seqfuse::Config& onnx, const Weights& wo, std::mt19937& g) {
  seqfuse::Model a(plain, wp), b(onnx, wo);
  const bool other_acts = onnx.fused_kernels_lack() == "activations";
  check(b.kernel_set() == (other_acts ? "reference" : a.kernel_set()),
        what + ": runs on " + b.kernel_set());
  const size_t S = size_t(plain.dirs()) * plain.num_layers * B * plain.hidden_size;
  auto x = randn(size_t(T) * B * plain.input_size, g), h0 = randn(S, g), c0 = randn(S, g);
  Out oa = run(a, x, h0, c0), ob = run(b, x, h0, c0);
  const float err = std::fmax(max_diff(oa.y, ob.y), max_diff(oa.hn, ob.hn));
  std::printf("%s: max abs err %.3g (plain on %s, ONNX fields on %s)\n", what.c_str(), err,
              a.kernel_set().c_str(), b.kernel_set().c_str());
  check(err <= 1e-5f, what);
}

template <class F>
bool throws(F&& f) {
  try {
    f();
  } catch (const seqfuse::InvalidArgument&) {
    return true;
  }
  return false;
}

}  // namespace

int main() {
  std::mt19937 g(11);
  seqfuse::Config lstm;
  lstm.cell = seqfuse::Cell::lstm;
  lstm.input_size = 5;
  lstm.hidden_size = 13;

  // Reverse-only == the backward half of a bidirectional model.
  {
    seqfuse::Config bi = lstm, rev = lstm;
    bi.bidirectional = true;
    rev.reverse = true;
    Weights wb = random_weights(bi, g, 0.4f), wr;
    for (const char* n : {"weight_ih", "weight_hh", "bias_ih", "bias_hh"})
      wr[std::string("rnn.") + n + "_l0"] = wb[std::string("rnn.") + n + "_l0_reverse"];
    seqfuse::Model mb(bi, wb), mr(rev, wr);
    check(mr.kernel_set() == mb.kernel_set() && mr.kernel_set_reason().empty(),
          "reverse runs on the fused kernels: " + mr.kernel_set() + mr.kernel_set_reason());
    const size_t S1 = size_t(B) * lstm.hidden_size;
    auto x = randn(size_t(T) * B * lstm.input_size, g), h0 = randn(2 * S1, g),
         c0 = randn(2 * S1, g);
    Out ob = run(mb, x, h0, c0);
    Out orv = run(mr, x, std::vector<float>(h0.begin() + S1, h0.end()),
                  std::vector<float>(c0.begin() + S1, c0.end()));
    const int H = lstm.hidden_size;
    float err = 0.f;
    for (int t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j)
          err = std::fmax(err, std::fabs(ob.y[(size_t(t) * B + b) * 2 * H + H + j] -
                                         orv.y[(size_t(t) * B + b) * H + j]));
    err = std::fmax(err, max_diff(std::vector<float>(ob.hn.begin() + S1, ob.hn.end()), orv.hn));
    err = std::fmax(err, max_diff(std::vector<float>(ob.cn.begin() + S1, ob.cn.end()), orv.cn));
    std::printf("reverse vs bidirectional's backward half (%s): max abs err %.3g\n",
                mb.kernel_set().c_str(), err);
    check(err <= 1e-5f, "reverse == backward half");
  }

  // Zero peepholes and an unreachable clip change nothing; ScaledTanh(1, 1) is tanh.
  {
    seqfuse::Config on = lstm;
    on.num_layers = 2;
    on.bidirectional = true;
    seqfuse::Config plain = on;
    on.peepholes = true;
    on.clip = 1e30f;
    const seqfuse::ActivationSpec sig{seqfuse::Activation::sigmoid, 0.f, 0.f},
        st{seqfuse::Activation::scaled_tanh, 1.f, 1.f};
    on.activations = {sig, st, st, sig, st, st};
    Weights w = random_weights(plain, g, 0.4f), wo = w;
    for (const char* n : {"rnn.weight_p_l0", "rnn.weight_p_l0_reverse", "rnn.weight_p_l1",
                          "rnn.weight_p_l1_reverse"})
      wo[n] = seqfuse::Tensor{{3 * lstm.hidden_size},
                              std::vector<float>(size_t(3) * lstm.hidden_size, 0.f)};
    same("zero peepholes, clip 1e30, ScaledTanh(1,1)", plain, w, on, wo, g);
  }

  // An RNN whose f is ScaledTanh(1, 1) is rnn_tanh.
  {
    seqfuse::Config plain = lstm, on = lstm;
    plain.cell = on.cell = seqfuse::Cell::rnn_tanh;
    on.activations = {{seqfuse::Activation::scaled_tanh, 1.f, 1.f}};
    Weights w = random_weights(plain, g, 0.4f);
    same("rnn ScaledTanh(1,1)", plain, w, on, w, g);
  }

  // GRU linear_before_reset=0 with W_hn = 0 and b_hn = 0 is the PyTorch GRU.
  {
    seqfuse::Config plain = lstm, on = lstm;
    plain.cell = on.cell = seqfuse::Cell::gru;
    on.linear_before_reset = false;
    Weights w = random_weights(plain, g, 0.4f);
    const int H = lstm.hidden_size;
    for (size_t i = size_t(2) * H * H; i < size_t(3) * H * H; ++i)
      w["rnn.weight_hh_l0"].data[i] = 0.f;
    for (int j = 2 * H; j < 3 * H; ++j) w["rnn.bias_hh_l0"].data[size_t(j)] = 0.f;
    same("gru linear_before_reset=0, W_hn = 0", plain, w, on, w, g);
  }

  // Routing: activations spelled as the cell's own stay on the fused kernels, and so do the
  // other ONNX fields; other activations run on the reference, which says why; a fused kernel
  // set asked for by name refuses them.
  {
    seqfuse::Config c = lstm;
    c.activations = {{seqfuse::Activation::sigmoid, 0.f, 0.f},
                     {seqfuse::Activation::tanh, 0.f, 0.f},
                     {seqfuse::Activation::tanh, 0.f, 0.f}};
    Weights w = random_weights(c, g, 0.4f);
    check(seqfuse::Model(c, w).kernel_set() != "reference", "default activations stay fused");
    c.input_forget = true;
    c.clip = 3.f;
    c.reverse = true;
    check(seqfuse::Model(c, w).kernel_set() != "reference", "input_forget, clip, reverse: fused");
    check(c.onnx_extensions() == "reverse direction, input_forget, clip" &&
              c.cuda_lacks() == c.onnx_extensions(),
          "onnx_extensions() names them: " + c.onnx_extensions());
    c.activations[1].fn = seqfuse::Activation::hard_sigmoid;
    check(seqfuse::Model(c, w).kernel_set() == "reference" &&
              seqfuse::Model(c, w).kernel_set_reason() == "fused kernels lack: activations",
          "other activations run on the reference and are named");
    check(throws([&] { seqfuse::Model(c, w, "portable"); }), "portable refuses activations");
  }

  // JSON round trip of every field, and one-line validation errors.
  {
    seqfuse::Config c = lstm;
    c.bidirectional = true;
    c.peepholes = true;
    c.input_forget = true;
    c.clip = 2.75f;
    c.proj_size = 6;
    c.activations = {{seqfuse::Activation::hard_sigmoid, 0.2f, 0.5f},
                     {seqfuse::Activation::leaky_relu, 0.01f, 0.f},
                     {seqfuse::Activation::elu, 1.1f, 0.f},
                     {seqfuse::Activation::softsign, 0.f, 0.f},
                     {seqfuse::Activation::softplus, 0.f, 0.f},
                     {seqfuse::Activation::thresholded_relu, 0.3f, 0.f}};
    const std::string j = c.to_json();
    check(seqfuse::Config::from_json(j).to_json() == j, "config JSON round trip: " + j);
    seqfuse::Config bad = lstm;
    bad.bidirectional = bad.reverse = true;
    check(throws([&] { bad.validate(); }), "reverse + bidirectional");
    bad = lstm;
    bad.cell = seqfuse::Cell::gru;
    bad.peepholes = true;
    check(throws([&] { bad.validate(); }), "peepholes on a GRU");
    bad = lstm;
    bad.activations = {{seqfuse::Activation::tanh, 0.f, 0.f}};
    check(throws([&] { bad.validate(); }), "one activation for an LSTM");
    bad = lstm;
    bad.proj_size = lstm.hidden_size;
    check(throws([&] { bad.validate(); }), "proj_size >= hidden_size");
    bad.cell = seqfuse::Cell::gru;
    bad.proj_size = 2;
    check(throws([&] { bad.validate(); }), "proj_size on a GRU");
    bad = lstm;
    bad.clip = NAN;
    check(throws([&] { bad.validate(); }), "clip NaN");
    check(seqfuse::activation_from_string("leakyrelu") == seqfuse::Activation::leaky_relu,
          "activation names are case-insensitive");
  }

  if (check_failures()) return 1;
  std::printf("ok\n");
  return 0;
}
