"""The fused-cell compiler: a cell's traced step becomes one forward and one backward kernel.

For every (batch row b, hidden unit j) the step is a small scalar program: read the
gate pre-activations and previous states, apply the gate expressions, write the new
states. The generator writes that program out as straight-line Python inside two
loops, and Numba compiles it. The backward kernel loads the transcendental values the
forward kernel saved, recomputes the cheap arithmetic around them, and then runs reverse mode *on the scalar program*:
walking the expression graph backwards, it emits `g_arg += vjp(g_node)` for every
argument, with the vjp text taken from the engine's rule table (`minigrad.rules`) --
the same rules the eager engine uses, so the two engines cannot disagree.

    print(rnn.fused.compiler.generate_source(rnn.cells.registry.get_cell("lstm")))

shows exactly what runs, every line commented with the gate expression it computes. The
generator's steps: name the step's values (`_StepNames`), load its inputs
(`_load_lines`), compute it (`_forward_lines`), differentiate it (`_backward_lines`),
and put the three kernels into a module (`_kernel_module`). The kernels' arguments are
documented in rnn.fused.loops.cell_kernels; the loops that call them are the templates of
rnn.fused.loops, bound to a cell's kernels by `compile_loops`.

Every variable the generator derives from the cell starts with an underscore prefix of
its own: `_x_<gate>` (x.<gate>), `_h_<gate>` (the first state's projection),
`_prev_<state>`, `_v<k>` (node k of the step), `_g<variable>` (its gradient). The
kernels' own names (xp, hp, b_hh, b, j, H, ...) never start with one, so no gate or
state name can collide with them (rnn.cells.registry.Cell._validate reserves none of them).
"""

import ast
import importlib.resources
from collections import Counter

import numpy as np

from minigrad import codegen, rules
from minigrad.autograd import toposort

from rnn.cells.registry import Cell

# Ops whose results the forward kernel stores for backward: transcendental functions cost
# far more to recompute than to load. Everything else is recomputed from the saved values.
SAVED_OPS = ("exp", "log", "tanh", "sigmoid")


class FusedCell:
    """The compiled kernels of one cell; `saved_per_step` values per unit are kept for backward."""

    def __init__(self, cell: Cell, module, source: str):
        self.cell, self.source = cell, source
        self.module = module  # step_forward, step_backward, step_inference: called from the loops (compile_loops)
        self.saved_per_step = sum(node.op in SAVED_OPS for node in cell.nodes)
        # True: step_backward writes d xp only, and g_hp must be the same array as g_xp
        self.merged = merged_projections(cell)


_compiled = {}


def compile_cell(cell: Cell, dtype=np.float32) -> FusedCell:
    """Generate, cache on disk and import the kernels of `cell` (once per process).

    float32 kernels use the fast vectorizable tanh/sigmoid of `codegen.FAST_PRELUDE`;
    float64 kernels (gradient checks, parity tests) use the exact functions.
    """
    fast = np.dtype(dtype) == np.float32
    key = (cell.fingerprint(), fast)
    if key not in _compiled:
        source = generate_source(cell, fast=fast)
        precision = "fast" if fast else "exact"
        module = codegen.load_module(f"cell_{cell.name}_{precision}_{key[0]}", source)
        _compiled[key] = FusedCell(cell, module, source)
    return _compiled[key]


# ---- the loops: templates bound to a cell's kernels ------------------------------------------

LOOP_TEMPLATES = "rnn.fused.loops"
STAND_INS = "rnn.fused.loops.cell_kernels"  # what a template imports its per-cell names from
_loop_modules = {}


def compile_loops(fused: FusedCell, template: str, parallel: bool):
    """The loops of rnn/fused/loops/<template>.py bound to `fused`'s kernels, as a module.

    Numba can only keep the machine code of a function that calls another on disk if the
    callee is a global of its module, so each cell gets its own copy of the loops. Their
    `@loop_kernel` functions run their `prange` loops on all cores if `parallel`, one
    iteration after the other if not (in a forked child, see minigrad.jit.cores).
    """
    key = (fused.module.__name__, template, parallel)
    if key not in _loop_modules:
        source = bind_loop_template(template, fused, parallel)
        _loop_modules[key] = codegen.load_module(f"{template}_loops_{fused.cell.name}", source)
    return _loop_modules[key]


