"""Every op of the engine: a `Function` with forward and backward side by side.

Elementwise ops come from the rule table (`minigrad.rules`) through one class,
`Elementwise`; the rest are written out below. Each backward returns the gradient of
each input, in the output's (broadcast) shape where that is easier: `Tensor.backward`
sums broadcast axes away in one place (`autograd.unbroadcast`).

The functions at the end (`add`, `tanh`, `sum`, `cross_entropy`, ...) are the public API:
they accept tensors, arrays or Python numbers and return Tensors.
"""

import numpy as np

import builtins

from . import blas, kernels, rules
from .autograd import Function
from .tensor import Tensor, _contiguous


# ---------------------------------------------------------------------------------------
# Elementwise ops, generated from the rule table
# ---------------------------------------------------------------------------------------
def _flat(array: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """`array` broadcast to `shape` as a contiguous 1-D array of `dtype` (copies only if needed)."""
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


class Elementwise(Function):
    """An op of the rule table; subclasses only name the rule (`op`)."""

    op = None  # a key of rules.RULES

    def forward(self, *arrays):
        try:
            self.shape = np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            shapes = " and ".join(str(a.shape) for a in arrays)
            raise ValueError(f"{self.name}: shapes {shapes} cannot be broadcast together") from None
        self.dtype = np.result_type(*arrays)
        self.flat_inputs = [_flat(a, self.shape, self.dtype) for a in arrays]
        self.out = np.empty(self.shape, self.dtype)
        getattr(kernels.elementwise, f"{self.op}_forward")(*self.flat_inputs, self.out.reshape(-1))
        return self.out

    def backward(self, grad):
        g = _flat(grad, self.shape, self.dtype)
        input_grads = []
        for name, needed, vjp in zip(rules.INPUT_NAMES, self.needs_input_grad, rules.RULES[self.op].vjps):
            if not needed or vjp is None:
                input_grads.append(None)
                continue
            input_grad = np.empty(self.shape, self.dtype)
            vjp_kernel = getattr(kernels.elementwise, f"{self.op}_vjp_{name}")
            vjp_kernel(g, *self.flat_inputs, self.out.reshape(-1), input_grad.reshape(-1))
            input_grads.append(input_grad)
        return input_grads


ELEMENTWISE_OPS = {
    op: type(op.capitalize(), (Elementwise,), {"op": op, "__doc__": f"out = {rule.forward}"})
    for op, rule in rules.RULES.items()
}


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
        return np.broadcast_to(grad.reshape(self.keepdims_shape), self.in_shape)


class Sum(_Reduction):
    def forward(self, x, axis=None, keepdims=False):
        rows = self._as_rows(x, axis, keepdims)
        out = np.empty(rows.shape[0], x.dtype)
        kernels.sum_rows(rows, out)
        self.count = rows.shape[1]
        return out.reshape(self.out_shape)

    def backward(self, grad):
        return (np.array(self._expand(grad)),)


class Mean(Sum):
    def forward(self, x, axis=None, keepdims=False):
        total = super().forward(x, axis, keepdims)
        return (total / builtins.max(self.count, 1)).astype(x.dtype)

    def backward(self, grad):
        return (np.array(self._expand(grad / self.count)),)


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


# ---------------------------------------------------------------------------------------
# Shape ops: no arithmetic, the gradient is moved back where the value came from
# ---------------------------------------------------------------------------------------
class Reshape(Function):
    def forward(self, x, shape):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}") from None

    def backward(self, grad):
        return (grad.reshape(self.in_shape),)


class Transpose(Function):
    def forward(self, x, axes=None):
        if axes is not None and not builtins.all(-x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"transpose: axes {axes} are out of range for the {x.ndim} axes of {x.shape}")
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        if sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of {x.shape}")
        return np.ascontiguousarray(np.transpose(x, self.axes))

    def backward(self, grad):
        return (np.transpose(grad, np.argsort(self.axes)),)


class GetItem(Function):
    """x[index] for slices, integers and integer arrays; repeated indices add up in backward."""

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


class Concat(Function):
    def forward(self, *arrays, axis=0):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"concat along axis {axis}: shapes {shapes} do not fit ({error})") from None
        self.axis = axis % out.ndim
        self.splits = np.cumsum([a.shape[self.axis] for a in arrays])[:-1]
        return out

    def backward(self, grad):
        return np.split(grad, self.splits, axis=self.axis)


class Stack(Function):
    def forward(self, *arrays, axis=0):
        try:
            out = np.stack(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"stack: shapes {shapes} differ ({error})") from None
        self.axis = axis % out.ndim
        return out

    def backward(self, grad):
        return [np.take(grad, k, axis=self.axis) for k in range(grad.shape[self.axis])]


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


class LogSoftmax(_RowwiseOnAxis):
    forward_kernel, backward_kernel = kernels.log_softmax_rows, kernels.log_softmax_rows_vjp


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


class Embedding(Function):
    """Rows of a table picked by integer ids; backward scatter-adds rows back (repeats add)."""

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


# ---------------------------------------------------------------------------------------
# The public functions
# ---------------------------------------------------------------------------------------
def as_tensor(value, like: Tensor = None) -> Tensor:
    """A Tensor for `value`; Python numbers take the dtype of `like` (as in PyTorch)."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _elementwise(op, *inputs) -> Tensor:
    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    return ELEMENTWISE_OPS[op].apply(*(as_tensor(x, like) for x in inputs))


def add(a, b): return _elementwise("add", a, b)
def sub(a, b): return _elementwise("sub", a, b)
def mul(a, b): return _elementwise("mul", a, b)
def div(a, b): return _elementwise("div", a, b)
def neg(x): return _elementwise("neg", x)
def exp(x): return _elementwise("exp", x)
def log(x): return _elementwise("log", x)
def tanh(x): return _elementwise("tanh", x)
def sigmoid(x): return _elementwise("sigmoid", x)
def relu(x): return _elementwise("relu", x)


def pow(x, exponent):
    """x ** exponent for a constant (non-tensor) exponent."""
    if isinstance(exponent, Tensor):
        raise TypeError("pow: the exponent must be a number, not a Tensor")
    return _elementwise("pow", x, exponent)


def matmul(a, b):
    return MatMul.apply(as_tensor(a), as_tensor(b))


def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight (out, in) as in PyTorch's Linear."""
    x, weight = as_tensor(x), as_tensor(weight)
    if bias is None:
        return matmul(x, transpose(weight))
    return Linear.apply(x, weight, as_tensor(bias))


def sum(x, axis=None, keepdims=False):
    return Sum.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    return Max.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(as_tensor(x), shape=shape)


def transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose.apply(as_tensor(x), axes=axes or None)


def _plain_index(index):
    """Tensors inside an index become their arrays (indices carry no gradient)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_plain_index(i) for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def getitem(x, index):
    return GetItem.apply(as_tensor(x), index=_plain_index(index))


def concat(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return Stack.apply(*tensors, axis=axis)


def softmax(x, axis=-1):
    return Softmax.apply(as_tensor(x), axis=axis)


def log_softmax(x, axis=-1):
    return LogSoftmax.apply(as_tensor(x), axis=axis)


def cross_entropy(logits, targets):
    """Mean cross-entropy of (N, C) logits against integer class targets (N,), in nats."""
    targets = targets.data if isinstance(targets, Tensor) else targets
    return CrossEntropy.apply(as_tensor(logits), targets=targets)


def embedding(table, ids):
    """table[ids] for an integer array of any shape: result shape ids.shape + (table columns,)."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    return Embedding.apply(as_tensor(table), ids=ids)

