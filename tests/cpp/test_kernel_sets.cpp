// ctest: every kernel set this build has and this CPU runs, against the scalar reference, over
// a seeded randomized grid (every cell, 1-2 layers, both directions, odd and tile-sized hidden
// sizes, batch 1 and batched, with and without initial states and lengths, features and token
// ids, every head, 1 and 2 threads; the ONNX semantics the fused kernels run: reverse, GRU
// linear_before_reset=0, LSTM peepholes and input_forget, clip; LSTM proj_size; input
// projections all at once and in chunks of steps; streamed one step per call), plus the
// vectorized activations over a sweep of the whole float range (saturation, denormals, NaN,
// +-Inf) against double precision. Errors are relative to max(1, |reference|): a relu RNN's
// outputs may grow large. The C++ half of the parity tests: it is what checks a kernel set
// where Python does not run, such as the neon set cross-compiled and run under qemu-aarch64 in
// CI (.ci/arm).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/core/testing.hpp"
#include "check.hpp"
#include "random_weights.hpp"
#include "seqfuse/seqfuse.hpp"

namespace {

struct Case {
  seqfuse::Config c;
  int B, T, threads;
  bool h0, lengths;
  bool batch_first = true;
  size_t budget = size_t(64) << 20;  // the input projections' scratch budget (chunks below it)
  int fused_rows = 32;      // the smallest batch whose steps compute their input projections
  size_t fused_kblock = 0;  // their K blocks' most weight bytes (0: the default, L2 / 4)
};

std::string describe(const Case& k) {
  const auto& c = k.c;
  return seqfuse::to_string(c.cell) + " L" + std::to_string(c.num_layers) +
         (c.bidirectional ? " bi" : "") + (c.reverse ? " reverse" : "") +
         (c.linear_before_reset ? "" : " lbr0") + (c.peepholes ? " peepholes" : "") +
         (c.input_forget ? " input_forget" : "") +
         (c.clip > 0 ? " clip " + std::to_string(c.clip) : "") +
         (c.proj_size ? " proj " + std::to_string(c.proj_size) : "") + " H" +
         std::to_string(c.hidden_size) +
         (c.vocab_size ? " tokens" : " D" + std::to_string(c.input_size)) + " head " +
         seqfuse::to_string(c.head) + " B" + std::to_string(k.B) + " T" + std::to_string(k.T) +
         (k.h0 ? " h0" : "") + (k.lengths ? " lengths" : "") +
         (k.batch_first ? "" : " time-major") + " threads " + std::to_string(k.threads) +
         " projection budget " + std::to_string(k.budget) + " fused input rows " +
         std::to_string(k.fused_rows) + " fused K block bytes " + std::to_string(k.fused_kblock);
}

// Cases where a team of two threads splits one direction's step (H = 400: a step streams
// more than engine.hpp's TEAM_STEP_BYTES of weights) for the two-pass kinds, whose passes the
// team's barrier separates: GRU linear_before_reset=0 and LSTM proj_size, with whole and chunked
// input projections, forward and reverse, both layouts; and a clipped GRU whose steps compute their
// input projection (gru_x, with ONNX's extras).
std::vector<Case> team_cases() {
  std::vector<Case> v;
  for (int kind = 0; kind < 3; ++kind)
    for (int chunked = 0; chunked < 2; ++chunked) {
      Case k;
      k.c.cell = kind == 1 ? seqfuse::Cell::lstm : seqfuse::Cell::gru;
      k.c.input_size = kind == 0 ? 7 : 28;  // kinds 1 and 2 compute their input projections
      k.c.hidden_size = 400;
      if (kind == 0)
        k.c.linear_before_reset = false;
      else if (kind == 1)
        k.c.proj_size = 130;
      else
        k.c.clip = 1.5f;
      k.c.reverse = chunked == 1;
      k.B = 9;
      k.T = 6;
      k.threads = 2;
      k.h0 = k.lengths = true;
      k.batch_first = chunked == 0;
      if (chunked) k.budget = 4096;
      if (kind >= 1) {
        k.fused_rows = 1;
        k.fused_kblock = chunked ? 8192 : 0;
      }
      v.push_back(k);
    }
  return v;
}

Case random_case(std::mt19937& g) {
  auto pick = [&](std::initializer_list<int> v) {
    return *(v.begin() + std::uniform_int_distribution<size_t>(0, v.size() - 1)(g));
  };
  Case k;
  auto& c = k.c;
  const seqfuse::Cell cells[] = {seqfuse::Cell::rnn_tanh, seqfuse::Cell::rnn_relu,
                                 seqfuse::Cell::gru, seqfuse::Cell::lstm};
  c.cell = cells[pick({0, 1, 2, 3})];
  c.num_layers = pick({1, 1, 2});
  c.bidirectional = pick({0, 1}) == 1;
  c.hidden_size = pick({1, 5, 16, 37, 64, 100, 400});  // 400: K-blocked batched steps
  if (pick({0, 0, 1}) == 1) {
    c.vocab_size = pick({3, 40});
    c.embed_dim = pick({2, 9});
    c.input_size = 0;
  } else {
    c.input_size = pick({1, 3, 16, 28, 64});  // 16 to 4H wide: batched steps may fuse it
  }
  const seqfuse::Head heads[] = {seqfuse::Head::none, seqfuse::Head::step, seqfuse::Head::last_step,
                                 seqfuse::Head::last_hidden};
  c.head = heads[pick({0, 1, 2, 3})];
  c.output_size = c.head == seqfuse::Head::none ? 0 : pick({1, 7});
  // ONNX's semantics, each in about a third of the cases where it applies; the clip is small
  // enough to bind on some pre-activations.
  if (!c.bidirectional && pick({0, 0, 1}) == 1) c.reverse = true;
  if (c.cell == seqfuse::Cell::gru && pick({0, 1}) == 1) c.linear_before_reset = false;
  if (c.cell == seqfuse::Cell::lstm) {
    c.peepholes = pick({0, 0, 1}) == 1;
    c.input_forget = pick({0, 0, 0, 1}) == 1;
    if (c.hidden_size > 1 && pick({0, 0, 1}) == 1)
      c.proj_size = std::min(pick({1, 3, 16, 37}), c.hidden_size - 1);
  }
  if (pick({0, 0, 1}) == 1) c.clip = pick({1, 3}) * 0.5f;
  k.B = pick({1, 1, 2, 5, 9});
  k.T = pick({1, 3, 12});
  k.threads = pick({1, 2});
  k.h0 = pick({0, 1}) == 1;
  k.lengths = pick({0, 1}) == 1;
  k.batch_first = pick({0, 1}) == 1;
  return k;
}

// Max difference (relative to max(1, |reference|)) of every output (y, h_n, c_n) between the
// reference and one kernel set.
float run_and_compare(const Case& k, const std::string& isa, std::mt19937& g) {
  const auto& c = k.c;
  const int B = k.B, T = k.T, H = c.hidden_size, Hs = c.state_size(), S = c.num_layers * c.dirs();
  auto w = random_weights(c, g, 1.0f / std::sqrt(float(H)));  // torch's default init range
  seqfuse::Model ref(c, w, "reference"), fast(c, w, isa);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> x(size_t(B) * T * std::max(1, c.input_size));
  for (auto& e : x) e = n(g);
  std::vector<int64_t> tokens(size_t(B) * T), lengths(static_cast<size_t>(B));
  for (auto& t : tokens) t = std::uniform_int_distribution<int64_t>(0, c.vocab_size - 1)(g);
  for (auto& l : lengths) l = std::uniform_int_distribution<int64_t>(1, T)(g);
  std::vector<float> h0(size_t(S) * B * Hs), c0(size_t(S) * B * H);
  for (auto* v : {&h0, &c0})
    for (auto& e : *v) e = 0.5f * n(g);
  const bool lstm = c.cell == seqfuse::Cell::lstm;
  size_t ysize = size_t(B) * c.output_size;
  if (c.head == seqfuse::Head::none) ysize = size_t(B) * T * c.dirs() * Hs;
  if (c.head == seqfuse::Head::step) ysize = size_t(B) * T * c.output_size;
  std::vector<float> y[2], hn[2], cn[2];
  const seqfuse::Model* models[2] = {&ref, &fast};
  for (int m = 0; m < 2; ++m) {
    y[m].assign(ysize, -1.f);
    hn[m].assign(h0.size(), -1.f);
    cn[m].assign(c0.size(), -1.f);
    seqfuse::ForwardArgs a;
    a.batch = B;
    a.steps = T;
    if (c.vocab_size)
      a.tokens = tokens.data();
    else
      a.x = x.data();
    a.lengths = k.lengths ? lengths.data() : nullptr;
    a.batch_first = k.batch_first;
    a.h0 = k.h0 ? h0.data() : nullptr;
    a.c0 = k.h0 && lstm ? c0.data() : nullptr;
    a.y = y[m].data();
    a.h_n = hn[m].data();
    a.c_n = lstm ? cn[m].data() : nullptr;
    a.threads = m == 0 ? 1 : k.threads;
    const size_t old = seqfuse::testing::set_projection_budget_bytes(k.budget);
    const int old_rows = seqfuse::testing::set_fused_input_rows(k.fused_rows);
    const size_t old_kblock = seqfuse::testing::set_fused_kblock_bytes(k.fused_kblock);
    models[m]->forward(a);
    seqfuse::testing::set_projection_budget_bytes(old);
    seqfuse::testing::set_fused_input_rows(old_rows);
    seqfuse::testing::set_fused_kblock_bytes(old_kblock);
  }
  float worst = 0.f;
  auto cmp = [&](const std::vector<float>& p, const std::vector<float>& q) {
    for (size_t i = 0; i < p.size(); ++i) {
      const float d = std::fabs(p[i] - q[i]) / std::fmax(1.f, std::fabs(p[i]));
      worst = std::isnan(d) ? std::numeric_limits<float>::infinity() : std::fmax(worst, d);
    }
  };
  cmp(y[0], y[1]);
  cmp(hn[0], hn[1]);
  if (lstm) cmp(cn[0], cn[1]);
  // A unidirectional forward model also streams, one step per call: a session orders its
  // weight reads differently on alternate calls (engine.hpp), and without lengths its outputs
  // and final state are the whole run's.
  if (!c.bidirectional && !c.reverse && !k.lengths) {
    seqfuse::Session s = fast.stream(B);
    if (k.h0) s.set_state(h0.data(), lstm ? c0.data() : nullptr);
    const int D = std::max(1, c.input_size);
    const bool per_step = c.head == seqfuse::Head::none || c.head == seqfuse::Head::step;
    const size_t per = c.head == seqfuse::Head::none ? size_t(Hs) : size_t(c.output_size);
    std::vector<float> xs(size_t(B) * D), ys(size_t(B) * per), ystream(ysize);
    std::vector<int64_t> ts(static_cast<size_t>(B));
    auto row = [&](int t, int b) { return k.batch_first ? size_t(b) * T + t : size_t(t) * B + b; };
    for (int t = 0; t < T; ++t) {
      for (int b = 0; b < B; ++b) {
        const size_t r = row(t, b);
        if (c.vocab_size)
          ts[size_t(b)] = tokens[r];
        else
          std::copy_n(&x[r * D], D, &xs[size_t(b) * D]);
      }
      s.step(c.vocab_size ? nullptr : xs.data(), c.vocab_size ? ts.data() : nullptr, 1, ys.data(),
             k.threads);
      for (int b = 0; b < B; ++b) {
        const size_t r = per_step ? row(t, b) : size_t(b);
        std::copy_n(&ys[size_t(b) * per], per, &ystream[r * per]);
      }
    }
    std::vector<float> hs(h0.size()), cs(c0.size());
    s.get_state(hs.data(), lstm ? cs.data() : nullptr);
    cmp(y[0], ystream);
    cmp(hn[0], hs);
    if (lstm) cmp(cn[0], cs);
  }
  return worst;
}

// The vectorized sigmoid and tanh of one kernel set against double precision, over every
// 4099th float bit pattern (about a million values: every binade, the denormals and NaNs of
// both signs; coarser than tests/test_native_kernels.py's every 97th, so that it stays quick
// under qemu) plus the special values, with the bar of csrc/cpu/simd_math.hpp:
// - tanh: <= 1e-6 relative wherever tanh(x) != 0; tanh(x) == x, sign of zero included, for
//   |x| < 1e-30; within [-1, 1]; tanh(+-Inf) = +-1.
// - sigmoid: <= 1e-6 relative where sigmoid(x) >= 1e-30, else <= 1e-30 absolute; within
//   [0, 1]; sigmoid(-Inf) = 0, sigmoid(Inf) = 1.
// - NaN in, NaN out.
void check_activations(const std::string& isa) {
  std::vector<float> x;
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) {
    const uint32_t u = uint32_t(b);
    float v;
    std::memcpy(&v, &u, sizeof v);
    x.push_back(v);
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.f, -0.f, 1e-38f, -1e-38f, 1e-45f, -1e-45f, 9.f, -9.f, 69.f, -69.f, 88.7f,
                  -88.7f, 89.f, -89.f, 1e30f, -1e30f, inf, -inf})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  std::vector<float> y(x.size());
  for (int kind = 0; kind < 2; ++kind) {
    seqfuse::testing::activation(isa, kind, x.data(), y.data(), x.size());
    double worst_rel = 0, worst_abs = 0;
    bool specials = true;
    for (size_t i = 0; i < x.size(); ++i) {
      const float v = x[i];
      if (std::isnan(v) || std::isnan(y[i])) {
        specials = specials && std::isnan(v) && std::isnan(y[i]);
        continue;
      }
      const double want = kind == 0 ? 1.0 / (1.0 + std::exp(-double(v))) : std::tanh(double(v));
      const double err = std::fabs(y[i] - want);
      if (kind == 0 && want < 1e-30)
        worst_abs = std::fmax(worst_abs, err);
      else if (want != 0)
        worst_rel = std::fmax(worst_rel, err / std::fabs(want));
      specials = specials && (kind == 0 ? y[i] >= 0.f && y[i] <= 1.f : std::fabs(y[i]) <= 1.f);
      if (kind == 1 && std::fabs(v) < 1e-30f)  // tanh(x) = x for tiny x, -0 and denormals
        specials = specials && std::memcmp(&y[i], &v, sizeof v) == 0;
      if (std::isinf(v))
        specials = specials && y[i] == (kind == 0 ? (v > 0 ? 1.f : 0.f) : (v > 0 ? 1.f : -1.f));
    }
    const std::string name = isa + (kind == 0 ? " sigmoid" : " tanh");
    std::printf("%s: max relative error %.3g, max absolute error below 1e-30 %.3g\n", name.c_str(),
                worst_rel, worst_abs);
    check(worst_rel <= 1e-6 && worst_abs <= 1e-30, name + " accuracy");
    check(specials, name + " special values (NaN, +-Inf, -0, denormals, range)");
  }
}

}  // namespace

