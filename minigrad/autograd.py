"""Reverse mode: the op node, the topological sort and the backward walk. Nothing else.

This is the bottom of the engine: it imports no other minigrad module, and knows a tensor
only by its fields (`data`, `shape`, `requires_grad`, `grad_fn`) and methods.

An op is a subclass of `Function`:
    forward(*arrays, **options) -> output array      (saves what backward needs on `self`)
    backward(grad) -> one gradient per input          (None where there is none)
An op with several outputs returns a tuple from forward and takes one gradient per output
in backward (zeros for outputs that nothing used).
`Function.apply(*tensors)` runs forward and, when gradients are being recorded, links the
result to the node so that the walk can find it.

`backward_walk` is the whole of reverse mode:
  1. order the op nodes so each comes after the nodes whose outputs it reads (`toposort`,
     with an explicit stack so deep graphs cannot overflow Python's recursion limit);
  2. seed the gradient of the roots and walk that order backwards, asking each node for
     the gradients of its inputs given the gradients of its outputs (the chain rule);
  3. a tensor used several times sums the contributions (`unbroadcast` first sums away
     the axes broadcasting added, for every op, in one place).

The modes live in modules of their own and reach this one through `hooks`, one named
per-thread hook each: `grad_mode` switches `hooks.recording`, `anomaly` sets
`hooks.check_finite`, `forward_mode` sets `hooks.carry_tangents`, and `observe_backward` (what
`mg.viz` uses to record the walk) sets `hooks.observe_walk`.
"""

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable

import numpy as np


class _Hooks(threading.local):
    """Per-thread switches the modes set; the class attributes are their values when off."""

    recording = True        # grad_mode: False inside no_grad(), so ops record no graph
    check_finite = None     # anomaly: check_finite(node, arrays, "forward" or "backward")
    carry_tangents = None   # forward_mode: carry_tangents(node, result, outputs)
    observe_walk = None     # viz: observe_walk(node, output_grads, input_grads), per node the walk visits


hooks = _Hooks()


class Function:
    """One node of the graph: an op applied to some tensors.

    `backward` gets the output gradients as arrays (first order). With create_graph=True
    the walk calls `graph_backward` with Tensors instead, so that the gradient has a graph of
    its own. An op whose backward uses only what arrays and Tensors share (+ - * / @,
    reshape, transpose, sum, indexing) says `graph_backward = backward`: one formula for both.
    """

    # An op that is linear in its inputs (sum, reshape, getitem, ...) maps tangents the way
    # it maps values: forward mode applies `forward` itself to the tangents.
    jvp_is_forward = False

    def __init__(self, *inputs):
        self.inputs = inputs  # the tensors this op read: the edges of the graph
        self.needs_input_grad = (False,) * len(inputs)  # which inputs get a gradient: apply sets it when recording

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, *output_grads):
        """One gradient per input, given the gradient of each output (the chain rule, locally)."""
        raise NotImplementedError

    def graph_backward(self, *output_grads):
        """`backward` on Tensor gradients, built from Tensor ops so that it is differentiable."""
        raise NotImplementedError(
            f"{self.name} has no differentiable backward: it cannot be differentiated twice (create_graph=True)"
        )

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; return a Tensor (a tuple if forward returns several)."""
        node = cls(*inputs)
        node.options = options
        input_arrays, needs = [], []
        for t in inputs:  # one loop, not two comprehensions: ~2.7k instructions less per op
            input_arrays.append(t.data)
            needs.append(t.requires_grad)
        record = hooks.recording and True in needs
        if record:  # otherwise no gradient will be asked of this node: its forward saves nothing
            node.needs_input_grad = tuple(needs)
        result = node.forward(*input_arrays, **options)
        several = type(result) is tuple
        arrays = result if several else (result,)
        # The outputs are made by the input's own Tensor class (this module does not import it).
        new_tensor = inputs[0].new_tensor
        outputs = tuple([new_tensor(array, record) for array in arrays]) if several else (new_tensor(result, record),)
        if record:
            for output in outputs:
                output.grad_fn = node
            # Weak references: the node must not keep its outputs alive (no cycles). The shapes
            # and dtypes stay known once an output is dropped. One output (nearly every op) is
            # written out: a comprehension costs ~2k instructions, half a 4x4 numpy add.
            if several:
                node._output_refs = tuple([weakref.ref(output) for output in outputs])
                node.output_specs = tuple([(array.shape, array.dtype) for array in arrays])
            else:
                node._output_refs, node.output_specs = (weakref.ref(outputs[0]),), ((result.shape, result.dtype),)
        if hooks.check_finite is not None:
            hooks.check_finite(node, arrays, "forward")
        if hooks.carry_tangents is not None:
            hooks.carry_tangents(node, result, outputs)
        return outputs if several else outputs[0]

    def outputs(self):
        """The output tensors still alive (None for one that was dropped)."""
        return [ref() for ref in self._output_refs]

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

    Broadcasting copies an input along new leading axes and along axes of size 1; each
    copy's gradient flows back to the same original element, so we sum them. `grad` is an
    array, or a Tensor when the backward pass builds a graph (the same methods, so the same code).
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
    """Every node reachable from `roots` through `parents(node)` (a list or tuple), each after
    all of its parents.

    The one topological sort of the project: the backward walk, the cell tracer
    (`rnn.cells.expr`), the fused-cell compiler and `viz` all use it. Depth-first search with an
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
        key = id(node)
        if key in expanded:  # reached again by another path: already placed
            continue
        expanded.add(key)
        stack.append((node, True))  # placed after everything pushed above it
        for parent in reversed(parents(node)):
            if id(parent) not in expanded:
                stack.append((parent, False))
    return order


