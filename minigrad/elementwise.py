"""The elementwise ops (`Add`, `Mul`, `Tanh`, ...), all generated from the rule table.

`minigrad.rules` holds one line per op: its forward and the vjp of each input as
expression text. One class, `Elementwise`, runs a rule three ways:
- `backward` on arrays (first order) calls the Numba kernels compiled from the rules;
- `graph_backward` on Tensors runs the rule's text with Tensor ops (create_graph=True);
- `jvp` on arrays runs the rule's text with numpy (forward mode).
Each named subclass (`Tanh`, `Mul`, ...) only names its rule, so that `grad_fn=Tanh`
names a class a reader can find here.
"""

import functools
import itertools

import numpy as np

from . import kernels, rules
from .autograd import Function


def _flat(array: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """`array` broadcast to `shape` as a contiguous 1-D array of `dtype` (copies only if needed)."""
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x)).astype(x.dtype)  # no overflow for large |x|


# The functions rule text may call, for arrays (forward mode) and for Tensors (graphs).
ARRAY_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.where(x > 0, x, 0.0 * x),
    "where": np.where, "plain": lambda value: value,
}


def _where_tensors(mask, x, y):
    like = x if hasattr(x, "dtype") else y
    mask = mask.astype(like.dtype)  # a 0/1 constant: a test has no derivative
    return x * mask + y * (1 - mask)


TENSOR_FUNCTIONS = {
    "exp": lambda x: x.exp(), "log": lambda x: x.log(), "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(), "relu": lambda x: x.relu(),
    "where": _where_tensors, "plain": lambda value: value if isinstance(value, np.ndarray) else value.data,
}


# Below this many elements an op runs its rule with numpy's ufuncs: a Numba kernel call
# costs more than it saves there (its dispatch, plus the flat copies it needs). Measured with
# benchmarks/bench_engine.py (d): a 4x4 `(a*b).tanh()` forward + backward ~3x faster this way;
# at 512x512 the kernels' single pass wins (see the note in docs/internals.md).
NUMPY_BELOW = 4096
# Rules whose forward numpy computes faster at every size: its float ufuncs for these are
# vectorized, while a kernel calls libm once per element (measured at 512x512 float32:
# tanh 24 ms -> 0.08 ms, exp 8 ms -> 0.1 ms, log 2.2 ms -> 0.1 ms). Their backward stays a kernel.
NUMPY_FORWARD = {"exp", "log", "tanh"}


