// Model and Session: argument validation, kernel-set choice (a config with ONNX semantics
// the fused kernels lack runs on the reference), workspace reuse, the thread pool and
// streaming state. Checked by tests/test_native*.py, tests/test_onnx_import.py and
// tests/cpp/test_onnx_semantics.cpp.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/internal.hpp"
#include "cpu/kernel_set.hpp"

namespace seqfuse {

// ---- Model -------------------------------------------------------------------------------
struct Model::Impl {
  Config cfg;
  WeightMap weights;
  const KernelSet* kset = nullptr;
  std::string kset_reason;  // why "auto" gave the reference (empty: as asked)
  std::unique_ptr<Backend> backend;
  std::mutex ws_mu;
  std::vector<std::unique_ptr<Workspace>> free_ws;
  std::mutex pool_mu;
  std::unique_ptr<ThreadPool> pool;

  // One workspace is kept in a lock-free slot (the common single-caller case); concurrent
  // callers fall back to the mutex-guarded list.
  std::atomic<Workspace*> slot{nullptr};
  ~Impl() { delete slot.exchange(nullptr); }

  std::unique_ptr<Workspace> take_ws() {
    if (Workspace* w = slot.exchange(nullptr, std::memory_order_acquire))
      return std::unique_ptr<Workspace>(w);
    std::lock_guard<std::mutex> lk(ws_mu);
    if (free_ws.empty()) return std::make_unique<Workspace>();
    auto w = std::move(free_ws.back());
    free_ws.pop_back();
    return w;
  }
  void give_ws(std::unique_ptr<Workspace> w) {
    w->trim(kKeepScratchBytes);
    Workspace* expected = nullptr;
    if (slot.compare_exchange_strong(expected, w.get(), std::memory_order_release)) {
      w.release();
      return;
    }
    std::lock_guard<std::mutex> lk(ws_mu);
    free_ws.push_back(std::move(w));
  }
  void run(const ForwardArgs& a, Workspace& ws) {
    if (a.threads > 1) {
      std::unique_lock<std::mutex> lk(pool_mu);  // one multi-threaded call at a time
      if (!pool || pool->size() < a.threads) {
        pool.reset();
        pool = std::make_unique<ThreadPool>(a.threads - 1);
      }
      backend->forward(a, ws, pool.get());
    } else {
      backend->forward(a, ws, nullptr);
    }
  }
};

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

struct ModelAccess {
  static std::shared_ptr<Model::Impl> build(const Config& c, WeightMap&& w,
                                            const std::string& kernel_set);
  static Model make(std::shared_ptr<Model::Impl> impl) { return Model(std::move(impl)); }
};

std::shared_ptr<Model::Impl> ModelAccess::build(const Config& c, WeightMap&& w,
                                                const std::string& kernel_set) {
  c.validate();
  check_weights(c, w);
  auto impl = std::make_shared<Model::Impl>();
  impl->cfg = c;
  impl->weights = std::move(w);
  // The fused kernels implement PyTorch's semantics and ONNX's except other activations; a
  // config with those runs on the scalar reference, which implements every ONNX semantic
  // exactly. "auto" (SEQFUSE_ISA included) falls back to it and says why; a fused kernel set
  // asked for by name is refused.
  const std::string lack = c.fused_kernels_lack();
  const bool automatic = kernel_set.empty() || kernel_set == "auto";
  if (lack.empty()) {
    impl->kset = &resolve_kernel_set(kernel_set);
  } else if (automatic || kernel_set == "reference") {
    impl->kset = &resolve_kernel_set("reference");
    if (automatic) impl->kset_reason = "fused kernels lack: " + lack;
  } else {
    resolve_kernel_set(kernel_set);  // an unknown name is reported as such first
    throw Unsupported("kernel set '" + kernel_set + "' lacks " + lack +
                      " (use 'auto' or 'reference' for this model)");
  }
  impl->backend = impl->kset->make(c, impl->weights);
  return impl;
}

Model::Model(const Config& config, const std::map<std::string, Tensor>& weights,
             const std::string& kernel_set)
    : impl_(ModelAccess::build(config, WeightMap(weights), kernel_set)) {}
Model::Model(const Config& config, const std::map<std::string, Tensor>& weights, Isa isa)
    : Model(config, weights, to_string(isa)) {}

Model Model::load(const std::string& path, const std::string& kernel_set) {
  Config c;
  WeightMap w;
  read_weight_file(path, c, w);
  return ModelAccess::make(ModelAccess::build(c, std::move(w), kernel_set));
}
Model Model::load(const std::string& path, Isa isa) { return load(path, to_string(isa)); }

std::vector<KernelSetInfo> kernel_sets() {
  std::vector<KernelSetInfo> out;
  for (const KernelSet* k : kernel_set_table()) out.push_back({k->name, cpu_supports(*k)});
  return out;
}

const Config& Model::config() const { return impl_->cfg; }
Isa Model::isa() const { return isa_from_string(impl_->kset->name); }
std::string Model::isa_name() const { return impl_->kset->name; }
std::string Model::kernel_set() const { return impl_->kset->name; }
std::string Model::kernel_set_reason() const { return impl_->kset_reason; }
const std::map<std::string, Tensor>& Model::weights() const { return impl_->weights; }

void check_call(const Config& c, const CallArgs& a) {
  if (a.batch < 1) throw InvalidArgument("batch must be >= 1, got " + std::to_string(a.batch));
  if (a.steps < 1)
    throw InvalidArgument("sequence length must be >= 1, got " + std::to_string(a.steps));
  if (!a.y) throw InvalidArgument("y (the output array) is required");
  {
    // Every size an engine derives from B and T is computed in 64 bits; bounding the widest
    // row keeps each product far from wrapping (a call this big fails as out of memory).
    const uint64_t rows = uint64_t(a.batch) * uint64_t(a.steps);
    const uint64_t width = std::max<uint64_t>(
        {uint64_t(c.rnn_input_size()), uint64_t(c.dirs()) * c.gates() * (c.hidden_size + 16),
         uint64_t(c.output_size), 1});
    if (rows > (uint64_t(1) << 48) / width)
      throw InvalidArgument("batch " + std::to_string(a.batch) + " x sequence length " +
                            std::to_string(a.steps) + " is too large for this model");
  }
  if (c.vocab_size > 0) {
    if (!a.tokens || a.x) throw InvalidArgument("this model takes token ids (int64), not floats");
  } else if (!a.x || a.tokens) {
    throw InvalidArgument("this model takes float features, not token ids");
  }
  if (c.num_layers == 0 && (a.h0 || a.c0 || a.h_n || a.c_n || a.lengths))
    throw InvalidArgument("a model without recurrent layers takes no state and no lengths");
  if (c.cell != Cell::lstm && (a.c0 || a.c_n))
    throw InvalidArgument("only LSTM models have a cell state (c0 / c_n)");
}

// The CPU call: the shared checks, its own fields, then the values in host memory.
static void validate_args(const Config& c, const ForwardArgs& a) {
  check_call(c, a);
  if (a.threads < 1 || a.threads > kMaxThreads)
    throw InvalidArgument("threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                          std::to_string(a.threads));
  if (a.head_only && (a.h_n || a.c_n))
    throw InvalidArgument("head_only computes no final state: pass h_n = c_n = null");
  if (c.vocab_size > 0) {
    const size_t n = size_t(a.batch) * size_t(a.steps);
    for (size_t i = 0; i < n; ++i)
      if (a.tokens[i] < 0 || a.tokens[i] >= c.vocab_size)
        throw InvalidArgument("token id " + std::to_string(a.tokens[i]) + " is out of range [0, " +
                              std::to_string(c.vocab_size) + ")");
  }
  if (a.lengths)
    for (int b = 0; b < a.batch; ++b)
      if (a.lengths[b] < 1 || a.lengths[b] > a.steps)
        throw InvalidArgument("lengths[" + std::to_string(b) +
                              "] = " + std::to_string(a.lengths[b]) + " is out of range [1, " +
                              std::to_string(a.steps) + "]");
}

void Model::forward(const ForwardArgs& a) const {
  validate_args(impl_->cfg, a);
  auto ws = impl_->take_ws();
  impl_->run(a, *ws);
  impl_->give_ws(std::move(ws));
}

// ---- Session -----------------------------------------------------------------------------
// Calls on one Session are serialized by its mutex: two threads feeding one session take
// turns (each step is applied whole, in the order the lock is taken), never write into the
// same state or workspace at once.
struct Session::Impl {
  std::shared_ptr<Model::Impl> model;
  int batch = 1;
  std::vector<float> h, c;
  Workspace ws;
  unsigned calls = 0;  // since the last reset: a CPU engine orders its weight reads by parity
  mutable std::mutex mu;
};

Session::Session() : impl_(std::make_unique<Impl>()) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

Session Model::stream(int batch) const {
  const Config& c = impl_->cfg;
  if (c.bidirectional || c.reverse)
    throw Unsupported(
        "streaming needs a unidirectional, forward model (a backward direction reads the "
        "future)");
  if (batch < 1) throw InvalidArgument("stream batch must be >= 1, got " + std::to_string(batch));
  if (c.num_layers > 0 &&
      uint64_t(batch) * uint64_t(c.num_layers) * uint64_t(c.hidden_size) > (uint64_t(1) << 40))
    throw InvalidArgument("stream batch " + std::to_string(batch) + " is too large for this model");
  Session s;
  s.impl_->model = impl_;
  s.impl_->batch = batch;
  const size_t n = size_t(c.num_layers) * batch;
  s.impl_->h.assign(n * c.state_size(), 0.f);
  if (c.cell == Cell::lstm) s.impl_->c.assign(n * c.hidden_size, 0.f);
  return s;
}

int Session::batch() const { return impl_->batch; }

void Session::step(const float* x, const int64_t* tokens, int k, float* y, int threads) {
  const Config& c = impl_->model->cfg;
  ForwardArgs a;
  a.batch = impl_->batch;
  a.steps = k;
  a.batch_first = true;
  a.x = x;
  a.tokens = tokens;
  a.y = y;
  a.threads = threads;
  if (c.num_layers > 0) {
    // In and out alias: every engine reads a layer's initial state before writing its final
    // state, slot by slot.
    a.h0 = a.h_n = impl_->h.data();
    if (c.cell == Cell::lstm) a.c0 = a.c_n = impl_->c.data();
  }
  validate_args(c, a);
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->ws.stream_phase = int(impl_->calls++ & 1u);
  impl_->model->run(a, impl_->ws);
  impl_->ws.trim(kKeepScratchBytes);
}

void Session::reset() {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->calls = 0;
  std::fill(impl_->h.begin(), impl_->h.end(), 0.f);
  std::fill(impl_->c.begin(), impl_->c.end(), 0.f);
}
void Session::get_state(float* h, float* c) const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (h) std::copy(impl_->h.begin(), impl_->h.end(), h);
  if (c) std::copy(impl_->c.begin(), impl_->c.end(), c);
}
void Session::set_state(const float* h, const float* c) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (h) std::copy(h, h + impl_->h.size(), impl_->h.begin());
  if (c) std::copy(c, c + impl_->c.size(), impl_->c.begin());
}

}  // namespace seqfuse
