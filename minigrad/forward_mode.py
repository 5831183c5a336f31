"""Forward mode: tangents carried alongside values, for `mg.jvp`.

Inside `forward_mode()`, every op also computes its output's tangent from its inputs'
tangents (`Function.jvp`), as it runs: no reverse pass. Reaches the core through one
hook, `autograd.hooks.carry_tangents`, which `Function.apply` calls after forward.
"""

import contextlib

import numpy as np

from .autograd import hooks


def _jvp_by_forward(node, out, *tangents):
    """The tangent of a linear op's output: the op applied to the tangents."""
    arrays = [np.zeros_like(x.data) if t is None else t for x, t in zip(node.inputs, tangents)]
    return type(node)(*node.inputs).forward(*arrays, **node.options)


def jvp_of(node, out, *tangents):
    """The output's tangent given each input's tangent (None for none)."""
    if node.jvp_is_forward:
        return _jvp_by_forward(node, out, *tangents)
    jvp = getattr(node, "jvp", None)  # an op's forward-mode rule, on arrays
    if jvp is None:
        raise NotImplementedError(f"{node.name} has no forward-mode rule (jvp)")
    return jvp(out, *tangents)


class _Tangents:
    """id(tensor) -> (tensor, tangent); the tensor is kept so that its id stays its own."""

    def __init__(self):
        self.by_id = {}

    def __call__(self, node, result, outputs):  # autograd.hooks.carry_tangents
        tangents = [self.of(t) for t in node.inputs]
        if any(t is not None for t in tangents):
            tangent = jvp_of(node, result, *tangents)
            self.set(outputs[0], np.asarray(tangent, dtype=outputs[0].dtype))

    def of(self, tensor):
        entry = self.by_id.get(id(tensor))
        return entry[1] if entry is not None else None

    def set(self, tensor, tangent):
        self.by_id[id(tensor)] = (tensor, tangent)


def tangent_of(tensor):
    """The tangent (an array) forward mode carries for `tensor`, or None."""
    tangents = hooks.carry_tangents
    return tangents.of(tensor) if tangents is not None else None


@contextlib.contextmanager
def forward_mode():
    """Inside, every op also computes its output's tangent from its inputs' tangents.
    Yields `set_tangent(tensor, array)` to seed the inputs."""
    previous = hooks.carry_tangents
    hooks.carry_tangents = tangents = _Tangents()
    try:
        yield tangents.set
    finally:
        hooks.carry_tangents = previous
