// Every cell's facts in one place, for the CPU engines, the scalar reference and the CUDA
// kernels (which share the seqfuse::Cell enum): the gate count and order, and PyTorch's update
// of one hidden unit, written once over the scalar type (double in cpu/reference.cpp, float
// in cuda/cell.cuh). The SIMD epilogue of cpu/engine.hpp is this formula on vectors, checked
// against the reference at every configuration (tests/test_native.py, tests/cpp).
#pragma once

#include <cmath>

#include "core/host_device.hpp"
#include "seqfuse/seqfuse.hpp"

namespace seqfuse {

// Gates per cell, in PyTorch's order: LSTM i, f, g, o; GRU r, z, n; RNN one.
constexpr int cell_gates(Cell c) { return c == Cell::lstm ? 4 : c == Cell::gru ? 3 : 1; }

namespace cell_math {
SEQFUSE_HD inline float exp_of(float x) { return expf(x); }
SEQFUSE_HD inline double exp_of(double x) { return exp(x); }
SEQFUSE_HD inline float tanh_of(float x) { return tanhf(x); }
SEQFUSE_HD inline double tanh_of(double x) { return tanh(x); }
template <class T>
SEQFUSE_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
}  // namespace cell_math

// One hidden unit's step. gx[g]: gate g's input projection with its bias (GRU n: b_in only);
// gh[g]: the recurrent product W_h h (GRU n: without b_hn); bhn: GRU's b_hn, applied inside
// r * (W_hn h + b_hn) (ONNX's linear_before_reset=1); c: the LSTM cell state, updated in place.
// Returns h'. A NaN anywhere comes out NaN, as in eager PyTorch (relu included).
template <class T>
SEQFUSE_HD inline T cell_update(Cell cell, const T* gx, const T* gh, T bhn, T hprev, T& c) {
  using cell_math::sigmoid;
  using cell_math::tanh_of;
  switch (cell) {
    case Cell::rnn_tanh:
      return tanh_of(gx[0] + gh[0]);
    case Cell::rnn_relu: {
      const T v = gx[0] + gh[0];
      return v < T(0) ? T(0) : v;
    }
    case Cell::gru: {
      const T r = sigmoid(gx[0] + gh[0]);
      const T z = sigmoid(gx[1] + gh[1]);
      const T n = tanh_of(gx[2] + r * (gh[2] + bhn));
      return (T(1) - z) * n + z * hprev;
    }
    default: {  // lstm
      const T i = sigmoid(gx[0] + gh[0]);
      const T f = sigmoid(gx[1] + gh[1]);
      const T g = tanh_of(gx[2] + gh[2]);
      const T o = sigmoid(gx[3] + gh[3]);
      c = f * c + i * g;
      return o * tanh_of(c);
    }
  }
}

}  // namespace seqfuse
