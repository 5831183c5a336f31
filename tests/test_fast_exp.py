"""minigrad.fast_exp: the row kernels' exp, vectorized for float32 and libm's for float64."""

import math

import numpy as np
import pytest

from minigrad import fast_exp, kernels
from minigrad.jit import kernel, summing_kernel
from minigrad.fast_exp import exp


@kernel
def exp_of_each(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


@summing_kernel
def exp_of_each_reassociated(x, out):
    # as the row kernels call it: in a kernel compiled with reassociation, which must not undo
    # the two-part reduction (x - n * head) - n * tail
    for i in range(x.size):
        out[i] = exp(x[i])


def fast(x):
    out = np.empty_like(x)
    exp_of_each(x, out)
    return out


@pytest.mark.parametrize("compiled", [exp_of_each, exp_of_each_reassociated])
def test_float32_exp_is_within_two_ulps_over_the_whole_normal_range(compiled):
    x = np.linspace(-87.3, 88.72, 2_000_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    got = np.empty_like(x)
    compiled(x, got)
    ulps = np.abs(got - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.0, (ulps.max(), x[ulps.argmax()])


def test_float32_softmax_rows_are_within_three_ulps_of_the_exact_ones():
    # every row spans exp's range below its peak, in a shuffled order
    x = -np.linspace(0.0, 87.0, 65 * 2000).reshape(2000, 65).astype(np.float32)
    x[:, 0] = 0.0
    x = x[:, np.random.default_rng(0).permutation(65)]
    got = np.empty_like(x)
    kernels.softmax_rows(x, got)
    exact = np.exp(x.astype(np.float64))
    exact /= exact.sum(axis=1, keepdims=True)
    normal = exact > np.finfo(np.float32).tiny
    assert np.max(np.abs(got[normal] / exact[normal] - 1)) <= 3 * 2.0 ** -24


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