class Elementwise(Function):
    """An op of the rule table; subclasses only name the rule (`op`).

    Forward keeps, for backward, only the values the vjp rules of the inputs that need a
    gradient read (`rules.names_read`): Add keeps nothing, Tanh keeps `out`, Mul keeps
    the other factor.
    """

    op = None  # a key of rules.RULES

    def __init_subclass__(cls):
        # The rule's text as numpy functions of (g, a, b, out), compiled once per op class.
        cls.numpy_forward, cls.numpy_vjps = _numpy_rule(cls.op)
        # What forward keeps, for each combination of inputs that need a gradient.
        cls.names_to_save = {needs: _names_to_save(cls.op, needs)
                             for needs in itertools.product((False, True), repeat=rules.arity(cls.op))}

    def forward(self, *arrays):
        a = arrays[0]
        if a.size < NUMPY_BELOW and arrays[-1].size < NUMPY_BELOW and arrays[-1].dtype == a.dtype:
            try:
                out = self.numpy_forward(None, *arrays)  # (g, a, b): no g in a forward
            except ValueError:
                self._cannot_broadcast(arrays)
            out = out if type(out) is np.ndarray else np.asarray(out)  # a 0-d result comes back as a scalar
            self.shape = None  # marks the numpy path: the saved values keep their own shapes
            self._save(arrays, out)
            return out
        if self.op in NUMPY_FORWARD and a.dtype.kind == "f":  # one input: out has a's shape and dtype
            out = self.numpy_forward(None, a)
            self.shape, self.dtype = out.shape, out.dtype
            self._save([a.reshape(-1)], out.reshape(-1))  # flat, for the backward kernel
            return out
        try:
            self.shape = np.broadcast_shapes(*(a.shape for a in arrays))
        except ValueError:
            self._cannot_broadcast(arrays)
        self.dtype = np.result_type(*arrays)
        flat_inputs = [_flat(a, self.shape, self.dtype) for a in arrays]
        out = np.empty(self.shape, self.dtype)
        getattr(kernels.elementwise, f"{self.op}_forward")(*flat_inputs, out.reshape(-1))
        self._save(flat_inputs, out.reshape(-1))
        return out

    def _save(self, inputs, out):
        names = self.names_to_save[self.needs_input_grad]
        self.saved = {name: out if name == "out" else inputs[name == "b"] for name in names} if names else {}

    def _cannot_broadcast(self, arrays):
        shapes = " and ".join(str(a.shape) for a in arrays)
        raise ValueError(f"{self.name}: shapes {shapes} cannot be broadcast together") from None

    def backward(self, grad):
        if self.shape is None:  # small: the rule's text on numpy arrays
            return [vjp(grad, **self.saved) if needed and vjp is not None else None
                    for needed, vjp in zip(self.needs_input_grad, self.numpy_vjps)]
        g = _flat(grad, self.shape, self.dtype)
        input_grads = []
        for name, needed, vjp in zip(rules.INPUT_NAMES, self.needs_input_grad, rules.RULES[self.op].vjps):
            if not needed or vjp is None:
                input_grads.append(None)
                continue
            if vjp == "g":  # the gradient passes through unchanged (add): no copy to make
                input_grads.append(grad)
                continue
            input_grad = np.empty(self.shape, self.dtype)
            vjp_kernel = getattr(kernels.elementwise, f"{self.op}_vjp_{name}")
            vjp_kernel(g, *(self.saved[read] for read in rules.names_read(vjp)), input_grad.reshape(-1))
            input_grads.append(input_grad)
        return input_grads

    def graph_backward(self, grad):
        """The same rule text, run on Tensors: the gradient gets a graph of its own."""
        values = {name: (x if x.requires_grad else x.data) for name, x in zip(rules.INPUT_NAMES, self.inputs)}
        vjps = rules.RULES[self.op].vjps
        if any("out" in rules.names_read(v) for v in vjps if v is not None):
            values["out"] = self.output_tensor()
        return [_tensor_rule(vjp)(grad, **values) if needed and vjp is not None else None
                for needed, vjp in zip(self.needs_input_grad, vjps)]

    def jvp(self, out, *tangents):
        """An elementwise Jacobian is diagonal: the tangent of out is the sum over inputs of
        the vjp rule with g replaced by that input's tangent."""
        values = dict(zip(rules.INPUT_NAMES, (x.data for x in self.inputs)), out=out)
        total = np.zeros(out.shape, out.dtype)
        for tangent, vjp in zip(tangents, self.numpy_vjps):
            if tangent is not None and vjp is not None:
                total = total + vjp(tangent, **values)
        return total


def _numpy_rule(op: str) -> tuple:
    """(forward, (vjp for a, vjp for b)) of a rule, as functions of (g, a, b, out) on numpy arrays."""
    rule = rules.RULES[op]
    return (staticmethod(rules.as_function(rule.forward, ARRAY_FUNCTIONS)),
            tuple(None if vjp is None else rules.as_function(vjp, ARRAY_FUNCTIONS) for vjp in rule.vjps))


@functools.lru_cache(maxsize=None)
def _tensor_rule(expression: str):
    return rules.as_function(expression, TENSOR_FUNCTIONS)


def _names_to_save(op: str, needs_input_grad: tuple) -> tuple:
    """The values the vjp rules of the inputs that need a gradient read."""
    vjps = rules.RULES[op].vjps
    needed = [vjp for vjp, needs in zip(vjps, needs_input_grad) if needs and vjp is not None]
    return tuple(name for name in rules.SAVABLE_NAMES if any(name in rules.names_read(vjp) for vjp in needed))


# One class per rule, so that `grad_fn=Tanh` names a class a reader can find here.
class Add(Elementwise): op = "add"
class Sub(Elementwise): op = "sub"
class Mul(Elementwise): op = "mul"
class Div(Elementwise): op = "div"
class Pow(Elementwise): op = "pow"
class Neg(Elementwise): op = "neg"
class Exp(Elementwise): op = "exp"
class Log(Elementwise): op = "log"
class Tanh(Elementwise): op = "tanh"
class Sigmoid(Elementwise): op = "sigmoid"
class Relu(Elementwise): op = "relu"


ELEMENTWISE_OPS = {cls.op: cls for cls in (Add, Sub, Mul, Div, Pow, Neg, Exp, Log, Tanh, Sigmoid, Relu)}
assert set(ELEMENTWISE_OPS) == set(rules.RULES), "every rule of the table needs its class above"
