"""The Tensor, its operators, and the public functions (`mg.add`, `mg.tanh`, ...).

A Tensor holds a numpy array (`data`), and if it was computed by an op while gradients
were being recorded, the op node that made it (`grad_fn`). Following `grad_fn.inputs`
from a result leads back through the whole computation: that chain of nodes is the graph.
`backward()` hands that graph to the walk in `minigrad.autograd`, where reverse mode is.

The ops themselves (their forward and backward) live in `minigrad.elementwise`,
`minigrad.matmul` and `minigrad.ops`; the functions at the end of this file turn tensors,
arrays and numbers into the op's inputs and apply it.
"""

import html

import numpy as np

from . import autograd, elementwise, ops
from .matmul import Linear, MatMul
from .ops import _contiguous

DEFAULT_DTYPE = np.float32
_new_object = object.__new__


def _as_array(data, dtype=None) -> np.ndarray:
    """The array a Tensor stores: float32 by default, float64 kept, integers kept for indices."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None:
        kept = isinstance(data, (np.ndarray, np.generic)) and (data.dtype == np.float64 or data.dtype.kind in "iub")
        dtype = data.dtype if kept else DEFAULT_DTYPE
    return _contiguous(data, dtype)


class Tensor:
    """An array that remembers how it was computed, so gradients can flow back to it."""

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "name", "_hooks", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # so `numpy_array * tensor` calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if dtype is None and type(data) is np.ndarray and data.dtype.char in "fd" and data.flags.c_contiguous:
            self.data = data  # already what _as_array would make (every op's output): no checks to pay
        else:
            self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, not {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None  # filled by backward() for leaves (tensors no op made)
        self.grad_fn = None  # the op node that produced this tensor, or None for a leaf
        self.name = name  # what drawings of the graph call it (minigrad.viz), e.g. "x" or "W"
        self._hooks = ()  # a list once register_hook is called
        self._retains_grad = False

    # ---- what a reader sees ------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self.grad_fn is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = f", grad_fn={type(self.grad_fn).__name__}" if self.grad_fn else ""
        extra += ", requires_grad=True" if self.requires_grad and not self.grad_fn else ""
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        return f"tensor({body}{extra})"

    def _repr_html_(self) -> str:
        """What a notebook shows: shape, dtype, how it was made, min/mean/max, whether it has
        a gradient (the graph itself: `mg.viz.show(t)`)."""
        made = f"grad_fn={type(self.grad_fn).__name__}" if self.grad_fn else (
            "leaf, requires_grad" if self.requires_grad else "leaf")
        numeric = self.data.dtype.kind in "biuf" and self.data.size
        stats = (f" · min {self.data.min():.4g} · mean {self.data.mean():.4g} · max {self.data.max():.4g}"
                 if numeric else "")
        grad = " · .grad set" if self.grad is not None else ""
        text = f"tensor {tuple(self.shape)} {self.dtype} · {made}{stats}{grad}"
        return f"<code>{html.escape(text)}</code>"

    def new_tensor(self, data, requires_grad=False) -> "Tensor":
        """A new Tensor (never a subclass such as Parameter): how ops make their outputs."""
        if type(data) is not np.ndarray or data.dtype.char not in "fd" or not data.flags.c_contiguous:
            return Tensor(data, requires_grad)
        # Already what __init__ would store (most ops' outputs): the fields are set directly,
        # a third of the cost of a call to Tensor(), on every op's path.
        out = _new_object(Tensor)
        out.data, out.requires_grad, out.grad, out.grad_fn = data, requires_grad, None, None
        out.name, out._hooks, out._retains_grad = None, (), False
        return out

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph: gradients will not flow through it."""
        out = Tensor.__new__(Tensor)
        Tensor.__init__(out, self.data)
        return out

    def requires_grad_(self, requires_grad=True) -> "Tensor":
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self):
        self.grad = None

    def retain_grad(self):
        """Keep `.grad` on this non-leaf tensor too (PyTorch semantics)."""
        self._retains_grad = True

    def register_hook(self, hook):
        """Call `hook(grad)` when this tensor's gradient is computed; a non-None result replaces it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if not self._hooks:
            self._hooks = []
        self._hooks.append(hook)
        return _RemovableHandle(self._hooks, hook)

    # ---- reverse mode --------------------------------------------------------------------
    def backward(self, grad=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into `leaf.grad` for every leaf that requires grad.

        The walk itself is `autograd.backward_walk`. `.grad` holds plain arrays (what the
        optimizers read), so gradients with a graph of their own come from
        `mg.grad(outputs, inputs, create_graph=True)` instead of `create_graph=True` here.
        """
        if create_graph:
            raise RuntimeError("backward(create_graph=True) is not supported: .grad holds plain arrays; "
                               "use mg.grad(outputs, inputs, create_graph=True) for differentiable gradients")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no graph to walk)")
        autograd.backward_walk([self], [seed_gradient(self, grad)])

    def _run_hooks(self, grad):
        for hook in self._hooks:
            replaced = hook(grad)
            if replaced is not None:
                if isinstance(grad, Tensor):  # a gradient with a graph (create_graph=True)
                    grad = as_tensor(replaced, like=grad)
                else:
                    grad = np.asarray(replaced.data if isinstance(replaced, Tensor) else replaced, dtype=grad.dtype)
        return grad

    def _accumulate(self, grad):
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    # ---- operators (the functions below) ----------------------------------------
    def __add__(self, other): return _binary(elementwise.Add, self, other)
    def __radd__(self, other): return _binary(elementwise.Add, other, self)
    def __sub__(self, other): return _binary(elementwise.Sub, self, other)
    def __rsub__(self, other): return _binary(elementwise.Sub, other, self)
    def __mul__(self, other): return _binary(elementwise.Mul, self, other)
    def __rmul__(self, other): return _binary(elementwise.Mul, other, self)
    def __truediv__(self, other): return _binary(elementwise.Div, self, other)
    def __rtruediv__(self, other): return _binary(elementwise.Div, other, self)
    def __pow__(self, exponent): return pow(self, exponent)
    def __neg__(self): return neg(self)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __getitem__(self, index): return getitem(self, index)

    def exp(self): return exp(self)
    def log(self): return log(self)
    def tanh(self): return tanh(self)
    def sigmoid(self): return sigmoid(self)
    def relu(self): return relu(self)
    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def reshape(self, *shape): return reshape(self, *shape)
    def transpose(self, *axes): return transpose(self, *axes)
    T = property(lambda self: transpose(self))
    def softmax(self, axis=-1): return softmax(self, axis)
    def log_softmax(self, axis=-1): return log_softmax(self, axis)


