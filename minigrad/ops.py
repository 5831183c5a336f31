"""Every op of the engine: a `Function` with forward and backward side by side, on arrays.

Elementwise ops come from the rule table (`minigrad.rules`) through one class,
`Elementwise`, with one small named subclass per rule (`Tanh`, `Mul`, ...); the rest are
written out below. Each backward returns the gradient of each input, in the output's
(broadcast) shape where that is easier: the walk sums broadcast axes away in one place
(`autograd.unbroadcast`).

Three derivatives per op, one source each:
- `backward(grad)` on arrays: the fast first-order path (Numba kernels, BLAS);
- `graph_backward(grad)` on Tensors, for create_graph=True. Where `backward` uses only
  methods that arrays and Tensors share (reshape, transpose, sum, indexing, + - * /),
  it *is* `graph_backward` (`graph_backward = backward`). Elementwise ops run their rule
  text on Tensors. The others (matmul, softmax, ...) write the formula with Tensor methods;
  tests/test_higher_order.py checks that both agree on every op.
- `jvp(out, *tangents)` on arrays, for forward mode: elementwise ops from the rule table,
  linear ops by applying themselves to the tangents, the rest written out.

This module does not import `tensor`: a graph_backward builds Tensors only through the
methods of the Tensors it is given and through `Function.apply`. The public functions
(`mg.add`, `mg.tanh`, ...) are in `minigrad.tensor`.
"""

import builtins
import functools

import numpy as np

from . import blas, kernels, rules
from .autograd import Function, unbroadcast


def _contiguous(data, dtype=None) -> np.ndarray:
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    array = np.asarray(data, dtype=dtype)
    return array if array.flags.c_contiguous else array.copy(order="C")


# ---------------------------------------------------------------------------------------
# Elementwise ops, generated from the rule table
# ---------------------------------------------------------------------------------------
def _flat(array: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """`array` broadcast to `shape` as a contiguous 1-D array of `dtype` (copies only if needed)."""
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x)).astype(x.dtype)  # no overflow for large |x|


# The functions rule text may call, for arrays (forward mode) and for Tensors (graphs).
ARRAY_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.where(x > 0, x, 0.0 * x),
    "where": np.where, "plain": lambda value: value,
}


def _where_tensors(mask, x, y):
    like = x if hasattr(x, "dtype") else y
    mask = mask.astype(like.dtype)  # a 0/1 constant: a test has no derivative
    return x * mask + y * (1 - mask)


TENSOR_FUNCTIONS = {
    "exp": lambda x: x.exp(), "log": lambda x: x.log(), "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(), "relu": lambda x: x.relu(),
    "where": _where_tensors, "plain": lambda value: value if isinstance(value, np.ndarray) else value.data,
}


