"""Gradient checking: compare backward() with central finite differences, in float64.

For a function f of some tensors, pick a fixed random weight v of f's output shape and
check the scalar L = sum(v * f(x)). Its analytic gradient is v^T J (one backward pass);
each element of it is also (L(x + eps e_i) - L(x - eps e_i)) / (2 eps) up to O(eps^2).
A random v makes a wrong Jacobian entry show up with probability 1, while costing one
backward instead of one per output element.
"""

from typing import NamedTuple

import numpy as np

from .grad_mode import enable_grad, no_grad
from .derivatives import grad
from .tensor import Tensor, concat


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message has the details."""


class InputReport(NamedTuple):
    """How well the analytic gradient of one input matched the numeric one."""

    index: int
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    worst_element: tuple
    analytic: float
    numeric: float
    ok: bool
    # (element, left slope, right slope) of a failing element whose one-sided differences
    # disagree (a kink: relu at 0, max with ties, where no derivative exists); or None.
    kink: tuple = None


def _as_float64_leaves(inputs):
    """Float64 copies of the tensor inputs (others pass through untouched)."""
    copies = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            copies.append(Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad))
        else:
            copies.append(x)
    return copies


def gradcheck_report(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, create_graph=False) -> list:
    """One `InputReport` for each input that requires grad (`create_graph`: check the
    gradients as the differentiable backward computes them, instead of the fast one)."""
    inputs = _as_float64_leaves(inputs)
    checked = [k for k, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, nothing to check")

    output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    weight = np.random.default_rng(seed).standard_normal(output.shape)

    def weighted_output() -> float:
        with no_grad():
            return float(np.sum(weight * fn(*inputs).data))

    if output.requires_grad:
        with enable_grad():
            gradients = grad(output, [inputs[k] for k in checked], grad_outputs=weight, create_graph=create_graph)
    else:  # the output does not depend on the inputs at all
        gradients = [Tensor(np.zeros_like(inputs[k].data)) for k in checked]

    reports = []
    centre = weighted_output()
    for k, gradient in zip(checked, gradients):
        x = inputs[k]
        analytic = gradient.data
        numeric = np.zeros_like(x.data)
        right, left = np.zeros_like(x.data), np.zeros_like(x.data)  # one-sided differences
        flat = x.data.reshape(-1)  # a view: writing into it perturbs the input in place
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            above = weighted_output()
            flat[i] = original - eps
            below = weighted_output()
            flat[i] = original
            numeric.reshape(-1)[i] = (above - below) / (2 * eps)
            right.reshape(-1)[i], left.reshape(-1)[i] = (above - centre) / eps, (centre - below) / eps
        error = np.abs(analytic - numeric)
        # Pass/fail per element like numpy.allclose; report the element that misses by most.
        excess = error - (atol + rtol * np.abs(numeric))
        worst = int(np.argmax(excess)) if excess.size else 0
        position = tuple(int(i) for i in np.unravel_index(worst, x.shape)) if x.size else ()
        kink = _find_kink(flat, x.shape, excess, left, right, worst, eps, weighted_output)
        relative = error / np.maximum(np.abs(numeric), 1e-12)
        reports.append(
            InputReport(
                index=k,
                shape=x.shape,
                max_abs_error=float(error.max()) if error.size else 0.0,
                max_rel_error=float(relative.max()) if relative.size else 0.0,
                worst_element=position,
                analytic=float(analytic.reshape(-1)[worst]) if x.size else 0.0,
                numeric=float(numeric.reshape(-1)[worst]) if x.size else 0.0,
                ok=bool(np.all(np.isfinite(analytic)) and np.all(excess <= 0)),
                kink=kink,
            )
        )
    return reports


def _find_kink(flat, shape, excess, left, right, worst, eps, weighted_output, tries=8):
    """(element, left slope, right slope) of a failing element where f has a kink, or None.

    Where f is smooth its one-sided slopes differ by about eps * f'', which shrinks with eps;
    at a kink (relu at 0, max with ties) they differ by a jump that does not. So an element
    whose slopes disagree is checked again at eps / 10 (the worst element first, then the
    others in order, up to `tries` of them)."""
    disagree = (excess.reshape(-1) > 0) & (np.abs(right - left) > 0).reshape(-1)
    candidates = [i for i in [worst] + list(np.flatnonzero(disagree)) if disagree[i]][:tries]
    for i in candidates:
        gap = abs(right.reshape(-1)[i] - left.reshape(-1)[i])
        original, small = flat[i], eps / 10
        flat[i] = original + small
        above = weighted_output()
        flat[i] = original - small
        below = weighted_output()
        flat[i] = original
        centre = weighted_output()
        if abs((above - centre) - (centre - below)) / small > 0.5 * gap:  # the gap did not shrink: a jump
            position = tuple(int(k) for k in np.unravel_index(int(i), shape))
            return position, float(left.reshape(-1)[i]), float(right.reshape(-1)[i])
    return None


def _raise_on_failure(reports, title, input_name=str):
    failed = [r for r in reports if not r.ok]
    if failed:
        lines = [title]
        lines.append(f"  {'input':>12}  {'shape':<12} {'element':<12} {'analytic':>14} {'numeric':>14} {'abs err':>10}")
        for r in failed:
            lines.append(
                f"  {input_name(r.index):>12}  {str(r.shape):<12} {str(r.worst_element):<12} "
                f"{r.analytic:>14.8g} {r.numeric:>14.8g} {abs(r.analytic - r.numeric):>10.3g}"
            )
        for r in failed:
            if r.kink is not None:
                position, left, right = r.kink
                lines.append(f"  note: at element {position} of input {input_name(r.index)} the slope from the left "
                             f"({left:.6g}) and from the right ({right:.6g}) differ: the function may not be "
                             f"differentiable there (a kink, such as relu at 0 or max with ties); check at "
                             f"another point")
        raise GradcheckError("\n".join(lines))
    return True


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3) -> bool:
    """True if backward() of `fn(*inputs)` matches central differences; otherwise raises
    GradcheckError naming the input, its worst element, and both gradient values."""
    reports = gradcheck_report(fn, inputs, eps=eps, atol=atol, rtol=rtol)
    return _raise_on_failure(reports, f"gradcheck failed (atol={atol}, rtol={rtol}, eps={eps}):")


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0) -> bool:
    """True if the second derivatives of `fn(*inputs)` match central differences of the first.

    As PyTorch's gradgradcheck: with a fixed random `grad_output` v, the first derivative
    u(x, v) = mg.grad(fn(x), x, v, create_graph=True) is itself a function of the inputs and
    of v; its backward (through the graph create_graph built) is gradchecked against finite
    differences of u. Before that, the first derivative as create_graph=True computes it is
    checked against finite differences of fn (it is not the fast backward's code). Failures
    name the input (or `grad_output`) and the element.
    """
    inputs = _as_float64_leaves(inputs)
    differentiated = [k for k, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not differentiated:
        raise ValueError("gradgradcheck: no input requires grad, nothing to check")
    with enable_grad():
        output = fn(*inputs)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradgradcheck: fn must return a Tensor, got {type(output).__name__}")
    grad_output = Tensor(np.random.default_rng(seed + 1).standard_normal(output.shape), requires_grad=True)

    def first_derivative(*values):
        *xs, v = values
        with enable_grad():  # the numeric side calls this under no_grad: the gradient needs a graph
            out = fn(*xs)
            gradients = grad(out, [xs[k] for k in differentiated], grad_outputs=v, create_graph=True)
        return concat([g.reshape(-1) for g in gradients])

    settings = f"(atol={atol}, rtol={rtol}, eps={eps})"
    # The differentiable backward is other code than the fast one: check its values first.
    first = gradcheck_report(fn, inputs, eps=eps, atol=atol, rtol=rtol, seed=seed, create_graph=True)
    _raise_on_failure(first, f"gradgradcheck failed {settings}: the first derivative with create_graph=True:")
    second = gradcheck_report(first_derivative, [*inputs, grad_output], eps=eps, atol=atol, rtol=rtol, seed=seed)

    def input_name(index):
        return "grad_output" if index == len(inputs) else str(index)

    return _raise_on_failure(second, f"gradgradcheck failed {settings}: the second derivative:", input_name)