def bind_loop_template(template: str, fused: FusedCell, parallel: bool) -> str:
    """The text of the template with its one import from STAND_INS replaced by the real
    names: `loop_kernel` (parallel_kernel or kernel) and the cell's generated kernels."""
    text = importlib.resources.files(LOOP_TEMPLATES).joinpath(f"{template}.py").read_text(encoding="utf-8")
    found = [node for node in ast.parse(text).body if isinstance(node, ast.ImportFrom) and node.module == STAND_INS]
    if len(found) != 1 or any(alias.asname for alias in found[0].names):
        raise RuntimeError(f"loop template {template}: needs exactly one plain `from {STAND_INS} import ...`")
    names = [alias.name for alias in found[0].names]
    kernels = [name for name in names if name != "loop_kernel"]
    binding = [f"# bound by rnn.fused.compiler.compile_loops to the kernels of cell {fused.cell.name!r}\n"]
    if "loop_kernel" in names:
        binding.append(f"from minigrad.jit import {'parallel_kernel' if parallel else 'kernel'} as loop_kernel\n")
    if kernels:
        binding.append(f"from {fused.module.__name__} import {', '.join(kernels)}\n")
    lines = text.splitlines(keepends=True)
    lines[found[0].lineno - 1:found[0].end_lineno] = binding
    return "".join(lines)


def merged_projections(cell: Cell) -> bool:
    """True if each gate's projections x.k and h.k enter the step only through their sum.

    Then d loss/d x.k = d loss/d h.k = d loss/d (x.k + h.k): the gradients of the input
    projection and of the recurrent one are the same array, which the backward kernel
    writes once instead of twice (LSTM, RNN: yes; GRU: no, its `h.n` is scaled by `r`).
    """
    first = cell.state[0]
    uses, sums = Counter(), set()
    for node in cell.nodes:
        leaves = [a.name for a in node.args if a.op == "leaf"]
        uses.update(leaves)
        if node.op == "add" and len(leaves) == 2:
            sums.add(frozenset(leaves))
    uses.update(o.name for o in cell.outputs if o.op == "leaf")
    return all(uses[f"x.{g}"] == uses[f"{first}.{g}"] == 1 and frozenset((f"x.{g}", f"{first}.{g}")) in sums
               for g in cell.gates)


# ---- step 1: names, for the code and for the comments ----------------------------------------

# How tightly each infix op binds, for writing a node as the cell's author would
# (anything else -- leaves, names, calls -- binds tightest).
_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "pow": ("**", 4)}
_NEG, _ATOM = 3, 9


