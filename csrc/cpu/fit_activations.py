"""Derives the coefficients of the vectorized activations in simd_math.hpp and checks that the
header holds them: a relative-error minimax fit by linear-programming differential correction
(NumPy, SciPy's HiGHS), rounded to float32. Run by hand after changing a form or a bound:
`python csrc/cpu/fit_activations.py` prints the fits and exits nonzero when simd_math.hpp's
constants differ from them. The header's accuracy itself is checked over the float range by
tests/test_native_kernels.py and tests/cpp/test_kernel_sets.cpp.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

TANH_CLAMP = 9.0  # tanh(9) is within 3.1e-8 of 1: beyond it the result rounds to +-1
TANH_END = 1.5e-7  # the fit's R(9) >= 1 + TANH_END, so the clamp to [-1, 1] reaches 1 exactly


def minimax(f, lo, hi, m, k, scale=1.0, end_at_least=None, n=4000, rounds=12):
    """P(u) / Q(u) ~ f(u) on [lo, hi] in relative error, P of degree m and Q of degree k,
    P(0) = Q(0) = 1. Each round solves one LP: minimize d subject to
    |P(u) - f(u) Q(u)| <= d |f(u)| Q_prev(u) at the grid points (differential correction).
    The fit runs in t = u / scale for conditioning. end_at_least: also P(hi) >= that * Q(hi).
    Returns (max relative error on the grid, p, q), coefficients lowest degree first."""
    u = np.unique(
        np.concatenate(
            [np.linspace(lo, hi, n), lo + (hi - lo) * (1 - np.cos(np.linspace(0, np.pi, n))) / 2]
        )
    )
    fu, t = f(u), u / scale
    tp = np.stack([t**j for j in range(1, m + 1)], axis=1)
    tq = np.stack([t**j for j in range(1, k + 1)], axis=1) if k else np.zeros((len(t), 0))
    q_prev, best = np.ones_like(t), None
    for _ in range(rounds):
        w = (np.abs(fu) * q_prev)[:, None]
        # residual = 1 + tp.p - fu (1 + tq.q); unknowns (p1..pm, q1..qk, d)
        a = np.hstack([tp, -fu[:, None] * tq])
        rows = [np.hstack([a, -w]), np.hstack([-a, -w])]
        rhs = [-(1 - fu), 1 - fu]
        rows.append(np.hstack([np.zeros((len(t), m)), -tq, np.zeros((len(t), 1))]))
        rhs.append(np.full(len(t), 1 - 0.01))  # Q >= 0.01: no pole on the interval
        if end_at_least is not None:
            tb = hi / scale
            rows.append(
                np.concatenate(
                    [-(tb ** np.arange(1, m + 1)), end_at_least * tb ** np.arange(1, k + 1), [0]]
                )[None]
            )
            rhs.append([1 - end_at_least])
        c = np.zeros(m + k + 1)
        c[-1] = 1
        res = linprog(
            c,
            A_ub=np.vstack(rows),
            b_ub=np.concatenate(rhs),
            bounds=[(None, None)] * (m + k) + [(0, None)],
            method="highs",
        )
        p, q = np.r_[1.0, res.x[:m]], np.r_[1.0, res.x[m : m + k]]
        q_prev = np.polyval(q[::-1], t)
        err = np.abs(np.polyval(p[::-1], t) / q_prev / fu - 1).max()
        if best is None or err < best[0]:
            best = (err, p, q)
    err, p, q = best
    powers = scale ** np.arange(max(m, k) + 1)
    return err, p / powers[: m + 1], q / powers[: k + 1]


def tanh_over_x(z):
    """tanh(x) / x as a function of z = x^2 (its series where the quotient loses digits)."""
    x = np.sqrt(z)
    out = 1 - z / 3 + 2 * z**2 / 15
    big = x > 1e-4
    out[big] = np.tanh(x[big]) / x[big]
    return out


def fits():
    """The coefficients simd_math.hpp should hold, as float32, in the header's order."""
    c2 = TANH_CLAMP**2
    err_t, p, q = minimax(
        tanh_over_x, 0.0, c2, 4, 4, scale=c2, end_at_least=(1 + TANH_END) / TANH_CLAMP
    )
    h = np.log(2) / 2 * 1.001  # |r| <= ln2 / 2, and a little for the reduction's rounding
    err_e, e, _ = minimax(lambda s: np.exp(-s), -h, h, 5, 0)
    print(f"tanh: x P(x^2) / Q(x^2), degree 4/4 on |x| <= {TANH_CLAMP}: rel err {err_t:.3g}")
    print(f"exp(-r): degree 5 on |r| <= ln2/2: rel err {err_e:.3g}")
    f32 = lambda v: [float(np.float32(x)) for x in v]  # noqa: E731
    # header order: tanh's P and Q from the top degree down, then exp's from degree 5 down
    return f32(p[:0:-1]), f32(q[:0:-1]), f32(e[:0:-1])


def header_constants(text, function):
    body = text[text.index(f"static inline V {function}(") :]
    body = body[: body.index("\n}\n")]
    return [float(np.float32(v)) for v in re.findall(r"set1\(([-0-9.e+]+)f\)", body)]


def main():
    text = (Path(__file__).parent / "simd_math.hpp").read_text()
    p, q, e = fits()
    tanh_consts = header_constants(text, "vtanh")
    sig_consts = header_constants(text, "vsigmoid")
    # every fitted coefficient must appear in its function (the header interleaves P and Q)
    ok = all(v in tanh_consts for v in p + q) and all(v in sig_consts for v in e)
    for name, v in (("tanh P", p), ("tanh Q", q), ("exp(-r)", e)):
        print(f"{name} (top degree first):", ", ".join(f"{x:.9g}f" for x in v))
    print("simd_math.hpp holds these" if ok else "simd_math.hpp differs from these fits")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
