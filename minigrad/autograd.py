"""Reverse mode in one place: the op node, the graph walk, and the switches around them.

This is the bottom layer of the engine: it imports no other minigrad module, and it knows
a tensor only by its fields (`data`, `shape`, `requires_grad`, `grad_fn`) and methods.
The layers above: `ops` (the Functions on arrays), then `tensor` (the Tensor and its
operators), then `derivatives` (mg.grad, mg.jvp, mg.hvp).

An op is a subclass of `Function`:
    forward(*arrays, **options) -> output array      (saves what backward needs on `self`)
    backward(grad) -> one gradient per input          (None where there is none)
    graph_backward(grad)                              the same, built from Tensor ops, so that
                                                      the gradient can be differentiated again
    jvp(out, *tangents) -> the output's tangent       (forward mode, on arrays)
An op with several outputs returns a tuple from forward and takes one gradient per
output in backward (zeros for outputs that nothing used).
`Function.apply(*tensors)` runs forward and, when gradients are being recorded,
links the result to the node so that the walk can find it.

`backward_walk` is the whole of reverse mode:
  1. order the op nodes so each comes after the nodes whose outputs it reads
     (`toposort`, the one topological sort of the project, with an explicit stack so
     deep graphs cannot overflow Python's recursion limit);
  2. seed the gradient of the roots and walk that order backwards, asking each node for
     the gradients of its inputs given the gradients of its outputs (the chain rule);
  3. a tensor used several times sums the contributions (`unbroadcast` first sums away
     the axes broadcasting added, for every op, in one place).
"""

import contextlib
import os
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record nothing: no graph, no saved arrays (inference, updates)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_anomaly_enabled() -> bool:
    return getattr(_state, "anomaly", False)


@contextlib.contextmanager
def detect_anomaly():
    """Raise on the first NaN or inf an op produces, in forward or backward, naming the op
    and the line of user code that created it. Slow (checks every array): for debugging."""
    previous = is_anomaly_enabled()
    _state.anomaly = True
    try:
        yield
    finally:
        _state.anomaly = previous


class AnomalyError(RuntimeError):
    """An op produced NaN or inf while `detect_anomaly()` was on."""


# Source directories whose frames are library internals, skipped when anomaly mode names
# the line that created an op. Libraries built on minigrad may add theirs (rnn does).
internal_directories = [os.path.dirname(os.path.abspath(__file__))]


def _user_frame(stack) -> str:
    """The innermost frame outside the libraries: where the user created the op."""
    for frame in reversed(stack):
        path = os.path.abspath(frame.filename)
        if not any(path.startswith(directory + os.sep) for directory in internal_directories):
            return f'File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}'
    return "(created inside the library)"


def _check_finite(node, arrays, where):
    for index, array in enumerate(arrays):
        if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
            kind = "NaN" if np.isnan(array).any() else "inf"
            created = _user_frame(node.created_at) if node.created_at else "(unknown)"
            raise AnomalyError(
                f"{type(node).__name__} produced {kind} in its {where}"
                + (f" (gradient of input {index})" if where == "backward" else "")
                + f"; the op was created at:\n  {created}"
            )


def check_anomaly(node, input_grads):
    if is_anomaly_enabled():  # gradients are arrays, or Tensors when a graph is being built
        arrays = [g if g is None or isinstance(g, np.ndarray) else g.data for g in input_grads]
        _check_finite(node, arrays, "backward")


# ---- forward mode: tangents carried alongside values ---------------------------------------

def tangent_of(tensor):
    """The tangent (an array) forward mode carries for `tensor`, or None."""
    tangents = getattr(_state, "tangents", None)
    entry = tangents.get(id(tensor)) if tangents else None
    return entry[1] if entry is not None else None