class _StepNames:
    """The kernel variable of every value of the step (`variable`), and how the comments
    write it (`label`: the step's own name, r; or its formula, x.r + h.r)."""

    def __init__(self, cell: Cell):
        self.cell = cell
        reached = toposort(cell.outputs, lambda node: node.args)
        self.leaves = {node.name: node for node in reached if node.op == "leaf"}  # only the leaves the step reads
        first = cell.state[0]
        prefixed = {f"x.{g}": f"_x_{g}" for g in cell.gates}
        prefixed.update({f"{first}.{g}": f"_h_{g}" for g in cell.gates})
        prefixed.update({s: f"_prev_{s}" for s in cell.state})
        self._variables = {id(leaf): prefixed[name] for name, leaf in self.leaves.items()}
        self._variables.update({id(node): f"_v{k}" for k, node in enumerate(cell.nodes)})
        # A name the step gave a value (or the state it becomes), primed where it is a state's
        # name (the LSTM's new c is c', the previous one c).
        self._names = {}
        for s, output in zip(cell.state, cell.outputs):
            if output.op not in ("leaf", "const"):
                self._names[id(output)] = f"{s}'"
        for key, name in cell.local_names.items():
            self._names[key] = f"{name}'" if name in (*cell.state, "x") else name

    def variable(self, node, float32=False) -> str:
        """The kernel's text for `node` (a constant is its value, float32 in fast kernels)."""
        if node.op == "const":
            return f"f32({node.value!r})" if float32 else repr(node.value)
        return self._variables[id(node)]

    def gradient(self, node) -> str:
        return f"_g{self._variables[id(node)]}"

    def leaf(self, name: str):
        return self.leaves.get(name)

    def label(self, node) -> str:
        if node.op == "leaf":
            return node.name
        if node.op == "const":
            return f"{node.value:g}"
        return self._names.get(id(node)) or self.formula(node)

    def formula(self, node) -> str:
        """`node`'s op applied to its arguments' labels: sigmoid(x.r + h.r), (1 - z) * n."""
        if node.op in _INFIX:
            symbol, binding = _INFIX[node.op]
            left, right = node.args
            # ** groups to the right, the others to the left
            left_needs = self._binding(left) <= binding if node.op == "pow" else self._binding(left) < binding
            return f"{self._wrapped(left, left_needs)} {symbol} {self._wrapped(right, self._binding(right) <= binding)}"
        if node.op == "neg":
            return f"-{self._wrapped(node.args[0], self._binding(node.args[0]) <= _NEG)}"
        return f"{node.op}({', '.join(self.label(a) for a in node.args)})"

    def described(self, node) -> str:
        """`name = formula` for a named value, else its formula."""
        label = self.label(node)
        if node.op in ("leaf", "const"):
            return label
        formula = self.formula(node)
        return formula if label == formula else f"{label} = {formula}"

    def _binding(self, node) -> int:
        if node.op == "const":
            return _NEG if node.value < 0 else _ATOM
        if node.op == "leaf" or id(node) in self._names:
            return _ATOM
        return _INFIX[node.op][1] if node.op in _INFIX else _NEG if node.op == "neg" else _ATOM

    def _wrapped(self, node, parenthesize: bool) -> str:
        return f"({self.label(node)})" if parenthesize else self.label(node)


def _wrt(label: str) -> str:
    """dL/d<label>, with parentheses around a formula."""
    return f"dL/d({label})" if " " in label else f"dL/d{label}"


# ---- step 2: loading the step's inputs -------------------------------------------------------

def _load_lines(names: _StepNames, xp_row: str, state_array: str) -> list:
    """(code, comment) lines that read only the inputs the step uses; `xp_row`: the row
    index of xp ("row, " in the window kernels), `state_array`: where the states are."""
    cell, lines = names.cell, []
    first = cell.state[0]
    for k, gate in enumerate(cell.gates):
        x_leaf, h_leaf = names.leaf(f"x.{gate}"), names.leaf(f"{first}.{gate}")
        if x_leaf is not None:
            lines.append((f"{names.variable(x_leaf)} = xp[{xp_row}x{k} + j]", f"x.{gate}  (W_ih x + b_ih, gate {gate})"))
        if h_leaf is not None:
            lines.append((f"{names.variable(h_leaf)} = hp[b, h{k} + j] + b_hh[x{k} + j]",
                          f"{first}.{gate}  (W_hh {first} + b_hh, gate {gate})"))
    for i, s in enumerate(cell.state):
        if names.leaf(s) is not None:
            lines.append((f"{names.variable(names.leaf(s))} = {state_array}[{i}, b, j]", f"{s}, before the step"))
    return lines


# ---- step 3: the step, one line per node -----------------------------------------------------

def _forward_lines(names: _StepNames, fast: bool):
    """(compute, keep, recompute): the step's lines; the stores of the values backward loads;
    and the backward kernel's version of `compute`, which loads those values instead."""
    compute, keep, recompute = [], [], []
    constant_type = "f32" if fast else None
    for node in names.cell.nodes:
        # The fast (float32) forward keeps its constants float32 so it vectorizes 8 wide.
        arguments = dict(zip(rules.INPUT_NAMES, (names.variable(a, float32=fast) for a in node.args)))
        variable = names.variable(node)
        line = (f"{variable} = {codegen.substitute(rules.RULES[node.op].forward, arguments, constant_type)}",
                names.described(node))
        compute.append(line)
        if node.op in SAVED_OPS:  # backward loads it instead of recomputing it
            slot = f"saved[{len(keep)}, b, j]"
            keep.append((f"{slot} = {variable}", f"keep {names.label(node)} for backward"))
            recompute.append((f"{variable} = {slot}", f"{names.described(node)}, kept by step_forward"))
        else:
            recompute.append(line)
    return compute, keep, recompute


