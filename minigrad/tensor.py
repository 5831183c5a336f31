"""The Tensor and reverse-mode differentiation (`backward`).

A Tensor holds a numpy array (`data`), and if it was computed by an op while gradients
were being recorded, the op node that made it (`grad_fn`). Following `grad_fn.inputs`
from a result leads back through the whole computation: that chain of nodes is the graph.

`backward()` is the whole of reverse mode:
  1. order the op nodes so each comes after the nodes whose outputs it reads (a
     topological sort, with an explicit stack so deep graphs cannot overflow Python's
     recursion limit);
  2. seed d(out)/d(out) = 1 and walk that order backwards, asking each node for the
     gradients of its inputs given the gradients of its outputs (the chain rule, one
     node at a time);
  3. a tensor used several times sums the contributions; leaves keep the sum in `.grad`.

The ops themselves (their forward and backward) live in `minigrad.ops`.
"""

import numpy as np

from . import autograd

DEFAULT_DTYPE = np.float32


def _contiguous(data, dtype=None) -> np.ndarray:
    # Not np.ascontiguousarray: it turns a 0-d array into a 1-d one.
    array = np.asarray(data, dtype=dtype)
    return array if array.flags.c_contiguous else array.copy(order="C")


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

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "_hooks", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # so `numpy_array * tensor` calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, not {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None  # filled by backward() for leaves (tensors no op made)
        self.grad_fn = None  # the op node that produced this tensor, or None for a leaf
        self._hooks = []
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
        self._hooks.append(hook)
        return _RemovableHandle(self._hooks, hook)

    # ---- reverse mode --------------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into `leaf.grad` for every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no graph to walk)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs a gradient "
                    "argument: call backward(grad) with a gradient of that shape, or reduce to a scalar first"
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape} but the tensor has shape {self.shape}")

        # Gradient of `self` w.r.t. each tensor reached so far, summed over every path.
        pending = {id(self): grad}
        leaves = {id(self): self} if self.grad_fn is None else {}
        for node in reversed(graph_order(self)):
            output_grads = []
            for output, (shape, dtype) in zip(node.outputs(), node.output_specs):
                g = pending.pop(id(output), None) if output is not None else None
                if g is not None:
                    g = output._run_hooks(g)
                    if output._retains_grad:
                        output._accumulate(g)
                output_grads.append(g)
            if all(g is None for g in output_grads):
                continue  # nothing flowed back to this node (e.g. only a constant was used)
            if len(output_grads) > 1:  # a multi-output node gets zeros for unused outputs
                output_grads = [np.zeros(s, d) if g is None else g for g, (s, d) in zip(output_grads, node.output_specs)]
            input_grads = node.backward(*output_grads)  # the chain rule, for this one node
            autograd.check_anomaly(node, input_grads)
            for parent, parent_grad in zip(node.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                # The single place where broadcasting is undone (see autograd.unbroadcast).
                parent_grad = autograd.unbroadcast(parent_grad, parent.shape)
                key = id(parent)
                pending[key] = pending[key] + parent_grad if key in pending else parent_grad
                if parent.grad_fn is None:
                    leaves[key] = parent
        for key, leaf in leaves.items():  # leaves last: their hooks see the summed gradient
            leaf._accumulate(leaf._run_hooks(pending.pop(key)))

    def _run_hooks(self, grad):
        for hook in self._hooks:
            replaced = hook(grad)
            if replaced is not None:
                grad = np.asarray(replaced.data if isinstance(replaced, Tensor) else replaced, dtype=grad.dtype)
        return grad

    def _accumulate(self, grad):
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    # ---- operators (the ops are in minigrad.ops) ----------------------------------------
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, exponent): return ops.pow(self, exponent)
    def __neg__(self): return ops.neg(self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def reshape(self, *shape): return ops.reshape(self, *shape)
    def transpose(self, *axes): return ops.transpose(self, *axes)
    T = property(lambda self: ops.transpose(self))
    def softmax(self, axis=-1): return ops.softmax(self, axis)
    def log_softmax(self, axis=-1): return ops.log_softmax(self, axis)


def graph_order(root: Tensor) -> list:
    """The op nodes that lead to `root`, each after every node whose output it reads.

    Depth-first search with an explicit stack (no recursion, so a 100,000-op chain is
    fine): a node is appended once all the nodes feeding it have been appended.
    Walking this list backwards visits each node after all of its consumers, so by
    then the gradients of its outputs are complete.
    """
    order, expanded = [], set()
    stack = [(root.grad_fn, False)] if root.grad_fn is not None else []
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in expanded:  # reached again by another path: already placed
            continue
        expanded.add(id(node))
        stack.append((node, True))  # placed after everything pushed above it
        for parent in node.inputs:
            if parent.requires_grad and parent.grad_fn is not None and id(parent.grad_fn) not in expanded:
                stack.append((parent.grad_fn, False))
    return order


class _RemovableHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


from . import ops  # noqa: E402  (ops needs Tensor defined first)