class Elementwise(Function):
    """An op of the rule table; subclasses only name the rule (`op`).

    Forward keeps, for backward, only the values the vjp rules of the inputs that need a
    gradient read (`rules.names_read`): Add keeps nothing, Tanh keeps `out`, Mul keeps
    the other factor.
    """

    op = None  # a key of rules.RULES

    def forward(self, *arrays):
        try:
            self.shape = np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = " and ".join(str(a.shape) for a in arrays)
            raise ValueError(f"{self.name}: shapes {shapes} cannot be broadcast together") from None
        self.dtype = np.result_type(*arrays)
        flat_inputs = [_flat(a, self.shape, self.dtype) for a in arrays]
        out = np.empty(self.shape, self.dtype)
        getattr(kernels.elementwise, f"{self.op}_forward")(*flat_inputs, out.reshape(-1))
        available = dict(zip(rules.INPUT_NAMES, flat_inputs), out=out.reshape(-1))
        self.saved = {name: available[name] for name in _names_to_save(self.op, self.needs_input_grad)}
        return out

    def backward(self, grad):
        g = _flat(grad, self.shape, self.dtype)
        input_grads = []
        for name, needed, vjp in zip(rules.INPUT_NAMES, self.needs_input_grad, rules.RULES[self.op].vjps):
            if not needed or vjp is None:
                input_grads.append(None)
                continue
            input_grad = np.empty(self.shape, self.dtype)
            vjp_kernel = getattr(kernels.elementwise, f"{self.op}_vjp_{name}")
            vjp_kernel(g, *(self.saved[read] for read in rules.names_read(vjp)), input_grad.reshape(-1))
            input_grads.append(input_grad)
        return input_grads

    def graph_backward(self, grad):
        """The same rule text, run on Tensors: the gradient gets a graph of its own."""
        values = {name: (x if x.requires_grad else x.data) for name, x in zip(rules.INPUT_NAMES, self.inputs)}
        values["g"] = grad
        vjps = rules.RULES[self.op].vjps
        if any("out" in rules.names_read(v) for v in vjps if v is not None):
            values["out"] = self.output_tensor()
        return [rules.evaluate(vjp, values, TENSOR_FUNCTIONS) if needed and vjp is not None else None
                for needed, vjp in zip(self.needs_input_grad, vjps)]

    def jvp(self, out, *tangents):
        """An elementwise Jacobian is diagonal: the tangent of out is the sum over inputs of
        the vjp rule with g replaced by that input's tangent."""
        values = dict(zip(rules.INPUT_NAMES, (x.data for x in self.inputs)), out=out)
        total = np.zeros(out.shape, out.dtype)
        for tangent, vjp in zip(tangents, rules.RULES[self.op].vjps):
            if tangent is not None and vjp is not None:
                total = total + rules.evaluate(vjp, dict(values, g=tangent), ARRAY_FUNCTIONS)
        return total


@functools.lru_cache(maxsize=None)
def _names_to_save(op: str, needs_input_grad: tuple) -> tuple:
    """The values the vjp rules of the inputs that need a gradient read."""
    vjps = rules.RULES[op].vjps
    needed = [vjp for vjp, needs in zip(vjps, needs_input_grad) if needs and vjp is not None]
    return tuple(name for name in rules.SAVABLE_NAMES if any(name in rules.names_read(vjp) for vjp in needed))


# One class per rule, so that `grad_fn=Tanh` names a class a reader can find here.
class Add(Elementwise): op = "add"
class Sub(Elementwise): op = "sub"
class Mul(Elementwise): op = "mul"
class Div(Elementwise): op = "div"
class Pow(Elementwise): op = "pow"
class Neg(Elementwise): op = "neg"
class Exp(Elementwise): op = "exp"
class Log(Elementwise): op = "log"
class Tanh(Elementwise): op = "tanh"
class Sigmoid(Elementwise): op = "sigmoid"
class Relu(Elementwise): op = "relu"


ELEMENTWISE_OPS = {cls.op: cls for cls in (Add, Sub, Mul, Div, Pow, Neg, Exp, Log, Tanh, Sigmoid, Relu)}
assert set(ELEMENTWISE_OPS) == set(rules.RULES), "every rule of the table needs its class above"