def _store_lines(names: _StepNames, array: str) -> list:
    """The new states into `array` (state_out, new_state)."""
    return [(f"{array}[{i}, b, j] = {names.variable(output)}", f"{s}' = {names.formula(output)}"
             if output.op not in ("leaf", "const") else f"{s}' = {names.label(output)}")
            for i, (s, output) in enumerate(zip(names.cell.state, names.cell.outputs))]


# ---- step 4: reverse mode on the scalar program ----------------------------------------------

def _backward_lines(names: _StepNames, fast: bool) -> list:
    """The gradient of every node, from the new states back to the inputs (`_g_v3 = ...`,
    `_g_v3 += ...` for a value used twice), then the stores of d xp, d hp and d previous states."""
    cell, lines, reached = names.cell, [], set()

    def accumulate(node, contribution, path):
        if node.op == "const":
            return
        if id(node) in reached:
            lines.append((f"{names.gradient(node)} += {contribution}",
                          f"{_wrt(names.label(node))}, plus the path via {path}"))
        else:
            reached.add(id(node))
            lines.append((f"{names.gradient(node)} = {contribution}", f"{_wrt(names.label(node))} via {path}"))

    for i, output in enumerate(cell.outputs):
        accumulate(output, f"g_states[{i}, b, j]", "the steps after this one")
    for node in reversed(cell.nodes):
        if id(node) not in reached:
            continue  # does not reach any output
        rule = rules.RULES[node.op]
        arguments = dict(zip(rules.INPUT_NAMES, (names.variable(a) for a in node.args)))
        arguments.update(out=names.variable(node), g=names.gradient(node))
        for arg, vjp in zip(node.args, rule.vjps):
            if vjp is not None:
                accumulate(arg, codegen.substitute(vjp, arguments, "f32" if fast else None), names.label(node))
    return lines + _gradient_store_lines(names, reached)


def _gradient_store_lines(names: _StepNames, reached: set) -> list:
    """d xp and d hp of each gate, and the direct part of d previous states (the path
    through W_hh is added by the caller as g_hp @ W_hh); 0 for an input the step does not read.
    A cell that reads no h.<gate> writes no d hp (its layer has no W_hh: rnn.fused.elementwise_recurrence)."""
    cell, first = names.cell, names.cell.state[0]

    def store(target, leaf_name):
        leaf = names.leaf(leaf_name)
        if leaf is None or id(leaf) not in reached:
            return f"{target} = 0.0", f"{_wrt(leaf_name)} = 0: the step does not use it"
        return f"{target} = {names.gradient(leaf)}", _wrt(leaf_name)

    lines = []
    merged = merged_projections(cell)
    for k, gate in enumerate(cell.gates):
        lines.append(store(f"g_xp[b, t, x{k} + j]", f"x.{gate}"))
        # (merged: the same numbers, and g_hp is g_xp; no h.<gate> at all: no W_hh, no g_hp)
        if not merged and cell.recurrent_projection:
            lines.append(store(f"g_hp[b, t, x{k} + j]", f"{first}.{gate}"))
    return lines + [store(f"g_states[{i}, b, j]", s) for i, s in enumerate(cell.state)]


# ---- step 5: the module ----------------------------------------------------------------------

def _body(lines) -> str:
    """The lines of a kernel's innermost loop, each with its comment, comments aligned."""
    width = min(max((len(code) for code, _ in lines), default=0), 44)
    return "".join(f"            {code:<{width}}  # {comment}\n" for code, comment in lines)


