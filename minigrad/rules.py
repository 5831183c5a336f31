"""The derivative rules of every elementwise op: one line each.

A rule is written on scalars, as Python expression text:
- `forward` computes `out` from the inputs `a` (and `b` for binary ops);
- `vjps` holds, for each input, its gradient contribution given the upstream
  gradient `g` (vector-Jacobian product of an elementwise op = a product of scalars).
  The rules may use `out`, the forward result, which is often cheaper than
  recomputing (tanh' = 1 - out^2, exp' = out).

This one table serves both engines:
- the eager engine compiles each rule into a forward kernel and one backward kernel
  per input (see `minigrad.kernels`), one autograd node per op;
- the fused-cell compiler (`rnn.compiler`) inlines the same expressions into a
  single kernel for a whole recurrent step.

A `None` vjp means "not differentiable in this input" (pow's exponent is a constant).
The functions the expressions may call (exp, log, tanh, sigmoid) are defined for
the generated code in `minigrad.codegen.PRELUDE`.
"""

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


def arity(name: str) -> int:
    """Number of inputs of the elementwise op `name`."""
    return len(RULES[name].vjps)
