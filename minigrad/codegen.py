"""Turning derivative rules (text) into Numba kernels (source files on disk).

Kernels are generated as Python source, written once to a file in the user cache
directory and imported from there. A real file is what lets Numba's `cache=True`
keep the compiled code between runs, and it lets a reader open (or print) exactly
what runs. The same functions serve the eager elementwise kernels (below) and the
fused recurrent-cell compiler in `rnn.compiler`.
"""

import ast
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from . import rules
from ._jit import user_cache_dir

# Everything a rule expression may call, compiled as inlined scalar helpers.
PRELUDE = '''\
from math import exp, log, tanh
from minigrad._jit import kernel, scalar


@scalar
def sigmoid(x):
    # Two branches so exp never overflows: both are exact for their half-line.
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


@scalar
def relu(x):
    return x if x > 0.0 else 0.0 * x
'''


# For float32 kernels where speed matters (the fused recurrent cells): libm's tanh and exp
# are scalar calls that LLVM cannot vectorize, and they cost ~15x the rest of an LSTM
# step. A rational approximation is plain arithmetic, so the loop vectorizes. Its
# coefficients are a least-squares fit of tanh(x)/x on [0, 9] as P(x^2)/Q(x^2); the
# largest error is 8.5e-7 in float32 (tanh(9) rounds to 1 in float32, so clamping
# there is exact). Its constants are float32 so that float32 data is not widened to
# float64, which would halve the vector width. float64 kernels keep PRELUDE's functions.
FAST_PRELUDE = PRELUDE + '''from numpy import float32 as f32  # f32(constant): keeps float32 math in float32


@scalar
def tanh(x):  # replaces math.tanh in this module
    x = min(max(x, f32(-9.0)), f32(9.0))
    s = x * x
    p = f32(0.9999994979175416) + s * (f32(0.12623006838121814) + s * (f32(0.002606775889514682)
        + s * (f32(6.514872853059794e-06) - s * f32(5.047263551549719e-09))))
    q = f32(1.0) + s * (f32(0.4595594081751761) + s * (f32(0.022465003866146336) + s * f32(0.00018541514651075386)))
    return x * p / q


@scalar
def sigmoid(x):  # replaces the exact sigmoid above: sigmoid(x) = (1 + tanh(x / 2)) / 2
    return f32(0.5) + f32(0.5) * tanh(f32(0.5) * x)
'''


def substitute(expression: str, names: dict, constant_type: str = None) -> str:
    """Rewrite `expression`, replacing each variable by the expression text `names[var]`
    (and, with `constant_type`, each number c by `constant_type(c)`).

    >>> substitute("g * (1.0 - out * out)", {"g": "G[i]", "out": "v3"})
    'G[i] * (1.0 - v3 * v3)'
    """

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in names:
                return ast.parse(names[node.id], mode="eval").body
            return node

        def visit_Constant(self, node):
            if constant_type and isinstance(node.value, float):
                return ast.Call(ast.Name(constant_type, ast.Load()), [node], [])
            return node

    tree = Rename().visit(ast.parse(expression, mode="eval"))
    return ast.unparse(tree)


_loaded = {}
_written = set()  # names of the modules whose file this process wrote


def load_module(name: str, source: str):
    """Write `source` to the kernel cache (once) and import it as a module.

    The file name carries a hash of the source, so changed code never meets a stale file.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"minigrad_generated_{name}_{digest}"
    if module_name in _loaded:
        return _loaded[module_name]
    directory = user_cache_dir() / "generated"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module_name}.py"
    if not path.exists() or path.read_text() != source:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source)
        os.replace(temporary, path)  # atomic: a concurrent reader sees old or new, never half
        _written.add(module_name)
    _loaded[module_name] = import_file(path)
    return _loaded[module_name]


def import_file(path: Path):
    """Import the Python file `path` as the module named by its file name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def written_now(module) -> bool:
    """True if this process wrote the module's file: then none of its kernels can be in
    Numba's on-disk cache yet (the cache is keyed by the file's time stamp)."""
    return module.__name__ in _written


def elementwise_source() -> str:
    """Source of the eager kernels: for each rule, `<op>_forward` and `<op>_vjp_<input>`
    (whose arguments are g, the values that rule reads (`rules.names_read`), and grad).

    Every kernel works on flat, contiguous, same-length arrays; the caller broadcasts.
    """
    parts = [PRELUDE]
    for op, rule in rules.RULES.items():
        inputs = rules.INPUT_NAMES[: len(rule.vjps)]
        at_i = {name: f"{name}[i]" for name in (*inputs, "out", "g")}
        parts.append(
            f"\n\n@kernel\ndef {op}_forward({', '.join(inputs)}, out):\n"
            f"    for i in range(out.size):\n"
            f"        out[i] = {substitute(rule.forward, at_i)}\n"
        )
        for name, vjp in zip(inputs, rule.vjps):
            if vjp is None:
                continue
            reads = "".join(f"{read}, " for read in rules.names_read(vjp))  # only what the rule reads
            parts.append(
                f"\n\n@kernel\ndef {op}_vjp_{name}(g, {reads}grad):\n"
                f"    for i in range(grad.size):\n"
                f"        grad[i] = {substitute(vjp, at_i)}\n"
            )
    return "".join(parts)