def _kernel_module(names: _StepNames, fast: bool, forward, backward, inference) -> str:
    """The three kernels around their loop bodies, after the prelude and a docstring with the step."""
    cell = names.cell
    gates = range(len(cell.gates))
    x_columns = ", ".join(f"x{k}" for k in gates)
    h_columns = ", ".join(f"h{k}" for k in gates)
    # Column offsets of the gates, unsigned: numba then knows that no index is negative and
    # leaves out its wrap-around code for negative indices, which would stop LLVM from
    # vectorizing the loop over j.
    plain_offsets = f"{x_columns} = " + ", ".join(f"uint64({k} * H)" for k in gates)
    blocked_offsets = f"{h_columns} = " + ", ".join(
        f"uint64({len(gates) - 1} * first_unit + {k} * (last_unit - first_unit))" for k in gates)
    named = [node for node in cell.nodes if names.label(node) != names.formula(node)]
    # step_forward's and step_backward's loops over their rows b and units j of step t
    window_loops = (f"    H = state_in.shape[2]\n    {plain_offsets}\n    {blocked_offsets}\n"
                    "    for b in range(first_row, last_row):\n        row = ids[b, t]\n"
                    "        for j in range(uint64(first_unit), uint64(last_unit)):\n")
    return (
        f'"""Fused kernels of cell {cell.name!r}, generated by rnn.fused.compiler from its gate expressions:\n'
        + "".join(f"    {names.described(node)}\n" for node in named)
        + "".join(f"    {s}' = {names.label(o)}\n" for s, o in zip(cell.state, cell.outputs)
                  if names.label(o) != f"{s}'")
        + '"""\n'
        + (codegen.FAST_PRELUDE if fast else codegen.PRELUDE)
        + f"""from numpy import uint64

# step_forward and step_backward do the rows first_row <= b < last_row and the units
# first_unit <= j < last_unit of step t (so that cores can share a step, see
# rnn.fused.recurrence). Row b's input projection at step t is xp[ids[b, t]]. xp, g_xp and g_hp
# are in the plain layout: gate k of unit j at column x_k + j, x_k = k * H. hp is in the
# blocked layout of rnn.fused.recurrence: the {len(gates)} gates of the block's units side by side,
# gate k of unit j at column h_k + j (with one block of all the units, h_k = x_k).
# Variables: _x_<gate> is x.<gate>, _h_<gate> is {cell.state[0]}.<gate>, _prev_<state> a state
# before the step, _v<k> the step's k-th value, _g<variable> d loss / d <variable>.

@kernel
def step_forward(t, xp, ids, hp, b_hh, state_in, state_out, saved, first_row, last_row, first_unit, last_unit):
{window_loops}{_body(forward)}

@kernel
def step_backward(t, xp, ids, hp, b_hh, state_in, saved, g_states, g_xp, g_hp, first_row, last_row, first_unit,
                  last_unit):
    # in: g_states[:, b, j] = d loss / d new states;  out: d loss / d previous states (direct part)
{window_loops}{_body(backward)}

@kernel
def step_inference(xp, hp, b_hh, state, new_state):
    # one step of every unit; xp and hp (B, G*H) both in the plain layout; state, new_state (states, B, H)
    H = state.shape[2]
    {plain_offsets}
    {h_columns} = {x_columns}
    for b in range(state.shape[1]):
        for j in range(uint64(0), uint64(H)):
{_body(inference)}"""
    )


def generate_source(cell: Cell, fast=False) -> str:
    """The Python source of the fused forward, backward and inference kernels of `cell`
    (`fast`: with the float32 approximations of tanh and sigmoid)."""
    names = _StepNames(cell)
    loads = _load_lines(names, "row, ", "state_in")
    compute, keep, recompute = _forward_lines(names, fast)
    forward = loads + compute + keep + _store_lines(names, "state_out")
    backward = loads + recompute + _backward_lines(names, fast)
    # The same step without a time axis or saved values, for sampling (rnn.fused.loops.sampling).
    inference = _load_lines(names, "b, ", "state") + compute + _store_lines(names, "new_state")
    return _kernel_module(names, fast, forward, backward, inference)
