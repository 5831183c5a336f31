"""Anomaly mode: `detect_anomaly()` raises on the first NaN or inf an op produces.

Reaches the core through one hook, `autograd.hooks.check_finite`, which `Function.apply`
calls on every forward result and the backward walk on every node's input gradients.
Slow (it checks every array): for debugging.
"""

import contextlib
import os
import traceback

import numpy as np

from .autograd import hooks


class AnomalyError(RuntimeError):
    """An op produced NaN or inf while `detect_anomaly()` was on."""


# Source directories whose frames are library internals, skipped when anomaly mode names
# the line that created an op. Libraries built on minigrad may add theirs (rnn does).
internal_directories = [os.path.dirname(os.path.abspath(__file__))]


def is_anomaly_enabled() -> bool:
    return hooks.check_finite is not None


@contextlib.contextmanager
def detect_anomaly():
    """Raise on the first NaN or inf an op produces, in forward or backward, naming the op
    and the line of user code that created it."""
    previous = hooks.check_finite
    hooks.check_finite = check_finite
    try:
        yield
    finally:
        hooks.check_finite = previous


def check_finite(node, results, where: str):
    """Raise AnomalyError if one of `results` (arrays, or Tensors when a graph is being built)
    holds NaN or inf. In forward, first note where the op was created."""
    if where == "forward":
        node.created_at = traceback.extract_stack()[:-2]
    for index, array in enumerate(results):
        if array is None:
            continue
        array = np.asarray(array.data if hasattr(array, "grad_fn") else array)  # a Tensor's array
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            kind = "NaN" if np.isnan(array).any() else "inf"
            created = getattr(node, "created_at", None)
            raise AnomalyError(
                f"{node.name} produced {kind} in its {where}"
                + (f" (gradient of input {index})" if where == "backward" else "")
                + f"; the op was created at:\n  {_user_frame(created) if created else '(unknown)'}"
            )


def _user_frame(stack) -> str:
    """The innermost frame outside the libraries: where the user created the op."""
    for frame in reversed(stack):
        path = os.path.abspath(frame.filename)
        if not any(path.startswith(directory + os.sep) for directory in internal_directories):
            return f'File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}'
    return "(created inside the library)"
