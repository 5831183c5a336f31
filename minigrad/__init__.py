"""minigrad: a small reverse-mode autograd engine whose ops run as Numba kernels.

    import minigrad as mg
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x

Where things are: `tensor` (Tensor, backward), `autograd` (the op node, no_grad,
unbroadcast), `ops` (every op's forward and backward), `rules` (the derivative table),
`kernels` and `codegen` (the Numba side), `gradcheck`, `nn`, `optim`, `viz`, and
`runtime` (the process-wide settings for training: importing minigrad changes none).
"""

from . import autograd
from .autograd import AnomalyError, Function, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .tensor import DEFAULT_DTYPE, Tensor
from .ops import (
    add, concat, cross_entropy, div, embedding, exp, getitem, linear, log, log_softmax, matmul, max,
    mean, mul, neg, pow, relu, reshape, sigmoid, softmax, stack, sub, sum, tanh, transpose,
)
from .gradcheck import GradcheckError, gradcheck
from . import nn, optim, runtime  # noqa: E402

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None) -> Tensor:
    """A new leaf tensor: float32 unless `data` is float64 or `dtype` says otherwise."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=DEFAULT_DTYPE, requires_grad=False) -> Tensor:
    import numpy as np
    return Tensor(np.zeros(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape, dtype),
                  requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_DTYPE, requires_grad=False) -> Tensor:
    import numpy as np
    return Tensor(np.ones(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape, dtype),
                  requires_grad=requires_grad)
from . import viz