# ---------------------------------------------------------------------------------------
# Matrix product (numpy's BLAS)
# ---------------------------------------------------------------------------------------
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
        self.a, self.b = a, b
        if a.ndim == b.ndim == 2:
            return blas.matmul(a, b)  # shared out over the cores
        return np.matmul(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        if a.ndim == b.ndim == 2:
            return (blas.matmul(grad, b, transpose_b=True) if self.needs_input_grad[0] else None,
                    blas.matmul(a, grad, transpose_a=True) if self.needs_input_grad[1] else None)
        # Work on at least 2-D views: a vector is a (1, n) row on the left, an (n, 1) column on the right.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:  # first: for vector @ vector the 0-d grad has no axis -2 yet
            g2 = np.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = np.matmul(g2, np.swapaxes(b2, -1, -2))
            grad_a = grad_a[..., 0, :] if a.ndim == 1 else grad_a
        if self.needs_input_grad[1]:
            grad_b = np.matmul(np.swapaxes(a2, -1, -2), g2)
            grad_b = grad_b[..., 0] if b.ndim == 1 else grad_b
        return grad_a, grad_b

    def graph_backward(self, grad):
        a, b = self.inputs  # the same formula as backward, in Tensor ops
        a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
        b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:
            g2 = g2.reshape(*g2.shape, 1)
        if a.ndim == 1:
            g2 = g2.reshape(*g2.shape[:-1], 1, g2.shape[-1])
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = g2 @ _swap_last_axes(b2)
            grad_a = grad_a.reshape(*grad_a.shape[:-2], grad_a.shape[-1]) if a.ndim == 1 else grad_a
        if self.needs_input_grad[1]:
            grad_b = _swap_last_axes(a2) @ g2
            grad_b = grad_b.reshape(*grad_b.shape[:-1]) if b.ndim == 1 else grad_b
        return grad_a, grad_b

    def jvp(self, out, tangent_a, tangent_b):
        a, b = self.a, self.b  # product rule
        total = np.zeros_like(out)
        if tangent_a is not None:
            total = total + np.matmul(tangent_a, b)
        if tangent_b is not None:
            total = total + np.matmul(a, tangent_b)
        return total


def _swap_last_axes(x):
    """x with its last two axes swapped (an array or a Tensor)."""
    return x.transpose(*range(x.ndim - 2), x.ndim - 1, x.ndim - 2)


class Linear(Function):
    """x @ weight.T + bias (PyTorch's F.linear) as one node: no transposed copy of the
    weight and no separate bias node. x (..., in), weight (out, in), bias (out,)."""

    def forward(self, x, weight, bias):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],) or x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input {x.shape}, weight {weight.shape} and bias {bias.shape} do not fit "
                             "(need input (..., in), weight (out, in), bias (out,))")
        self.x, self.weight = x, weight
        x_rows = x.reshape(-1, x.shape[-1])  # every leading axis is a batch axis
        out = np.empty((len(x_rows), len(weight)), np.result_type(x, weight, bias))
        out[...] = bias  # the product is added to it: no second pass for the bias
        blas.matmul(x_rows, weight, transpose_b=True, out=out, accumulate=True)
        return out.reshape(*x.shape[:-1], len(weight))

    def backward(self, grad):
        rows = grad.reshape(-1, grad.shape[-1])
        x_rows = self.x.reshape(-1, self.x.shape[-1])
        grad_x = blas.matmul(rows, self.weight).reshape(self.x.shape) if self.needs_input_grad[0] else None
        grad_weight = blas.matmul(rows, x_rows, transpose_a=True) if self.needs_input_grad[1] else None
        grad_bias = rows.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias

    def graph_backward(self, grad):
        x, weight, _ = self.inputs
        rows = grad.reshape(-1, grad.shape[-1])
        x_rows = x.reshape(-1, x.shape[-1])
        grad_x = (rows @ weight).reshape(x.shape) if self.needs_input_grad[0] else None
        grad_weight = rows.transpose(1, 0) @ x_rows if self.needs_input_grad[1] else None
        grad_bias = rows.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias

    def jvp(self, out, tangent_x, tangent_weight, tangent_bias):
        x, weight = self.x, self.weight
        total = np.zeros_like(out)
        if tangent_x is not None:
            total = total + tangent_x @ weight.T
        if tangent_weight is not None:
            total = total + x @ tangent_weight.T
        if tangent_bias is not None:
            total = total + tangent_bias
        return total


# ---------------------------------------------------------------------------------------
# Reductions: move the reduced axes last, view as (rows, columns), reduce each row
# ---------------------------------------------------------------------------------------
def _normalize_axes(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normalized.append(int(a) % builtins.max(ndim, 1))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(normalized))


class _Reduction(Function):
    def _as_rows(self, x, axis, keepdims):
        self.in_shape = x.shape
        self.axes = _normalize_axes(axis, x.ndim) if x.ndim else ()
        kept = [a for a in range(x.ndim) if a not in self.axes]
        self.permutation = kept + list(self.axes)
        self.kept_shape = tuple(x.shape[a] for a in kept)
        self.keepdims_shape = tuple(1 if a in self.axes else n for a, n in enumerate(x.shape))
        self.out_shape = self.keepdims_shape if keepdims else self.kept_shape
        rows = int(np.prod(self.kept_shape, dtype=np.int64))
        moved = np.ascontiguousarray(np.transpose(x, self.permutation))
        return moved.reshape(rows, -1)

    def _expand(self, grad):
        """A gradient of the reduced shape, broadcast back over the reduced axes."""
        return broadcast_to(grad.reshape(self.keepdims_shape), self.in_shape)


