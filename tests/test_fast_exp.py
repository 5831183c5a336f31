"""minigrad.fast_exp: the row kernels' exp, vectorized for float32 and libm's for float64."""

import math

import numpy as np
import pytest

from minigrad import fast_exp
from minigrad.jit import kernel
from minigrad.fast_exp import exp


@kernel
def exp_of_each(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


def fast(x):
    out = np.empty_like(x)
    exp_of_each(x, out)
    return out


def test_float32_exp_is_within_two_ulps_over_the_whole_normal_range():
    x = np.linspace(-87.3, 88.72, 2_000_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    ulps = np.abs(fast(x) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


def test_float32_exp_rounds_subnormal_results_to_within_one_step():
    x = np.linspace(-104.0, -87.34, 100_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    assert np.abs(fast(x) - exact).max() <= 2.0 ** -149


@pytest.mark.parametrize("x, expected", [(-np.inf, 0.0), (-1e30, 0.0), (-110.0, 0.0), (0.0, 1.0), (88.7228, 3.4026947e38),
                                         (88.723, np.inf), (1e30, np.inf), (np.inf, np.inf)])
def test_float32_exp_at_the_ends(x, expected):
    got = fast(np.array([x], np.float32))[0]
    assert got == pytest.approx(expected, rel=1e-5) if np.isfinite(expected) and expected else got == expected


def test_float32_exp_keeps_nan():
    assert np.isnan(fast(np.array([np.nan, -np.nan], np.float32))).all()


def test_float64_exp_is_libms():
    x = np.concatenate([np.linspace(-745.0, 709.0, 20_001), [-np.inf, np.inf]])
    assert [float(v) for v in fast(x)] == [math.exp(v) for v in x]


def test_the_polynomial_is_the_fit_it_says_it_is():
    # (to 1e-8: numpy versions' least squares differ in the last digits; float32 keeps 7)
    np.testing.assert_allclose(fast_exp.fit_exp_r(), fast_exp._EXP_R, rtol=1e-8, atol=0)