int main() {
  std::vector<std::string> sets;
  for (const auto& k : seqfuse::kernel_sets())
    if (k.supported && k.name != "reference") sets.push_back(k.name);
  check(!sets.empty(), "at least one kernel set runs here");
  std::mt19937 g(2024);
  const int n_cases = 100;
  // How often each option came up (each must, for the grid to check it).
  int seen_reverse = 0, seen_lbr0 = 0, seen_peep = 0, seen_if = 0, seen_clip = 0, seen_proj = 0;
  int seen_fused = 0;  // cases whose steps computed their own input projections
  for (const auto& isa : sets) {
    float worst = 0.f;
    for (int i = 0; i < n_cases; ++i) {
      Case k = random_case(g);
      // Every other case computes its input projections a chunk of steps at a time (a
      // scratch budget of a few KiB or less: chunks of 1 step up to many).
      const size_t budgets[] = {1, 4096, 65536};
      if (i % 2) k.budget = budgets[(i / 2) % 3];
      // Every other pair has batches of 2 or more compute their own input projections, and
      // every other such pair cuts their products into K blocks of 8 KiB of weights.
      if ((i / 2) % 2) k.fused_rows = 1;
      if ((i / 4) % 2) k.fused_kblock = 8192;
      const uint64_t fused_before = seqfuse::testing::fused_input_runs();
      seen_reverse += k.c.reverse;
      seen_lbr0 += !k.c.linear_before_reset;
      seen_peep += k.c.peepholes;
      seen_if += k.c.input_forget;
      seen_clip += k.c.clip > 0;
      seen_proj += k.c.proj_size > 0;
      const float err = run_and_compare(k, isa, g);
      seen_fused += seqfuse::testing::fused_input_runs() > fused_before;
      worst = std::fmax(worst, err);
      check(err <= 1e-5f, isa + ": " + describe(k) + ": err " + std::to_string(err));
    }
    for (const Case& k : team_cases()) {
      const float err = run_and_compare(k, isa, g);
      worst = std::fmax(worst, err);
      check(err <= 1e-5f, isa + ": " + describe(k) + ": err " + std::to_string(err));
    }
    std::printf("%s: %d random cases, max err vs reference %.3g\n", isa.c_str(), n_cases, worst);
    check_activations(isa);
  }
  std::printf(
      "cases with reverse %d, linear_before_reset=0 %d, peepholes %d, input_forget %d, "
      "clip %d, proj_size %d, steps computing their input projections %d\n",
      seen_reverse, seen_lbr0, seen_peep, seen_if, seen_clip, seen_proj, seen_fused);
  check(seen_reverse && seen_lbr0 && seen_peep && seen_if && seen_clip && seen_proj && seen_fused,
        "every ONNX option, proj_size and the steps' own input projections are in the grid");
  if (check_failures()) return 1;
  std::printf("ok\n");
  return 0;
}
