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

shows exactly what runs. Kernel layout (H = hidden size, G = number of gates):
    xp       (B, T, G*H)   W_ih x + b_ih for every step (one GEMM before the loop)
    hp       (B, G*H)      W_hh h for this step (one GEMM per step); b_hh is added here
    states   (T+1, B, H)   one buffer per state; step t reads [t] and writes [t+1]
    saved    (T, S, B, H)  the S transcendental values of each step, for backward
"""

import numpy as np

from minigrad import codegen, rules

from .cells import Cell


# Ops whose results the forward kernel stores for backward: transcendental functions cost
# far more to recompute than to load. Everything else is recomputed from the saved values.
SAVED_OPS = ("exp", "log", "tanh", "sigmoid")


class FusedCell:
    """The compiled kernels of one cell; `saved_per_step` values per unit are kept for backward."""

    def __init__(self, cell: Cell, module, source: str):
        self.cell, self.source = cell, source
        self.module = module
        self.forward = module.step_forward
        self.backward = module.step_backward
        self.inference = module.step_inference
        self.saved_per_step = sum(node.op in SAVED_OPS for node in cell.nodes)


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


def _variable_names(cell: Cell) -> dict:
    """Leaf name in the traced graph -> variable name in the kernel ("h.f" -> "h_f", "c" -> "c_prev")."""
    names = {f"x.{g}": f"x_{g}" for g in cell.gates}
    names.update({f"{cell.state[0]}.{g}": f"{cell.state[0]}_{g}" for g in cell.gates})
    names.update({s: f"{s}_prev" for s in cell.state})
    return names


def _leaves_used(cell: Cell):
    used, stack, seen = {}, list(cell.outputs), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op == "leaf":
            used[node.name] = node
        stack.extend(node.args)
    return used


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
                lines.append(f"x_{gate} = xp[{xp_row}{k} * H + j]")
            if f"{first}.{gate}" in used:
                lines.append(f"{first}_{gate} = hp[b, {k} * H + j] + b_hh[{k} * H + j]")
        for i, s in enumerate(cell.state):
            if s in used:
                lines.append(f"{s}_prev = {previous_state(i, s)}")
        return lines

    loads = load_lines("b, t, ", lambda i, s: f"{s}[t, b, j]")
    # ---- the step, one line per op ---------------------------------------------------------
    compute, recompute, keep = [], [], []
    for node in cell.nodes:
        # The fast (float32) forward keeps its constants float32 so it vectorizes 8 wide.
        names = dict(zip(rules.INPUT_NAMES, (ref(a, float32=fast) for a in node.args)))
        line = f"{var[id(node)]} = {codegen.substitute(rules.RULES[node.op].forward, names, 'f32' if fast else None)}"
        compute.append(line)
        if node.op in SAVED_OPS:  # backward loads it instead of recomputing it
            slot = f"saved[t, {len(keep)}, b, j]"
            keep.append(f"{slot} = {var[id(node)]}")
            recompute.append(f"{var[id(node)]} = {slot}")
        else:
            recompute.append(line)

    state_list = ", ".join(cell.state)
    forward_lines = (loads + compute + keep
                     + [f"{s}[t + 1, b, j] = {ref(o)}" for s, o in zip(cell.state, cell.outputs)])
    # The same step without a time axis or saved values, for sampling (see rnn.sampler).
    inference_lines = (load_lines("b, ", lambda i, s: f"state[{i}, b, j]") + compute
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

    for s, output in zip(cell.state, cell.outputs):
        accumulate(output, f"g_{s}[b, j]")
    for node in reversed(cell.nodes):
        if id(node) not in grad:
            continue  # does not reach any output
        rule = rules.RULES[node.op]
        names = dict(zip(rules.INPUT_NAMES, (ref(a) for a in node.args)))
        names.update(out=var[id(node)], g=grad[id(node)])
        for arg, vjp in zip(node.args, rule.vjps):
            if vjp is not None:
                accumulate(arg, f"{codegen.substitute(vjp, names)}")

    def leaf_grad(name):
        leaf = used.get(name)
        return grad.get(id(leaf), "0.0") if leaf is not None else "0.0"

    stores = []
    for k, gate in enumerate(cell.gates):
        stores.append(f"g_xp[b, t, {k} * H + j] = {leaf_grad(f'x.{gate}')}")
        stores.append(f"g_hp[b, {k} * H + j] = {leaf_grad(f'{first}.{gate}')}")
    # the gradient w.r.t. each previous state (direct paths only; the path through W_hh
    # is added by the caller as g_hp @ W_hh)
    stores += [f"g_{s}[b, j] = {leaf_grad(s)}" for s in cell.state]

    def body(lines):
        return "".join(f"            {line}\n" for line in lines)

    grads_list = ", ".join(f"g_{s}" for s in cell.state)
    return (
        f'"""Fused kernels of cell {cell.name!r}, generated by rnn.compiler from its gate expressions:\n'
        + "".join(f"    {s}' = {o!r}\n" for s, o in zip(cell.state, cell.outputs))
        + '"""\n'
        + (codegen.FAST_PRELUDE if fast else codegen.PRELUDE)
        + f"""

@kernel
def step_forward(t, xp, hp, b_hh, {state_list}, saved):
    H = {first}.shape[2]
    for b in range({first}.shape[1]):
        for j in range(H):
{body(forward_lines)}

@kernel
def step_inference(xp, hp, b_hh, state, new_state):
    # xp, hp (B, G*H); state, new_state (number of states, B, H)
    H = state.shape[2]
    for b in range(state.shape[1]):
        for j in range(H):
{body(inference_lines)}

@kernel
def step_backward(t, xp, hp, b_hh, {state_list}, saved, {grads_list}, g_xp, g_hp):
    # in: g_<state>[b, j] = d loss / d new state;  out: d loss / d previous state (direct part)
    H = {first}.shape[2]
    for b in range({first}.shape[1]):
        for j in range(H):
{body(loads + recompute + backward_lines + stores)}"""
    )
