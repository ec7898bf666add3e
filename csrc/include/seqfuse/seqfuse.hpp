// seqfuse public C++ API: the one header an application includes. Framework-free C++17.
// Checked by tests/test_native*.py (through seqfuse._C, against eager PyTorch) and by
// tests/test_build.py, which builds a small app against the installed CMake package.
//
// Shapes use B = batch, T = time steps, D = input features, H = hidden size, Hs = the hidden
// state's width (Config::state_size(): proj_size if set, else H),
// G = gates per cell (rnn 1, gru 3, lstm 4), L = num_layers, dirs = 1 or 2, O = head outputs.
// Every array is dense, row-major, fp32 (tokens and lengths int64) and owned by the caller.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// Only what this header declares is exported from libseqfuse.so (hidden visibility by
// default; tests/test_build.py checks the dynamic symbol table).
#if defined(_WIN32)
#define SEQFUSE_API
#else
#define SEQFUSE_API __attribute__((visibility("default")))
#endif

namespace seqfuse {

// What this binary was built with: compiler, the SIMD level picked at run time on this CPU,
// and whether the CUDA backend is compiled in.
struct BuildInfo {
  std::string version;   // seqfuse version (pyproject.toml), e.g. "1.2.3"
  std::string compiler;  // e.g. "GNU 12.2.0"
  std::string simd;      // the kernel set Model picks for "auto" here (SEQFUSE_ISA honoured)
  bool cuda;             // true if the CUDA backend is compiled in
};
SEQFUSE_API BuildInfo build_info();

// The CPU kernel sets compiled into this build, most preferred first, then "reference" (the
// scalar oracle), each with whether this CPU runs it. "auto" picks the first supported one.
struct KernelSetInfo {
  std::string name;  // e.g. "avx512", "avx2", "portable", "reference"
  bool supported;
};
SEQFUSE_API std::vector<KernelSetInfo> kernel_sets();

// Deprecated: a test scaffold that was never part of the engine (kept so that code calling it
// still links; removed in a later version). One step of a tanh RNN cell, in double:
//   x: [B, D], h: [B, H], w_ih: [H, D], w_hh: [H, H], b_ih, b_hh: [H] or null, out: [B, H]
//   out = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh); may alias neither input
[[deprecated("a test scaffold, not part of the seqfuse API")]] SEQFUSE_API void
rnn_tanh_step_reference(int B, int D, int H, const float* x, const float* h, const float* w_ih,
                        const float* w_hh, const float* b_ih, const float* b_hh, float* out);

// ---- errors ------------------------------------------------------------------------------
// Bad arguments (shapes, lengths, tokens, states): a std::invalid_argument.
struct SEQFUSE_API InvalidArgument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// An option the engine does not implement (e.g. streaming a bidirectional model).
struct SEQFUSE_API Unsupported : InvalidArgument {
  using InvalidArgument::InvalidArgument;
};
// A weight file that is missing, truncated, tampered with or of another format.
struct SEQFUSE_API FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- model description -------------------------------------------------------------------
enum class Cell { rnn_tanh, rnn_relu, gru, lstm };
// none: y is the top layer's output; step: Linear on every step's output;
// last_step: Linear on the output at each sequence's last valid step;
// last_hidden: Linear on the top layer's final hidden state(s) [fwd, bwd].
enum class Head { none, step, last_step, last_hidden };
// ONNX's activation functions for RNN/GRU/LSTM (its `activations` attribute), each with the
// alpha and beta it reads (others ignore them):
//   sigmoid 1/(1+e^-x); tanh; relu max(0,x); affine alpha*x+beta; leaky_relu x<0 ? alpha*x : x;
//   thresholded_relu x>alpha ? x : 0; scaled_tanh alpha*tanh(beta*x);
//   hard_sigmoid clamp(alpha*x+beta, 0, 1); elu x<0 ? alpha*(e^x-1) : x; softsign x/(1+|x|);
//   softplus log(1+e^x).
enum class Activation {
  sigmoid,
  tanh,
  relu,
  affine,
  leaky_relu,
  thresholded_relu,
  scaled_tanh,
  hard_sigmoid,
  elu,
  softsign,
  softplus
};
struct ActivationSpec {
  Activation fn = Activation::tanh;
  float alpha = 0.f;
  float beta = 0.f;
  bool operator==(const ActivationSpec& o) const {
    return fn == o.fn && alpha == o.alpha && beta == o.beta;
  }
};

// Kernel set, as an enum (kept for compatibility; kernel sets are named by strings, see
// kernel_sets(), so that adding one changes no type). automatic = the best this CPU runs
// (env SEQFUSE_ISA overrides it); reference = the scalar oracle the others are tested against.
enum class Isa { automatic, reference, portable, avx2, avx512 };

struct SEQFUSE_API Config {
  Cell cell = Cell::lstm;
  int input_size = 1;   // D of float inputs (ignored when vocab_size > 0)
  int vocab_size = 0;   // > 0: inputs are token ids and an Embedding [vocab, embed] feeds layer 0
  int embed_dim = 0;    // embedding width (the recurrent input size when vocab_size > 0)
  int hidden_size = 1;  // H
  int num_layers = 1;   // L; 0 = no recurrent layer, the head reads the input (linear regression)
  bool bidirectional = false;
  bool bias = true;
  Head head = Head::none;
  int output_size = 0;  // O (head != none)
  // LSTM only: > 0 projects each step's output to P = proj_size < H units (PyTorch's
  // proj_size): h_t = W_hr (o * tanh(c_t)), weights rnn.weight_hr_l{k}[_reverse] [P, H]. The
  // hidden state, the layer outputs and W_hh's columns are then P wide; c stays H wide.
  int proj_size = 0;

