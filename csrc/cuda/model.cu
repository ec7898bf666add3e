// seqfuse::cuda::Model: uploads and repacks the weights once, validates a call's arguments,
// carves the caller's workspace and enqueues, per layer, one GEMM (input projections of all
// timesteps, both directions) and one recurrent launch (persistent kernel, or the per-step
// fallback), then the head. Only stream-ordered work in forward(): capturable into a CUDA
// graph. Checked by tests/test_native_cuda.py (parity with the CPU loop and eager PyTorch).
#include <algorithm>
#include <map>
#include <mutex>
#include <sstream>
#include <tuple>
#include <vector>

#include "core/internal.hpp"
#include "cuda/kernels.cuh"
#include "seqfuse/cuda.hpp"

namespace seqfuse {
namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

namespace {

// Makes `dev` current for a scope and restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int dev) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != dev) check(cudaSetDevice(dev), "cudaSetDevice");
    dev_ = dev;
  }
  ~DeviceGuard() {
    if (prev_ != dev_) (void)cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0, dev_ = 0;
};

size_t align_up(size_t n) { return (n + 63) / 64 * 64; }  // in floats: 256-byte alignment

constexpr int kFusedAutoSteps = 8;                // automatic path: fused kernel up to T = 8
constexpr double kFusedAutoWeights = 128 * 1024;  // floats per block and step (512 KB of L2)

}  // namespace

// Hidden like everything not in the public header (the class around it is exported).
struct __attribute__((visibility("hidden"))) Model::Impl {
  Config cfg;
  int dev = 0;
  Precision precision = Precision::fp32;
  DeviceInfo info;
  struct Layer {
    int din = 0;
    float* wih = nullptr;          // [dirs*G*H, din]: both directions' W_ih stacked
    float* bias = nullptr;         // [dirs*G*H]: b_ih + b_hh (GRU n gate: b_in only), or null
    float* whh = nullptr;          // [dirs, G*H, H]
    float* bhn = nullptr;          // [dirs, H] GRU b_hn, or null
    uint32_t* whh_bf16 = nullptr;  // bf16 mode: [dirs, G*H, ceil(H/2)] packed pairs
  };
  std::vector<Layer> layers;
  float* table = nullptr;  // [vocab, dirs*G*H] Embedding folded into layer 0's projection
  float* head_w = nullptr;
  float* head_b = nullptr;
  std::vector<void*> allocs;
  mutable std::mutex mu;
  // (persistent variant, or -1 for the fused kernel, cluster, threads, shared memory) ->
  // can be resident
  mutable std::map<std::tuple<int, int, int, size_t>, bool> fits;

  ~Impl() {
    int prev = 0;
    const bool ok = cudaGetDevice(&prev) == cudaSuccess;
    if (ok && prev != dev) (void)cudaSetDevice(dev);
    for (void* p : allocs) (void)cudaFree(p);
    if (ok && prev != dev) (void)cudaSetDevice(prev);
  }