@contextlib.contextmanager
def forward_mode():
    """Inside, every op also computes its output's tangent from its inputs' tangents.
    Yields `set_tangent(tensor, array)` to seed the inputs."""
    previous = getattr(_state, "tangents", None)
    _state.tangents = {}  # id(tensor) -> (tensor, tangent); the tensor is kept so its id stays its own

    def set_tangent(tensor, tangent):
        _state.tangents[id(tensor)] = (tensor, tangent)

    try:
        yield set_tangent
    finally:
        _state.tangents = previous


class Function:
    """One node of the graph: an op applied to some tensors."""

    created_at = None  # filled in anomaly mode: the stack where the op was created
    # A linear op (sum, reshape, getitem, ...) maps tangents the way it maps values.
    linear = False

    def __init__(self, *inputs):
        self.inputs = inputs  # the tensors this op read: the edges of the graph
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, *output_grads):
        """One gradient per input (arrays), given the gradient of each output."""
        raise NotImplementedError

    def graph_backward(self, *output_grads):
        """`backward` built from Tensor ops (on Tensor gradients), so that it is differentiable."""
        raise NotImplementedError(
            f"{self.name} has no differentiable backward: it cannot be differentiated twice (create_graph=True)"
        )

    def jvp(self, out, *tangents):
        """Forward mode: the output's tangent given each input's tangent (None for none)."""
        if self.linear:
            arrays = [np.zeros_like(x.data) if t is None else t for x, t in zip(self.inputs, tangents)]
            return type(self)(*self.inputs).forward(*arrays, **self.options)
        raise NotImplementedError(f"{self.name} has no forward-mode rule (jvp)")

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; return a Tensor (a tuple if forward returns several)."""
        node = cls(*inputs)
        node.options = options
        record = is_grad_enabled() and any(node.needs_input_grad)
        result = node.forward(*(t.data for t in inputs), **options)
        arrays = result if isinstance(result, tuple) else (result,)
        # The outputs are made by the input's own Tensor class (autograd does not import it).
        outputs = tuple(inputs[0].new_tensor(array, requires_grad=record) for array in arrays)
        if is_anomaly_enabled():
            node.created_at = traceback.extract_stack()[:-1]
            _check_finite(node, arrays, "forward")
        if record:
            for output in outputs:
                output.grad_fn = node
            # Weak references: the node must not keep its outputs alive (no cycles).
            node._output_refs = tuple(weakref.ref(output) for output in outputs)
            node.output_specs = tuple((output.shape, output.dtype) for output in outputs)
        if getattr(_state, "tangents", None):
            tangents = [tangent_of(t) for t in inputs]
            if any(t is not None for t in tangents):
                tangent = node.jvp(result, *tangents)
                _state.tangents[id(outputs[0])] = (outputs[0], np.asarray(tangent, dtype=arrays[0].dtype))
        return outputs if isinstance(result, tuple) else outputs[0]

    def outputs(self):
        """The output tensors still alive (None for one that was dropped)."""
        return tuple(ref() for ref in self._output_refs)

    def output_tensor(self):
        """The (single) output as a Tensor in the graph, for a graph_backward that reads `out`;
        recomputed from the inputs if it was dropped (the same function of the same inputs)."""
        out = self._output_refs[0]()
        return out if out is not None else type(self).apply(*self.inputs, **self.options)

    @property
    def name(self) -> str:
        return type(self).__name__


def unbroadcast(grad, shape: tuple):
    """Sum `grad` down to `shape`: the backward of numpy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1;
    each copy's gradient flows back to the same original element, so we sum them.
    `grad` is an array, or a Tensor when the backward pass builds a graph (the same
    methods, so the same code).
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


def toposort(roots: Iterable, parents: Callable) -> list:
    """Every node reachable from `roots` through `parents(node)`, each after all of its parents.

    The one topological sort of the project: the backward walk, the cell tracer
    (`rnn.expr`), the fused-cell compiler and `viz` all use it. Depth-first search with an
    explicit stack (no recursion, so a 100,000-op chain is fine): a node is appended once
    all of its parents have been; parents are visited in the order `parents` gives them.
    """
    order, expanded = [], set()
    stack = [(root, False) for root in reversed(list(roots))]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in expanded:  # reached again by another path: already placed
            continue
        expanded.add(id(node))
        stack.append((node, True))  # placed after everything pushed above it
        stack.extend((parent, False) for parent in reversed(list(parents(node))) if id(parent) not in expanded)
    return order


