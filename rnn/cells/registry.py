"""Recurrent cells declared as gate expressions, and the registry that finds them by name.

A cell is its gate names, its state names and one step function:

    @cell(gates=("r", "z", "n"), state=("h",))
    def gru(x, h):
        r = sigmoid(x.r + h.r)
        ...

`x.<gate>` is that gate's slice of W_ih @ x + b_ih, `h.<gate>` its slice of
W_hh @ h + b_hh (h is always the first state), and plain `h`, `c` are the previous
states. The step returns the new states in declared order. From the gate names the
layer derives its parameters in PyTorch's layout: weight_ih (gates*hidden, input),
weight_hh (gates*hidden, hidden), bias_ih, bias_hh, gates stacked in declared order.

A cell whose step never reads an `h.<gate>` (minGRU, QRNN, SRU below) computes its gates
from x alone and mixes the state only by elementwise products: it has no weight_hh and no
bias_hh (`Cell.recurrent_projection` is False), and the fused engine runs its recurrence
as an elementwise loop with no matrix product per step (rnn.fused.elementwise_recurrence).

The built-in cells below use only this public vocabulary: a user's cell gets exactly
the same eager and fused engines.
"""

import hashlib
import inspect
import keyword
import sys
import types
import unicodedata
from pathlib import Path

from minigrad.autograd import toposort

from rnn.cells import expr
from rnn.errors import UserError
from rnn.cells.expr import Expr, Projected, exp, log, relu, sigmoid, tanh  # noqa: F401  (the vocabulary)


class CellError(UserError, ValueError):
    """A cell declaration that cannot work (bad names, wrong number of outputs...)."""


class Cell:
    """A traced recurrent cell: names, the step function and its expression graph."""

    def __init__(self, name, gates, state, step, doc=""):
        self.name, self.gates, self.state, self.step = name, tuple(gates), tuple(state), step
        self.doc = doc
        self._validate()
        self.outputs = self._trace()  # one Expr per state: the new value of that state
        self.nodes = expr.topological(self.outputs)
        # False: no output depends on an h.<gate>, so the layer has no W_hh to multiply by
        reached = toposort(self.outputs, lambda node: node.args)
        self.recurrent_projection = any(node.op == "leaf" and node.name in self.recurrent_leaf_names()
                                        for node in reached)
        text = repr((self.gates, self.state, self.outputs))
        self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:12]

    def _validate(self):
        # The generated kernels cannot collide with these names: every variable they derive
        # from the cell starts with a prefix of their own (_x_, _h_, _prev_, _v, _g_; see
        # rnn.fused.compiler). What stays reserved is what Python and the expression API need.
        for kind, names in (("gate", self.gates), ("state", self.state)):
            if not names:
                raise CellError(f"cell {self.name}: needs at least one {kind} name")
            for name in names:
                # A keyword cannot be a parameter or an attribute; Python reads identifiers in
                # their NFKC form, so another spelling of one name would be the same name.
                usable = (name.isidentifier() and not keyword.iskeyword(name)
                          and unicodedata.normalize("NFKC", name) == name)
                if kind == "gate":
                    # x.<gate> is an attribute of an Expr: its own attributes, and Python's
                    # underscore names (__class__...), would be found instead of the gate
                    usable = usable and name not in _EXPR_ATTRIBUTES and not name.startswith("_")
                else:
                    # the expression API names the input's projections x.<gate>; a state x
                    # would give the same names to the first state's projections
                    usable = usable and name != "x"
                if not usable:
                    raise CellError(f"cell {self.name}: {name!r} cannot be a {kind} name")
            if len(set(names)) != len(names):
                raise CellError(f"cell {self.name}: repeated {kind} name in {names}")
        parameters = list(inspect.signature(self.step).parameters)
        if len(parameters) != 1 + len(self.state):
            raise CellError(
                f"cell {self.name}: the step takes (x, {', '.join(self.state)}) "
                f"but is defined with ({', '.join(parameters)})"
            )

    def leaves(self):
        """The step's inputs as Expr leaves: x and the first state projected by gate."""
        x = Projected("x", self.gates, usable_raw=False)
        first = Projected(self.state[0], self.gates)
        return (x, first, *(Expr("leaf", name=name) for name in self.state[1:]))

    def _trace(self):
        result, local_variables = _call_keeping_locals(self.step, self.leaves())
        # The step's own names for its values (r, z, n of the GRU): the generated kernels'
        # comments use them. id(node) -> name; the nodes live as long as the cell.
        self.local_names = {}
        for name, value in local_variables.items():
            if isinstance(value, Expr) and value.op not in ("leaf", "const"):
                self.local_names.setdefault(id(value), name)
        outputs = result if isinstance(result, tuple) else (result,)
        if len(outputs) != len(self.state):
            raise CellError(
                f"cell {self.name}: the step must return {len(self.state)} new states "
                f"({', '.join(self.state)}), it returned {len(outputs)}"
            )
        try:
            return tuple(expr._as_expr(o) for o in outputs)
        except TypeError as error:
            raise CellError(f"cell {self.name}: {error}") from None

    def leaf_names(self):
        """Names of every input the step can read, in a fixed order: gate slices, then states."""
        return [f"x.{g}" for g in self.gates] + [f"{self.state[0]}.{g}" for g in self.gates] + list(self.state)

    def recurrent_leaf_names(self) -> set:
        """The names of the first state's projections, h.<gate>: slices of W_hh h + b_hh."""
        return {f"{self.state[0]}.{g}" for g in self.gates}

    def fingerprint(self) -> str:
        """A stable hash of the traced graph (names of the generated kernels use it)."""
        return self._fingerprint

    def __repr__(self):
        return f"Cell({self.name!r}, gates={self.gates}, state={self.state})"