  float* alloc(size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)), "cudaMalloc (weights)");
    allocs.push_back(p);
    return static_cast<float*>(p);
  }
  float* upload(const std::vector<float>& v) {
    float* p = alloc(v.size());
    check(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice),
          "uploading weights");
    return p;
  }
  uint32_t* upload_u32(const std::vector<uint32_t>& v) {
    float* p = alloc(v.size());  // same size as a float
    check(cudaMemcpy(p, v.data(), v.size() * sizeof(uint32_t), cudaMemcpyHostToDevice),
          "uploading weights");
    return reinterpret_cast<uint32_t*>(p);
  }

  bool fits_cached(const Plan& p) const {
    std::lock_guard<std::mutex> lk(mu);
    auto key = std::make_tuple(p.variant, p.cluster, p.threads, p.smem);
    auto it = fits.find(key);
    if (it != fits.end()) return it->second;
    const bool ok = persistent_fits(p, info);
    fits.emplace(key, ok);
    return ok;
  }
  bool fits_cached(const FusedPlan& p) const {
    std::lock_guard<std::mutex> lk(mu);
    auto key = std::make_tuple(-1, p.cluster, kFusedThreads, p.smem);
    auto it = fits.find(key);
    if (it != fits.end()) return it->second;
    const bool ok = fused_fits(p, info);
    fits.emplace(key, ok);
    return ok;
  }

  // The fused kernel's plan for B sequences, or !ok with the reason.
  FusedPlan fused_plan(int B) const {
    FusedPlan p;
    const int H = cfg.hidden_size, G = cfg.gates(), L = cfg.num_layers;
    const int D = cfg.vocab_size > 0 ? 0 : cfg.input_size;
    if (cfg.bidirectional) {
      p.reason = "the fused kernel runs unidirectional models only";
      return p;
    }
    for (int max_c : {16, 8}) {
      p = make_fused_plan(H, G, L, D, B, info.clusters ? max_c : 1, info.smem_optin);
      if (!p.ok) return p;
      if (fits_cached(p)) return p;
      p.ok = false;
      p.reason = "a cluster of " + std::to_string(p.cluster) +
                 " fused blocks cannot be resident on this GPU";
    }
    return p;
  }
  // Weights one block streams from L2 per step: the automatic choice takes the fused kernel
  // only while that stays around a microsecond.
  bool fused_worth_it(const FusedPlan& p) const {
    const int H = cfg.hidden_size, L = cfg.num_layers;
    const int D = cfg.vocab_size > 0 ? 0 : cfg.input_size;
    const double per_block = double(p.rows) * (double(H) * (2 * L - 1) + D);
    return per_block <= kFusedAutoWeights;
  }

  // The plan a layer runs with: the smallest cluster that holds its weights and can be
  // resident on this GPU (16 blocks needs the non-portable cluster size; 8 is portable).
  Plan plan_for(const LayerArgs& a, Path path, std::string* why) const {
    Plan p;
    if (path == Path::step) {
      if (why) *why = "per-step path requested";
      return p;
    }
    for (int max_c : {16, 8}) {
      PlanInput in = plan_input(a, info, max_c);
      in.bf16 = precision == Precision::bf16;
      p = make_plan(in);
      if (!p.persistent) break;
      if (fits_cached(p)) return p;
      p.persistent = false;
      p.reason = "a cluster of " + std::to_string(p.cluster) + " blocks x " +
                 std::to_string(p.threads) + " threads cannot be resident on this GPU";
    }
    if (why) *why = p.reason;
    return p;
  }
};

