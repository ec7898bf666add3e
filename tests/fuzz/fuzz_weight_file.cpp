// libFuzzer harness: the weight-file loader, then one forward call (2 threads, lengths) and one
// stream step on whatever loads. A file from a stranger may only ever give FormatError or
// InvalidArgument: any other exception, a signal, or an ASan/UBSan report is a finding.
// Built by CMake with -DSEQFUSE_FUZZ=ON (clang); run by .ci/fuzz, seeded with real weight files
// of every cell, head and Embedding kind (tests/fuzz/make_seeds.py).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "seqfuse/seqfuse.hpp"

namespace {

// The loader takes a path: the input goes into one in-memory file, rewritten per run.
int memfd() {
  static const int fd = memfd_create("seqfuse-fuzz", 0);
  return fd;
}

void exercise(const seqfuse::Model& m) {
  const seqfuse::Config& c = m.config();
  const int B = 2, T = 3, H = c.hidden_size, S = c.num_layers * c.dirs();
  std::vector<float> x(size_t(B) * T * size_t(c.rnn_input_size()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 7) - 3) * 0.37f;
  std::vector<int64_t> tok(size_t(B) * T);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = c.vocab_size > 0 ? int64_t(i) % c.vocab_size : 0;
  const size_t ywidth = c.head == seqfuse::Head::none   ? size_t(c.dirs()) * H
                        : c.head == seqfuse::Head::step ? size_t(c.output_size)
                                                        : 0;
  std::vector<float> y(ywidth ? size_t(B) * T * ywidth : size_t(B) * c.output_size);
  std::vector<float> hn(size_t(S) * B * H), cn(hn.size());
  const int64_t lengths[B] = {T, 1};
  seqfuse::ForwardArgs a;
  a.batch = B;
  a.steps = T;
  a.x = c.vocab_size > 0 ? nullptr : x.data();
  a.tokens = c.vocab_size > 0 ? tok.data() : nullptr;
  a.y = y.data();
  if (S > 0) {
    a.lengths = lengths;
    a.h_n = hn.data();
    if (c.cell == seqfuse::Cell::lstm) a.c_n = cn.data();
  }
  a.threads = 2;
  m.forward(a);
  if (!c.bidirectional && S > 0) {
    seqfuse::Session s = m.stream(B);
    std::vector<float> ys(ywidth ? size_t(B) * ywidth : size_t(B) * c.output_size);
    s.step(a.x, a.tokens, 1, ys.data());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
  try {
    seqfuse::Model m = seqfuse::Model::load("/proc/self/fd/" + std::to_string(fd));
    exercise(m);
  } catch (const seqfuse::FormatError&) {
  } catch (const seqfuse::InvalidArgument&) {
  }
  return 0;
}
