// The scalar reference engine: the oracle every SIMD path is tested against, written for
// clarity from the formulas of core/cell.hpp (double accumulation, libm activations, no
// packing). It implements every ONNX semantic (reverse, GRU linear_before_reset=0, peepholes,
// input_forget, clip, activations; the fused kernels lack only other activations) and
// PyTorch's LSTM proj_size.
// Checked against eager PyTorch by tests/test_native.py (Isa::reference), against ONNX Runtime
// and the onnx conformance cases by tests/test_onnx_import.py, and by tests/cpp.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/cell.hpp"
#include "cpu/kernel_set.hpp"

namespace seqfuse {
namespace {

class ReferenceBackend final : public Backend {
 public:
  ReferenceBackend(const Config& c, const WeightMap& w) : c_(c), w_(w) {}

  const float* get(const std::string& name) const {
    auto it = w_.find(name);
    return it == w_.end() ? nullptr : it->second.data.data();
  }

  void forward(const ForwardArgs& a, Workspace&, ThreadPool*) const override {
    const int B = a.batch, T = a.steps, H = c_.hidden_size, L = c_.num_layers;
    const int Hs = c_.num_layers > 0 ? c_.state_size() : 0;  // h's width (proj_size or H)
    const int dirs = c_.dirs(), G = c_.gates();
    auto row = [&](int t, int b) { return size_t(a.batch_first ? b * T + t : t * B + b); };
    auto len = [&](int b) { return a.lengths ? int(a.lengths[b]) : T; };
    // Layer-0 input, rows in the caller's order.
    int Din = c_.rnn_input_size();
    std::vector<float> inp(size_t(B) * T * Din);
    if (c_.vocab_size > 0) {
      const float* emb = get("embedding.weight");
      for (size_t r = 0; r < size_t(B) * T; ++r)
        std::memcpy(&inp[r * Din], emb + size_t(a.tokens[r]) * Din, sizeof(float) * Din);
    } else {
      std::memcpy(inp.data(), a.x, sizeof(float) * inp.size());
    }
    std::vector<float> hn(size_t(L) * dirs * B * Hs), cn(size_t(L) * dirs * B * H);
    for (int l = 0; l < L; ++l) {
      std::vector<float> out(size_t(B) * T * dirs * Hs, 0.f);
      for (int d = 0; d < dirs; ++d) {
        const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
        const float* wih = get("rnn.weight_ih" + sfx);
        const float* whh = get("rnn.weight_hh" + sfx);
        const float* bih = get("rnn.bias_ih" + sfx);
        const float* bhh = get("rnn.bias_hh" + sfx);
        const float* wp = get("rnn.weight_p" + sfx);    // LSTM peepholes [3H] i, f, o, or null
        const float* whr = get("rnn.weight_hr" + sfx);  // LSTM projection [Hs, H], or null
        const size_t hslot = size_t(l * dirs + d) * B * Hs, cslot = size_t(l * dirs + d) * B * H;
        const bool backward = d == 1 || c_.reverse;
        const CellMath m = cell_math_of(c_, d);
        // GRU with linear_before_reset=0: n's recurrent product W_hn (r * h) needs r first.
        const bool r_first = c_.cell == Cell::gru && !c_.linear_before_reset;
        std::vector<double> h(Hs), cs(H), gx(size_t(G) * H), gh(size_t(G) * H), rh(H), hu(H);
        for (int b = 0; b < B; ++b) {
          for (int j = 0; j < Hs; ++j) h[j] = a.h0 ? a.h0[hslot + size_t(b) * Hs + j] : 0.0;
          for (int j = 0; j < H; ++j) cs[j] = a.c0 ? a.c0[cslot + size_t(b) * H + j] : 0.0;
          const int n = len(b);
          for (int s = 0; s < n; ++s) {
            const int t = backward ? n - 1 - s : s;
            const float* xt = &inp[row(t, b) * Din];
            const int direct_rows = r_first ? 2 * H : G * H;  // rows whose W_h reads h itself
            for (int r = 0; r < G * H; ++r) {
              double ax = bih ? bih[r] : 0.0, ah = bhh ? bhh[r] : 0.0;
              for (int k = 0; k < Din; ++k) ax += double(wih[size_t(r) * Din + k]) * xt[k];
              if (r < direct_rows)
                for (int k = 0; k < Hs; ++k) ah += double(whh[size_t(r) * Hs + k]) * h[k];
              gx[r] = ax;
              gh[r] = ah;
            }
            if (r_first) {  // gh_n = W_hn (r * h) + b_hn
              for (int j = 0; j < H; ++j) rh[j] = gru_reset_gate(m, gx[j], gh[j]) * h[j];
              for (int j = 0; j < H; ++j) {
                double ah = gh[size_t(2) * H + j];  // b_hn
                for (int k = 0; k < H; ++k) ah += double(whh[size_t(2 * H + j) * H + k]) * rh[k];
                gh[size_t(2) * H + j] = ah;
              }
            }
            for (int j = 0; j < H; ++j) {  // core/cell.hpp's formula, unit j
              double gxu[4], ghu[4], pu[3];
              for (int g = 0; g < G; ++g) {
                gxu[g] = gx[size_t(g) * H + j];
                ghu[g] = gh[size_t(g) * H + j];  // includes b_hh (GRU n: b_hn)
              }
              if (wp)
                for (int g = 0; g < 3; ++g) pu[g] = wp[size_t(g) * H + j];
              // (without a projection Hs == H and unit j reads only its own h[j])
              hu[j] = onnx_update(m, gxu, ghu, wp ? pu : nullptr, whr ? 0.0 : h[j], cs[j]);
            }
            // Single-precision state between steps, like every fp32 engine.
            for (int j = 0; j < H; ++j) {
              hu[j] = float(hu[j]);
              cs[j] = float(cs[j]);
            }
            for (int j = 0; j < Hs; ++j) {  // h = W_hr (o * tanh(c)) with a projection
              double v = hu[j];
              if (whr) {
                v = 0.0;
                for (int k = 0; k < H; ++k) v += double(whr[size_t(j) * H + k]) * hu[k];
              }
              h[j] = float(v);
              out[row(t, b) * dirs * Hs + size_t(d) * Hs + j] = float(h[j]);
            }
          }
          for (int j = 0; j < Hs; ++j) hn[hslot + size_t(b) * Hs + j] = float(h[j]);
          for (int j = 0; j < H; ++j) cn[cslot + size_t(b) * H + j] = float(cs[j]);
        }
      }
      inp.swap(out);
      Din = dirs * Hs;
    }
    if (a.h_n) std::memcpy(a.h_n, hn.data(), sizeof(float) * hn.size());
    if (a.c_n) std::memcpy(a.c_n, cn.data(), sizeof(float) * cn.size());
    // inp now holds the top layer's output (or the raw input when num_layers == 0).
    const int F = c_.feature_size();
    if (c_.head == Head::none) {
      std::memcpy(a.y, inp.data(), sizeof(float) * inp.size());
      return;
    }
    const float* hw = get("head.weight");
    const float* hb = get("head.bias");
    const int O = c_.output_size;
    auto linear = [&](const float* f, float* y) {
      for (int o = 0; o < O; ++o) {
        double acc = hb[o];
        for (int k = 0; k < F; ++k) acc += double(hw[size_t(o) * F + k]) * f[k];
        y[o] = float(acc);
      }
    };
    if (c_.head == Head::step) {
      for (size_t r = 0; r < size_t(B) * T; ++r) linear(&inp[r * F], a.y + r * O);
      return;
    }
    std::vector<float> feat(F);
    for (int b = 0; b < B; ++b) {
      if (c_.head == Head::last_step) {
        std::memcpy(feat.data(), &inp[row(len(b) - 1, b) * F], sizeof(float) * F);
      } else {
        for (int d = 0; d < dirs; ++d)
          std::memcpy(&feat[size_t(d) * Hs], &hn[(size_t((L - 1) * dirs + d) * B + b) * Hs],
                      sizeof(float) * Hs);
      }
      linear(feat.data(), a.y + size_t(b) * O);
    }
  }

 private:
  Config c_;
  const WeightMap& w_;  // owned by the Model, which outlives its backend
};

}  // namespace

// Registered last in the kernel-set table (cpu/kernel_sets.cpp): chosen by name, never by auto.
extern const KernelSet kernel_set_reference;
const KernelSet kernel_set_reference = {
    "reference",
    "",
    [](const Config& c, const WeightMap& w) -> std::unique_ptr<Backend> {
      return std::make_unique<ReferenceBackend>(c, w);
    },
    nullptr,
    nullptr,
    nullptr};

}  // namespace seqfuse
