"""The ops that are not elementwise or products: reductions, shape ops, softmax, cross-entropy
and embedding lookups, each a `Function` with forward and backward side by side.

Each backward returns the gradient of each input, in the output's (broadcast) shape where
that is easier: the walk sums broadcast axes away in one place (`autograd.unbroadcast`).
Where backward uses only what arrays and Tensors share (reshape, transpose, sum,
indexing, + - * /), `graph_backward = backward`; the others (max, softmax, ...) write a
Tensor formula next to their kernel call, and tests/test_higher_order.py checks that both
agree on every op. `jvp(out, *tangents)` is the forward-mode rule, on arrays; a linear op
(`jvp_is_forward`) has none to write.

This module does not import `tensor`: a graph_backward builds Tensors only through the
methods of the Tensors it is given and through `Function.apply`. The public functions
(`mg.add`, `mg.tanh`, ...) are in `minigrad.tensor`.
"""

import builtins
import math

import numpy as np

from . import kernels
from .autograd import Function, unbroadcast
from . import elementwise


def _contiguous(data, dtype=None) -> np.ndarray:
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    array = np.asarray(data, dtype=dtype)
    return array if array.flags.c_contiguous else array.copy(order="C")


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
    def _shapes(self, x, axis, keepdims):
        self.in_shape = x.shape
        if axis is None:  # the common case, a loss: every axis
            self.axes, self.keepdims_shape, self.kept_shape = tuple(range(x.ndim)), (1,) * x.ndim, ()
        else:
            self.axes = _normalize_axes(axis, x.ndim) if x.ndim else ()
            self.keepdims_shape = tuple(1 if a in self.axes else n for a, n in enumerate(x.shape))
            self.kept_shape = tuple(n for a, n in enumerate(x.shape) if a not in self.axes)
        self.out_shape = self.keepdims_shape if keepdims else self.kept_shape

    def _as_rows(self, x, axis, keepdims):
        self._shapes(x, axis, keepdims)
        self.permutation = [a for a in range(x.ndim) if a not in self.axes] + list(self.axes)
        rows = int(np.prod(self.kept_shape, dtype=np.int64))
        moved = np.ascontiguousarray(np.transpose(x, self.permutation))
        return moved.reshape(rows, -1)

    def _expand(self, grad):
        """A gradient of the reduced shape, broadcast back over the reduced axes."""
        return broadcast_to(grad.reshape(self.keepdims_shape), self.in_shape)


class Sum(_Reduction):
    jvp_is_forward = True

    def forward(self, x, axis=None, keepdims=False):
        if x.size < elementwise.NUMPY_BELOW:  # below a kernel's set-up cost
            self._shapes(x, axis, keepdims)
            if axis is None:  # a loss: Python's sum of the values, in order, in float64 as the kernel
                # sums (so the same bits); half the instructions of numpy's casting reduce at 4x4.
                self.count = x.size
                total = np.array(builtins.sum(x.ravel().tolist()), x.dtype)
                return total.reshape(self.out_shape) if keepdims else total
            self.count = math.prod(x.shape[a] for a in self.axes)  # numpy's sum, with a float64 accumulator
            return np.asarray(np.add.reduce(x, self.axes, np.float64, keepdims=keepdims), x.dtype)
        rows = self._as_rows(x, axis, keepdims)
        out = np.empty(rows.shape[0], x.dtype)
        kernels.sum_rows(rows, out)
        self.count = rows.shape[1]
        return out.reshape(self.out_shape)

    def backward(self, grad):
        return (self._expand(grad),)

    graph_backward = backward


class Mean(Sum):
    def forward(self, x, axis=None, keepdims=False):
        total = super().forward(x, axis, keepdims)
        return (total / builtins.max(self.count, 1)).astype(x.dtype)

    def backward(self, grad):
        return (self._expand(grad / self.count),)

    graph_backward = backward


class Expand(Function):
    """x broadcast to `shape` (as a copy): the backward of a sum, and summed in its own backward."""

    jvp_is_forward = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        return np.array(np.broadcast_to(x, shape))

    def backward(self, grad):
        return (unbroadcast(grad, self.in_shape),)

    graph_backward = backward


def broadcast_to(x, shape):
    """`x` broadcast to `shape`: a fresh array for an array, an `Expand` node for a Tensor."""
    if isinstance(x, np.ndarray):
        out = np.empty(shape, x.dtype)
        out[...] = x
        return out
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
    jvp_is_forward = True

    def forward(self, x, shape):
        self.in_shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {shape}") from None

    def backward(self, grad):
        return (grad.reshape(self.in_shape),)

    graph_backward = backward


class Transpose(Function):
    jvp_is_forward = True

    def forward(self, x, axes=None):
        if axes is not None and not builtins.all(-x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"transpose: axes {axes} are out of range for the {x.ndim} axes of {x.shape}")
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        if sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of {x.shape}")
        return np.ascontiguousarray(np.transpose(x, self.axes))

    def backward(self, grad):
        return (grad.transpose(*np.argsort(self.axes)),)

    graph_backward = backward


class GetItem(Function):
    """x[index] for slices, integers and integer arrays; repeated indices add up in backward."""

    jvp_is_forward = True

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

    jvp_is_forward = True

    def forward(self, x, shape, index):
        self.index = index
        out = np.zeros(shape, x.dtype)
        np.add.at(out, index, x)
        return out

    def backward(self, grad):
        return (grad[self.index],)

    graph_backward = backward


class Concat(Function):
    jvp_is_forward = True

    def forward(self, *arrays, axis=0):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"concat along axis {axis}: shapes {shapes} do not fit ({error})") from None
        self.axis = axis % out.ndim
        self.ends = [int(end) for end in np.cumsum([a.shape[self.axis] for a in arrays])]
        return out

    def backward(self, grad):
        before = (slice(None),) * self.axis
        starts = [0, *self.ends[:-1]]
        return [grad[before + (slice(start, end),)] for start, end in zip(starts, self.ends)]

    graph_backward = backward


class Stack(Function):
    jvp_is_forward = True

    def forward(self, *arrays, axis=0):
        try:
            out = np.stack(arrays, axis=axis)
        except ValueError as error:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(f"stack: shapes {shapes} differ ({error})") from None
        self.axis = axis % out.ndim
        return out

    def backward(self, grad):
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

    jvp_is_forward = True

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

    jvp_is_forward = True

    def forward(self, x, ids, table_rows):
        self.ids = ids
        out = np.zeros((table_rows, x.shape[-1]), x.dtype)
        kernels.scatter_add_rows(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), ids.reshape(-1), out)
        return out

    def backward(self, grad):
        return (grad[self.ids],)

    graph_backward = backward
