// seqfuse._C's CUDA part: registered by seqfuse_register_cuda(m) from module.cpp. Thin: it
// converts arguments and exceptions and forwards to seqfuse::cuda (python/seqfuse/native/cuda.py
// validates tensors and passes device pointers plus torch's current stream).
// cuda_plan (the tile planner, plain C++) exists in every build so that
// tests/test_cuda_tiling.py checks it anywhere; the rest needs a CUDA build and is checked by
// tests/test_native_cuda.py on a GPU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../cuda/plan.hpp"
#include "glue.hpp"
#include "seqfuse/seqfuse.hpp"
#ifdef SEQFUSE_WITH_CUDA
#include "seqfuse/cuda.hpp"
#endif

namespace py = pybind11;

namespace {

py::dict plan_dict(const seqfuse::cuda::Plan& p) {
  py::dict d;
  d["persistent"] = p.persistent;
  d["variant"] = p.variant;
  d["kr"] = p.kr;
  d["ks"] = p.ks;
  d["kc"] = p.kc;
  d["hpad"] = p.hpad;
  d["cluster"] = p.cluster;
  d["units"] = p.units;
  d["rows"] = p.rows;
  d["threads"] = p.threads;
  d["batch_tile"] = p.batch_tile;
  d["batch_tiles"] = p.batch_tiles;
  d["smem"] = p.smem;
  d["reason"] = p.reason;
  if (p.persistent) {  // the kernel's shared-memory carving (word offsets)
    const auto o = seqfuse::cuda::persistent_layout(p.hpad, p.ks, p.rows, p.batch_tile);
    d["layout"] =
        py::dict(py::arg("part") = o.part, py::arg("lens") = o.lens, py::arg("words") = o.words);
  }
  return d;
}

#ifdef SEQFUSE_WITH_CUDA
using seqfuse_py::addr_of;
using seqfuse_py::in_range;
using seqfuse_py::int_of;

// cuda_run(model_addr, B, T, batch_first, x, tokens, lengths, h0, c0, y, h_n, c_n,
//          workspace, workspace_bytes, stream, path): CudaModel::forward through
// METH_FASTCALL (batch-1 and streaming calls are dominated by per-call overhead).
PyObject* fast_cuda_run(PyObject*, PyObject* const* args, Py_ssize_t n) {
  uintptr_t model, workspace, stream;
  seqfuse::cuda::ForwardArgs a;
  long long ws_bytes, path;
  if (!seqfuse_py::parse_forward(args, n, 16, "cuda_run", 1LL << 30, model, a) ||
      !addr_of(args[12], workspace) || !int_of(args[13], ws_bytes) || !addr_of(args[14], stream) ||
      !int_of(args[15], path) || !in_range(ws_bytes, 0, LLONG_MAX, "workspace bytes") ||
      !in_range(path, 0, 3, "path"))
    return nullptr;
  a.workspace = reinterpret_cast<void*>(workspace);
  a.workspace_bytes = size_t(ws_bytes);
  a.stream = reinterpret_cast<void*>(stream);
  a.path = static_cast<seqfuse::cuda::Path>(path);
  const auto* m = reinterpret_cast<const seqfuse::cuda::Model*>(model);
  return seqfuse_py::guarded([&] { m->forward(a); });
}

PyMethodDef cuda_methods[] = {
    {"cuda_run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_cuda_run)),
     METH_FASTCALL,
     "cuda_run(model_addr, B, T, batch_first, x, tokens, lengths, h0, c0, y, h_n, c_n, "
     "workspace, workspace_bytes, stream, path)"},
    {nullptr, nullptr, 0, nullptr}};

seqfuse::cuda::Path path_of(const std::string& s) {
  if (s == "auto") return seqfuse::cuda::Path::automatic;
  if (s == "persistent") return seqfuse::cuda::Path::persistent;
  if (s == "step") return seqfuse::cuda::Path::step;
  if (s == "fused") return seqfuse::cuda::Path::fused;
  throw seqfuse::InvalidArgument("unknown CUDA path '" + s +
                                 "' (expected auto, persistent, step or fused)");
}
#endif

}  // namespace

