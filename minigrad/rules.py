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
- small arrays and higher order: `as_function` makes a rule's text a Python function that
  runs on whole numpy arrays (below the size where a kernel call pays) or on Tensors, so
  the backward pass builds a graph of its own (`mg.grad(..., create_graph=True)`);
- forward mode: an elementwise Jacobian is diagonal, so the tangent of `out` is the sum
  of the vjps with `g` replaced by each input's tangent (`mg.jvp`).

A `None` vjp means "not differentiable in this input" (pow's exponent is a constant).
The functions the expressions may call (exp, log, tanh, sigmoid, relu) are defined for
the generated code in `minigrad.codegen.PRELUDE`; `as_function` takes them as an argument.
"""

import ast
import functools
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


class _AsCalls(ast.NodeTransformer):
    """`x if test else y` -> where(test, x, y), and a comparison's operands -> plain(...)."""

    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("where", ast.Load()), [node.test, node.body, node.orelse], [])

    def visit_Compare(self, node):
        self.generic_visit(node)
        node.left, node.comparators = _plain(node.left), [_plain(c) for c in node.comparators]
        return node


def _plain(operand):
    return operand if isinstance(operand, ast.Constant) else ast.Call(ast.Name("plain", ast.Load()), [operand], [])


def as_function(expression: str, functions: dict):
    """A rule's text as a Python function of keyword values (g, a, b, out) on whole values:
    numpy arrays, or Tensors to record a graph.

    `functions` gives exp, log, tanh, sigmoid, relu for that kind of value, plus
    `where(mask, x, y)` for `x if test else y` and `plain(value)`, the array a test is
    decided on (a test has no derivative: it only picks a branch).
    """
    body = ast.fix_missing_locations(_AsCalls().visit(ast.parse(expression, mode="eval")))
    code = compile(f"lambda g=None, a=None, b=None, out=None: ({ast.unparse(body.body)})", "<rule>", "eval")
    return eval(code, dict(functions))  # the text of our own rule table above, nothing from outside
