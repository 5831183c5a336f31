"""Window-wide products with bf16 operands and float32 sums, and the input projection built on them.

Training in matmul precision "bf16" (rnn.model.layers.Recurrent.matmul_precision) runs the
large products of a window on rnn.fused.packed_gemm_bf16's microkernel too: the input
projection of layers 1.. and its two gradients (`Bf16Linear`), and d W_hh
(rnn.fused.recurrence). Each operand is rounded to bf16 once per product, in one pass that
also lays it out for the kernel (pairs of rows of the left operand along K, panels of the
right one); the rows of the result are shared out over the cores in blocks of ROW_BLOCK, so
that a block's rounded rows stay in L2 while every panel passes over them.

The parameters stay float32 (master weights), and so do every sum and every gradient handed
back: only the operands of the products are rounded.
"""

import numpy as np

from minigrad.autograd import Function
from minigrad.jit import cores, parallel_kernel, prange

from rnn.fused.packed_gemm import PANEL
from rnn.fused.packed_gemm_bf16 import pack_panels_bf16, packed_matmul_bf16_into, round_pairs_into

ROW_BLOCK = 128  # rows of the result per block: 128 x (K/2) words of the left operand, in L2


def fits(*columns) -> bool:
    """True if products with these output widths can run here (whole panels)."""
    return all(int(c) % PANEL == 0 for c in columns)


@parallel_kernel
def _pairs_in_blocks(a, transpose, out, blocks):
    # round_pairs_into over blocks of out's rows, shared out over the cores
    rows = out.shape[0]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        round_pairs_into(a[:, first:last] if transpose else a[first:last], transpose, out[first:last])


@parallel_kernel
def _product_in_blocks(pairs, panels, out, blocks):
    rows = out.shape[0]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        packed_matmul_bf16_into(pairs[first:last], panels, 0, out[first:last], False)


def matmul_bf16(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) with both operands rounded to bf16 and float32 sums; a, b 2-D float32, the
    result's width a multiple of PANEL (see `fits`)."""
    if transpose_a and not transpose_b and b.shape[1] < a.shape[1] and fits(a.shape[1]):
        # a weight gradient g.T @ x (g wider than x): as (x.T @ g).T, which rounds the wide g
        # along its rows (packing it) and transposes only the narrow x (measured: 2.3 against
        # 3.0 ms at 2048 rows, 1024 x 256)
        return np.ascontiguousarray(_product(b, a, True, False).T)
    return _product(a, b, transpose_a, transpose_b)


def _product(a, b, transpose_a, transpose_b):
    rows, inner = (a.shape[1], a.shape[0]) if transpose_a else a.shape
    blocks = min(max(cores(), -(-rows // ROW_BLOCK)), rows) or 1
    pairs = np.empty((rows, (inner + 1) // 2), np.uint32)
    _pairs_in_blocks(a, transpose_a, pairs, blocks)
    panels = pack_panels_bf16(b, transpose_b)
    out = np.empty((rows, panels.shape[0] * PANEL), np.float32)
    _product_in_blocks(pairs, panels, out, blocks)
    return out


class Bf16Linear(Function):
    """x @ weight.T + bias (as minigrad's Linear) with the three products in bf16 (float32 sums).
    x (..., in) float32, weight (out, in), bias (out,); out and in multiples of PANEL. First
    order only: its backward is plain arrays."""

    def forward(self, x, weight, bias):
        x_rows = x.reshape(-1, x.shape[-1])
        out = matmul_bf16(x_rows, weight, transpose_b=True)
        out += bias
        return out.reshape(*x.shape[:-1], len(weight))

    def backward(self, grad):
        x, weight, _ = (t.data for t in self.inputs)
        rows = np.ascontiguousarray(grad).reshape(-1, grad.shape[-1])
        x_rows = x.reshape(-1, x.shape[-1])
        grad_x = matmul_bf16(rows, weight).reshape(x.shape) if self.needs_input_grad[0] else None
        grad_weight = matmul_bf16(rows, x_rows, transpose_a=True) if self.needs_input_grad[1] else None
        grad_bias = rows.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias
