// Model and Session: argument validation, kernel-set choice, workspace reuse, the thread
// pool and streaming state. Checked by tests/test_native*.py.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/internal.hpp"
#include "cpu/backend.hpp"

namespace seqfuse {

// ---- Buf ---------------------------------------------------------------------------------
Buf::~Buf() { std::free(p_); }
float* Buf::ensure(size_t n) {
  if (n <= n_ && p_) return p_;
  std::free(p_);
  size_t bytes = ((std::max<size_t>(n, 16) * sizeof(float)) + 63) / 64 * 64;
  p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p_) throw std::bad_alloc();
  n_ = bytes / sizeof(float);
  std::memset(p_, 0, bytes);
  return p_;
}
void Buf::zero() {
  if (p_) std::memset(p_, 0, n_ * sizeof(float));
}

void Buf::release() {
  std::free(p_);
  p_ = nullptr;
  n_ = 0;
}

int* Workspace::ensure_ints(size_t n) {
  if (ints.size() < n) ints.resize(n);
  return ints.data();
}
void Workspace::trim(size_t max_bytes) {
  if (f.size() * sizeof(float) > max_bytes) f.release();
  if (ints.size() * sizeof(int) > max_bytes) std::vector<int>().swap(ints);
}

#ifndef SEQFUSE_X86
// Non-x86 builds compile no per-ISA files: the portable engine serves.
std::unique_ptr<Backend> make_avx2_backend(const Config&, const WeightMap&) { return nullptr; }
std::unique_ptr<Backend> make_avx512_backend(const Config&, const WeightMap&) { return nullptr; }
bool apply_activation_avx2(int, const float*, float*, size_t) { return false; }
bool apply_activation_avx512(int, const float*, float*, size_t) { return false; }
#endif

bool apply_activation(Isa isa, int kind, const float* x, float* y, size_t n) {
  if (!cpu_supports(isa)) return false;
  switch (isa) {
    case Isa::avx512:
      return apply_activation_avx512(kind, x, y, n);
    case Isa::avx2:
      return apply_activation_avx2(kind, x, y, n);
    case Isa::portable:
      return apply_activation_portable(kind, x, y, n);
    default:
      return false;
  }
}

// ---- ThreadPool --------------------------------------------------------------------------
ThreadPool::ThreadPool(int workers) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { loop(i + 1); });
}
ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    job_ = Job{nullptr, 0, job_.gen + 1};
    gen_.store(job_.gen, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}
