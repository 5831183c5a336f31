"""minigrad.blas: the product shared out over the cores, the product callable from kernels
(OpenBLAS's gemm, and the compiled loops used without OpenBLAS), all against numpy."""

import itertools

import numpy as np
import pytest

from minigrad import blas
from minigrad.jit import kernel


def operands(rng, rows, inner, columns, transpose_a, transpose_b, dtype):
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner)).astype(dtype)
    b = rng.standard_normal((columns, inner) if transpose_b else (inner, columns)).astype(dtype)
    expected = (a.T if transpose_a else a).astype(np.float64) @ (b.T if transpose_b else b).astype(np.float64)
    return a, b, expected


FLAGS = list(itertools.product([False, True], repeat=3))  # transpose_a, transpose_b, accumulate


@pytest.mark.parametrize("transpose_a, transpose_b, accumulate", FLAGS)
@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-4), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(3, 4, 5), (300, 200, 100)])  # one core; big enough for several
def test_matmul_matches_numpy(shape, dtype, tolerance, transpose_a, transpose_b, accumulate):
    rng = np.random.default_rng(0)
    a, b, expected = operands(rng, *shape, transpose_a, transpose_b, dtype)
    start = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    out = blas.matmul(a, b, transpose_a, transpose_b, out=start.copy(), accumulate=accumulate)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected + (start if accumulate else 0), rtol=tolerance,
                               atol=tolerance * np.sqrt(shape[1]))


def test_big_products_are_shared_out_in_blocks(monkeypatch):
    """The parallel path really runs (and agrees) when there is more than one core."""
    monkeypatch.setattr(blas, "cores", lambda: 3)
    rng = np.random.default_rng(1)
    a, b, expected = operands(rng, 301, 64, 129, True, False, np.float64)
    np.testing.assert_allclose(blas.matmul(a, b, transpose_a=True), expected, rtol=1e-12, atol=1e-10)


@kernel
def matmul_in_a_kernel(a, b, out, transpose_a, transpose_b, accumulate):
    blas.matmul_into(a, b, out, transpose_a, transpose_b, accumulate)


loop_fallback = kernel(blas._loop_matmul_into)  # what kernels run without OpenBLAS


@pytest.mark.parametrize("implementation", [matmul_in_a_kernel, loop_fallback])
@pytest.mark.parametrize("transpose_a, transpose_b, accumulate", FLAGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_into_from_kernels_on_strided_views(implementation, dtype, transpose_a, transpose_b, accumulate):
    rng = np.random.default_rng(2)
    rows, inner, columns = 5, 6, 7
    a = rng.standard_normal(((inner if transpose_a else rows) + 1, (rows if transpose_a else inner) + 2)).astype(dtype)
    b = rng.standard_normal((columns if transpose_b else inner, (inner if transpose_b else columns) + 1)).astype(dtype)
    out = rng.standard_normal((rows, columns + 3)).astype(dtype)
    a_view, b_view = a[1:, 2:], b[:, 1:]
    product = (a_view.T if transpose_a else a_view) @ (b_view.T if transpose_b else b_view)
    expected = out.copy()
    expected[:, 3:] = product + (out[:, 3:] if accumulate else 0)
    # views whose row stride is not their width, as the recurrent loops pass them
    implementation(a_view, b_view, out[:, 3:], transpose_a, transpose_b, accumulate)
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_openblas_is_at_one_thread_for_training_and_back_after():
    if not blas.HAVE_OPENBLAS:
        pytest.skip("numpy here is not built on OpenBLAS")
    from minigrad.runtime import configured_for_training

    getters = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")

    def counts():
        return [getattr(library, name)() for library in blas._openblas_libraries() for name in getters
                if hasattr(library, name)]

    before = blas.openblas_threads()
    blas.set_openblas_threads(3)  # a count of the user's own (OpenBLAS accepts more than the cores)
    try:
        assert counts() and set(counts()) == {3}
        with configured_for_training():
            assert set(counts()) == {1}
        assert set(counts()) == {3}
    finally:
        blas.set_openblas_threads(before)
