// ctest concurrency test of the C++ API: several caller threads share one Model and call it with
// a batch (1..64), a thread count (1..8, more than the cores) and lengths that change from call
// to call; every output must be bit-identical to the same call made alone with one thread.
// Two threads feeding one stream Session must lose no step. This is the test that would have
// caught the thread-pool handoff race (a worker running a stale or freed job when the team
// size changed with the batch). Built with -DSEQFUSE_BUILD_TESTS=ON; run by ctest (and under
// ThreadSanitizer and AddressSanitizer by .ci/sanitize). Usage: test_concurrency [calls].
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "random_weights.hpp"
#include "seqfuse/seqfuse.hpp"

namespace {

constexpr int kMaxB = 64, kT = 6;

struct Case {
  seqfuse::Config cfg;
  std::vector<float> x;                     // [kMaxB, kT, D]; batch B uses the first B sequences
  std::vector<int64_t> lengths;             // [kMaxB]
  std::vector<std::vector<float>> want[2];  // [with lengths?][B] = y then h_n, one thread, alone
  size_t ysize(int B) const {
    return cfg.head == seqfuse::Head::none ? size_t(B) * kT * cfg.dirs() * cfg.hidden_size
                                           : size_t(B) * kT * cfg.output_size;
  }
  size_t hsize(int B) const { return size_t(cfg.num_layers) * cfg.dirs() * B * cfg.hidden_size; }
};

std::vector<float> call(const seqfuse::Model& m, const Case& k, int B, bool use_len, int threads) {
  std::vector<float> out(k.ysize(B) + k.hsize(B));
  seqfuse::ForwardArgs a;
  a.batch = B;
  a.steps = kT;
  a.x = k.x.data();
  a.lengths = use_len ? k.lengths.data() : nullptr;
  a.y = out.data();
  a.h_n = out.data() + k.ysize(B);
  a.threads = threads;
  m.forward(a);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const long calls = argc > 1 ? std::atol(argv[1]) : 20000;
  std::mt19937 g(11);
  // A bidirectional LSTM whose thread team grows with the batch (2 threads at batch 1, up to 8
  // at batch 32+), and a GRU big enough to split every step across a team.
  seqfuse::Config lstm;
  lstm.cell = seqfuse::Cell::lstm;
  lstm.input_size = 5;
  lstm.hidden_size = 64;
  lstm.num_layers = 2;
  lstm.bidirectional = true;
  lstm.head = seqfuse::Head::step;
  lstm.output_size = 3;
  seqfuse::Config gru;
  gru.cell = seqfuse::Cell::gru;
  gru.input_size = 5;
  gru.hidden_size = 200;
  gru.num_layers = 1;
  std::vector<Case> cases(2);
  cases[0].cfg = lstm;
  cases[1].cfg = gru;
  std::vector<std::unique_ptr<seqfuse::Model>> models;
  std::normal_distribution<float> n(0.f, 1.f);
  std::uniform_int_distribution<int> len(1, kT);
  for (auto& k : cases) {
    models.push_back(std::make_unique<seqfuse::Model>(k.cfg, random_weights(k.cfg, g, 0.3f)));
    k.x.resize(size_t(kMaxB) * kT * k.cfg.input_size);
    for (auto& v : k.x) v = n(g);
    k.lengths.resize(kMaxB);
    for (auto& v : k.lengths) v = len(g);
    for (int l = 0; l < 2; ++l) {
      k.want[l].resize(kMaxB + 1);
      for (int B = 1; B <= kMaxB; ++B) k.want[l][B] = call(*models.back(), k, B, l == 1, 1);
    }
  }

  // Callers share the models; each call draws its batch, thread count and lengths.
  const int callers = 3;
  std::atomic<long> mismatches{0}, done{0}, errors{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < callers; ++c)
    ts.emplace_back([&, c] {
      std::mt19937 r(100 + c);
      for (long i = c; i < calls; i += callers) {
        const int ci = int(r() % cases.size());
        const int B = r() % 4 == 0 ? 1 + int(r() % kMaxB) : (r() % 2 ? 1 : 32);
        const int threads = 1 + int(r() % 8);
        const bool use_len = r() % 3 == 0;
        try {
          const auto got = call(*models[size_t(ci)], cases[size_t(ci)], B, use_len, threads);
          if (got != cases[size_t(ci)].want[use_len][size_t(B)]) {
            if (mismatches.fetch_add(1) < 5)
              std::fprintf(stderr, "mismatch: case %d B=%d threads=%d lengths=%d\n", ci, B, threads,
                           int(use_len));
          }
        } catch (const std::exception& e) {
          if (errors.fetch_add(1) < 5) std::fprintf(stderr, "error: %s\n", e.what());
        }
        done.fetch_add(1);
      }
    });
  for (auto& t : ts) t.join();

  // Two threads feed one stream session the same step: no step may be lost or torn.
  seqfuse::Config sc = gru;
  sc.hidden_size = 48;
  seqfuse::Model sm(sc, random_weights(sc, g, 0.3f));
  const int steps_per_thread = 2000, sB = 3;
  std::vector<float> sx(size_t(sB) * sc.input_size);
  for (auto& v : sx) v = 0.1f * n(g);
  seqfuse::Session shared = sm.stream(sB), alone = sm.stream(sB);
  std::vector<float> ya(size_t(sB) * sc.hidden_size);
  for (int s = 0; s < 2 * steps_per_thread; ++s) alone.step(sx.data(), nullptr, 1, ya.data());
  std::vector<std::thread> feeders;
  for (int f = 0; f < 2; ++f)
    feeders.emplace_back([&, f] {
      std::vector<float> y(ya.size());
      for (int s = 0; s < steps_per_thread; ++s)
        shared.step(sx.data(), nullptr, 1, y.data(), 1 + f);
    });
  for (auto& t : feeders) t.join();
  std::vector<float> h1(size_t(sB) * sc.hidden_size), h2(h1.size());
  shared.get_state(h1.data(), nullptr);
  alone.get_state(h2.data(), nullptr);
  const bool stream_ok = h1 == h2;

  std::printf(
      "%ld calls from %d threads (threads per call 1..8, batch 1..%d): %ld mismatches, "
      "%ld errors; shared stream session: %s\n",
      done.load(), callers, kMaxB, mismatches.load(), errors.load(),
      stream_ok ? "ok" : "LOST STEPS");
  if (mismatches.load() || errors.load() || !stream_ok || done.load() != calls) return 1;
  std::printf("ok\n");
  return 0;
}
