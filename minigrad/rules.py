"""The derivative rules of every elementwise op: one line each.

A rule is written on scalars, as Python expression text:
- `forward` computes `out` from the inputs `a` (and `b` for binary ops);
- `vjps` holds, for each input, its gradient contribution given the upstream
  gradient `g` (vector-Jacobian product of an elementwise op = a product of scalars).
  The rules may use `out`, the forward result, which is often cheaper than
  recomputing (tanh' = 1 - out^2, exp' = out).

One table, four uses:
- eager kernels: each rule is compiled into a forward kernel and one backward kernel
  per input (`minigrad.kernels`), one autograd node per op;
- fused kernels: the fused-cell compiler (`rnn.compiler`) inlines the same expressions
  into a single kernel for a whole recurrent step;
- higher order: `evaluate` runs a rule's text on Tensors, so the backward pass builds a
  graph of its own and can be differentiated again (`mg.grad(..., create_graph=True)`);
- forward mode: an elementwise Jacobian is diagonal, so the tangent of `out` is the sum
  of the vjps with `g` replaced by each input's tangent (`mg.jvp`).

A `None` vjp means "not differentiable in this input" (pow's exponent is a constant).
The functions the expressions may call (exp, log, tanh, sigmoid, relu) are defined for
the generated code in `minigrad.codegen.PRELUDE`; `evaluate` takes them as an argument.
"""

import ast
import functools
import operator
from typing import NamedTuple


class Rule(NamedTuple):
    forward: str
    vjps: tuple


RULES = {
    # name        forward             vjp for a                     vjp for b
    "add":     Rule("a + b",          ("g",                         "g")),
    "sub":     Rule("a - b",          ("g",                         "-g")),
    "mul":     Rule("a * b",          ("g * b",                     "g * a")),
    "div":     Rule("a / b",          ("g / b",                     "-g * out / b")),
    "pow":     Rule("a ** b",         ("g * b * a ** (b - 1.0)",    None)),
    "neg":     Rule("-a",             ("-g",)),
    "exp":     Rule("exp(a)",         ("g * out",)),
    "log":     Rule("log(a)",         ("g / a",)),
    "tanh":    Rule("tanh(a)",        ("g * (1.0 - out * out)",)),
    "sigmoid": Rule("sigmoid(a)",     ("g * out * (1.0 - out)",)),
    "relu":    Rule("relu(a)",        ("g if a > 0.0 else 0.0 * g",)),
}

INPUT_NAMES = ("a", "b")
SAVABLE_NAMES = ("a", "b", "out")  # what a backward may need from the forward pass


def arity(name: str) -> int:
    """Number of inputs of the elementwise op `name`."""
    return len(RULES[name].vjps)


@functools.lru_cache(maxsize=None)
def names_read(expression: str) -> tuple:
    """The forward values an expression reads, in the order of SAVABLE_NAMES.

    >>> names_read("-g * out / b")
    ('b', 'out')
    """
    used = {node.id for node in ast.walk(ast.parse(expression, mode="eval")) if isinstance(node, ast.Name)}
    return tuple(name for name in SAVABLE_NAMES if name in used)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_COMPARE = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le}


@functools.lru_cache(maxsize=None)
def _parsed(expression: str):
    return ast.parse(expression, mode="eval").body


def evaluate(expression: str, values: dict, functions: dict):
    """Run a rule's text on whole values (numpy arrays, or Tensors to record a graph).

    `values` maps the names (a, b, out, g) to values; `functions` gives exp, log, tanh,
    sigmoid, relu for that kind of value, plus `where(mask, x, y)` for `x if test else y`
    and `plain(value)`, the array a test is decided on (a test has no derivative: it only
    picks a branch).
    """

    def visit(node, plain=False):
        if isinstance(node, ast.Name):
            value = values[node.id]
            return functions["plain"](value) if plain else value
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](visit(node.left, plain), visit(node.right, plain))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -visit(node.operand, plain)
        if isinstance(node, ast.Call):
            return functions[node.func.id](*(visit(arg, plain) for arg in node.args))
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return _COMPARE[type(node.ops[0])](visit(node.left, True), visit(node.comparators[0], True))
        if isinstance(node, ast.IfExp):
            return functions["where"](visit(node.test, True), visit(node.body, plain), visit(node.orelse, plain))
        raise ValueError(f"rules.evaluate: unsupported syntax {ast.unparse(node)!r}")

    return visit(_parsed(expression))
