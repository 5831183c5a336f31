"""exp for the row kernels: libm's for float64, a vectorizable one for float32.

libm's expf is a call per element, which LLVM cannot put in vector lanes: in the
cross-entropy of a char-LM's training step (2048 rows x 65 logits) those calls took
about a tenth of a small model's step. `exp(x)` here is math.exp for float64 (gradient
checks and parity tests stay exact) and, for float32, plain arithmetic that vectorizes
(about 10x faster than the calls):

    n = round(x / ln 2),  r = x - n ln 2  (|r| <= ln(2) / 2),  exp(x) = 2**n * exp(r)

with exp(r) from a polynomial (`_EXP_R`) and 2**n written straight into float exponent bits
(as two factors 2**(n/2), so that overflow to inf and underflow to subnormals and 0 happen
where exp's do). r is computed in two parts (Cody and Waite's reduction): ln 2 split into a
head of few bits, whose product with n is exact in float32, and the rest. (Computed as
2**(x log2 e) instead, the rounding of that product alone cost up to 17 ulps near the ends
of the range.)

The polynomial is a least-squares fit of exp on [-ln(2)/2, ln(2)/2] at Chebyshev nodes
(degree 6, largest relative error 2.6e-9 in float64 arithmetic: `fit_exp_r`). In float32
the result is within 2 ulps of exp where exp is a normal float, within one 2**-149 step
where it is subnormal (tests/test_fast_exp.py); exp(-inf) = 0, exp(inf) = inf, NaN stays NaN.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .jit import scalar

_LOG2_E = 1.4426950408889634
_LN2_HEAD = 0.693145751953125  # ln 2's first 16 bits: n * _LN2_HEAD is exact for |n| < 256
_LN2_TAIL = 1.4286068202862268e-06  # ln 2 - _LN2_HEAD
# exp(r) ~= sum(c_k r**k) for |r| <= ln(2) / 2, lowest first (`fit_exp_r()` makes them)
_EXP_R = (0.9999999999595479, 1.0000000377274478, 0.5000000107749347, 0.16666415477238616,
          0.04166621827460715, 0.008375128890193548, 0.0013948580805605182)


def fit_exp_r(degree: int = 6, nodes: int = 64) -> np.ndarray:
    """The coefficients of _EXP_R: a least-squares fit at Chebyshev nodes (kept so that
    anyone can check them)."""
    r = math.log(2) / 2 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)
    return np.polynomial.polynomial.polyfit(r, np.exp(r), degree)


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float32 whose 32 bits are the int32 `bits` (a bitcast: no conversion)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# float32 constants: float32 data is then never widened to float64 (half the vector width)
_C = tuple(np.float32(c) for c in _EXP_R)
_HEAD, _TAIL, _TO_N = np.float32(_LN2_HEAD), np.float32(_LN2_TAIL), np.float32(_LOG2_E)


@scalar
def _exp_float32(x):
    # x clamped where exp is 0 or inf in float32 anyway, so that n stays small
    x_in = min(max(x, np.float32(-110.0)), np.float32(89.0))
    n = np.floor(x_in * _TO_N + np.float32(0.5))
    r = (x_in - n * _HEAD) - n * _TAIL
    p = _C[0] + r * (_C[1] + r * (_C[2] + r * (_C[3] + r * (_C[4] + r * (_C[5] + r * _C[6])))))
    # 2**n as two factors 2**(n/2): each a normal float for any such n, and the products
    # overflow to inf, or round to a subnormal or 0, exactly where exp does
    whole = np.int32(n)
    half = whole >> np.int32(1)
    result = (p * _float_from_bits((half + np.int32(127)) << np.int32(23))
              * _float_from_bits((whole - half + np.int32(127)) << np.int32(23)))
    return result if x == x else x  # (the clamp would have turned NaN into a number)


def exp(x):
    """e**x: math.exp's value for float64, _exp_float32's for float32 (inside kernels)."""
    return math.exp(x)


@overload(exp)
def _exp_for(x):
    if x == types.float32:
        return lambda x: _exp_float32(x)
    return lambda x: math.exp(x)
