"""minigrad.precompile: a kernel compiled by a helper process is loaded from the on-disk
cache by this one (not compiled again), a failed helper changes nothing, on a cold
cache a fused layer's backward loop comes from such a helper, and helpers start only
inside minigrad.runtime.configured_for_training()."""

import importlib.util
import sys
import textwrap

import numpy as np
import pytest

import minigrad as mg
from minigrad.jit import cores
from minigrad.precompile import compile_elsewhere, helpers_enabled
from minigrad.runtime import configured_for_training


@pytest.fixture
def training_setup():
    with configured_for_training():
        yield


def _import_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kernel_module(tmp_path):
    path = tmp_path / "precompile_test_kernels.py"
    path.write_text(textwrap.dedent("""
        from minigrad.jit import kernel

        @kernel
        def scaled_sum(x, factor):
            total = 0.0
            for i in range(x.shape[0]):
                for j in range(x.shape[1]):
                    total += x[i, j] * factor
            return total
    """))
    yield _import_file(path)
    sys.modules.pop(path.stem, None)


def test_no_helper_starts_outside_the_training_setup(kernel_module):
    assert not helpers_enabled()
    assert compile_elsewhere(kernel_module.scaled_sum, [np.ones((2, 2)), 1.0]) is None
    with configured_for_training():
        assert helpers_enabled()
        with configured_for_training():  # nested: the inner one puts back what it found
            pass
        assert helpers_enabled()
    assert not helpers_enabled()


def test_a_kernel_compiled_by_the_helper_is_loaded_from_the_cache(kernel_module, training_setup):
    x = np.arange(6.0).reshape(2, 3)
    job = compile_elsewhere(kernel_module.scaled_sum, [x, 2.0])
    assert job is not None and job.wait()
    assert kernel_module.scaled_sum(x, 2.0) == 30.0
    assert sum(kernel_module.scaled_sum.stats.cache_hits.values()) == 1
    assert not kernel_module.scaled_sum.stats.cache_misses


def test_a_failed_helper_leaves_the_kernel_to_compile_here(kernel_module, training_setup):
    x = np.ones((2, 2), np.float32)
    job = compile_elsewhere(kernel_module.scaled_sum, [x, "not a number"])  # no such signature
    assert job is not None and not job.wait()
    assert kernel_module.scaled_sum(x, 1.5) == 6.0
    assert sum(kernel_module.scaled_sum.stats.cache_misses.values()) == 1


@pytest.mark.skipif(cores() < 2, reason="the helper is only started with two or more cores")
def test_on_a_cold_cache_the_backward_loop_comes_from_the_helper(tmp_path, monkeypatch, training_setup):
    import rnn.fused.recurrence
    from rnn.cells.registry import cell, sigmoid, tanh
    from rnn.model.layers import Recurrent

    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path))  # a cold cache for the generated modules

    @cell(gates=("f", "n"), state=("h",), name="test_precompile_cell")
    def leaky(x, h):
        f = sigmoid(x.f + h.f)
        return (f * h + (1 - f) * tanh(x.n + h.n),)

    layer = Recurrent("test_precompile_cell", 5, 64, engine="fused")  # 64 units: two blocks, parallel loops
    jobs = [name for name in rnn.fused.recurrence._backward_compiles if "test_precompile_cell" in name]
    assert len(jobs) == 1
    x = mg.tensor(np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32), requires_grad=True)
    outputs, _ = layer(x)
    outputs.sum().backward()
    loops = sys.modules[jobs[0]]
    assert sum(loops.window_backward.stats.cache_hits.values()) == 1
    assert not loops.window_backward.stats.cache_misses
    assert np.isfinite(x.grad).all() and np.abs(x.grad).max() > 0
