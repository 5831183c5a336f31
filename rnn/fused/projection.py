"""A fused layer's input projection over a whole window, x W_ih^T + b_ih, as one node whose
three products (forward, d x, d W_ih) run on rnn.fused.packed_gemm's window kernel.

Used instead of minigrad's `linear` only where packed_gemm.window_products_packed() says the
packed kernel beats numpy's BLAS (an AVX-512 host whose OpenBLAS runs a narrower kernel) and
the shapes fit its panels; the values and gradients are linear's. First order only, like the
fused recurrence it feeds.
"""

import numpy as np

import minigrad as mg

from rnn.fused import packed_gemm
from rnn.fused.recurrence import FirstOrderOnly


def fits(x, weight) -> bool:
    """True if x (..., in) @ weight (out, in)^T runs on panels here (all three products)."""
    return (packed_gemm.window_product_fits(weight.dtype, weight.shape[0])
            and packed_gemm.window_product_fits(weight.dtype, weight.shape[1]) and x.dtype == weight.dtype)


def input_projection(x, weight, bias):
    """x @ weight.T + bias over every step: the packed node where it fits, else mg.linear."""
    if not fits(x, weight):
        return mg.linear(x, weight, bias)
    return PackedLinear.apply(x, weight, bias)


class PackedLinear(FirstOrderOnly):
    """x (..., in) @ weight (out, in)^T + bias (out,), the products on packed panels."""

    def forward(self, x, weight, bias):
        rows = x.reshape(-1, x.shape[-1])
        # panel p of W^T holds rows p*PANEL.. of W, transposed: one strided copy
        out = packed_gemm.window_product(rows, packed_gemm.pack_panels(weight.T))
        out += bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        x, weight, _ = (t.data for t in self.inputs)
        rows = np.ascontiguousarray(grad.reshape(-1, grad.shape[-1]))
        x_rows = x.reshape(-1, x.shape[-1])
        grad_x = grad_weight = grad_bias = None
        if self.needs_input_grad[0]:
            grad_x = packed_gemm.window_product(rows, packed_gemm.pack_panels(weight)).reshape(x.shape)
        if self.needs_input_grad[1]:
            grad_weight = packed_gemm.window_product(rows, packed_gemm.pack_panels(x_rows), transpose_a=True)
        if self.needs_input_grad[2]:
            grad_bias = rows.sum(axis=0)
        return grad_x, grad_weight, grad_bias
