"""Grad mode: `no_grad()` and `enable_grad()`, per thread.

Reaches the core through one hook, `autograd.hooks.recording`: while it is False,
`Function.apply` links no output to its node, so no graph is built and nothing is saved
for a backward pass (inference, optimizer updates).
"""

import contextlib

from .autograd import hooks


def is_grad_enabled() -> bool:
    return hooks.recording


@contextlib.contextmanager
def _recording(enabled: bool):
    previous = hooks.recording
    hooks.recording = enabled
    try:
        yield
    finally:
        hooks.recording = previous


def no_grad():
    """Inside this block ops record nothing: no graph, no saved arrays (inference, updates)."""
    return _recording(False)


def enable_grad():
    """Record again inside a `no_grad()` block."""
    return _recording(True)
