"""minigrad: a small reverse-mode autograd engine whose ops run as Numba kernels.

    import minigrad as mg
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x

Reading order. The whole of reverse mode first, before any mode, cache or BLAS code:
  1. autograd.py        the op node (Function, Function.apply), unbroadcast, the one
                        topological sort and the backward walk
  2. tensor.py          the Tensor class (top of the file); then the public functions
  3. matmul.py          one op, MatMul: its forward and its backward, written once for
                        arrays and for Tensors (so gradients can be differentiated again)
Then, as needed:
  elementwise.py, rules.py   the elementwise ops, generated from one line of rule each
  ops.py                     reductions, shape ops, softmax, cross-entropy, embedding
  derivatives.py             mg.grad (to any order), mg.jvp (forward mode), mg.hvp
  grad_mode.py, anomaly.py, forward_mode.py
                             the modes, each reaching the core through one named hook
                             (autograd.hooks.recording / .check_finite / .carry_tangents)
  gradcheck.py, nn.py, optim.py
  viz_layout.py, viz_model.py, viz.py
                             graph pictures: layout, page data, the page (files in viz_page/)
  jit.py                     the JIT decorators every kernel is compiled with
  kernel_cache.py            where compiled kernels are kept, and why that folder is trusted
                             (the one user of Numba's private API)
  threads.py                 how many threads parallel kernels use: measured, re-measured
  codegen, kernels, fast_exp, blas, precompile, allocator, runtime, files, random
                             the rest of the machinery: Numba kernels (fast_exp: the
                             float32 exp that runs in vector lanes), BLAS threads,
                             process settings for training, atomic files

Each module imports only modules before it in tests/test_layering.py's LAYERS (no cycle).
"""

from . import autograd
from .autograd import Function
from .anomaly import AnomalyError, detect_anomaly
from .grad_mode import enable_grad, is_grad_enabled, no_grad
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
