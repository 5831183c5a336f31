"""The fused-cell compiler: a cell's traced step becomes one forward and one backward kernel.

For every (batch row b, hidden unit j) the step is a small scalar program: read the
gate pre-activations and previous states, apply the gate expressions, write the new
states. The generator writes that program out as straight-line Python inside two
loops, and Numba compiles it. The backward kernel loads the transcendental values the
forward kernel saved, recomputes the cheap arithmetic around them, and then runs reverse mode *on the scalar program*:
walking the expression graph backwards, it emits `g_arg += vjp(g_node)` for every
argument, with the vjp text taken from the engine's rule table (`minigrad.rules`) --
the same rules the eager engine uses, so the two engines cannot disagree.

    print(rnn.compiler.generate_source(rnn.cells.get_cell("lstm")))

shows exactly what runs. What the kernels of step t get (H = hidden size, G = number of
gates, S = number of states, K = number of saved values):
    xp, ids              (R, G*H), (B, T)  W_ih x + b_ih: row ids[b, t] of xp is that of
                                      batch row b at step t (rows of all steps, from one GEMM
                                      before the loop, or of a table, picked by id)
    hp                   (B, G*H)     W_hh h for this step (one GEMM per step), gates in blocks
                                      of units (see rnn.recurrence); b_hh is added here
    state_in, state_out  (S, B, H)    the states before and after the step
    saved                (K, B, H)    the step's transcendental values, for backward
and step t's backward kernel writes d xp and d hp into g_xp and g_hp, both (B, T, G*H)
in the plain gate order of xp. For most cells the two are the same numbers (every gate
adds its two projections before anything else, `x.f + h.f`): then the kernel writes
them once, and the caller passes one array as both (see `merged_projections`).
"""

from collections import Counter

import numpy as np

from minigrad import codegen, rules
from minigrad.autograd import toposort

from .cells import Cell


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


_loop_modules = {}


def compile_loops(fused: FusedCell, purpose: str, loop_source: str, parallel: bool):
    """Load `loop_source` -- the fixed loop code of rnn.recurrence (over time) or of
    rnn.sampler (over characters) -- as a module that imports this cell's step kernels.

    Numba can only keep the machine code of a function that calls another on disk if the
    callee is a global of its module, so each cell gets its own copy of the loops. Their
    `@loop_kernel` functions run their `prange` loops on all cores if `parallel`, one
    iteration after the other if not (in a forked child, see minigrad._jit.cores).
    """
    key = (fused.module.__name__, purpose, parallel)
    if key not in _loop_modules:
        source = (f'"""{purpose} of cell {fused.cell.name!r}, with its kernels (see rnn.compiler.compile_loops)."""\n'
                  f"from minigrad._jit import {'parallel_kernel' if parallel else 'kernel'} as loop_kernel\n"
                  f"from {fused.module.__name__} import step_backward, step_forward, step_inference\n"
                  + loop_source)
        _loop_modules[key] = codegen.load_module(f"{purpose.replace(' ', '_')}_{fused.cell.name}", source)
    return _loop_modules[key]


def _variable_names(cell: Cell) -> dict:
    """Leaf name in the traced graph -> variable name in the kernel ("h.f" -> "h_f", "c" -> "c_prev")."""
    names = {f"x.{g}": f"x_{g}" for g in cell.gates}
    names.update({f"{cell.state[0]}.{g}": f"{cell.state[0]}_{g}" for g in cell.gates})
    names.update({s: f"{s}_prev" for s in cell.state})
    return names


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


def _leaves_used(cell: Cell):
    """name -> leaf Expr, for every leaf the step's outputs depend on."""
    reached = toposort(cell.outputs, lambda node: node.args)
    return {node.name: node for node in reached if node.op == "leaf"}