def graph_order(roots) -> list:
    """The op nodes that lead to the `roots` (tensors), each after every node whose output it
    reads. Walking this list backwards visits each node after all of its consumers, so by
    then the gradients of its outputs are complete."""
    def producers(node):
        return [t.grad_fn for t in node.inputs if t.requires_grad and t.grad_fn is not None]
    return toposort([t.grad_fn for t in roots if t.grad_fn is not None], producers)


@contextlib.contextmanager
def observe_backward(observer: Callable):
    """Inside this block every `backward_walk` calls `observer(node, output_grads, input_grads)`
    for each node it visits, in the order it visits them (what `mg.viz` records to replay
    the walk). The observer only reads: the gradients it sees are the engine's own."""
    previous = getattr(_state, "walk_observer", None)
    _state.walk_observer = observer
    try:
        yield
    finally:
        _state.walk_observer = previous


def backward_walk(roots, root_grads, create_graph=False, accumulate=True, wanted=()) -> dict:
    """Reverse mode: propagate `root_grads` from `roots` back through the graph.

    accumulate: add each leaf's gradient into `.grad` (and into retained non-leaves);
    wanted:     tensors whose total gradient is returned, {id(tensor): gradient};
    create_graph: gradients are Tensors and every node runs its `graph_backward`, so
                the gradients have a graph of their own (they can be differentiated again);
                otherwise gradients are arrays and `backward` runs its fast kernels.
    """
    pending = {}  # id(tensor) -> its gradient, summed over the paths seen so far
    leaves, found = {}, {}
    wanted_ids = {id(t) for t in wanted}

    def add(tensor, grad):
        key = id(tensor)
        pending[key] = pending[key] + grad if key in pending else grad
        if tensor.grad_fn is None:
            leaves[key] = tensor

    def arrived(tensor, grad):  # the gradient of `tensor` is complete
        grad = tensor._run_hooks(grad)
        if id(tensor) in wanted_ids:
            found[id(tensor)] = grad
        return grad

    observer = getattr(_state, "walk_observer", None)
    for root, grad in zip(roots, root_grads):
        add(root, grad)
    with (enable_grad() if create_graph else no_grad()):
        for node in reversed(graph_order(roots)):
            output_grads = []
            for output in node.outputs():
                grad = pending.pop(id(output), None) if output is not None else None
                if grad is not None:
                    grad = arrived(output, grad)
                    if accumulate and output._retains_grad:
                        output._accumulate(grad)
                output_grads.append(grad)
            if all(g is None for g in output_grads):
                continue  # nothing flowed back to this node (e.g. only a constant was used)
            if len(output_grads) > 1:  # a multi-output node gets zeros for unused outputs
                like = next(g for g in output_grads if g is not None)
                output_grads = [g if g is not None else _zeros_like_grad(like, shape, dtype)
                                for g, (shape, dtype) in zip(output_grads, node.output_specs)]
            run = node.graph_backward if create_graph else node.backward
            input_grads = run(*output_grads)  # the chain rule, for this one node
            check_anomaly(node, input_grads)
            if observer is not None:
                observer(node, output_grads, input_grads)
            for parent, parent_grad in zip(node.inputs, input_grads):
                if parent_grad is not None and parent.requires_grad:
                    add(parent, unbroadcast(parent_grad, parent.shape))
        for key, leaf in leaves.items():  # leaves last: their hooks see the summed gradient
            grad = arrived(leaf, pending.pop(key))
            if accumulate:
                leaf._accumulate(grad)
    return found


def _zeros_like_grad(like, shape, dtype):
    zeros = np.zeros(shape, dtype)
    return zeros if isinstance(like, np.ndarray) else like.new_tensor(zeros)
