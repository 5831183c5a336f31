"""Grad mode: `no_grad()` and `enable_grad()`, per thread.

Reaches the core through one hook, `autograd.hooks.recording`: while it is False,
`Function.apply` links no output to its node, so no graph is built and nothing is saved
for a backward pass (inference, optimizer updates).
"""

import contextlib

from .autograd import hooks


def is_grad_enabled() -> bool:
    return hooks.recording


class _Recording(contextlib.ContextDecorator):
    """Sets `hooks.recording` for the length of a `with` block (or of a decorated call) and
    restores what it was. A class rather than a @contextmanager generator: entering and
    leaving one costs about a fifth as much, which a `with no_grad():` around one small op feels."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        self.previous = hooks.recording
        hooks.recording = self.enabled

    def __exit__(self, *exc_info):
        hooks.recording = self.previous

    def _recreate_cm(self):
        return _Recording(self.enabled)  # each decorated call its own `previous` (recursion, threads)


def no_grad():
    """Inside this block ops record nothing: no graph, no saved arrays (inference, updates)."""
    return _Recording(False)


def enable_grad():
    """Record again inside a `no_grad()` block."""
    return _Recording(True)
