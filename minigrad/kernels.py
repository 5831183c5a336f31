"""The array kernels: Numba loops that write into preallocated outputs.

No autograd here, only arithmetic on arrays. Two kinds:
- elementwise kernels, generated from the rule table (`minigrad.rules`) into a
  cached source file: `elementwise.tanh_forward`, `elementwise.mul_vjp_b`, ...
  (print the file with `print(minigrad.kernels.elementwise_source())`);
- row kernels written by hand below: reductions, softmax, cross-entropy and the
  scatter-add of an embedding's backward. They work on 2-D (rows, columns) arrays;
  the ops move the reduced axis last and reshape before calling them.

Accumulators start as Python floats (float64) so float32 sums stay accurate; the
result is stored in the output array's own dtype.
"""

import math

from . import codegen
from ._jit import kernel

elementwise_source = codegen.elementwise_source
elementwise = codegen.load_module("elementwise", elementwise_source())


@kernel
def sum_rows(x, out):
    for r in range(x.shape[0]):
        total = 0.0
        for c in range(x.shape[1]):
            total += x[r, c]
        out[r] = total


@kernel
def max_rows(x, out, argmax):
    for r in range(x.shape[0]):
        best = 0
        for c in range(1, x.shape[1]):
            # `not <=` so that a NaN wins, like numpy's max: it must not be hidden.
            if not x[r, c] <= x[r, best]:
                best = c
        argmax[r] = best
        out[r] = x[r, best]


@kernel
def _row_logsumexp(x, r):
    peak = x[r, 0]
    for c in range(1, x.shape[1]):
        if x[r, c] > peak:
            peak = x[r, c]
    if math.isinf(peak):
        return peak
    total = 0.0
    for c in range(x.shape[1]):
        total += math.exp(x[r, c] - peak)
    return peak + math.log(total)


@kernel
def _row_softmax(x, r, out):
    """out[r] = softmax(x[r]) with one exp per element; returns logsumexp(x[r])."""
    peak = x[r, 0]
    for c in range(1, x.shape[1]):
        if x[r, c] > peak:
            peak = x[r, c]
    if math.isinf(peak):  # as _row_logsumexp: the sum is the peak, inf - inf stays NaN
        for c in range(x.shape[1]):
            out[r, c] = math.exp(x[r, c] - peak)
        return peak
    norm = 0.0
    for c in range(x.shape[1]):
        out[r, c] = math.exp(x[r, c] - peak)
        norm += out[r, c]
    for c in range(x.shape[1]):
        out[r, c] /= norm
    return peak + math.log(norm)


@kernel
def log_softmax_rows(x, out):
    for r in range(x.shape[0]):
        lse = _row_logsumexp(x, r)
        for c in range(x.shape[1]):
            out[r, c] = x[r, c] - lse


@kernel
def log_softmax_rows_vjp(g, out, grad):
    # d/dx of log_softmax: g - softmax * sum(g)
    for r in range(g.shape[0]):
        total = 0.0
        for c in range(g.shape[1]):
            total += g[r, c]
        for c in range(g.shape[1]):
            grad[r, c] = g[r, c] - math.exp(out[r, c]) * total


@kernel
def softmax_rows(x, out):
    for r in range(x.shape[0]):
        _row_softmax(x, r, out)


@kernel
def softmax_rows_vjp(g, out, grad):
    # d/dx of softmax: y * (g - sum(g * y))
    for r in range(g.shape[0]):
        total = 0.0
        for c in range(g.shape[1]):
            total += g[r, c] * out[r, c]
        for c in range(g.shape[1]):
            grad[r, c] = out[r, c] * (g[r, c] - total)


@kernel
def cross_entropy_rows(logits, targets, probs):
    """Mean over rows of -log softmax(logits)[target]; keeps softmax in `probs` for backward."""
    total = 0.0
    for r in range(logits.shape[0]):
        total += _row_softmax(logits, r, probs) - logits[r, targets[r]]
    return total / logits.shape[0]


@kernel
def cross_entropy_rows_vjp(g, probs, targets, grad):
    # d(mean loss)/d logits = (softmax - onehot(target)) / rows
    scale = g / probs.shape[0]
    for r in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            grad[r, c] = probs[r, c] * scale
        grad[r, targets[r]] -= scale


@kernel
def scatter_add_rows(rows, ids, table):
    """table[ids[k]] += rows[k]: a repeated id receives every one of its rows."""
    for k in range(ids.shape[0]):
        for c in range(rows.shape[1]):
            table[ids[k], c] += rows[k, c]
