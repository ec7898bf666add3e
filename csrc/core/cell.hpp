// Every cell's facts in one place, for the CPU engines, the scalar reference and the CUDA
// kernels (which share the seqfuse::Cell enum): the gate count and order, PyTorch's update of
// one hidden unit (cell_update, written once over the scalar type: float in cuda/cell.cuh),
// and the whole ONNX RNN/GRU/LSTM update (onnx_update: activations with alpha/beta, clip,
// peepholes, input_forget, GRU linear_before_reset=0), which the scalar reference runs in
// double for every model. With the defaults both formulas are the same operations in the same
// order. The SIMD epilogue of cpu/engine.hpp is onnx_update on vectors (its activations the
// cell's own), checked against the reference at every configuration (tests/test_native.py,
// tests/cpp); onnx_update is checked
// against ONNX Runtime and the onnx conformance cases (tests/test_onnx_import.py).
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
SEQFUSE_HD inline float log1p_of(float x) { return log1pf(x); }
SEQFUSE_HD inline double log1p_of(double x) { return log1p(x); }
template <class T>
SEQFUSE_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
}  // namespace cell_math

// Activation slots per cell (ONNX's f, g, h): lstm 3, gru 2, rnn 1.
constexpr int cell_activation_slots(Cell c) { return c == Cell::lstm ? 3 : c == Cell::gru ? 2 : 1; }
// The cell's own activation of a slot (PyTorch's, which are ONNX's defaults).
inline ActivationSpec default_activation(Cell c, int slot) {
  if (c == Cell::rnn_relu) return {Activation::relu, 0.f, 0.f};
  if (c == Cell::rnn_tanh) return {Activation::tanh, 0.f, 0.f};
  return {slot == 0 ? Activation::sigmoid : Activation::tanh, 0.f, 0.f};
}

// One ONNX activation (the formulas are listed with seqfuse::Activation). A NaN comes out NaN
// (relu and hard_sigmoid included), except thresholded_relu, whose comparison makes it 0.
template <class T>
SEQFUSE_HD inline T activate(const ActivationSpec& a, T x) {
  using namespace cell_math;
  const T al = T(a.alpha), be = T(a.beta);
  switch (a.fn) {
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::tanh:
      return tanh_of(x);
    case Activation::relu:
      return x < T(0) ? T(0) : x;
    case Activation::affine:
      return al * x + be;
    case Activation::leaky_relu:
      return x < T(0) ? al * x : x;
    case Activation::thresholded_relu:
      return x > al ? x : T(0);
    case Activation::scaled_tanh:
      return al * tanh_of(be * x);
    case Activation::hard_sigmoid: {
      const T v = al * x + be;
      return v < T(0) ? T(0) : v > T(1) ? T(1) : v;
    }
    case Activation::elu:
      return x < T(0) ? al * (exp_of(x) - T(1)) : x;
    case Activation::softsign:
      return x / (T(1) + (x < T(0) ? -x : x));
    default:  // softplus, written so that a large x does not overflow: log(1 + e^x)
      return x > T(0) ? x + log1p_of(exp_of(-x)) : log1p_of(exp_of(x));
  }
}

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

// The ONNX facts of one direction of a layer (Config's fields, activations resolved).
struct CellMath {
  Cell cell = Cell::lstm;
  bool linear_before_reset = true;  // GRU
  bool input_forget = false;        // LSTM
  double clip = 0;                  // > 0: gate pre-activations clamped to [-clip, clip]
  ActivationSpec f, g, h;           // the slots (rnn: f; gru: f, g; lstm: f, g, h)
};

inline CellMath cell_math_of(const Config& c, int dir) {
  CellMath m;
  m.cell = c.cell;
  m.linear_before_reset = c.linear_before_reset;
  m.input_forget = c.input_forget;
  m.clip = c.clip;
  m.f = c.activation(dir, 0);
  if (c.activation_slots() > 1) m.g = c.activation(dir, 1);
  if (c.activation_slots() > 2) m.h = c.activation(dir, 2);
  return m;
}

// ONNX's clip of a pre-activation (none when clip <= 0; a NaN stays NaN).
template <class T>
SEQFUSE_HD inline T clip_of(const CellMath& m, T x) {
  if (!(m.clip > 0)) return x;
  const T b = T(m.clip);
  return x > b ? b : x < -b ? -b : x;
}

// GRU's reset gate r = f(clip(gx_r + gh_r)): with linear_before_reset = false the recurrent
// product of n needs r first, W_hn (r * h), so the caller computes r for every unit, then
// that product, then onnx_update.
template <class T>
SEQFUSE_HD inline T gru_reset_gate(const CellMath& m, T gx_r, T gh_r) {
  return activate(m.f, clip_of(m, gx_r + gh_r));
}

// One hidden unit's ONNX step, gates in PyTorch's order (the weights are stored that way).
// gx[g]: gate g's input projection with b_ih; gh[g]: its recurrent product with b_hh, where
// GRU's n is W_hn h + b_hn (linear_before_reset, multiplied by r here) or W_hn (r * h) + b_hn
// (not, taken as is). peep: LSTM p_i, p_f, p_o of this unit, or null. c: the LSTM cell state,
// updated in place. Returns h'.
template <class T>
SEQFUSE_HD inline T onnx_update(const CellMath& m, const T* gx, const T* gh, const T* peep, T hprev,
                                T& c) {
  switch (m.cell) {
    case Cell::rnn_tanh:
    case Cell::rnn_relu:
      return activate(m.f, clip_of(m, gx[0] + gh[0]));
    case Cell::gru: {
      const T r = gru_reset_gate(m, gx[0], gh[0]);
      const T z = activate(m.f, clip_of(m, gx[1] + gh[1]));
      const T n =
          activate(m.g, clip_of(m, m.linear_before_reset ? gx[2] + r * gh[2] : gx[2] + gh[2]));
      return (T(1) - z) * n + z * hprev;
    }
    default: {  // lstm
      // Without peepholes nothing is added (not even 0): the defaults stay PyTorch's formula.
      const T pi = peep ? gx[0] + gh[0] + peep[0] * c : gx[0] + gh[0];
      const T i = activate(m.f, clip_of(m, pi));
      const T pf = peep ? gx[1] + gh[1] + peep[1] * c : gx[1] + gh[1];
      const T f = m.input_forget ? T(1) - i : activate(m.f, clip_of(m, pf));
      const T g = activate(m.g, clip_of(m, gx[2] + gh[2]));
      c = f * c + i * g;
      const T po = peep ? gx[3] + gh[3] + peep[2] * c : gx[3] + gh[3];
      const T o = activate(m.f, clip_of(m, po));
      return o * activate(m.h, c);
    }
  }
}

}  // namespace seqfuse