def _producers(node):
    return [t.grad_fn for t in node.inputs if t.grad_fn is not None and t.requires_grad]


def graph_order(roots) -> list:
    """The op nodes that lead to the `roots` (tensors), each after every node whose output it
    reads. Walking this list backwards visits each node after all of its consumers, so by
    then the gradients of its outputs are complete."""
    return toposort([t.grad_fn for t in roots if t.grad_fn is not None], _producers)


@contextlib.contextmanager
def observe_backward(observer: Callable):
    """Inside this block every `backward_walk` calls `observer(node, output_grads, input_grads)`
    for each node it visits, in the order it visits them (what `mg.viz` records to replay
    the walk). The observer only reads: the gradients it sees are the engine's own."""
    previous, hooks.observe_walk = hooks.observe_walk, observer
    try:
        yield
    finally:
        hooks.observe_walk = previous


def backward_walk(roots, root_grads, create_graph=False, accumulate=True, wanted=()) -> dict:
    """Reverse mode: propagate `root_grads` from `roots` back through the graph.

    accumulate: add each leaf's gradient into `.grad` (and into retained non-leaves);
    wanted:     tensors whose total gradient is returned, {tensor: gradient};
    create_graph: gradients are Tensors and every node runs its `graph_backward`, so the
                gradients have a graph of their own (they can be differentiated again);
                otherwise gradients are arrays and `backward` runs its fast kernels.
    """
    # Tensors are dictionary keys by identity (Tensor defines no __eq__, as in PyTorch).
    pending = {}  # tensor -> its gradient, summed over the paths seen so far
    leaves, found = [], {}
    wanted = set(wanted)

    def add(tensor, grad):
        if tensor in pending:
            pending[tensor] = pending[tensor] + grad
        else:
            pending[tensor] = grad
            if tensor.grad_fn is None:
                leaves.append(tensor)

    def complete(tensor, grad):  # every contribution to the gradient of `tensor` has arrived
        if tensor._hooks:
            grad = tensor._run_hooks(grad)
        if tensor in wanted:
            found[tensor] = grad
        return grad

    observer = hooks.observe_walk
    for root, grad in zip(roots, root_grads):
        add(root, grad)
    recording, hooks.recording = hooks.recording, create_graph  # a graph for the gradients only if asked
    try:
        for node in reversed(graph_order(roots)):
            output_grads = []
            for ref in node._output_refs:
                output = ref()
                grad = pending.pop(output, None) if output is not None else None
                if grad is not None:
                    grad = complete(output, grad)
                    if accumulate and output._retains_grad:
                        output._accumulate(grad)
                output_grads.append(grad)
            if len(output_grads) > 1:  # a multi-output node gets zeros for unused outputs
                if all(g is None for g in output_grads):
                    continue
                like = next(g for g in output_grads if g is not None)
                output_grads = [g if g is not None else _zeros_like_grad(like, shape, dtype)
                                for g, (shape, dtype) in zip(output_grads, node.output_specs)]
            elif output_grads[0] is None:
                continue  # nothing flowed back to this node (e.g. only a constant was used)
            run = node.graph_backward if create_graph else node.backward
            input_grads = run(*output_grads)  # the chain rule, for this one node
            if hooks.check_finite is not None:
                hooks.check_finite(node, input_grads, "backward")
            if observer is not None:
                observer(node, output_grads, input_grads)
            for parent, parent_grad in zip(node.inputs, input_grads):
                if parent_grad is not None and parent.requires_grad:
                    if parent_grad.shape != parent.data.shape:  # checked here: most gradients have the shape already
                        parent_grad = unbroadcast(parent_grad, parent.data.shape)
                    add(parent, parent_grad)
        for leaf in leaves:  # leaves last: their hooks see the summed gradient
            grad = complete(leaf, pending.pop(leaf))
            if accumulate:
                leaf._accumulate(grad)
    finally:
        hooks.recording = recording
    return found


def _zeros_like_grad(like, shape, dtype):
    zeros = np.zeros(shape, dtype)
    return zeros if isinstance(like, np.ndarray) else like.new_tensor(zeros)