Model::Model(const Config& config, const std::map<std::string, Tensor>& weights, int device,
             Precision precision)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  // The CUDA kernels implement PyTorch's semantics without proj_size (the rest runs on the CPU).
  if (!config.cuda_lacks().empty())
    throw Unsupported("the CUDA backend does not implement " + config.cuda_lacks() +
                      " (run this model on the CPU)");
  check_weights(config, weights);
  if (config.num_layers == 0 && config.vocab_size > 0)
    throw Unsupported("the CUDA backend needs a recurrent layer after an Embedding");
  Impl& m = *impl_;
  m.cfg = config;
  m.precision = precision;
  if (device_count() == 0) throw Unsupported("no CUDA device is available");
  if (device < 0) check(cudaGetDevice(&device), "cudaGetDevice");
  m.dev = device;
  DeviceGuard guard(device);
  auto attr = [&](cudaDeviceAttr a) {
    int v = 0;
    check(cudaDeviceGetAttribute(&v, a, device), "cudaDeviceGetAttribute");
    return v;
  };
  m.info.major = attr(cudaDevAttrComputeCapabilityMajor);
  m.info.minor = attr(cudaDevAttrComputeCapabilityMinor);
  m.info.sms = attr(cudaDevAttrMultiProcessorCount);
  m.info.smem_optin = size_t(attr(cudaDevAttrMaxSharedMemoryPerBlockOptin));
  m.info.clusters = m.info.major >= 9 && attr(cudaDevAttrClusterLaunch) != 0;
  prepare_gemm_kernels();
  prepare_recurrent_kernels(m.info);
  prepare_fused_kernel(m.info);

  auto get = [&](const std::string& name) -> const std::vector<float>* {
    auto it = weights.find(name);
    return it == weights.end() ? nullptr : &it->second.data;
  };
  const int H = config.hidden_size, G = config.gates(), dirs = config.dirs();
  const size_t GH = size_t(G) * H;
  for (int l = 0; l < config.num_layers; ++l) {
    Impl::Layer L;
    L.din = config.layer_input_size(l);
    std::vector<float> wih, bias, whh, bhn;
    for (int d = 0; d < dirs; ++d) {
      const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      const auto* wi = get("rnn.weight_ih" + sfx);
      const auto* wh = get("rnn.weight_hh" + sfx);
      wih.insert(wih.end(), wi->begin(), wi->end());
      whh.insert(whh.end(), wh->begin(), wh->end());
      if (config.bias) {
        const auto* bi = get("rnn.bias_ih" + sfx);
        const auto* bh = get("rnn.bias_hh" + sfx);
        for (size_t r = 0; r < GH; ++r) {
          const bool n_gate = config.cell == Cell::gru && r >= size_t(2) * H;
          bias.push_back(n_gate ? (*bi)[r] : (*bi)[r] + (*bh)[r]);
          if (n_gate) bhn.push_back((*bh)[r]);
        }
      }
    }
    if (precision == Precision::bf16) {
      for (float& v : wih) v = round_bf16(v);
      for (float& v : whh) v = round_bf16(v);
      L.whh_bf16 = m.upload_u32(pack_bf16_pairs(whh.data(), size_t(dirs) * GH, H));
    }
    L.wih = m.upload(wih);
    L.whh = m.upload(whh);
    if (!bias.empty()) L.bias = m.upload(bias);
    if (!bhn.empty()) L.bhn = m.upload(bhn);
    m.layers.push_back(L);
  }
  if (config.vocab_size > 0) {
    // table[v] = emb[v] · W_ih^T + bias, both directions: a lookup replaces layer 0's GEMM.
    const int V = config.vocab_size, E = config.embed_dim;
    float* emb = m.upload(*get("embedding.weight"));
    m.table = m.alloc(size_t(V) * dirs * GH);
    gemm_bt(V, int(dirs * GH), E, emb, E, m.layers[0].wih, E, m.layers[0].bias, m.table,
            int(dirs * GH), nullptr);
    check(cudaStreamSynchronize(nullptr), "building the Embedding table");
  }
  if (config.head != Head::none) {
    m.head_w = m.upload(*get("head.weight"));
    m.head_b = m.upload(*get("head.bias"));
  }
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const Config& Model::config() const { return impl_->cfg; }
Precision Model::precision() const { return impl_->precision; }
int Model::device() const { return impl_->dev; }

// Workspace layout (floats, each part 256-byte aligned): gx [B*T, dirs*G*H]; two layer
// outputs [B*T, dirs*H]; top-layer final h for last_hidden [dirs, B, H]; the per-step
// fallback's state [3, dirs, B, H].
size_t Model::workspace_bytes(int batch, int steps) const {
  const Config& c = impl_->cfg;
  if (c.num_layers == 0) return 0;
  const size_t N = size_t(std::max(batch, 0)) * size_t(std::max(steps, 0));
  const size_t dirs = c.dirs(), H = c.hidden_size, G = c.gates(), B = std::max(batch, 0);
  return sizeof(float) * (align_up(N * dirs * G * H) + 2 * align_up(N * dirs * H) +
                          align_up(dirs * B * H) + align_up(3 * dirs * B * H));
}