class _RemovableHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def seed_gradient(output: Tensor, grad=None) -> np.ndarray:
    """The gradient backward starts from: ones for a scalar, else `grad`, checked."""
    if grad is None:
        if output.data.size != 1:
            raise RuntimeError(
                f"backward() on a non-scalar tensor of shape {output.shape} needs a gradient "
                "argument: call backward(grad) with a gradient of that shape, or reduce to a scalar first"
            )
        return np.array(1, output.data.dtype).reshape(output.data.shape)  # half of np.ones's cost (two numpy calls in Python)
    grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=output.dtype)
    if grad.shape != output.shape:
        raise ValueError(f"backward(grad): grad has shape {grad.shape} but the tensor has shape {output.shape}")
    return grad


# ---- the public functions --------------------------------------------------------------

def as_tensor(value, like: Tensor = None) -> Tensor:
    """A Tensor for `value`; Python numbers take the dtype of `like` (as in PyTorch)."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def _unary(op, x) -> Tensor:
    return op.apply(x if isinstance(x, Tensor) else as_tensor(x))


def _binary(op, a, b) -> Tensor:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return op.apply(a, b)
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return op.apply(as_tensor(a, like), as_tensor(b, like))


def add(a, b): return _binary(elementwise.Add, a, b)
def sub(a, b): return _binary(elementwise.Sub, a, b)
def mul(a, b): return _binary(elementwise.Mul, a, b)
def div(a, b): return _binary(elementwise.Div, a, b)
def neg(x): return _unary(elementwise.Neg, x)
def exp(x): return _unary(elementwise.Exp, x)
def log(x): return _unary(elementwise.Log, x)
def tanh(x): return _unary(elementwise.Tanh, x)
def sigmoid(x): return _unary(elementwise.Sigmoid, x)
def relu(x): return _unary(elementwise.Relu, x)


def pow(x, exponent):
    """x ** exponent for a constant (non-tensor) exponent."""
    if isinstance(exponent, Tensor):
        raise TypeError("pow: the exponent must be a number, not a Tensor")
    return _binary(elementwise.Pow, x, exponent)


def matmul(a, b):
    return MatMul.apply(as_tensor(a), as_tensor(b))


def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight (out, in) as in PyTorch's Linear."""
    x, weight = as_tensor(x), as_tensor(weight)
    if bias is None:
        return matmul(x, transpose(weight))
    return Linear.apply(x, weight, as_tensor(bias))


def sum(x, axis=None, keepdims=False):
    return ops.Sum.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return ops.Mean.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    return ops.Max.apply(as_tensor(x), axis=axis, keepdims=keepdims)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return ops.Reshape.apply(as_tensor(x), shape=shape)


def transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return ops.Transpose.apply(as_tensor(x), axes=axes or None)


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
    return ops.GetItem.apply(as_tensor(x), index=_plain_index(index))


def concat(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    return ops.Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return ops.Stack.apply(*tensors, axis=axis)


def softmax(x, axis=-1):
    return ops.Softmax.apply(as_tensor(x), axis=axis)


def log_softmax(x, axis=-1):
    return ops.LogSoftmax.apply(as_tensor(x), axis=axis)


def cross_entropy(logits, targets):
    """Mean cross-entropy of (N, C) logits against integer class targets (N,), in nats."""
    targets = targets.data if isinstance(targets, Tensor) else targets
    return ops.CrossEntropy.apply(as_tensor(logits), targets=targets)


def embedding(table, ids):
    """table[ids] for an integer array of any shape: result shape ids.shape + (table columns,)."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    return ops.Embedding.apply(as_tensor(table), ids=ids)

