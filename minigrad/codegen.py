"""Turning derivative rules (text) into Numba kernels (source files on disk).

Kernels are generated as Python source, written once to a file in the private user
cache directory (see minigrad.kernel_cache), and run from the generated text itself. A real
file is what lets Numba keep the compiled code between runs, and it lets a reader open
(or print) exactly what runs. The same functions serve the eager elementwise kernels (below) and the
fused recurrent-cell compiler in `rnn.fused.compiler`.
"""

import ast
import errno
import hashlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

from . import rules
from .kernel_cache import UnsafeCacheDirError, cannot_write, compile_in_memory, describe, in_memory, private_folder, \
    user_cache_dir
from .files import write_atomically

# Everything a rule expression may call, compiled as inlined scalar helpers.
PRELUDE = '''\
from math import exp, log, tanh
from minigrad.jit import kernel, scalar


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
GENERATED_PREFIX = "minigrad_generated_"


def load_module(name: str, source: str):
    """Write `source` to the kernel cache (once) and import it as a module.

    The file name carries a hash of the source, so changed code never meets a stale file.
    What runs is `source` itself, compiled here: the file is only what Numba's cache is keyed
    on (and what a reader opens), and a file that does not hold exactly `source` (damaged,
    or changed by someone) is written again. No bytecode (.pyc) is read or written for it.
    If the cache cannot keep the file (a full disk, no safe folder), the module runs from
    `source` all the same, under a name that is no file, and its kernels compile in memory.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"{GENERATED_PREFIX}{name}_{digest}"
    if module_name in _loaded:
        return _loaded[module_name]
    path = _kept_file(module_name, source.encode()) or Path(f"<in memory: {module_name}>")
    _loaded[module_name] = _execute(module_name, path, source)
    return _loaded[module_name]


def _kept_file(module_name: str, source: bytes):
    """The generated module's file in the kernel cache, holding exactly `source` (written if
    not); None if the cache cannot keep it (then this run compiles in memory, said once)."""
    if in_memory():
        return None
    try:
        directory = user_cache_dir() / "generated"
    except UnsafeCacheDirError:  # a folder the user named: refused, not passed over
        raise
    except OSError as error:
        compile_in_memory(describe(error))
        return None
    try:
        if private_folder(directory) is None:
            raise OSError(errno.EACCES, "not a private, writable folder")
        path = directory / f"{module_name}.py"
        if _read_bytes(path) != source:
            write_atomically(path, source, durable=False)  # a reader sees old or new, never half
            _written.add(module_name)
        return path
    except OSError as error:
        compile_in_memory(cannot_write(directory, error))
        return None


def _read_bytes(path: Path):
    try:
        return path.read_bytes()
    except OSError:
        return None


class _SourceTextLoader(importlib.abc.Loader):
    """Runs a module from the source text it is given (never from a cached .pyc)."""

    def __init__(self, path: Path, source: str):
        self.path, self.source = path, source

    def create_module(self, spec):
        return None  # the default module

    def exec_module(self, module):
        # dont_inherit: the flags of this file (e.g. future imports) are not the module's
        exec(compile(self.source, str(self.path), "exec", dont_inherit=True), module.__dict__)


def _spec(module_name: str, path: Path, source: str):
    spec = importlib.util.spec_from_loader(module_name, _SourceTextLoader(path, source), origin=str(path))
    spec.has_location = True  # module.__file__ = path: Numba finds the file for its cache key
    return spec


def _execute(module_name: str, path: Path, source: str):
    spec = _spec(module_name, path, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def import_file(path: Path):
    """Import the Python file `path` as the module named by its file name, from its text as
    read now (no .pyc)."""
    path = Path(os.path.abspath(path))
    return _execute(path.stem, path, path.read_text(encoding="utf-8"))


class GeneratedModuleFinder(importlib.abc.MetaPathFinder):
    """`import minigrad_generated_...` from `directory`, by the text of its file (for a process
    that did not generate the module itself: the compile helper of minigrad.precompile)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(GENERATED_PREFIX):
            return None
        file = self.directory / f"{name}.py"
        try:
            return _spec(name, file, file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None


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