  // ONNX's RNN/GRU/LSTM semantics beyond PyTorch's (format version 2). The defaults are
  // PyTorch's. The fused CPU kernels run all of them except activations other than the cell's
  // own, which run on the "reference" kernel set (fused_kernels_lack() names why;
  // kernel_set_reason() reports it); the CUDA backend refuses every one with Unsupported
  // (cuda_lacks()). Every layer and direction shares them, except activations.
  bool reverse = false;             // unidirectional only: read each sequence backward, from
                                    // its own last valid step (ONNX direction="reverse")
  bool linear_before_reset = true;  // GRU only. false (ONNX's default, Keras reset_after=False):
                                    // n = g(W_in x + b_in + W_hn (r * h) + b_hn)
  bool peepholes = false;           // LSTM only: weights rnn.weight_p_l{k}[_reverse] [3H],
                                    // order i, f, o (p_i, p_f read c_{t-1}; p_o reads c_t)
  bool input_forget = false;        // LSTM only: f = 1 - i (ONNX input_forget=1)
  float clip = 0.f;                 // > 0: every gate's pre-activation is clamped to
                                    // [-clip, clip] (ONNX clip); 0 = no clip
  // Empty: the cell's own activations (lstm sigmoid, tanh, tanh; gru sigmoid, tanh; rnn_tanh
  // tanh). Else dirs * activation_slots() entries, direction by direction, each direction's
  // in slot order: lstm f (gates i, f, o), g (the cell input), h (the output);
  // gru f (r, z), g (n); rnn f. Not allowed with rnn_relu (use rnn_tanh and relu).
  std::vector<ActivationSpec> activations;

  int gates() const;  // G
  int dirs() const { return bidirectional ? 2 : 1; }
  int rnn_input_size() const { return vocab_size > 0 ? embed_dim : input_size; }
  int state_size() const;                 // the hidden state's width: proj_size if > 0, else H
  int layer_input_size(int layer) const;  // layer 0: rnn_input_size(); else dirs*state_size()
  int feature_size() const;      // width of the top layer's output (dirs*state_size(), or D)
  int activation_slots() const;  // lstm 3, gru 2, rnn 1
  // The activation of slot `slot` in direction `dir` (0 forward, 1 backward), defaults applied.
  ActivationSpec activation(int dir, int slot) const;
  // The ONNX semantics beyond PyTorch's this config uses, comma separated ("peepholes, clip");
  // empty for PyTorch's semantics.
  std::string onnx_extensions() const;
  // What of this config the fused CPU kernels do not implement ("activations" when some differ
  // from the cell's own), and what the CUDA backend does not (every ONNX extension, and
  // proj_size); empty when they run it.
  std::string fused_kernels_lack() const;
  std::string cuda_lacks() const;
  void validate() const;  // throws InvalidArgument / Unsupported
  std::string to_json() const;
  static Config from_json(const std::string& json);  // throws FormatError
  // The weight names and shapes this config needs, PyTorch's SeqModel state_dict names:
  //   embedding.weight          [vocab, E]
  //   rnn.weight_ih_l{k}[_reverse]  [G*H, layer_input_size(k)]  gate order i,f,g,o / r,z,n
  //   rnn.weight_hh_l{k}[_reverse]  [G*H, state_size()]
  //   rnn.bias_ih_l{k}[_reverse], rnn.bias_hh_l{k}[_reverse]  [G*H]   (bias only)
  //   rnn.weight_p_l{k}[_reverse]  [3*H]   (peepholes only) order i, f, o
  //   rnn.weight_hr_l{k}[_reverse]  [P, H]  (proj_size = P > 0 only)
  //   head.weight [O, feature_size()],  head.bias [O]
  std::map<std::string, std::vector<int64_t>> weight_shapes() const;
};

// A named fp32 weight array (row-major).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// The arguments of one forward call that every backend takes (CPU here, CUDA in cuda.hpp):
// shapes, inputs, outputs and states. Pointers are the caller's (host memory for the CPU,
// the model's GPU for CUDA); null = absent. Each backend's ForwardArgs adds its own fields.
struct CallArgs {
  int batch = 1;                     // B >= 1
  int steps = 1;                     // T >= 1
  bool batch_first = true;           // true: [B, T, ...] arrays; false: [T, B, ...]
  const float* x = nullptr;          // [B, T, D] float features (vocab_size == 0)
  const int64_t* tokens = nullptr;   // [B, T] token ids in [0, vocab) (vocab_size > 0)
  const int64_t* lengths = nullptr;  // [B] valid lengths in [1, T], any order
                                     // (pack_padded_sequence semantics; padded outputs 0)
  const float* h0 = nullptr;         // [L*dirs, B, Hs] initial hidden state (zeros if null)
  const float* c0 = nullptr;         // [L*dirs, B, H] initial LSTM cell state (zeros if null)
  float* y = nullptr;                // required. head none: [B, T, dirs*Hs] (or [T, B, dirs*Hs]);
                                     // step: [B, T, O] (or [T, B, O]); last_*: [B, O]
  float* h_n = nullptr;              // [L*dirs, B, Hs] final hidden state, or null (not computed)
  float* c_n = nullptr;              // [L*dirs, B, H] final LSTM cell state, or null
};

// The most threads one CPU call may use.
constexpr int kMaxThreads = 256;

// A CPU forward call: the shared fields plus threads and head_only.
struct ForwardArgs : CallArgs {
  int threads = 1;  // threads for this call, 1..kMaxThreads (directions run on separate threads)
  // Compute only what the head reads (h_n and c_n must be null). With a last_step head on a
  // bidirectional top layer this runs that layer's backward direction for one step, not T.
  bool head_only = false;
};

class Session;

// A loaded model. forward() is safe to call from several threads at once.
class SEQFUSE_API Model {
 public:
  // Load a safetensors weight file written by seqfuse (see docs/FORMAT.md).
  // Throws FormatError on a missing, truncated or tampered file. kernel_set: "auto" or a
  // name from kernel_sets(); Unsupported if this build or CPU lacks it.
  static Model load(const std::string& path, const std::string& kernel_set);
  static Model load(const std::string& path, Isa isa = Isa::automatic);
  // From a config and weights named as in Config::weight_shapes(). Throws InvalidArgument.
  Model(const Config& config, const std::map<std::string, Tensor>& weights,
        const std::string& kernel_set);
  Model(const Config& config, const std::map<std::string, Tensor>& weights,
        Isa isa = Isa::automatic);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const Config& config() const;
  std::string kernel_set() const;  // the kernel set in use, e.g. "avx2"
  // Why "auto" gave the reference kernel set, e.g. "fused kernels lack: activations"; empty when
  // the kernel set was chosen as asked.
  std::string kernel_set_reason() const;
  Isa isa() const;               // the same as an enum (compatibility)
  std::string isa_name() const;  // the same as kernel_set() (compatibility)
  // The weights as given (PyTorch layout), by name.
  const std::map<std::string, Tensor>& weights() const;

