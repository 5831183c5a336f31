"""Derivatives as functions: `mg.grad` (reverse mode, to any order), `mg.jvp` (forward
mode) and `mg.hvp` (Hessian-vector products), with PyTorch's and JAX's signatures.

    (dx,) = mg.grad(loss, [x], create_graph=True)      # dx has a graph of its own
    (ddx,) = mg.grad(dx.sum(), [x])                     # so it can be differentiated again
    out, tangent = mg.jvp(fn, (x,), (v,))               # d fn(x) . v, in one forward pass

Reverse mode is `autograd.backward_walk`; with create_graph=True every node runs its
`graph_backward`, built from Tensor ops. Forward mode is `forward_mode.forward_mode`: every
op computes its output's tangent next to its value (`Function.jvp`).
"""

import numpy as np

from . import autograd
from .forward_mode import forward_mode, tangent_of
from .grad_mode import no_grad
from .tensor import Tensor, as_tensor


def _as_tuple(values):
    return tuple(values) if isinstance(values, (list, tuple)) else (values,)


def grad(outputs, inputs, grad_outputs=None, create_graph=False) -> tuple:
    """d(outputs)/d(inputs) weighted by `grad_outputs`: one Tensor per input.

    outputs, inputs: a Tensor or a sequence of Tensors; grad_outputs: one per output (arrays
    or Tensors; may be omitted for scalar outputs, meaning 1). An input the outputs do not
    depend on gets zeros. `.grad` is not touched. With create_graph=True the gradients are
    built from differentiable ops and can be differentiated again, to any order.
    """
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    grad_outputs = _as_tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for k, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"grad: input {k} is not a Tensor that requires grad")
    roots, seeds = [], []
    for k, (output, seed) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(output, Tensor) or not output.requires_grad:
            raise ValueError(f"grad: output {k} does not require grad (it does not depend on any input)")
        if seed is None and output.data.size != 1:
            raise ValueError(f"grad: output {k} has shape {output.shape}: give its grad_outputs entry")
        seed = np.ones_like(output.data) if seed is None else seed
        if np.shape(seed) != output.shape:
            raise ValueError(f"grad: grad_outputs[{k}] has shape {np.shape(seed)}, output {k} has {output.shape}")
        if create_graph and isinstance(seed, Tensor):
            seeds.append(seed)  # a Tensor seed keeps its own graph
        else:
            seed = np.asarray(seed.data if isinstance(seed, Tensor) else seed, dtype=output.dtype)
            seeds.append(Tensor(seed) if create_graph else seed)
        roots.append(output)
    found = autograd.backward_walk(roots, seeds, create_graph=create_graph, accumulate=False, wanted=inputs)
    results = []
    for x in inputs:
        g = found.get(x)
        if g is None:
            results.append(Tensor(np.zeros_like(x.data)))
        else:
            results.append(g if isinstance(g, Tensor) else Tensor(g))
    return tuple(results)


def jvp(fn, primals, tangents):
    """Forward mode: `(fn(*primals), d fn(primals) . tangents)` in one pass.

    Every op computes its output's tangent from its inputs' tangents as it runs (no
    reverse pass). primals and tangents: sequences of the same length and shapes. Returns
    the outputs and their tangents with the structure fn returns (a Tensor or a tuple).
    """
    primals, tangents = _as_tuple(primals), _as_tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    primals = tuple(Tensor(as_tensor(p).data) for p in primals)  # fresh leaves: no reverse graph needed
    with no_grad(), forward_mode() as set_tangent:
        for k, (primal, tangent) in enumerate(zip(primals, tangents)):
            tangent = np.asarray(tangent.data if isinstance(tangent, Tensor) else tangent, dtype=primal.dtype)
            if tangent.shape != primal.shape:
                raise ValueError(f"jvp: tangent {k} has shape {tangent.shape}, primal {k} has {primal.shape}")
            set_tangent(primal, tangent)
        result = fn(*primals)
        outputs = _as_tuple(result)
        if not outputs or not all(isinstance(output, Tensor) for output in outputs):
            raise TypeError(f"jvp: fn must return a Tensor or a tuple of Tensors, got {type(result).__name__}")
        output_tangents = []
        for output in outputs:
            tangent = tangent_of(output)
            output_tangents.append(Tensor(np.zeros_like(output.data) if tangent is None else tangent))
    if isinstance(result, (list, tuple)):
        return tuple(outputs), tuple(output_tangents)
    return outputs[0], output_tangents[0]


def hvp(fn, inputs, vectors) -> tuple:
    """Hessian-vector product of the scalar fn(*inputs): H v, one Tensor per input.

    Reverse over reverse: the gradient with a graph, then the gradient of <gradient, v>.
    """
    inputs, vectors = _as_tuple(inputs), _as_tuple(vectors)
    gradients = grad(fn(*inputs), inputs, create_graph=True)
    return grad(gradients, inputs, grad_outputs=vectors)