static LayerArgs layer_shape(const Config& c, int B, int T) {
  LayerArgs la;
  la.B = B;
  la.T = T;
  la.H = c.hidden_size;
  la.G = c.gates();
  la.dirs = c.dirs();
  la.cell = c.cell;
  return la;
}

std::string Model::describe(int batch, Path path) const {
  std::ostringstream o;
  const Config& c = impl_->cfg;
  DeviceGuard guard(impl_->dev);
  if (c.num_layers > 0 && (path == Path::automatic || path == Path::fused)) {
    const FusedPlan fp = impl_->fused_plan(std::max(batch, 1));
    o << "fused (T <= " << kFusedAutoSteps << ", no lengths): ";
    if (fp.ok)
      o << "cluster " << fp.cluster << " x " << kFusedThreads << " threads, " << fp.units
        << " units/block, batch tile " << fp.batch_tile << ", " << fp.smem << " B shared"
        << (path == Path::fused || impl_->fused_worth_it(fp) ? "" : " (not chosen automatically)");
    else
      o << "not available (" << fp.reason << ")";
    o << "\n";
    if (path == Path::fused) return o.str();
  }
  for (int l = 0; l < c.num_layers; ++l) {
    std::string why;
    const Plan p = impl_->plan_for(layer_shape(c, std::max(batch, 1), 1), path, &why);
    o << "layer " << l << ": ";
    if (p.persistent)
      o << "persistent, cluster " << p.cluster << " x " << p.threads << " threads, " << p.units
        << " units/block, k-split " << p.ks << ", batch tile " << p.batch_tile << " ("
        << p.batch_tiles << " tiles), " << p.smem << " B shared";
    else
      o << "per-step fallback (" << why << ")";
    o << "\n";
  }
  return o.str();
}