void ThreadPool::run(int n, const std::function<void(int)>& fn) {
  n = std::min(n, size());
  if (n <= 1) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_.store(n - 1, std::memory_order_relaxed);
    job_ = Job{&fn, n, job_.gen + 1};
    gen_.store(job_.gen, std::memory_order_release);
  }
  if (sleepers_.load() > 0) cv_.notify_all();
  fn(0);
  for (unsigned spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins)
    if (spins > 4000) std::this_thread::yield();
}
void ThreadPool::loop(int id) {
  uint64_t seen = 0;
  while (true) {
    // Spin (then yield) for a while: streaming calls come back within microseconds.
    for (unsigned spins = 0; gen_.load(std::memory_order_acquire) == seen && spins < 200000;
         ++spins)
      if (spins > 2000) std::this_thread::yield();
    Job job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (job_.gen == seen) {
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return job_.gen != seen; });
        sleepers_.fetch_sub(1);
      }
      if (stop_) return;
      job = job_;  // generation and record together
    }
    seen = job.gen;
    if (id < job.n) {
      (*job.fn)(id);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

// ---- kernel-set choice -------------------------------------------------------------------
bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::reference:
    case Isa::portable:
      return true;
#if defined(SEQFUSE_X86) && (defined(__GNUC__) || defined(__clang__))
    case Isa::avx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

static Isa resolve_isa(Isa want) {
  if (want == Isa::automatic) {
    const char* env = std::getenv("SEQFUSE_ISA");
    if (env && *env) want = isa_from_string(env);
  }
  if (want == Isa::automatic) {
    if (cpu_supports(Isa::avx512)) return Isa::avx512;
    if (cpu_supports(Isa::avx2)) return Isa::avx2;
    return Isa::portable;
  }
  if (!cpu_supports(want))
    throw Unsupported("kernel set '" + to_string(want) + "' is not supported on this CPU");
  return want;
}

// ---- Model -------------------------------------------------------------------------------
struct Model::Impl {
  Config cfg;
  WeightMap weights;
  Isa isa = Isa::reference;
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
  static std::shared_ptr<Model::Impl> build(const Config& c, WeightMap&& w, Isa want);
  static Model make(std::shared_ptr<Model::Impl> impl) { return Model(std::move(impl)); }
};

std::shared_ptr<Model::Impl> ModelAccess::build(const Config& c, WeightMap&& w, Isa want) {
  c.validate();
  check_weights(c, w);
  auto impl = std::make_shared<Model::Impl>();
  impl->cfg = c;
  impl->weights = std::move(w);
  impl->isa = resolve_isa(want);
  switch (impl->isa) {
    case Isa::reference:
      impl->backend = make_reference_backend(c, impl->weights);
      break;
    case Isa::avx2:
      impl->backend = make_avx2_backend(c, impl->weights);
      break;
    case Isa::avx512:
      impl->backend = make_avx512_backend(c, impl->weights);
      break;
    default:
      impl->backend = make_portable_backend(c, impl->weights);
      break;
  }
  if (!impl->backend) {
    impl->isa = Isa::portable;
    impl->backend = make_portable_backend(c, impl->weights);
  }
  return impl;
}

Model::Model(const Config& config, const std::map<std::string, Tensor>& weights, Isa isa)
    : impl_(ModelAccess::build(config, WeightMap(weights), isa)) {}

Model Model::load(const std::string& path, Isa isa) {
  Config c;
  WeightMap w;
  read_weight_file(path, c, w);
  return ModelAccess::make(ModelAccess::build(c, std::move(w), isa));
}

const Config& Model::config() const { return impl_->cfg; }
Isa Model::isa() const { return impl_->isa; }
std::string Model::isa_name() const { return to_string(impl_->isa); }
const std::map<std::string, Tensor>& Model::weights() const { return impl_->weights; }

static void validate_args(const Config& c, const ForwardArgs& a) {
  if (a.batch < 1) throw InvalidArgument("batch must be >= 1, got " + std::to_string(a.batch));
  if (a.steps < 1)
    throw InvalidArgument("sequence length must be >= 1, got " + std::to_string(a.steps));
  if (!a.y) throw InvalidArgument("y (the output array) is required");
  if (a.threads < 1 || a.threads > 256)
    throw InvalidArgument("threads must be in [1, 256], got " + std::to_string(a.threads));
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
    const size_t n = size_t(a.batch) * size_t(a.steps);
    for (size_t i = 0; i < n; ++i)
      if (a.tokens[i] < 0 || a.tokens[i] >= c.vocab_size)
        throw InvalidArgument("token id " + std::to_string(a.tokens[i]) + " is out of range [0, " +
                              std::to_string(c.vocab_size) + ")");
  } else if (!a.x || a.tokens) {
    throw InvalidArgument("this model takes float features, not token ids");
  }
  if (c.num_layers == 0 && (a.h0 || a.c0 || a.h_n || a.c_n || a.lengths))
    throw InvalidArgument("a model without recurrent layers takes no state and no lengths");
  if (c.cell != Cell::lstm && (a.c0 || a.c_n))
    throw InvalidArgument("only LSTM models have a cell state (c0 / c_n)");
  if (a.head_only && (a.h_n || a.c_n))
    throw InvalidArgument("head_only computes no final state: pass h_n = c_n = null");
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
  mutable std::mutex mu;
};

Session::Session() : impl_(std::make_unique<Impl>()) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

Session Model::stream(int batch) const {
  const Config& c = impl_->cfg;
  if (c.bidirectional)
    throw Unsupported(
        "streaming needs a unidirectional model (a backward direction reads the future)");
  if (batch < 1) throw InvalidArgument("stream batch must be >= 1, got " + std::to_string(batch));
  if (c.num_layers > 0 &&
      uint64_t(batch) * uint64_t(c.num_layers) * uint64_t(c.hidden_size) > (uint64_t(1) << 40))
    throw InvalidArgument("stream batch " + std::to_string(batch) + " is too large for this model");
  Session s;
  s.impl_->model = impl_;
  s.impl_->batch = batch;
  const size_t n = size_t(c.num_layers) * batch * c.hidden_size;
  s.impl_->h.assign(n, 0.f);
  if (c.cell == Cell::lstm) s.impl_->c.assign(n, 0.f);
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
  impl_->model->run(a, impl_->ws);
  impl_->ws.trim(kKeepScratchBytes);
}

void Session::reset() {
  std::lock_guard<std::mutex> lk(impl_->mu);
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