_EXPR_ATTRIBUTES = set(Expr.__slots__) | set(Projected.__slots__)


def _call_keeping_locals(step, arguments):
    """step(*arguments), and the step's local variables as it returned them (empty if the
    step is not a plain Python function). They only name values in comments; the profile
    hook is this thread's and is put back at once."""
    code = getattr(step, "__code__", None)
    local_variables = {}

    def watch(frame, event, _):
        if event == "return" and frame.f_code is code:
            local_variables.update(frame.f_locals)

    previous = sys.getprofile()
    sys.setprofile(watch if code is not None else previous)
    try:
        result = step(*arguments)
    finally:
        sys.setprofile(previous)
    return result, local_variables


_REGISTRY = {}


def cell(gates, state=("h",), name=None):
    """Declare a cell and register it under `name` (default: the function's name)."""

    def declare(step):
        new = Cell(name or step.__name__, gates, state, step, doc=inspect.getdoc(step) or "")
        register(new)
        return new

    return declare


def register(new: Cell) -> Cell:
    """Make `new` findable by name; a user's cell may not replace a built-in one."""
    existing = _REGISTRY.get(new.name)
    is_builtin = existing is not None and existing.step.__module__ == __name__
    if is_builtin and new.step.__module__ != __name__:
        raise CellError(f"cell name {new.name!r} is taken by a built-in cell: choose another name")
    _REGISTRY[new.name] = new
    return new


