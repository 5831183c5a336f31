"""The array kernels: Numba loops that write into preallocated outputs.

No autograd here, only arithmetic on arrays. Two kinds:
- elementwise kernels, generated from the rule table (`minigrad.rules`) into a
  cached source file: `elementwise.tanh_forward`, `elementwise.mul_vjp_b`, ...
  (print the file with `print(minigrad.kernels.elementwise_source())`);
- row kernels written by hand below: reductions, softmax, cross-entropy and the
  scatter-add of an embedding's backward. They work on 2-D (rows, columns) arrays;
  the ops move the reduced axis last and reshape before calling them;
- the two kernels of minigrad.optim that touch every weight at every step: Adam's
  update and the sum behind the gradient norm, each one pass over flat arrays.

Accumulators start as Python floats (float64) so float32 sums stay accurate; the
result is stored in the output array's own dtype. The row kernels' exp is
minigrad.fast_exp's: libm's for float64, one that runs in vector lanes for float32.
"""

import math

import numpy as np

from . import codegen
from .fast_exp import exp  # (math.exp's for float64, a vectorized one for float32)
from .jit import kernel, summing_kernel

elementwise_source = codegen.elementwise_source


def __getattr__(name):
    # `kernels.elementwise`, the generated module, is written and imported when an op first
    # asks for it, not when minigrad is imported: importing writes no file.
    if name == "elementwise":
        module = globals()["elementwise"] = codegen.load_module("elementwise", elementwise_source())
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


@summing_kernel  # (its sum of exps runs in vector lanes)
def _row_logsumexp(x, r):
    peak = x[r, 0]
    for c in range(1, x.shape[1]):
        if x[r, c] > peak:
            peak = x[r, c]
    if math.isinf(peak):
        return peak
    total = 0.0
    for c in range(x.shape[1]):
        total += exp(x[r, c] - peak)
    return peak + math.log(total)


@summing_kernel  # (its sum of exps runs in vector lanes)
def _row_softmax(x, r, out):
    """out[r] = softmax(x[r]) with one exp per element; returns logsumexp(x[r])."""
    peak = x[r, 0]
    for c in range(1, x.shape[1]):
        if x[r, c] > peak:
            peak = x[r, c]
    for c in range(x.shape[1]):
        out[r, c] = exp(x[r, c] - peak)
    if math.isinf(peak):  # as _row_logsumexp: the sum is the peak, inf - inf stays NaN
        return peak
    norm = 0.0
    for c in range(x.shape[1]):
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
            grad[r, c] = g[r, c] - exp(out[r, c]) * total


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
        # Row views first: indexing table[ids[k], c] inside the inner loop kept LLVM from
        # vectorizing it (8x slower at 2048 x 512).
        target, source = table[ids[k]], rows[k]
        for c in range(source.shape[0]):
            target[c] += source[c]


@kernel
def adam_update(p, g, m, v, v_max, coefficients):
    """One Adam/AdamW step over flat arrays, in place on p, m, v (and v_max with amsgrad).

    The same operations, in the same order and precision, as torch.optim.Adam's algorithm
    written with numpy arrays (see optim.Adam), in one pass instead of about ten: the
    coefficients come in an array of p's dtype, so float32 stays float32. An empty v_max
    means no amsgrad.
    """
    decay, weight_decay, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps = coefficients
    amsgrad = v_max.size > 0
    for i in range(p.size):
        weight = p[i] * decay  # AdamW shrinks the weight (decay is 1 otherwise)
        gradient = g[i] + weight_decay * weight  # Adam's L2 penalty (weight_decay is 0 otherwise)
        m[i] += one_minus_beta1 * (gradient - m[i])
        v[i] = v[i] * beta2 + one_minus_beta2 * gradient * gradient
        second_moment = v[i]
        if amsgrad:
            if second_moment > v_max[i] or second_moment != second_moment:  # a NaN stays, as in np.maximum
                v_max[i] = second_moment
            second_moment = v_max[i]
        p[i] = weight - step_size * (m[i] / (np.sqrt(second_moment) / bias_correction2_sqrt + eps))


@summing_kernel
def sum_abs_power(x, power):
    """sum(|x| ** power) over a flat array, accumulated in float64 (float32 squares of
    large gradients would overflow)."""
    total = 0.0
    if power == 2.0:
        for i in range(x.size):
            value = np.float64(x[i])
            total += value * value
    else:
        for i in range(x.size):
            total += abs(np.float64(x[i])) ** power
    return total
