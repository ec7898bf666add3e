// ctest unit test of the C++ API without Python: every kernel set this CPU runs must match the
// scalar reference engine (max abs error 1e-5) on a bidirectional 2-layer LSTM and a GRU with
// lengths and initial states, and bad arguments must throw seqfuse::InvalidArgument.
// Built with -DSEQFUSE_BUILD_TESTS=ON; run by ctest and by tests/test_build.py.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "random_weights.hpp"
#include "seqfuse/seqfuse.hpp"

namespace {

float run_and_compare(const seqfuse::Config& c, const std::string& isa, std::mt19937& g) {
  const int B = 5, T = 9, H = c.hidden_size, LD = c.num_layers * c.dirs();
  auto w = random_weights(c, g, 0.4f);
  seqfuse::Model ref(c, w, "reference"), fast(c, w, isa);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> x(size_t(B) * T * c.input_size), h0(size_t(LD) * B * H), c0(h0.size());
  for (auto* v : {&x, &h0, &c0})
    for (auto& e : *v) e = n(g);
  std::vector<int64_t> lengths = {9, 1, 4, 9, 6};  // unsorted, with a length-1 sequence
  const size_t ysize =
      size_t(B) * T * (c.head == seqfuse::Head::none ? c.dirs() * H : c.output_size);
  float worst = 0.f;
  std::vector<float> y[2], hn[2], cn[2];
  const seqfuse::Model* models[2] = {&ref, &fast};
  for (int k = 0; k < 2; ++k) {
    y[k].assign(ysize, 0.f);
    hn[k].assign(h0.size(), 0.f);
    cn[k].assign(h0.size(), 0.f);
    seqfuse::ForwardArgs a;
    a.batch = B;
    a.steps = T;
    a.x = x.data();
    a.lengths = lengths.data();
    a.h0 = h0.data();
    a.c0 = c.cell == seqfuse::Cell::lstm ? c0.data() : nullptr;
    a.y = y[k].data();
    a.h_n = hn[k].data();
    a.c_n = c.cell == seqfuse::Cell::lstm ? cn[k].data() : nullptr;
    a.threads = k == 0 ? 1 : 2;
    models[k]->forward(a);
  }
  for (size_t i = 0; i < ysize; ++i) worst = std::fmax(worst, std::fabs(y[0][i] - y[1][i]));
  for (size_t i = 0; i < h0.size(); ++i) {
    worst = std::fmax(worst, std::fabs(hn[0][i] - hn[1][i]));
    worst = std::fmax(worst, std::fabs(cn[0][i] - cn[1][i]));
  }
  return worst;
}

}  // namespace

int main() {
  std::mt19937 g(7);
  seqfuse::Config lstm;
  lstm.cell = seqfuse::Cell::lstm;
  lstm.input_size = 3;
  lstm.hidden_size = 37;
  lstm.num_layers = 2;
  lstm.bidirectional = true;
  lstm.head = seqfuse::Head::step;
  lstm.output_size = 4;
  seqfuse::Config gru = lstm;
  gru.cell = seqfuse::Cell::gru;
  gru.bidirectional = false;
  gru.head = seqfuse::Head::none;
  gru.output_size = 0;

  // Every kernel set this build has and this CPU runs (the registry's own list).
  std::vector<std::string> sets;
  for (const auto& k : seqfuse::kernel_sets())
    if (k.supported && k.name != "reference") sets.push_back(k.name);
  check(!sets.empty() && sets.back() == "portable", "the portable kernel set runs anywhere");
  for (const auto* c : {&lstm, &gru})
    for (const auto& isa : sets) {
      const float err = run_and_compare(*c, isa, g);
      std::printf("%s %s: max abs err vs reference %.3g\n", seqfuse::to_string(c->cell).c_str(),
                  isa.c_str(), err);
      check(err <= 1e-5f, seqfuse::to_string(c->cell) + " " + isa);
    }

  // A length of 0 is out of range: a clear exception, not a crash.
  seqfuse::Model m(gru, random_weights(gru, g, 0.4f));
  std::vector<float> x(3), y(37);
  int64_t zero = 0;
  seqfuse::ForwardArgs a;
  a.x = x.data();
  a.lengths = &zero;
  a.y = y.data();
  bool threw = false;
  try {
    m.forward(a);
  } catch (const seqfuse::InvalidArgument&) {
    threw = true;
  }
  check(threw, "length 0 must throw InvalidArgument");

  if (check_failures()) return 1;
  std::printf("ok\n");
  return 0;
}
