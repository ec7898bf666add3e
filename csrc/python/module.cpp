// seqfuse._C: the pybind11 glue, the only file set that includes pybind11. Python
// (seqfuse.native) validates arrays and passes data pointers; this layer converts C++
// exceptions, releases the GIL and forwards to the core. Checked by tests/test_native*.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>

// The one internal header: test hooks exported in seqfuse::testing (not part of the API).
#include "../core/testing.hpp"
#include "glue.hpp"
#include "seqfuse/seqfuse.hpp"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

namespace {

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

py::array_t<float> to_numpy(const seqfuse::Tensor& t) {
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  py::array_t<float> a(shape);
  if (!t.data.empty()) std::memcpy(a.mutable_data(), t.data.data(), t.data.size() * sizeof(float));
  return a;
}

using seqfuse_py::addr_of;
using seqfuse_py::guarded;
using seqfuse_py::in_range;
using seqfuse_py::int_of;
using seqfuse_py::invalid_argument_error;
using seqfuse_py::weight_file_error;

// run(model_addr, B, T, batch_first, x, tokens, lengths, h0, c0, y, h_n, c_n, threads,
//     head_only): Model::forward through METH_FASTCALL, the batch-1 hot path (no pybind11
// argument machinery: about 0.1 us instead of about 1 us).
PyObject* fast_run(PyObject*, PyObject* const* args, Py_ssize_t n) {
  uintptr_t model;
  seqfuse::ForwardArgs a;
  long long threads, head_only;
  if (!seqfuse_py::parse_forward(args, n, 14, "run", INT32_MAX, model, a) ||
      !int_of(args[12], threads) || !int_of(args[13], head_only) ||
      !in_range(threads, 1, seqfuse::kMaxThreads, "threads"))
    return nullptr;
  a.threads = int(threads);
  a.head_only = head_only != 0;
  const auto* m = reinterpret_cast<const seqfuse::Model*>(model);
  return guarded([&] { m->forward(a); });
}

// stream_step(session_addr, x, tokens, k, y, threads)
PyObject* fast_step(PyObject*, PyObject* const* args, Py_ssize_t n) {
  if (n != 6) {
    PyErr_SetString(PyExc_TypeError, "stream_step() takes 6 arguments");
    return nullptr;
  }
  uintptr_t sess, x, tok, y;
  long long k, threads;
  if (!addr_of(args[0], sess) || !addr_of(args[1], x) || !addr_of(args[2], tok) ||
      !int_of(args[3], k) || !addr_of(args[4], y) || !int_of(args[5], threads))
    return nullptr;
  if (!in_range(k, 1, INT32_MAX, "stream step length k") ||
      !in_range(threads, 1, seqfuse::kMaxThreads, "threads"))
    return nullptr;
  auto* s = reinterpret_cast<seqfuse::Session*>(sess);
  return guarded([&] {
    s->step(reinterpret_cast<const float*>(x), reinterpret_cast<const int64_t*>(tok), int(k),
            reinterpret_cast<float*>(y), int(threads));
  });
}

PyMethodDef fast_methods[] = {
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_run)), METH_FASTCALL,
     "run(model_addr, B, T, batch_first, x, tokens, lengths, h0, c0, y, h_n, c_n, threads, "
     "head_only)"},
    {"stream_step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_step)),
     METH_FASTCALL, "stream_step(session_addr, x, tokens, k, y, threads)"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "seqfuse native core (private; use seqfuse.native)";

  // Errors: FormatError -> seqfuse.SeqfuseError subclass; bad arguments -> a class that is
  // both a SeqfuseError and a ValueError.
  py::object base = py::module_::import("seqfuse.errors").attr("SeqfuseError");
  weight_file_error() = py::reinterpret_steal<py::object>(
      PyErr_NewException("seqfuse._C.WeightFileError", base.ptr(), nullptr));
  py::tuple bases = py::make_tuple(base, py::handle(PyExc_ValueError));
  invalid_argument_error() = py::reinterpret_steal<py::object>(
      PyErr_NewException("seqfuse._C.InvalidArgumentError", bases.ptr(), nullptr));
  m.attr("WeightFileError") = weight_file_error();
  m.attr("InvalidArgumentError") = invalid_argument_error();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const seqfuse::FormatError& e) {
      PyErr_SetString(weight_file_error().ptr(), e.what());
    } catch (const seqfuse::InvalidArgument& e) {
      PyErr_SetString(invalid_argument_error().ptr(), e.what());
    }
  });
  if (PyModule_AddFunctions(m.ptr(), fast_methods) != 0) throw py::error_already_set();

  m.def("build_info", [] {
    auto info = seqfuse::build_info();
    py::dict d;
    d["version"] = info.version;
    d["compiler"] = info.compiler;
    d["simd"] = info.simd;
    d["cuda"] = info.cuda;
    return d;
  });
  m.def(
      "rnn_tanh_step_reference",
      [](FloatArray x, FloatArray h, FloatArray w_ih, FloatArray w_hh,
         std::optional<FloatArray> b_ih, std::optional<FloatArray> b_hh) {
        if (x.ndim() != 2 || h.ndim() != 2 || w_ih.ndim() != 2 || w_hh.ndim() != 2)
          throw std::invalid_argument("x, h, w_ih, w_hh must be 2-D");
        const int B = int(x.shape(0)), D = int(x.shape(1)), H = int(h.shape(1));
        if (h.shape(0) != B || w_ih.shape(0) != H || w_ih.shape(1) != D || w_hh.shape(0) != H ||
            w_hh.shape(1) != H)
          throw std::invalid_argument("shape mismatch: x [B,D], h [B,H], w_ih [H,D], w_hh [H,H]");
        FloatArray out({B, H});
        for (const auto* b : {&b_ih, &b_hh})
          if (*b && ((*b)->ndim() != 1 || (*b)->shape(0) != H))
            throw std::invalid_argument("biases must have shape [H]");
        const float* bi = b_ih ? b_ih->data() : nullptr;
        const float* bh = b_hh ? b_hh->data() : nullptr;
        float* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          seqfuse::testing::rnn_tanh_step_reference(B, D, H, x.data(), h.data(), w_ih.data(),
                                                    w_hh.data(), bi, bh, o);
        }
        return out;
      },
      py::arg("x"), py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
      py::arg("b_hh") = py::none());

  // Test hook: the vectorized sigmoid (kind 0) / tanh (kind 1) of one kernel set.
  m.def("activation", [](const std::string& kernel_set, int kind, FloatArray x) {
    FloatArray y(x.size());
    seqfuse::testing::activation(kernel_set, kind, x.data(), y.mutable_data(), size_t(x.size()));
    return y;
  });
  // Bench hook: a kernel set's FMA peak probe; returns (kernel set, FLOPs done), and the
  // caller times it.
  m.def(
      "fma_probe",
      [](const std::string& kernel_set, int64_t reps) {
        std::string name;
        uint64_t flops;
        {
          py::gil_scoped_release release;
          flops = seqfuse::testing::fma_probe(kernel_set, reps, &name);
        }
        return py::make_tuple(name, flops);
      },
      py::arg("kernel_set"), py::arg("reps"));
  // Bench hook: a kernel set's cache read probe over a float32 array; returns (kernel set, the
  // last pass's sum or None for the reference), and the caller times it.
  m.def(
      "read_probe",
      // no forcecast: a converted copy would be unaligned and made inside the timed call
      [](const std::string& kernel_set, py::array_t<float, py::array::c_style> a,
         int64_t reps) -> py::tuple {
        if (reps < 1) throw py::value_error("read_probe: reps must be at least 1");
        std::string name;
        float sum = 0;
        bool ran;
        {
          py::gil_scoped_release release;
          ran = seqfuse::testing::read_probe(kernel_set, a.data(), size_t(a.size()), reps, &sum,
                                             &name);
        }
        if (!ran) return py::make_tuple(name, py::none());
        return py::make_tuple(name, sum);
      },
      py::arg("kernel_set"), py::arg("a"), py::arg("reps"));
  // Test hook: the smallest batch whose steps compute their own input projections (returns
  // the previous value).
  m.def("set_fused_input_rows", &seqfuse::testing::set_fused_input_rows, py::arg("rows"));
  // Test hook: the most weight bytes a K block spans in a step computing its own input
  // projection (0: the default; returns the previous value).
  m.def("set_fused_kblock_bytes", &seqfuse::testing::set_fused_kblock_bytes, py::arg("bytes"));
  m.def("fused_input_runs", &seqfuse::testing::fused_input_runs);
  m.def("row_split_runs", &seqfuse::testing::row_split_runs);
  m.def("team_runs", &seqfuse::testing::team_runs);
  // [(name, supported)], most preferred first, then "reference".
  m.def("kernel_sets", [] {
    py::list out;
    for (const auto& k : seqfuse::kernel_sets()) out.append(py::make_tuple(k.name, k.supported));
    return out;
  });
  m.attr("MAX_THREADS") = seqfuse::kMaxThreads;

  py::class_<seqfuse::Session>(m, "Session")
      .def_property_readonly("batch", &seqfuse::Session::batch)
      // The C++ object's address, for stream_step(); valid while this object lives.
      .def_property_readonly("address",
                             [](seqfuse::Session& s) { return reinterpret_cast<uintptr_t>(&s); })
      .def("reset", &seqfuse::Session::reset)
      .def("get_state_ptr", [](const seqfuse::Session& s, uintptr_t h,
                               uintptr_t c) { s.get_state(ptr<float>(h), ptr<float>(c)); })
      .def("set_state_ptr", [](seqfuse::Session& s, uintptr_t h, uintptr_t c) {
        s.set_state(ptr<const float>(h), ptr<const float>(c));
      });

  py::class_<seqfuse::Model>(m, "Model")
      .def(py::init([](const std::string& config_json, py::dict weights, const std::string& isa) {
             auto [cfg, w] = seqfuse_py::model_inputs(config_json, weights);
             return seqfuse::Model(cfg, w, isa);
           }),
           py::arg("config_json"), py::arg("weights"), py::arg("isa") = "auto")
      .def_static(
          "load",
          [](const std::string& path, const std::string& isa) {
            return seqfuse::Model::load(path, isa);
          },
          py::arg("path"), py::arg("isa") = "auto")
      .def_property_readonly("config_json",
                             [](const seqfuse::Model& m) { return m.config().to_json(); })
      .def_property_readonly("isa", &seqfuse::Model::isa_name)
      .def_property_readonly("kernel_set_reason", &seqfuse::Model::kernel_set_reason)
      // The C++ object's address, for run(); valid while this object lives.
      .def_property_readonly(
          "address", [](const seqfuse::Model& m) { return reinterpret_cast<uintptr_t>(&m); })
      .def("weights",
           [](const seqfuse::Model& m) {
             py::dict d;
             for (const auto& kv : m.weights()) d[py::str(kv.first)] = to_numpy(kv.second);
             return d;
           })
      .def("stream", &seqfuse::Model::stream, py::arg("batch") = 1);
  void seqfuse_register_cuda(py::module_&);  // csrc/python/cuda_bindings.cpp
  seqfuse_register_cuda(m);
}
