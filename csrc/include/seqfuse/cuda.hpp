// seqfuse CUDA backend: the public entry points. Framework-free; the header needs no CUDA
// headers (device pointers are plain pointers, the stream is a cudaStream_t passed as void*).
// The library defines these only when it was built with CUDA: then SEQFUSE_WITH_CUDA is
// defined for the library and for every target linking it (CMake package). Checked by
// tests/test_native_cuda.py (parity with the CPU loop and eager PyTorch; skips without a GPU) and
// tests/test_cuda_tiling.py (the tile plan, on any machine).
//
// Shapes as in seqfuse.hpp: B batch, T steps, D input features, H hidden, G gates
// (rnn 1, gru 3, lstm 4), L layers, dirs 1 or 2, O head outputs. Every array is dense,
// row-major, fp32 (token ids and lengths int64) and lives in the memory of the model's GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse {
namespace cuda {

// Number of usable CUDA devices (0 without a driver or a GPU). Never throws.
SEQFUSE_API int device_count();

// Which kernels a call uses.
//   automatic: for a unidirectional model, a few steps (<= 8) and no lengths, the fused
//     kernel when its weights per block are small enough; otherwise, per layer, the
//     persistent kernel when the recurrent weights fit on chip (registers of one block, or
//     of a thread-block cluster on sm_90), else the per-step kernel;
//   persistent: per layer the persistent kernel; Unsupported where it cannot run;
//   step: per layer the per-step fallback (weights read from global memory / L2 each step);
//   fused: all layers and the head in one launch, weights read from L2 each step (the
//     streaming path); Unsupported for bidirectional models, lengths or > 8 layers.
enum class Path { automatic = 0, persistent = 1, step = 2, fused = 3 };

// A CUDA forward call: the fields every backend takes (seqfuse::CallArgs, shapes documented
// there), with every array in the memory of the model's GPU, plus the CUDA-only fields below.
// On the GPU: token ids out of [0, vocab) are not read (their outputs become NaN); lengths
// are not checked here (the caller validates them; the kernels clamp them, so a bad value
// never reads or writes outside the arrays). h_n may alias h0 and c_n may alias c0 (a
// streaming session keeps its state this way): every kernel reads a layer's initial state
// before it writes that layer's final state.
struct ForwardArgs : seqfuse::CallArgs {
  void* workspace = nullptr;  // device scratch of at least workspace_bytes(B, T) bytes
  size_t workspace_bytes = 0;
  void* stream = nullptr;  // cudaStream_t the work is enqueued on (null: default)
  Path path = Path::automatic;
};

// Weight precision. fp32: exact (the 1e-5 parity bar). bf16: the recurrent layers' weight
// matrices (W_ih, W_hh) are rounded to bf16 (round to nearest even, as torch's .bfloat16())
// at load; accumulation, activations, states, biases, the Embedding and the head stay fp32.
// The persistent kernel then holds two weights per register: twice the hidden size per
// cluster. Every path computes with the same rounded weights.
enum class Precision { fp32 = 0, bf16 = 1 };

// A model on one GPU: weights uploaded and repacked once at construction (for an Embedding,
// layer 0's input projection is folded into a [vocab, dirs*G*H] table there).
// forward() only enqueues work on the given stream (no allocation, no synchronization), so
// it can be captured into a CUDA graph after one warm-up call with the same shapes.
class SEQFUSE_API Model {
 public:
  // config and weights as for seqfuse::Model (names from Config::weight_shapes()).
  // device < 0: the current device. Throws InvalidArgument / Unsupported / std::runtime_error.
  Model(const Config& config, const std::map<std::string, Tensor>& weights, int device = -1,
        Precision precision = Precision::fp32);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const Config& config() const;
  int device() const;
  Precision precision() const;
  // Scratch bytes forward() needs for B sequences of T steps.
  size_t workspace_bytes(int batch, int steps) const;
  // Enqueue a forward pass. Validates shapes and pointers (not device values); throws
  // InvalidArgument on bad arguments and std::runtime_error on a CUDA error.
  void forward(const ForwardArgs& args) const;
  // One line per layer: the path and tile plan a call with this batch size would use.
  std::string describe(int batch, Path path = Path::automatic) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace seqfuse
