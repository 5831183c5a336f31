"""Modules: containers of parameters with PyTorch's names and initialisation.

`Module` finds its parameters and sub-modules from its attributes (as PyTorch does),
so `named_parameters()` yields dotted names like "head.weight" that match a PyTorch
`state_dict` key for key. Linear, Embedding, Dropout and LockedDropout are the building
blocks the char-LM needs; `keep_mask` draws the dropout masks (the char-LM's DropConnect and
embedding dropout draw theirs with it too).
"""

import math

import numpy as np

from . import random
from .tensor import DEFAULT_DTYPE, Tensor, embedding, linear


class Parameter(Tensor):
    """A leaf tensor that a Module owns and an optimizer updates (requires grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class: assign Parameters and Modules as attributes, write `forward`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ before assigning {name}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def named_parameters(self, prefix=""):
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter
        for name, module in self._modules.items():
            yield from module.named_parameters(prefix + name + ".")

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def modules(self):
        yield self
        for module in self._modules.values():
            yield from module.modules()

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert every parameter to `dtype` in place (e.g. np.float64 for gradient checks)."""
        for parameter in self.parameters():
            parameter.data = parameter.data.astype(dtype)
            parameter.grad = None
        return self

    def state_dict(self) -> dict:
        """name -> a copy of the parameter's array."""
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state: dict, strict=True):
        """Copy arrays into the parameters by name; shapes must match, dtype is kept."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}")
        for name, parameter in own.items():
            if name not in state:
                continue
            array = np.asarray(state[name])
            if array.shape != parameter.shape:
                raise ValueError(f"load_state_dict: {name} has shape {array.shape}, the model expects {parameter.shape}")
            parameter.data = np.array(array, dtype=parameter.dtype)
        return self

    def num_parameters(self) -> int:
        return int(sum(parameter.size for parameter in self.parameters()))

    def __repr__(self):
        children = "".join(f"\n  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self) -> str:
        return ""


def _uniform(bound, shape, dtype):
    return random.generator().uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """y = x @ weight.T + bias; weight (out, in) and bias ~ U(-1/sqrt(in), 1/sqrt(in)) like PyTorch."""

    def __init__(self, in_features, out_features, bias=True, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(_uniform(bound, (out_features, in_features), dtype))
        self.bias = Parameter(_uniform(bound, (out_features,), dtype)) if bias else None

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A table of `num_embeddings` vectors; weight ~ N(0, 1) like PyTorch."""

    def __init__(self, num_embeddings, embedding_dim, dtype=DEFAULT_DTYPE):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(random.generator().standard_normal((num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, ids):
        return embedding(self.weight, ids)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


def keep_mask(shape, p: float, dtype) -> np.ndarray:
    """A dropout mask of `shape`: each element 0 with probability p, else 1/(1-p), from
    minigrad's generator (so a seed reproduces it). p in [0, 1)."""
    size = math.prod(shape)
    # 16 random bits per element (p is rounded to a multiple of 2^-16), cut from the
    # generator's raw 64-bit words: drawing a float per element took ~15% of a 2x256
    # LSTM's training step; this mask takes a tenth of that time.
    words = random.generator().bit_generator.random_raw(-(-size // 4))
    bits = words.view(np.uint16)[:size].reshape(shape)
    dtype = np.dtype(dtype)
    return (bits >= round(p * (1 << 16))) * dtype.type(1.0 / (1.0 - p))


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        return x * keep_mask(self.mask_shape(x.shape), self.p, x.dtype)

    def mask_shape(self, shape) -> tuple:
        """The shape of the mask drawn for an input of `shape` (broadcast against it)."""
        return shape

    def extra_repr(self):
        return f"p={self.p}"


class LockedDropout(Dropout):
    """Variational dropout of a sequence (B, T, ...) batch first: one mask per sequence, the
    same for all its T steps (Gal and Ghahramani 2016; AWD-LSTM's "locked" dropout), drawn
    afresh at every call. Dropout draws a new mask for every step instead."""

    def mask_shape(self, shape) -> tuple:
        if len(shape) < 2:
            raise ValueError(f"locked dropout needs a (batch, steps, ...) input, got shape {shape}")
        return (shape[0], 1, *shape[2:])
