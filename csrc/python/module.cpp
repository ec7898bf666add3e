// seqfuse._C: the pybind11 glue, the only file set that includes pybind11. It checks
// arguments, releases the GIL and forwards to the core. Checked by tests/test_build.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "seqfuse/seqfuse.hpp"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;


PYBIND11_MODULE(_C, m) {
  m.doc() = "seqfuse native core (private; use seqfuse.native)";
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
          seqfuse::rnn_tanh_step_reference(B, D, H, x.data(), h.data(), w_ih.data(), w_hh.data(),
                                           bi, bh, o);
        }
        return out;
      },
      py::arg("x"), py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = py::none(),
      py::arg("b_hh") = py::none());
}
