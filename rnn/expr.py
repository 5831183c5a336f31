"""Gate expressions: the symbolic values a cell's step function computes with.

A cell's step is written once, in ordinary Python arithmetic on these values:

    i = sigmoid(x.i + h.i)

Calling the step on `Expr` leaves records a small graph (a DAG of elementwise ops of
the rule table `minigrad.rules`), instead of computing anything. That graph is then
either *interpreted* with minigrad ops (the eager engine: every gate op is an autograd
node) or *compiled* into one Numba kernel per step (`rnn.compiler`). Both read the
same graph, so both compute the same function.

The vocabulary (`sigmoid`, `tanh`, `relu`, `exp`, `log`, + - * / **, unary -) is
exactly the elementwise part of the rule table: whatever has a derivative rule can be
used in a cell, and nothing else.
"""

import os

from minigrad import anomaly, rules
from minigrad.autograd import toposort

# Anomaly mode names the user's line, not a line inside this package (every rnn module that
# builds graph nodes imports this one, the gate vocabulary, first).
anomaly.internal_directories.append(os.path.dirname(os.path.abspath(__file__)))


class Expr:
    """A node of a traced step: an elementwise op applied to other Exprs, a leaf, or a constant."""

    __slots__ = ("op", "args", "name", "value")

    def __init__(self, op, args=(), name=None, value=None):
        self.op = op  # a rule name, or "leaf", or "const"
        self.args = tuple(args)
        self.name = name  # leaves: "x.i", "h.f", "h", "c"
        self.value = value  # constants: the number

    def __repr__(self):
        if self.op == "leaf":
            return self.name
        if self.op == "const":
            return repr(self.value)
        return f"{self.op}({', '.join(map(repr, self.args))})"

    def __bool__(self):
        raise TypeError(
            "a gate expression has no truth value while the cell is traced: "
            "use arithmetic and relu/sigmoid instead of `if`, `and`, `or`, min or max"
        )

    # arithmetic builds graph nodes
    def __add__(self, other): return _apply("add", self, other)
    def __radd__(self, other): return _apply("add", other, self)
    def __sub__(self, other): return _apply("sub", self, other)
    def __rsub__(self, other): return _apply("sub", other, self)
    def __mul__(self, other): return _apply("mul", self, other)
    def __rmul__(self, other): return _apply("mul", other, self)
    def __truediv__(self, other): return _apply("div", self, other)
    def __rtruediv__(self, other): return _apply("div", other, self)
    def __neg__(self): return _apply("neg", self)

    def __pow__(self, exponent):
        if not isinstance(exponent, (int, float)):
            raise TypeError("a gate expression can only be raised to a constant number")
        return _apply("pow", self, exponent)


class Projected(Expr):
    """A leaf with gate projections: `h` is the previous hidden state, `h.f` is slice f
    of W_hh @ h + b_hh (and `x.f` of W_ih @ x + b_ih)."""

    __slots__ = ("gates",)

    def __init__(self, name, gates, usable_raw=True):
        super().__init__("leaf", name=name if usable_raw else None)
        self.gates = {gate: Expr("leaf", name=f"{name}.{gate}") for gate in gates}
        if not usable_raw:
            self.name = None

    def __getattr__(self, gate):
        gates = object.__getattribute__(self, "gates")
        if gate in gates:
            return gates[gate]
        raise AttributeError(f"no gate named {gate!r}: this cell's gates are {', '.join(gates)}")

    def __repr__(self):
        return self.name or "x"


def _as_expr(value) -> Expr:
    if isinstance(value, Expr):
        if value.op == "leaf" and value.name is None:
            raise TypeError(
                "the input x can only be used through its gate projections (x.<gate>): "
                "it has the input size, not the hidden size"
            )
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Expr("const", value=float(value))
    raise TypeError(f"a gate expression cannot use a {type(value).__name__} ({value!r})")


def _apply(op, *args) -> Expr:
    return Expr(op, [_as_expr(a) for a in args])


# The vocabulary of functions; the operators are methods of Expr above.
def sigmoid(v): return _apply("sigmoid", v)
def tanh(v): return _apply("tanh", v)
def relu(v): return _apply("relu", v)
def exp(v): return _apply("exp", v)
def log(v): return _apply("log", v)


assert {"add", "sub", "mul", "div", "neg", "pow", "sigmoid", "tanh", "relu", "exp", "log"} <= set(rules.RULES)


def _is_op(node) -> bool:
    return node.op not in ("leaf", "const")


def topological(outputs) -> list:
    """Every op node that the outputs depend on, inputs first (leaves and constants excluded)."""
    ops = [e for e in outputs if _is_op(e)]
    return toposort(ops, lambda node: [a for a in node.args if _is_op(a)])