class Sum(_Reduction):
    linear = True

    def forward(self, x, axis=None, keepdims=False):
        rows = self._as_rows(x, axis, keepdims)
        out = np.empty(rows.shape[0], x.dtype)
        kernels.sum_rows(rows, out)
        self.count = rows.shape[1]
        return out.reshape(self.out_shape)

    def backward(self, grad):  # arrays or Tensors alike
        return (self._expand(grad),)

    graph_backward = backward


class Mean(Sum):
    def forward(self, x, axis=None, keepdims=False):
        total = super().forward(x, axis, keepdims)
        return (total / builtins.max(self.count, 1)).astype(x.dtype)

    def backward(self, grad):  # arrays or Tensors alike
        return (self._expand(grad / self.count),)

    graph_backward = backward


class Expand(Function):
    """x broadcast to `shape` (as a copy): the backward of a sum, and summed in its own backward."""

    linear = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return np.array(np.broadcast_to(x, shape))

    def backward(self, grad):  # arrays or Tensors alike
        return (unbroadcast(grad, self.in_shape),)

    graph_backward = backward


def broadcast_to(x, shape):
    """`x` broadcast to `shape`: a fresh array for an array, an `Expand` node for a Tensor."""
    if isinstance(x, np.ndarray):
        return np.array(np.broadcast_to(x, shape))
    return Expand.apply(x, shape=shape)


class Max(_Reduction):
    """The gradient goes to the first maximal element of each reduced slice (like torch.max(dim))."""

    def forward(self, x, axis=None, keepdims=False):
        rows = self._as_rows(x, axis, keepdims)
        if rows.shape[1] == 0:
            raise ValueError(f"max of an empty slice: shape {x.shape}, axis {axis}")
        out = np.empty(rows.shape[0], x.dtype)
        self.argmax = np.empty(rows.shape[0], np.int64)
        kernels.max_rows(rows, out, self.argmax)
        self.row_shape = rows.shape
        return out.reshape(self.out_shape)

    def backward(self, grad):
        rows = np.zeros(self.row_shape, grad.dtype)
        rows[np.arange(self.row_shape[0]), self.argmax] = grad.reshape(-1)
        moved = rows.reshape([self.in_shape[a] for a in self.permutation])
        return (np.transpose(moved, np.argsort(self.permutation)),)

    def _winners(self, dtype):
        """A 0/1 array of the input's shape: 1 at the element each slice's max came from."""
        rows = np.zeros(self.row_shape, dtype)
        rows[np.arange(self.row_shape[0]), self.argmax] = 1
        moved = rows.reshape([self.in_shape[a] for a in self.permutation])
        return np.ascontiguousarray(np.transpose(moved, np.argsort(self.permutation)))

    def graph_backward(self, grad):
        # The winners are constants (which element won does not change under a small step).
        return (self._expand(grad) * self._winners(grad.dtype),)

    def jvp(self, out, tangent):
        rows = np.ascontiguousarray(np.transpose(tangent, self.permutation)).reshape(self.row_shape)
        return rows[np.arange(self.row_shape[0]), self.argmax].reshape(self.out_shape)


# ---------------------------------------------------------------------------------------
# Shape ops: no arithmetic, the gradient is moved back where the value came from
# ---------------------------------------------------------------------------------------
class Reshape(Function):
    linear = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}") from None

    def backward(self, grad):  # arrays or Tensors alike
        return (grad.reshape(self.in_shape),)

    graph_backward = backward


class Transpose(Function):
    linear = True

    def forward(self, x, axes=None):
        if axes is not None and not builtins.all(-x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"transpose: axes {axes} are out of range for the {x.ndim} axes of {x.shape}")
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        if sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of {x.shape}")
        return np.ascontiguousarray(np.transpose(x, self.axes))

    def backward(self, grad):  # arrays or Tensors alike
        return (grad.transpose(*np.argsort(self.axes)),)

    graph_backward = backward


