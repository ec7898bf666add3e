// Internal CPU backend interface: the scalar reference and the SIMD engines (one per kernel
// set, cpu/kernel_set.hpp) implement it; core/model.cpp picks one through the registry. Also the
// aligned buffer, the spin barrier and the persistent thread pool the engines use. Checked by
// tests/test_native*.py.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {

// 64-byte aligned, zero-initialised growable buffer. Defined in ISA-neutral code (no inline
// std::vector in the per-ISA translation units, so no AVX-512 copy of it can leak into the
// portable path through the linker).
class Buf {
 public:
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf();
  // Ensures room for n floats; keeps nothing when it grows. Returns data().
  float* ensure(size_t n);
  float* data() const { return p_; }
  size_t size() const { return n_; }
  void release();  // frees the memory (size() becomes 0)

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

// Per-call scratch memory, sized on the first call of a shape and reused afterwards. A call
// that needed more than kKeepScratchBytes gives it back when it ends (trim), so one huge call
// does not pin gigabytes for the model's lifetime; calls below it reuse their scratch.
constexpr size_t kKeepScratchBytes = size_t(256) << 20;
struct Workspace {
  Buf f;                       // floats
  std::vector<int> ints;       // row order and active counts (resized only when it grows)
  int* ensure_ints(size_t n);  // out of line: see Buf
  // A Session's call count's parity (0, 1), which orders a streamed step's weight reads
  // (engine.hpp); -1: not a stream.
  int stream_phase = -1;
  void trim(size_t max_bytes);
};

// The scratch memory (bytes) a forward call may spend on its input projections (one G*H row
// per time step, sequence and direction) before it computes them a chunk of time steps at a
// time, so that scratch does not grow with T*B without limit: 64 MiB, or what
// testing::set_projection_budget_bytes set.
size_t projection_budget_bytes();

// The smallest batch whose batched steps compute their own input projections (LSTM, RNN and
// PyTorch's GRU layers whose input is 16 to 4H wide; see FastBackend::fuses_x): 32, or what
// testing::set_fused_input_rows set. From there the step's weight reads are amortized over
// enough rows, and the whole-sequence projection's round trip through memory is saved:
// LSTM(256,512) T=50 b64 0.85-0.91x of the time, b16 1.02x (Sapphire Rapids, 1 thread);
// GRU(256,256) T=100 b64 0.98x at 1 and 2 threads, b32 1.00x (Zen 5).
int fused_input_rows();
// The most weight bytes one K block spans in a batched step that computes its own input
// projection: a quarter of L2, or what testing::set_fused_kblock_bytes set. Those steps
// read K = D + H per tile (LSTM(256,512): 768), and L1-sized blocks cut that into 9 pieces,
// each of which parks and reloads the tile's accumulators. One block per segment, streamed
// from L2 by every row tile: 0.964x of the time at b64 and 0.977x at b32 (LSTM(256,512),
// Zen 5, 1 thread); LSTM(1024,256) b64 0.944x. Steps of W_hh alone keep L1-sized blocks: for
// them L2 blocks measured 1.005-1.019x (GRU(256,256) b8-b64, LSTM(256,512) b8).
size_t fused_kblock_bytes();
// Counts one layer direction run that way (testing::fused_input_runs).
void count_fused_input_run();
// Counts one layer direction run whose team split some step by rows (testing::row_split_runs).
void count_row_split_run();
// Counts one layer direction run by a team of two threads or more, or one call of a model
// without recurrent layers whose head's GEMM a team shared (testing::team_runs).
void count_team_run();

// This CPU's level-1 data cache in bytes, read once at run time (sysconf; 32 KiB when the
// system does not say): the batched recurrent step blocks its weights to fit half of it.
size_t l1d_cache_bytes();

// This CPU's level-2 cache (per core) in bytes, read once at run time (sysconf; 512 KiB when
// the system does not say): the input-projection GEMM takes its rows in blocks sized to it.
size_t l2_cache_bytes();

// Sense-reversing spin barrier for a fixed team; spins, then yields.
class SpinBarrier {
 public:
  void reset(int n) {
    n_ = n;
    count_.store(0);
  }
  void wait() {
    if (n_ <= 1) return;
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    // Spin (a peer on its own core arrives within ~100 ns), then yield: on a busy machine
    // the peer may be descheduled and spinning would only steal its core.
    for (unsigned spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins)
      if (spins > 4000) std::this_thread::yield();
  }

 private:
  int n_ = 1;
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<int> gen_{0};
};

// A small persistent pool: run(n, fn) calls fn(0) on the caller and fn(1..n-1) on workers,
// and returns when all are done. Workers spin for a while after a job (streaming calls come
// back within microseconds), then sleep on a condition variable.
//
// The handoff cannot race: each call publishes one Job record (function, team size and its
// own generation) under the mutex, and a worker takes the generation and the record in the
// same critical section. A worker that sat out a call (id >= n: teams shrink at batch 1) and
// wakes late therefore sees the newest record whole, never a new function with an old
// generation (which made it run a job twice or call a destroyed std::function). The caller
// waits for the n-1 participants only; they hold the record until they count down.
// One run() at a time per pool (Model serializes multi-threaded calls).
class ThreadPool {
 public:
  explicit ThreadPool(int workers);
  ~ThreadPool();
  int size() const { return int(threads_.size()) + 1; }
  void run(int n, const std::function<void(int)>& fn);

 private:
  struct Job {
    const std::function<void(int)>* fn = nullptr;
    int n = 0;
    uint64_t gen = 0;
  };
  void loop(int id);
  std::vector<std::thread> threads_;
  Job job_;  // guarded by mu_
  alignas(64) std::atomic<uint64_t> gen_{0};
  alignas(64) std::atomic<int> pending_{0};
  bool stop_ = false;  // guarded by mu_
  std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable cv_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Arguments are validated by Model::forward. pool may be null (one thread).
  virtual void forward(const ForwardArgs& a, Workspace& ws, ThreadPool* pool) const = 0;
};

using WeightMap = std::map<std::string, Tensor>;

}  // namespace seqfuse