void Model::forward(const ForwardArgs& a) const {
  const Impl& m = *impl_;
  const Config& c = m.cfg;
  check_call(c, a);  // the checks every backend shares (core/model.cpp)
  const size_t need = workspace_bytes(a.batch, a.steps);
  if (need > 0 && (!a.workspace || a.workspace_bytes < need))
    throw InvalidArgument("the workspace must hold at least " + std::to_string(need) +
                          " bytes, got " + std::to_string(a.workspace_bytes));
  DeviceGuard guard(m.dev);
  cudaStream_t s = static_cast<cudaStream_t>(a.stream);
  const int B = a.batch, T = a.steps, H = c.hidden_size, G = c.gates(), dirs = c.dirs();
  const int L = c.num_layers, O = c.output_size;
  const size_t N = size_t(B) * T;
  if (L == 0) {  // linear regression: the head on the input rows
    gemm_bt(int(N), O, c.input_size, a.x, c.input_size, m.head_w, c.input_size, m.head_b, a.y, O,
            s);
    return;
  }
  if (a.path == Path::fused || (a.path == Path::automatic && dirs == 1 && !a.lengths &&
                                T <= kFusedAutoSteps && L <= kFusedMaxLayers)) {
    std::string why;
    FusedPlan fp;
    if (a.lengths)
      why = "the fused kernel takes no lengths";
    else if (L > kFusedMaxLayers)
      why = "the fused kernel runs at most " + std::to_string(kFusedMaxLayers) + " layers";
    else
      fp = m.fused_plan(B);
    if (fp.ok && (a.path == Path::fused || m.fused_worth_it(fp))) {
      FusedArgs fa;
      fa.B = B;
      fa.T = T;
      fa.H = H;
      fa.G = G;
      fa.L = L;
      fa.D = c.vocab_size > 0 ? 0 : c.input_size;
      fa.cell = c.cell;
      fa.head = int(c.head);
      fa.O = O;
      fa.batch_first = a.batch_first;
      fa.x = a.x;
      fa.tokens = a.tokens;
      fa.table = m.table;
      fa.vocab = c.vocab_size;
      fa.ldt = G * H;
      for (int l = 0; l < L; ++l) {
        fa.wih[l] = m.layers[l].wih;
        fa.whh[l] = m.layers[l].whh;
        fa.bias[l] = m.layers[l].bias;
        fa.bhn[l] = m.layers[l].bhn;
      }
      fa.h0 = a.h0;
      fa.c0 = a.c0;
      fa.hn = a.h_n;
      fa.cn = a.c_n;
      fa.y = a.y;
      fa.head_w = m.head_w;
      fa.head_b = m.head_b;
      run_fused(fa, fp, s);
      return;
    }
    if (a.path == Path::fused)
      throw Unsupported("the fused CUDA kernel cannot run this call: " +
                        (why.empty() ? fp.reason : why));
  }
  float* ws = static_cast<float*>(a.workspace);
  float* gx = ws;
  float* outs[2] = {gx + align_up(N * dirs * G * H), nullptr};
  outs[1] = outs[0] + align_up(N * dirs * H);
  float* hn_top_ws = outs[1] + align_up(N * dirs * H);
  float* fb = hn_top_ws + align_up(size_t(dirs) * B * H);
  const size_t slot = size_t(dirs) * B * H;  // one layer's slice of h0/c0/h_n/c_n

  const float* in = a.x;
  int din = c.input_size;
  const float* hn_top = nullptr;
  for (int l = 0; l < L; ++l) {
    const Impl::Layer& ly = m.layers[l];
    const bool top = l == L - 1;
    float* out = (top && c.head == Head::none) ? a.y : outs[l & 1];
    // pack_padded_sequence: outputs past a sequence's length are zero.
    if (a.lengths)
      check(cudaMemsetAsync(out, 0, N * dirs * H * sizeof(float), s), "zeroing padded outputs");
    LayerArgs la = layer_shape(c, B, T);
    la.batch_first = a.batch_first;
    la.ldg = dirs * G * H;
    if (l == 0 && c.vocab_size > 0) {
      la.gx = m.table;
      la.tokens = a.tokens;
      la.vocab = c.vocab_size;
    } else {
      gemm_bt(int(N), la.ldg, din, in, din, ly.wih, din, ly.bias, gx, la.ldg, s);
      la.gx = gx;
    }
    la.whh = ly.whh;
    la.whh_bf16 = ly.whh_bf16;
    la.ldw2 = (H + 1) / 2;
    la.bhn = ly.bhn;
    la.lengths = a.lengths;
    la.h0 = a.h0 ? a.h0 + l * slot : nullptr;
    la.c0 = a.c0 ? a.c0 + l * slot : nullptr;
    la.hn = a.h_n ? a.h_n + l * slot : (top && c.head == Head::last_hidden ? hn_top_ws : nullptr);
    la.cn = a.c_n ? a.c_n + l * slot : nullptr;
    la.y = out;
    la.ldy = dirs * H;
    std::string why;
    const Plan p = m.plan_for(la, a.path, &why);
    if (p.persistent) {
      run_persistent(la, p, s);
    } else {
      if (a.path == Path::persistent)
        throw Unsupported("the persistent CUDA kernel cannot run layer " + std::to_string(l) +
                          ": " + why);
      run_stepwise(la, fb, s);
    }
    if (top) hn_top = la.hn;
    in = out;
    din = dirs * H;
  }
  const int F = dirs * H;
  switch (c.head) {
    case Head::none:
      break;
    case Head::step:
      gemm_bt(int(N), O, F, in, F, m.head_w, F, m.head_b, a.y, O, s);
      break;
    case Head::last_step:
      head_rows(true, B, T, a.batch_first, a.lengths, in, F, nullptr, dirs, H, m.head_w, m.head_b,
                O, a.y, s);
      break;
    case Head::last_hidden:
      head_rows(false, B, T, a.batch_first, a.lengths, in, F, hn_top, dirs, H, m.head_w, m.head_b,
                O, a.y, s);
      break;
  }
}

}  // namespace cuda
}  // namespace seqfuse