class GetItem(Function):
    """x[index] for slices, integers and integer arrays; repeated indices add up in backward."""

    linear = True

    def forward(self, x, index):
        self.in_shape, self.dtype, self.index = x.shape, x.dtype, index
        try:
            return _contiguous(x[index])
        except IndexError as error:
            raise IndexError(f"index {index!r} into a tensor of shape {x.shape}: {error}") from None

    def backward(self, grad):
        input_grad = np.zeros(self.in_shape, self.dtype)
        np.add.at(input_grad, self.index, grad)  # unlike `+=`, counts every repeat of an index
        return (input_grad,)

    def graph_backward(self, grad):
        return (IndexAdd.apply(grad, shape=self.in_shape, index=self.index),)


class IndexAdd(Function):
    """zeros(shape) with x added at [index] (repeats add up): GetItem's backward as an op."""

    linear = True

    def forward(self, x, shape, index):
        self.index = index
        out = np.zeros(shape, x.dtype)
        np.add.at(out, index, x)
        return out

    def backward(self, grad):  # arrays or Tensors alike
        return (grad[self.index],)

    graph_backward = backward


class Concat(Function):
    linear = True

    def forward(self, *arrays, axis=0):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"concat along axis {axis}: shapes {shapes} do not fit ({error})") from None
        self.axis = axis % out.ndim
        self.ends = [int(end) for end in np.cumsum([a.shape[self.axis] for a in arrays])]
        return out

    def backward(self, grad):  # arrays or Tensors alike
        before = (slice(None),) * self.axis
        starts = [0, *self.ends[:-1]]
        return [grad[before + (slice(start, end),)] for start, end in zip(starts, self.ends)]

    graph_backward = backward


class Stack(Function):
    linear = True

    def forward(self, *arrays, axis=0):
        try:
            out = np.stack(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"stack: shapes {shapes} differ ({error})") from None
        self.axis = axis % out.ndim
        return out

    def backward(self, grad):  # arrays or Tensors alike
        before = (slice(None),) * self.axis
        return [grad[before + (k,)] for k in range(grad.shape[self.axis])]

    graph_backward = backward


# ---------------------------------------------------------------------------------------
# Softmax family and the fused, log-sum-exp-stable cross-entropy
# ---------------------------------------------------------------------------------------
class _RowwiseOnAxis(Function):
    """Runs a row kernel on `axis` by moving that axis last."""

    forward_kernel = backward_kernel = None

    def forward(self, x, axis=-1):
        if x.ndim == 0:
            raise ValueError(f"{self.name} needs at least one dimension")
        self.axis = _normalize_axes(axis, x.ndim)[0]  # an out-of-range axis must raise, not wrap around
        moved = np.ascontiguousarray(np.moveaxis(x, self.axis, -1))
        self.moved_shape = moved.shape
        rows = moved.reshape(-1, moved.shape[-1])
        self.out_rows = np.empty_like(rows)
        type(self).forward_kernel(rows, self.out_rows)
        return np.moveaxis(self.out_rows.reshape(self.moved_shape), -1, self.axis)

    def backward(self, grad):
        g = np.ascontiguousarray(np.moveaxis(grad, self.axis, -1), dtype=self.out_rows.dtype)
        rows = np.empty_like(self.out_rows)
        type(self).backward_kernel(g.reshape(rows.shape), self.out_rows, rows)
        return (np.moveaxis(rows.reshape(self.moved_shape), -1, self.axis),)


class Softmax(_RowwiseOnAxis):
    forward_kernel, backward_kernel = kernels.softmax_rows, kernels.softmax_rows_vjp

    def graph_backward(self, grad):
        # y * (g - sum(g * y)), as the kernel computes it
        y = self.output_tensor()
        return (y * (grad - (grad * y).sum(axis=self.axis, keepdims=True)),)

    def jvp(self, out, tangent):
        return out * (tangent - (tangent * out).sum(axis=self.axis, keepdims=True))


