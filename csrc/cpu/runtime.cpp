// The CPU engines' runtime pieces (declared in cpu/backend.hpp): the aligned scratch buffer,
// the per-call workspace, the persistent thread pool and the machine facts the engines size
// their blocks by. ISA-neutral code. Checked by
// tests/cpp/test_concurrency.cpp (ctest, ASan and TSan in .ci/sanitize) and every parity test.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/testing.hpp"
#include "cpu/backend.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace seqfuse {

namespace {
std::atomic<size_t> g_projection_budget{size_t(64) << 20};
std::atomic<int> g_fused_input_rows{32};
std::atomic<size_t> g_fused_kblock_bytes{0};  // 0: a quarter of L2
// its own cache line: every call reads the two above, and fused calls write this one
alignas(64) std::atomic<uint64_t> g_fused_input_runs{0};
alignas(64) std::atomic<uint64_t> g_row_split_runs{0};
alignas(64) std::atomic<uint64_t> g_team_runs{0};
}  // namespace
size_t projection_budget_bytes() { return g_projection_budget.load(std::memory_order_relaxed); }
int fused_input_rows() { return g_fused_input_rows.load(std::memory_order_relaxed); }
size_t fused_kblock_bytes() {
  const size_t set = g_fused_kblock_bytes.load(std::memory_order_relaxed);
  return set ? set : l2_cache_bytes() / 4;
}
void count_fused_input_run() { g_fused_input_runs.fetch_add(1, std::memory_order_relaxed); }
void count_row_split_run() { g_row_split_runs.fetch_add(1, std::memory_order_relaxed); }
void count_team_run() { g_team_runs.fetch_add(1, std::memory_order_relaxed); }
namespace testing {
size_t set_projection_budget_bytes(size_t bytes) { return g_projection_budget.exchange(bytes); }
int set_fused_input_rows(int rows) { return g_fused_input_rows.exchange(rows); }
size_t set_fused_kblock_bytes(size_t bytes) { return g_fused_kblock_bytes.exchange(bytes); }
uint64_t fused_input_runs() { return g_fused_input_runs.load(std::memory_order_relaxed); }
uint64_t row_split_runs() { return g_row_split_runs.load(std::memory_order_relaxed); }
uint64_t team_runs() { return g_team_runs.load(std::memory_order_relaxed); }
}  // namespace testing

namespace {
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
constexpr int kL1dQuery = _SC_LEVEL1_DCACHE_SIZE, kL2Query = _SC_LEVEL2_CACHE_SIZE;
#else
constexpr int kL1dQuery = -1, kL2Query = -1;  // no such sysconf query here
#endif
// A cache size as sysconf reports it, when it lies in [lo, hi]; otherwise fallback (some VMs
// report 0 or garbage).
size_t cache_bytes(int query, size_t lo, size_t hi, size_t fallback) {
  long n = 0;
#if defined(__unix__) || defined(__APPLE__)
  if (query >= 0) n = sysconf(query);
#endif
  return n >= long(lo) && n <= long(hi) ? size_t(n) : fallback;
}
}  // namespace

size_t l1d_cache_bytes() {
  static const size_t bytes =
      cache_bytes(kL1dQuery, size_t(8) << 10, size_t(4) << 20, size_t(32) << 10);
  return bytes;
}

size_t l2_cache_bytes() {
  static const size_t bytes =
      cache_bytes(kL2Query, size_t(64) << 10, size_t(64) << 20, size_t(512) << 10);
  return bytes;
}

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
    // Spin for up to 200 us after a job: a streaming caller's next step comes back within
    // microseconds. Then sleep: spinning longer (it was 200,000 yields, some 100 ms) took a
    // core from every other process on the machine after each call.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    for (unsigned spins = 1; gen_.load(std::memory_order_acquire) == seen; ++spins)
      if (spins % 256 == 0 && std::chrono::steady_clock::now() > until) break;
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

}  // namespace seqfuse
