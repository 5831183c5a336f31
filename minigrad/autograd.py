"""The op node (`Function`), gradient recording switches, and undoing broadcasting.

An op is a subclass of `Function` with two methods on numpy arrays:
    forward(*arrays, **options) -> output array      (saves what backward needs on `self`)
    backward(grad) -> one gradient per input          (None where there is none)
An op with several outputs returns a tuple from forward and takes one gradient per
output in backward (zeros for outputs that nothing used).
`Function.apply(*tensors)` runs forward and, when gradients are being recorded,
links the result to the node so that `Tensor.backward` can find it.

Gradients returned by `backward` may have the broadcast shape of the output;
`unbroadcast` sums them back to each input's shape, for every op, in one place.
"""

import contextlib
import os
import threading
import traceback
import weakref

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


# Frames from files under this directory are minigrad's own (a path test, not a name
# test: user code in a folder that happens to be called "minigrad" is still user code).
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


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
    if is_anomaly_enabled():
        _check_finite(node, input_grads, "backward")


class Function:
    """One node of the graph: an op applied to some tensors."""

    created_at = None  # filled in anomaly mode: the stack where the op was created

    def __init__(self, *inputs):
        self.inputs = inputs  # the tensors this op read: the edges of the graph
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, *output_grads):
        """One gradient per input, given the gradient of each output."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; return a Tensor (a tuple if forward returns several)."""
        from .tensor import Tensor  # deferred: tensor.py imports this module

        node = cls(*inputs)
        record = is_grad_enabled() and any(node.needs_input_grad)
        result = node.forward(*(t.data for t in inputs), **options)
        arrays = result if isinstance(result, tuple) else (result,)
        outputs = tuple(Tensor(array, requires_grad=record) for array in arrays)
        if is_anomaly_enabled():
            node.created_at = traceback.extract_stack()[:-1]
            _check_finite(node, arrays, "forward")
        if record:
            for output in outputs:
                output.grad_fn = node
            # Weak references: the node must not keep its outputs alive (no cycles).
            node._output_refs = tuple(weakref.ref(output) for output in outputs)
            node.output_specs = tuple((output.shape, output.dtype) for output in outputs)
        return outputs if isinstance(result, tuple) else outputs[0]

    def outputs(self):
        """The output tensors still alive (None for one that was dropped)."""
        return tuple(ref() for ref in self._output_refs)

    @property
    def name(self) -> str:
        return type(self).__name__


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`: the backward of numpy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1;
    each copy's gradient flows back to the same original element, so we sum them.
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