class LogSoftmax(_RowwiseOnAxis):
    forward_kernel, backward_kernel = kernels.log_softmax_rows, kernels.log_softmax_rows_vjp

    def graph_backward(self, grad):
        # g - softmax * sum(g), as the kernel computes it (softmax = exp(out))
        return (grad - self.output_tensor().exp() * grad.sum(axis=self.axis, keepdims=True),)

    def jvp(self, out, tangent):
        return tangent - (np.exp(out) * tangent).sum(axis=self.axis, keepdims=True)


def check_indices(ids: np.ndarray, size: int, what: str, role: str) -> np.ndarray:
    """Integer ids in [0, size), as int64; otherwise a message naming the first bad one."""
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: {role} must be integers, got dtype {ids.dtype}")
    if ids.size:
        bad = np.flatnonzero((ids < 0) | (ids >= size))
        if bad.size:
            position = np.unravel_index(bad[0], ids.shape)
            raise IndexError(
                f"{what}: {role} {int(ids.flat[bad[0]])} at position {tuple(map(int, position))} "
                f"is out of range [0, {size})"
            )
    return _contiguous(ids, np.int64)


class CrossEntropy(Function):
    """mean_n( logsumexp(logits[n]) - logits[n, target[n]] ): softmax and NLL in one kernel."""

    def forward(self, logits, targets):
        if logits.ndim != 2:
            raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
        targets = np.asarray(targets)
        if targets.shape != (logits.shape[0],):
            raise ValueError(f"cross_entropy: targets must have shape ({logits.shape[0]},), got {targets.shape}")
        if logits.shape[0] == 0:
            raise ValueError("cross_entropy: no rows (N = 0), the mean is undefined")
        self.targets = check_indices(targets, logits.shape[1], "cross_entropy", "target")
        logits = np.ascontiguousarray(logits)
        self.probs = np.empty_like(logits)
        loss = kernels.cross_entropy_rows(logits, self.targets, self.probs)
        return np.array(loss, dtype=logits.dtype)

    def backward(self, grad):
        logits_grad = np.empty_like(self.probs)
        kernels.cross_entropy_rows_vjp(float(grad), self.probs, self.targets, logits_grad)
        return (logits_grad,)

    def _one_hot(self):
        one_hot = np.zeros_like(self.probs)
        one_hot[np.arange(len(self.targets)), self.targets] = 1
        return one_hot

    def graph_backward(self, grad):
        # (softmax - onehot(target)) * g / rows, as the kernel computes it
        probs = Softmax.apply(self.inputs[0], axis=-1)
        return ((probs - self._one_hot()) * (grad / len(self.targets)),)

    def jvp(self, out, tangent):
        return np.mean(np.sum((self.probs - self._one_hot()) * tangent, axis=1))


class Embedding(Function):
    """Rows of a table picked by integer ids; backward scatter-adds rows back (repeats add)."""

    linear = True

    def forward(self, table, ids):
        if table.ndim != 2:
            raise ValueError(f"embedding: the table must be 2-D, got shape {table.shape}")
        self.ids = check_indices(np.asarray(ids), table.shape[0], "embedding", "id")
        self.table_shape, self.dtype = table.shape, table.dtype
        return np.take(table, self.ids, axis=0)

    def backward(self, grad):
        table_grad = np.zeros(self.table_shape, self.dtype)
        rows = np.ascontiguousarray(grad, dtype=self.dtype).reshape(-1, self.table_shape[1])
        kernels.scatter_add_rows(rows, self.ids.reshape(-1), table_grad)
        return (table_grad,)

    def graph_backward(self, grad):
        return (ScatterRows.apply(grad, ids=self.ids, table_rows=self.table_shape[0]),)


class ScatterRows(Function):
    """A (table_rows, C) array of zeros with row k of x added at row ids[k] (repeats add):
    Embedding's backward as an op."""

    linear = True

    def forward(self, x, ids, table_rows):
        self.ids = ids
        out = np.zeros((table_rows, x.shape[-1]), x.dtype)
        kernels.scatter_add_rows(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), ids.reshape(-1), out)
        return out

    def backward(self, grad):  # arrays or Tensors alike
        return (grad[self.ids],)

    graph_backward = backward
