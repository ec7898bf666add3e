// What the two binding files of seqfuse._C (module.cpp: CPU, cuda_bindings.cpp: CUDA) share,
// written once: the Python exception classes and the guard that maps C++ exceptions onto
// them, the conversion of (config JSON, weights dict) into the core's types, and the argument
// helpers of the METH_FASTCALL entry points (pointers, integers, range checks, the fields every
// ForwardArgs has). Checked through those entry points by tests/test_native*.py.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <map>
#include <new>
#include <string>
#include <utility>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse_py {

// seqfuse._C.WeightFileError and InvalidArgumentError (module.cpp creates them at import).
inline pybind11::object& weight_file_error() {
  static pybind11::object* e = new pybind11::object();  // leaked: outlives interpreter exit
  return *e;
}
inline pybind11::object& invalid_argument_error() {
  static pybind11::object* e = new pybind11::object();
  return *e;
}

// The current C++ exception as the Python error it stands for.
inline void set_python_error() {
  try {
    throw;
  } catch (const seqfuse::FormatError& e) {
    PyErr_SetString(weight_file_error().ptr(), e.what());
  } catch (const seqfuse::InvalidArgument& e) {
    PyErr_SetString(invalid_argument_error().ptr(), e.what());
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError,
                    "not enough memory for this call's scratch space (batch x length too large)");
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
}

// Runs fn with the GIL released; C++ exceptions become Python ones (a FASTCALL entry's result).
template <class F>
PyObject* guarded(F&& fn) {
  try {
    {
      pybind11::gil_scoped_release release;
      fn();
    }
    Py_RETURN_NONE;
  } catch (...) {
    set_python_error();
  }
  return nullptr;
}

// An integer argument outside [lo, hi]: InvalidArgumentError naming the value as given (not
// as it would read after narrowing to int).
inline bool in_range(long long v, long long lo, long long hi, const char* what) {
  if (v >= lo && v <= hi) return true;
  const std::string msg = std::string(what) + " must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + std::to_string(v);
  PyErr_SetString(invalid_argument_error().ptr(), msg.c_str());
  return false;
}

// A model's (config JSON, {name: float array}) as the core takes them; a config that does not
// parse is a bad argument here (a weight file's is a FormatError).
inline std::pair<seqfuse::Config, std::map<std::string, seqfuse::Tensor>> model_inputs(
    const std::string& config_json, const pybind11::dict& weights) {
  using FloatArray =
      pybind11::array_t<float, pybind11::array::c_style | pybind11::array::forcecast>;
  std::pair<seqfuse::Config, std::map<std::string, seqfuse::Tensor>> out;
  try {
    out.first = seqfuse::Config::from_json(config_json);
  } catch (const seqfuse::FormatError& e) {
    throw seqfuse::InvalidArgument(e.what());
  }
  for (auto item : weights) {
    auto name = item.first.cast<std::string>();
    auto arr = FloatArray::ensure(item.second);
    if (!arr) throw seqfuse::InvalidArgument("weight '" + name + "' is not an array");
    seqfuse::Tensor t;
    for (pybind11::ssize_t d = 0; d < arr.ndim(); ++d) t.shape.push_back(arr.shape(d));
    t.data.assign(arr.data(), arr.data() + arr.size());
    out.second.emplace(std::move(name), std::move(t));
  }
  return out;
}

// A pointer argument: None/0 (absent), an int address (torch's data_ptr()) or a NumPy array
// (its data pointer; Python has validated dtype and layout).
inline bool addr_of(PyObject* o, uintptr_t& out) {
  if (o == Py_None) {
    out = 0;
    return true;
  }
  if (PyLong_Check(o)) {
    out = uintptr_t(PyLong_AsUnsignedLongLong(o));
    return !PyErr_Occurred();
  }
  if (pybind11::isinstance<pybind11::array>(o)) {
    out = reinterpret_cast<uintptr_t>(pybind11::reinterpret_borrow<pybind11::array>(o).data());
    return true;
  }
  PyErr_SetString(PyExc_TypeError, "expected an address, a NumPy array or None");
  return false;
}

template <class Int>
bool int_of(PyObject* o, Int& out) {
  const long long v = PyLong_AsLongLong(o);
  out = Int(v);
  return !(v == -1 && PyErr_Occurred());
}

// The leading arguments of a forward entry (run, cuda_run): the model's address and
// seqfuse::CallArgs's fields (B, T, batch_first, then the pointers x, tokens, lengths, h0, c0,
// y, h_n, c_n; 0 = absent). Checks the count (`want`, the entry's `name` for the message) and
// B and T against [1, max_bt]; false with a Python error set. The entry's own arguments
// follow at args[12].
inline bool parse_forward(PyObject* const* args, Py_ssize_t n, Py_ssize_t want, const char* name,
                          long long max_bt, uintptr_t& model, seqfuse::CallArgs& a) {
  if (n != want) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, want);
    return false;
  }
  long long B, T, bf;
  uintptr_t p[8];
  if (!addr_of(args[0], model) || !int_of(args[1], B) || !int_of(args[2], T) ||
      !int_of(args[3], bf))
    return false;
  for (int i = 0; i < 8; ++i)
    if (!addr_of(args[4 + i], p[i])) return false;
  if (!in_range(B, 1, max_bt, "batch") || !in_range(T, 1, max_bt, "sequence length")) return false;
  a.batch = int(B);
  a.steps = int(T);
  a.batch_first = bf != 0;
  a.x = reinterpret_cast<const float*>(p[0]);
  a.tokens = reinterpret_cast<const int64_t*>(p[1]);
  a.lengths = reinterpret_cast<const int64_t*>(p[2]);
  a.h0 = reinterpret_cast<const float*>(p[3]);
  a.c0 = reinterpret_cast<const float*>(p[4]);
  a.y = reinterpret_cast<float*>(p[5]);
  a.h_n = reinterpret_cast<float*>(p[6]);
  a.c_n = reinterpret_cast<float*>(p[7]);
  return true;
}

}  // namespace seqfuse_py