  // Run a batch. Validates lengths and tokens; throws InvalidArgument on bad values.
  // Scratch memory is kept between calls for reuse, except after a call that needed more than
  // 256 MiB: that call frees it when it returns.
  void forward(const ForwardArgs& args) const;

  // A streaming session for `batch` sequences (forward-only models: not bidirectional, not
  // reverse).
  Session stream(int batch) const;

 private:
  friend class Session;
  friend struct ModelAccess;
  struct Impl;
  std::shared_ptr<Impl> impl_;
  explicit Model(std::shared_ptr<Impl> impl);
};

// Streaming: feed k >= 1 time steps per call; h (and c) carry over between calls.
// On the CPU, one-step calls of one sequence alternate the order in which they read the
// weights (each call starts with what the previous one read last, still in cache), so outputs
// may differ from a whole-sequence forward() by rounding (within 1e-5 of it); the same calls
// from the same state after reset() give the same outputs.
// Thread safety: calls on one Session are serialized inside (a mutex), so two threads feeding
// the same session take turns and every step is applied whole, in the order the threads get
// the lock. Independent streams want one Session each (they run in parallel).
class SEQFUSE_API Session {
 public:
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();
  int batch() const;
  // x: [B, k, D] floats or tokens: [B, k] ids (batch-first); exactly one is non-null.
  // y: head none [B, k, Hs]; step [B, k, O]; last_step/last_hidden [B, O].
  void step(const float* x, const int64_t* tokens, int k, float* y, int threads = 1);
  void reset();  // zero the state
  // state: h [L, B, Hs] and, for LSTM, c [L, B, H]; get copies out, set copies in.
  void get_state(float* h, float* c) const;
  void set_state(const float* h, const float* c);

 private:
  friend class Model;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Session();
};

SEQFUSE_API Cell cell_from_string(const std::string& s);  // "rnn_tanh", "rnn_relu", "gru", "lstm"
SEQFUSE_API Head head_from_string(const std::string& s);  // "none", "step", "last_step", ...
SEQFUSE_API Isa isa_from_string(const std::string& s);    // "auto", "reference", "portable", ...
SEQFUSE_API std::string to_string(Cell c);
SEQFUSE_API std::string to_string(Head h);
SEQFUSE_API std::string to_string(Isa i);
// ONNX's names, case-insensitive in: "Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu",
// "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus".
SEQFUSE_API Activation activation_from_string(const std::string& s);
SEQFUSE_API std::string to_string(Activation a);

}  // namespace seqfuse
