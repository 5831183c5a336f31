"""The matrix products: `MatMul` (a @ b) and `Linear` (x @ weight.T + bias, as one node).

Their backward is written once, with what arrays and Tensors share (@, reshape,
transpose, sum): on arrays it is the first-order pass, on Tensors (create_graph=True) the
same lines build a differentiable graph. `_product` sends 2-D array products to
`blas.matmul`, which shares large ones out over the cores.
"""

import numpy as np

from . import blas
from .autograd import Function


def _product(a, b):
    """a @ b; for two large 2-D arrays through `blas.matmul`, a transposed view passed as a flag."""
    if type(a) is not np.ndarray or a.ndim != 2 or b.ndim != 2:
        return a @ b  # Tensors (a graph is being built), or stacks of matrices
    if 2.0 * a.shape[0] * a.shape[1] * b.shape[1] < blas.PARALLEL_FLOPS:
        return a @ b  # too small to share out: blas.matmul's set-up costs more (~13 us at 4x4)
    transpose_a = not a.flags.c_contiguous and a.T.flags.c_contiguous
    transpose_b = not b.flags.c_contiguous and b.T.flags.c_contiguous
    return blas.matmul(a.T if transpose_a else a, b.T if transpose_b else b, transpose_a, transpose_b)


def create_graph(grad) -> bool:
    """True when the backward pass is building a graph: the gradient is a Tensor, not an array."""
    return not isinstance(grad, np.ndarray)


def _swap_last_axes(x):
    """x with its last two axes swapped (a view of an array, or a Tensor op)."""
    return x.transpose(*range(x.ndim - 2), x.ndim - 1, x.ndim - 2)


class MatMul(Function):
    """a @ b with numpy's rules: 1-D operands are promoted, leading axes broadcast."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        inner_a, inner_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
        if inner_a != inner_b:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not match: "
                f"{inner_a} columns on the left, {inner_b} rows on the right"
            )
        return _product(a, b)

    def backward(self, grad):
        """grad_a = grad @ b.T, grad_b = a.T @ grad (broadcast axes are summed by the walk)."""
        a, b = self.inputs if create_graph(grad) else (self.inputs[0].data, self.inputs[1].data)
        # Vectors as matrices: a (1, n) row on the left, an (n, 1) column on the right.
        a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
        b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:  # first: for vector @ vector the 0-d grad has no axis -2 yet
            g2 = g2.reshape(*g2.shape, 1)
        if a.ndim == 1:
            g2 = g2.reshape(*g2.shape[:-1], 1, g2.shape[-1])
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = _product(g2, _swap_last_axes(b2))
            grad_a = grad_a.reshape(*grad_a.shape[:-2], grad_a.shape[-1]) if a.ndim == 1 else grad_a
        if self.needs_input_grad[1]:
            grad_b = _product(_swap_last_axes(a2), g2)
            grad_b = grad_b.reshape(*grad_b.shape[:-1]) if b.ndim == 1 else grad_b
        return grad_a, grad_b

    graph_backward = backward

    def jvp(self, out, tangent_a, tangent_b):
        a, b = (x.data for x in self.inputs)  # the product rule
        total = np.zeros_like(out)
        if tangent_a is not None:
            total = total + np.matmul(tangent_a, b)
        if tangent_b is not None:
            total = total + np.matmul(a, tangent_b)
        return total


class Linear(Function):
    """x @ weight.T + bias (PyTorch's F.linear) as one node: no transposed copy of the
    weight and no separate bias node. x (..., in), weight (out, in), bias (out,)."""

    def forward(self, x, weight, bias):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input {x.shape}, weight {weight.shape} and bias {bias.shape} do not fit "
                             "(need input (..., in), weight (out, in), bias (out,))")
        x_rows = x.reshape(-1, x.shape[-1])  # every leading axis is a batch axis
        out = np.empty((len(x_rows), len(weight)), np.result_type(x, weight, bias))
        out[...] = bias  # the product is added to it: no second pass for the bias
        blas.matmul(x_rows, weight, transpose_b=True, out=out, accumulate=True)
        return out.reshape(*x.shape[:-1], len(weight))

    def backward(self, grad):
        """grad_x = grad @ weight, grad_weight = grad.T @ x, grad_bias = grad summed over rows."""
        x, weight, _ = self.inputs if create_graph(grad) else (t.data for t in self.inputs)
        rows = grad.reshape(-1, grad.shape[-1])
        x_rows = x.reshape(-1, x.shape[-1])
        grad_x = _product(rows, weight).reshape(x.shape) if self.needs_input_grad[0] else None
        grad_weight = _product(rows.transpose(1, 0), x_rows) if self.needs_input_grad[1] else None
        grad_bias = rows.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias

    graph_backward = backward

    def jvp(self, out, tangent_x, tangent_weight, tangent_bias):
        x, weight, _ = (t.data for t in self.inputs)
        total = np.zeros_like(out)
        if tangent_x is not None:
            total = total + tangent_x @ weight.T
        if tangent_weight is not None:
            total = total + x @ tangent_weight.T
        if tangent_bias is not None:
            total = total + tangent_bias
        return total
