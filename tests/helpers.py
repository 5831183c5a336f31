"""One helper that runs an op three ways, so that each op test is one line.

    check(mode, mg_fn, inputs, torch_fn=None)

- `mode == "gradcheck"`: `mg.gradcheck` of `mg_fn` in float64 (central differences);
- `mode == "torch"`: forward values and input gradients match PyTorch to 1e-6 in float64,
  for the same inputs and the same random upstream gradient (skipped without torch);
- `mode == "float32"`: float32 inputs give a float32 output and float32 gradients, and the
  values agree with the float64 run to float32 precision (no silent float64 anywhere).

`inputs` lists the floating-point inputs (each one requires grad): a shape tuple means
standard-normal values of that shape; `positive(shape)` and `away_from_zero(shape)` give
inputs for log, pow(0.5), relu and division. Integer arguments (indices, targets) are
constants captured by `mg_fn` / `torch_fn`. `torch_fn` defaults to `mg_fn`, for ops that
are spelled the same in both libraries (`a + b`, `x.exp()`, `a @ b`, ...).

`leaf(values)` makes one tensor that requires grad, for the autograd and gradcheck tests.
"""

import numpy as np
import pytest

import minigrad as mg

# Where PyTorch is missing, every comparison with it is one skip with this reason, reported
# on one line by `pytest -rs` (pyproject's addopts): not hundreds of silent "s".
TORCH_MISSING = "PyTorch is not installed: comparisons with it are not run (pip install -e '.[torch]')"


def torch_or_skip():
    """The torch module, or a skip of the calling test that says why."""
    try:
        import torch
    except ImportError:
        pytest.skip(TORCH_MISSING)
    return torch


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# Without PyTorch the "torch" mode is not generated (test_ops stands for all of it with one skip).
MODES = ("gradcheck", "torch", "float32") if _have_torch() else ("gradcheck", "float32")
TORCH_TOLERANCE = 1e-6


def positive(shape):
    """Values in [0.5, 2): inside the domain of log and pow(x, 0.5), away from their pole."""
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_zero(shape):
    """Values with |x| in [0.5, 2): no kink of relu and no pole of 1/x within the gradcheck step."""
    return lambda rng: rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, shape)


def make_arrays(inputs, seed=0) -> list:
    """The float64 input arrays described by `inputs` (the same for every mode)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        if isinstance(spec, tuple):
            arrays.append(rng.standard_normal(spec))
        elif callable(spec):
            arrays.append(np.asarray(spec(rng), dtype=np.float64))
        else:
            arrays.append(np.array(spec, dtype=np.float64))
    return arrays


def leaf(values, dtype=np.float64):
    """A tensor of `values` that requires grad."""
    return mg.tensor(np.array(values, dtype=dtype), requires_grad=True)


def leaves(arrays, dtype=np.float64) -> list:
    return [mg.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]


def check(mode, mg_fn, inputs, torch_fn=None, seed=0):
    arrays = make_arrays(inputs, seed)
    if mode == "gradcheck":
        check_gradcheck(mg_fn, arrays)
    elif mode == "torch":
        check_against_torch(mg_fn, torch_fn or mg_fn, arrays, seed)
    elif mode == "float32":
        check_float32(mg_fn, arrays, seed)
    else:
        raise ValueError(f"unknown mode {mode!r}")


def check_gradcheck(mg_fn, arrays):
    assert mg.gradcheck(mg_fn, leaves(arrays)) is True


def _minigrad_run(mg_fn, arrays, dtype, upstream):
    inputs = leaves(arrays, dtype)
    out = mg_fn(*inputs)
    assert isinstance(out, mg.Tensor), f"the op returned {type(out).__name__}, not a Tensor"
    out.backward(np.asarray(upstream, dtype=dtype))
    grads = [x.grad for x in inputs]
    return out, grads


def _upstream(seed, shape):
    return np.random.default_rng(seed + 1).standard_normal(shape)


def check_against_torch(mg_fn, torch_fn, arrays, seed=0):
    torch = torch_or_skip()

    with torch.no_grad():
        expected_shape = tuple(torch_fn(*(torch.tensor(a) for a in arrays)).shape)
    upstream = _upstream(seed, expected_shape)

    out, grads = _minigrad_run(mg_fn, arrays, np.float64, upstream)
    torch_inputs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    torch_out = torch_fn(*torch_inputs)
    torch_out.backward(torch.from_numpy(upstream))

    assert out.shape == tuple(torch_out.shape), f"output shape {out.shape}, torch {tuple(torch_out.shape)}"
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, torch_out.detach().numpy(), rtol=TORCH_TOLERANCE,
                               atol=TORCH_TOLERANCE, err_msg="forward values differ from torch")
    for k, (grad, torch_input) in enumerate(zip(grads, torch_inputs)):
        torch_grad = np.zeros(arrays[k].shape) if torch_input.grad is None else torch_input.grad.numpy()
        grad = np.zeros(arrays[k].shape) if grad is None else grad
        assert grad.shape == arrays[k].shape, f"gradient of input {k} has shape {grad.shape}"
        assert grad.dtype == np.float64
        np.testing.assert_allclose(grad, torch_grad, rtol=TORCH_TOLERANCE, atol=TORCH_TOLERANCE,
                                   err_msg=f"gradient of input {k} differs from torch")


def check_float32(mg_fn, arrays, seed=0):
    with mg.no_grad():
        shape = mg_fn(*leaves(arrays)).shape
    upstream = _upstream(seed, shape)
    reference_out, reference_grads = _minigrad_run(mg_fn, arrays, np.float64, upstream)

    out, grads = _minigrad_run(mg_fn, arrays, np.float32, upstream)
    assert out.dtype == np.float32, f"float32 inputs gave a {out.dtype} output"
    assert out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, reference_out.data, rtol=1e-4, atol=1e-5)
    for k, (grad, reference) in enumerate(zip(grads, reference_grads)):
        assert grad is not None, f"input {k} received no gradient"
        assert grad.dtype == np.float32, f"float32 input {k} got a {grad.dtype} gradient"
        assert grad.shape == arrays[k].shape
        np.testing.assert_allclose(grad, reference, rtol=1e-3, atol=1e-4,
                                   err_msg=f"float32 gradient of input {k}")


def cell_sweep(cell_names, quick) -> list:
    """pytest params for a check run on every cell in `cell_names`: the cells in `quick` run in
    the README's command, the others are marked slow (`-m slow`, which CI runs too). For checks
    of a loop template shared by all cells, where each further cell only adds a cold compile
    of the same template (a few seconds of CPU each)."""
    return [name if name in quick else pytest.param(name, marks=pytest.mark.slow) for name in cell_names]