void seqfuse_register_cuda(py::module_& m) {
#ifdef SEQFUSE_WITH_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif
  // The tile planner of the persistent kernel (host arithmetic; any build, any machine).
  m.def(
      "cuda_plan",
      [](int H, int G, int B, int dirs, int max_cluster, size_t smem_limit, bool bf16) {
        seqfuse::cuda::PlanInput in;
        in.H = H;
        in.G = G;
        in.B = B;
        in.dirs = dirs;
        in.max_cluster = max_cluster;
        in.smem_limit = smem_limit;
        in.bf16 = bf16;
        return plan_dict(seqfuse::cuda::make_plan(in));
      },
      py::arg("H"), py::arg("G"), py::arg("B"), py::arg("dirs") = 1, py::arg("max_cluster") = 16,
      py::arg("smem_limit") = size_t(227 * 1024), py::arg("bf16") = false);
  // The fused small-T kernel's plan (D = float input features of layer 0, 0 for tokens).
  m.def(
      "cuda_fused_plan",
      [](int H, int G, int L, int D, int B, int max_cluster, size_t smem_limit) {
        const auto p = seqfuse::cuda::make_fused_plan(H, G, L, D, B, max_cluster, smem_limit);
        py::dict d;
        d["ok"] = p.ok;
        d["cluster"] = p.cluster;
        d["units"] = p.units;
        d["rows"] = p.rows;
        d["batch_tile"] = p.batch_tile;
        d["batch_tiles"] = p.batch_tiles;
        d["hp"] = p.hp;
        d["dp"] = p.dp;
        d["smem"] = p.smem;
        d["reason"] = p.reason;
        if (p.ok) {  // the kernel's shared-memory carving (word offsets)
          const auto o = seqfuse::cuda::fused_layout(L, p.batch_tile, p.hp, p.dp, p.rows, p.units);
          d["layout"] =
              py::dict(py::arg("xin") = o.xin, py::arg("gxs") = o.gxs, py::arg("ghs") = o.ghs,
                       py::arg("cst") = o.cst, py::arg("words") = o.words);
        }
        return d;
      },
      py::arg("H"), py::arg("G"), py::arg("L"), py::arg("D"), py::arg("B"),
      py::arg("max_cluster") = 16, py::arg("smem_limit") = size_t(227 * 1024));
  // The bf16 mode's host-side rounding and pair packing (test hook, any build).
  m.def("cuda_pack_bf16", [](py::array_t<float, py::array::c_style | py::array::forcecast> w) {
    if (w.ndim() != 2) throw seqfuse::InvalidArgument("cuda_pack_bf16 takes a 2-D array");
    const int H = int(w.shape(1));
    const size_t rows = size_t(w.shape(0));
    std::vector<float> rounded(w.data(), w.data() + w.size());
    for (float& v : rounded) v = seqfuse::cuda::round_bf16(v);
    const auto packed = seqfuse::cuda::pack_bf16_pairs(rounded.data(), rows, H);
    py::array_t<uint32_t> out({py::ssize_t(rows), py::ssize_t((H + 1) / 2)});
    std::copy(packed.begin(), packed.end(), out.mutable_data());
    py::array_t<float> r({py::ssize_t(rows), py::ssize_t(H)});
    std::copy(rounded.begin(), rounded.end(), r.mutable_data());
    return py::make_tuple(r, out);
  });
  m.attr("cuda_max_batch_tile") = seqfuse::cuda::kMaxBatchTile;
  py::list variants;
  for (const auto& v : seqfuse::cuda::kVariants)
    variants.append(py::make_tuple(v.kr, v.max_threads, v.bf16));
  m.attr("cuda_kernel_variants") = variants;

#ifdef SEQFUSE_WITH_CUDA
  m.def("cuda_device_count", [] { return seqfuse::cuda::device_count(); });
  if (PyModule_AddFunctions(m.ptr(), cuda_methods) != 0) throw py::error_already_set();
  py::class_<seqfuse::cuda::Model>(m, "CudaModel")
      .def(py::init([](const std::string& config_json, py::dict weights, int device,
                       const std::string& precision) {
             auto [cfg, w] = seqfuse_py::model_inputs(config_json, weights);
             if (precision != "fp32" && precision != "bf16")
               throw seqfuse::InvalidArgument("precision must be 'fp32' or 'bf16', got '" +
                                              precision + "'");
             const auto prec = precision == "bf16" ? seqfuse::cuda::Precision::bf16
                                                   : seqfuse::cuda::Precision::fp32;
             py::gil_scoped_release release;
             return seqfuse::cuda::Model(cfg, w, device, prec);
           }),
           py::arg("config_json"), py::arg("weights"), py::arg("device") = -1,
           py::arg("precision") = "fp32")
      .def_property_readonly("device", &seqfuse::cuda::Model::device)
      .def_property_readonly("precision",
                             [](const seqfuse::cuda::Model& mm) {
                               return mm.precision() == seqfuse::cuda::Precision::bf16 ? "bf16"
                                                                                       : "fp32";
                             })
      // The C++ object's address, for cuda_run(); valid while this object lives.
      .def_property_readonly(
          "address",
          [](const seqfuse::cuda::Model& mm) { return reinterpret_cast<uintptr_t>(&mm); })
      .def("workspace_bytes", &seqfuse::cuda::Model::workspace_bytes, py::arg("batch"),
           py::arg("steps"))
      .def(
          "describe",
          [](const seqfuse::cuda::Model& mm, int batch, const std::string& path) {
            return mm.describe(batch, path_of(path));
          },
          py::arg("batch") = 1, py::arg("path") = "auto");
#else
  m.def("cuda_device_count", [] { return 0; });
#endif
}