def generate_source(cell: Cell, fast=False) -> str:
    """The Python source of the fused forward and backward kernels of `cell`
    (`fast`: with the float32 approximations of tanh and sigmoid)."""
    leaf_var = _variable_names(cell)
    used = _leaves_used(cell)
    var = {}  # id(Expr) -> variable name
    for name, leaf in used.items():
        var[id(leaf)] = leaf_var[name]
    for k, node in enumerate(cell.nodes):
        var[id(node)] = f"v{k}"

    def ref(node, float32=False):
        if node.op == "const":
            return f"f32({node.value!r})" if float32 else repr(node.value)
        return var[id(node)]

    first = cell.state[0]
    # ---- loads: only the leaves the step reads -------------------------------------------
    def load_lines(xp_row, previous_state):
        lines = []
        for k, gate in enumerate(cell.gates):
            if f"x.{gate}" in used:
                lines.append(f"x_{gate} = xp[{xp_row}x{k} + j]")
            if f"{first}.{gate}" in used:
                lines.append(f"{first}_{gate} = hp[b, h{k} + j] + b_hh[x{k} + j]")
        for i, s in enumerate(cell.state):
            if s in used:
                lines.append(f"{s}_prev = {previous_state(i)}")
        return lines

    loads = load_lines("row, ", lambda i: f"state_in[{i}, b, j]")
    # ---- the step, one line per op ---------------------------------------------------------
    compute, recompute, keep = [], [], []
    for node in cell.nodes:
        # The fast (float32) forward keeps its constants float32 so it vectorizes 8 wide.
        names = dict(zip(rules.INPUT_NAMES, (ref(a, float32=fast) for a in node.args)))
        line = f"{var[id(node)]} = {codegen.substitute(rules.RULES[node.op].forward, names, 'f32' if fast else None)}"
        compute.append(line)
        if node.op in SAVED_OPS:  # backward loads it instead of recomputing it
            slot = f"saved[{len(keep)}, b, j]"
            keep.append(f"{slot} = {var[id(node)]}")
            recompute.append(f"{var[id(node)]} = {slot}")
        else:
            recompute.append(line)

    forward_lines = (loads + compute + keep
                     + [f"state_out[{i}, b, j] = {ref(o)}" for i, o in enumerate(cell.outputs)])
    # The same step without a time axis or saved values, for sampling (see rnn.sampler).
    inference_lines = (load_lines("b, ", lambda i: f"state[{i}, b, j]") + compute
                       + [f"new_state[{i}, b, j] = {ref(o)}" for i, o in enumerate(cell.outputs)])

    # ---- reverse mode on the scalar program ---------------------------------------------------
    grad = {}  # id(Expr) -> name of its gradient variable
    backward_lines = []

    def accumulate(node, contribution):
        if node.op == "const":
            return
        if id(node) in grad:
            backward_lines.append(f"{grad[id(node)]} += {contribution}")
        else:
            grad[id(node)] = f"g_{ref(node)}"
            backward_lines.append(f"{grad[id(node)]} = {contribution}")

    for i, output in enumerate(cell.outputs):
        accumulate(output, f"g_states[{i}, b, j]")
    for node in reversed(cell.nodes):
        if id(node) not in grad:
            continue  # does not reach any output
        rule = rules.RULES[node.op]
        names = dict(zip(rules.INPUT_NAMES, (ref(a) for a in node.args)))
        names.update(out=var[id(node)], g=grad[id(node)])
        for arg, vjp in zip(node.args, rule.vjps):
            if vjp is not None:
                accumulate(arg, codegen.substitute(vjp, names, "f32" if fast else None))

    def leaf_grad(name):
        leaf = used.get(name)
        return grad.get(id(leaf), "0.0") if leaf is not None else "0.0"

    stores = []
    merged = merged_projections(cell)
    for k, gate in enumerate(cell.gates):
        stores.append(f"g_xp[b, t, x{k} + j] = {leaf_grad(f'x.{gate}')}")
        if not merged:  # (merged: the same numbers, and g_hp is g_xp)
            stores.append(f"g_hp[b, t, x{k} + j] = {leaf_grad(f'{first}.{gate}')}")
    # the gradient w.r.t. each previous state (direct paths only; the path through W_hh
    # is added by the caller as g_hp @ W_hh)
    stores += [f"g_states[{i}, b, j] = {leaf_grad(s)}" for i, s in enumerate(cell.state)]

    def body(lines):
        return "".join(f"            {line}\n" for line in lines)

    gates = range(len(cell.gates))
    x_columns = ", ".join(f"x{k}" for k in gates)
    h_columns = ", ".join(f"h{k}" for k in gates)
    # Column offsets of the gates, unsigned: numba then knows that no index is negative and
    # leaves out its wrap-around code for negative indices, which would stop LLVM from
    # vectorizing the loop over j.
    plain_offsets = f"{x_columns} = " + ", ".join(f"uint64({k} * H)" for k in gates)
    blocked_offsets = f"{h_columns} = " + ", ".join(
        f"uint64({len(gates) - 1} * first_unit + {k} * (last_unit - first_unit))" for k in gates)
    return (
        f'"""Fused kernels of cell {cell.name!r}, generated by rnn.compiler from its gate expressions:\n'
        + "".join(f"    {s}' = {o!r}\n" for s, o in zip(cell.state, cell.outputs))
        + '"""\n'
        + (codegen.FAST_PRELUDE if fast else codegen.PRELUDE)
        + f"""from numpy import uint64

# step_forward and step_backward do the rows first_row <= b < last_row and the units
# first_unit <= j < last_unit of step t (so that cores can share a step, see
# rnn.recurrence). Row b's input projection at step t is xp[ids[b, t]]. xp, g_xp and g_hp
# are in the plain layout: gate k of unit j at column x_k + j, x_k = k * H. hp is in the
# blocked layout of rnn.recurrence: the {len(gates)} gates of the block's units side by side,
# gate k of unit j at column h_k + j (with one block of all the units, h_k = x_k).

@kernel
def step_forward(t, xp, ids, hp, b_hh, state_in, state_out, saved, first_row, last_row, first_unit, last_unit):
    H = state_in.shape[2]
    {plain_offsets}
    {blocked_offsets}
    for b in range(first_row, last_row):
        row = ids[b, t]
        for j in range(uint64(first_unit), uint64(last_unit)):
{body(forward_lines)}

@kernel
def step_backward(t, xp, ids, hp, b_hh, state_in, saved, g_states, g_xp, g_hp, first_row, last_row, first_unit,
                  last_unit):
    # in: g_states[:, b, j] = d loss / d new states;  out: d loss / d previous states (direct part)
    H = state_in.shape[2]
    {plain_offsets}
    {blocked_offsets}
    for b in range(first_row, last_row):
        row = ids[b, t]
        for j in range(uint64(first_unit), uint64(last_unit)):
{body(loads + recompute + backward_lines + stores)}

@kernel
def step_inference(xp, hp, b_hh, state, new_state):
    # one step of every unit; xp and hp (B, G*H) both in the plain layout; state, new_state (states, B, H)
    H = state.shape[2]
    {plain_offsets}
    {h_columns} = {x_columns}
    for b in range(state.shape[1]):
        for j in range(uint64(0), uint64(H)):
{body(inference_lines)}"""
    )
