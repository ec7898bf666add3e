// Argument helpers shared by the METH_FASTCALL entry points of seqfuse._C (module.cpp and
// cuda_bindings.cpp): pointer and integer arguments, and the fields every ForwardArgs has.
// Checked through those entry points by tests/test_native*.py.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "seqfuse/seqfuse.hpp"

namespace seqfuse_py {

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

// The fields every backend's ForwardArgs shares (seqfuse::CallArgs), from the pointers
// p = [x, tokens, lengths, h0, c0, y, h_n, c_n] (0 = absent).
inline void fill_forward_args(seqfuse::CallArgs& a, long long B, long long T, long long batch_first,
                              const uintptr_t* p) {
  a.batch = int(B);
  a.steps = int(T);
  a.batch_first = batch_first != 0;
  a.x = reinterpret_cast<const float*>(p[0]);
  a.tokens = reinterpret_cast<const int64_t*>(p[1]);
  a.lengths = reinterpret_cast<const int64_t*>(p[2]);
  a.h0 = reinterpret_cast<const float*>(p[3]);
  a.c0 = reinterpret_cast<const float*>(p[4]);
  a.y = reinterpret_cast<float*>(p[5]);
  a.h_n = reinterpret_cast<float*>(p[6]);
  a.c_n = reinterpret_cast<float*>(p[7]);
}

}  // namespace seqfuse_py