def get_cell(name: str) -> Cell:
    if isinstance(name, Cell):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CellError(f"unknown cell {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def available_cells() -> list:
    return sorted(_REGISTRY)


# The built-in cells whose equations and weight layout are a torch.nn module's: a checkpoint of
# one loads into Embedding -> that module (batch_first=True) -> Linear. No other cell's does
# (mingru, qrnn, sru have no W_hh at all); a user's cell cannot take these names.
PYTORCH_MODULES = {"rnn": "nn.RNN", "rnn_relu": "nn.RNN(nonlinearity='relu')", "lstm": "nn.LSTM", "gru": "nn.GRU"}


def pytorch_module(name: str):
    """The torch.nn module that computes the built-in cell `name`, or None."""
    return PYTORCH_MODULES.get(name)


def load_cell_file(path) -> list:
    """Run a user's Python file that declares cells with @cell; returns their names.

    Like `python FILE`: the source text is read and compiled here, never imported through
    the import system, so a `__pycache__/*.pyc` beside the file is never run instead of the
    source the user reviewed, and nothing is written beside it. The code runs in a fresh
    module registered in sys.modules (dataclasses and pickling-free helpers look it up there).
    """
    path = Path(path)
    if not path.is_file():
        raise CellError(f"cell file not found: {path}")
    before = dict(_REGISTRY)
    module_name = f"minigrad_user_cells_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]}"
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102  (the user's own cell file: trusted, see the help)
    except CellError:
        raise
    except Exception as error:  # noqa: BLE001  (the user's file: report it in one line)
        raise CellError(f"cannot load cell file {path}: {type(error).__name__}: {error}") from None
    added = [name for name, c in _REGISTRY.items() if before.get(name) is not c]
    if not added:
        raise CellError(f"cell file {path} declares no cell (use @cell(gates=..., state=...))")
    return added


# ---- built-in cells: PyTorch's equations ----------------------------------------------------

@cell(gates=("h",), state=("h",))
def rnn(x, h):
    """Elman RNN (torch.nn.RNN, tanh): h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    return tanh(x.h + h.h)


@cell(gates=("h",), state=("h",))
def rnn_relu(x, h):
    """Elman RNN with relu (torch.nn.RNN, nonlinearity='relu')."""
    return relu(x.h + h.h)


@cell(gates=("i", "f", "g", "o"), state=("h", "c"))
def lstm(x, h, c):
    """LSTM (torch.nn.LSTM): input, forget, cell and output gates."""
    i = sigmoid(x.i + h.i)
    f = sigmoid(x.f + h.f)
    g = tanh(x.g + h.g)
    o = sigmoid(x.o + h.o)
    c = f * c + i * g
    return o * tanh(c), c


@cell(gates=("r", "z", "n"), state=("h",))
def gru(x, h):
    """GRU (torch.nn.GRU): the reset gate multiplies W_hn h + b_hn, not h."""
    r = sigmoid(x.r + h.r)
    z = sigmoid(x.z + h.z)
    n = tanh(x.n + r * h.n)
    return (1 - z) * n + z * h


@cell(gates=("z", "n"), state=("h",))
def mgu(x, h):
    """Minimal gated unit (Zhou et al. 2016): one forget gate does the work of GRU's two."""
    f = sigmoid(x.z + h.z)
    n = tanh(x.n + f * h.n)
    return (1 - f) * h + f * n


@cell(gates=("f", "g", "o"), state=("h", "c"))
def cifg_lstm(x, h, c):
    """Coupled input-forget gate LSTM (Greff et al. 2017): input gate = 1 - forget gate."""
    f = sigmoid(x.f + h.f)
    g = tanh(x.g + h.g)
    o = sigmoid(x.o + h.o)
    c = f * c + (1 - f) * g
    return o * tanh(c), c


@cell(gates=("z", "n"), state=("h",))
def ligru(x, h):
    """Light GRU (Ravanelli et al. 2018) without its batch norm: no reset gate, relu candidate."""
    z = sigmoid(x.z + h.z)
    n = relu(x.n + h.n)
    return z * h + (1 - z) * n


# ---- built-in cells whose recurrence is elementwise: no h.<gate>, so no W_hh ------------------

@cell(gates=("z", "h"), state=("h",))
def mingru(x, h):
    """minGRU (Feng et al. 2024, "Were RNNs all we needed?"): the GRU with gates from x alone.

    z = sigmoid(x.z), h~ = x.h, h' = (1 - z) * h + z * h~  (Martin & Cundy 2018's linear
    recurrence with a sigmoid gate); no W_hh."""
    z = sigmoid(x.z)
    return (1 - z) * h + z * x.h


@cell(gates=("z", "f", "o"), state=("h", "c"))
def qrnn(x, h, c):
    """QRNN with window 1 and fo-pooling (Bradbury et al. 2016): z = tanh(x.z),
    f = sigmoid(x.f), o = sigmoid(x.o), c' = f * c + (1 - f) * z, h' = o * c'; no W_hh."""
    z = tanh(x.z)
    f = sigmoid(x.f)
    o = sigmoid(x.o)
    c = f * c + (1 - f) * z
    return o * c, c


@cell(gates=("c", "f", "r", "s"), state=("h", "c"))
def sru(x, h, c):
    """SRU (Lei et al. 2018) without its peephole vectors v_f, v_r: f = sigmoid(x.f),
    r = sigmoid(x.r), c' = f * c + (1 - f) * x.c, h' = r * c' + (1 - r) * x.s, where the
    highway input x.s is a projection of x (the paper's W' x when the sizes differ); no W_hh."""
    f = sigmoid(x.f)
    r = sigmoid(x.r)
    c = f * c + (1 - f) * x.c
    return r * c + (1 - r) * x.s, c
