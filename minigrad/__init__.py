"""minigrad: a small reverse-mode autograd engine whose ops run as Numba kernels.

    import minigrad as mg
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x

Where things are, bottom layer first; each module imports only modules before it
(checked by tests/test_layering.py):
  files        the one atomic file writer (a temporary file beside the target, then a rename)
  rules        the derivative table, one line per elementwise op
  _jit, allocator, random, codegen, blas, kernels, precompile    the Numba and BLAS side
  runtime      the process-wide settings training needs (importing minigrad changes none)
  autograd     the op node (Function), grad mode, the one topological sort, the backward walk
  ops          every op's forward and derivatives, on arrays
  tensor       Tensor, its operators, and mg.add, mg.tanh, ...
  derivatives  mg.grad (to any order), mg.jvp (forward mode), mg.hvp
  gradcheck, nn, optim, viz
"""

from . import autograd
from .autograd import AnomalyError, Function, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .tensor import (
    DEFAULT_DTYPE, Tensor, add, as_tensor, concat, cross_entropy, div, embedding, exp, getitem, linear, log,
    log_softmax, matmul, max, mean, mul, neg, pow, relu, reshape, sigmoid, softmax, stack, sub, sum, tanh,
    transpose,
)
from .derivatives import grad, hvp, jvp
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from . import nn, optim, runtime  # noqa: E402

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None, name=None) -> Tensor:
    """A new leaf tensor: float32 unless `data` is float64 or `dtype` says otherwise; `name`
    labels it in drawings of the graph (mg.viz.print_graph, to_dot)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def zeros(*shape, dtype=DEFAULT_DTYPE, requires_grad=False) -> Tensor:
    import numpy as np
    return Tensor(np.zeros(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape, dtype),
                  requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_DTYPE, requires_grad=False) -> Tensor:
    import numpy as np
    return Tensor(np.ones(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape, dtype),
                  requires_grad=requires_grad)
from . import viz
