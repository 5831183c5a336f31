"""Stand-ins for what `rnn.fused.compiler.compile_loops` binds into a loop template.

A template (`window.py`, `sampling.py`) imports its per-cell names from this module in a
single `from rnn.fused.loops.cell_kernels import ...` statement; compile_loops replaces that
statement with imports of the real kernels, which `rnn.fused.compiler.generate_source` writes
for each cell. The signatures and docstrings here are the contract between the two;
the bodies never run in a compiled loop.

Shapes: B batch rows, H hidden units, G gates, S states, K values kept for backward.
"""

from minigrad.jit import kernel as loop_kernel  # noqa: F401  (bound to parallel_kernel on more than one core)

_UNBOUND = "a loop template's stand-in: rnn.fused.compiler.compile_loops binds the cell's generated kernel"


def step_forward(t, xp, ids, hp, b_hh, state_in, state_out, saved, first_row, last_row, first_unit, last_unit):
    """Step t of the cell for rows first_row:last_row and units first_unit:last_unit.

    xp: W_ih x + b_ih, (R, G*H); row ids[b, t] is batch row b's at step t. hp: W_hh h
    (B, G*H) in the blocked column order of rnn.fused.recurrence (b_hh, (G*H,), is added here).
    Reads state_in (S, B, H), writes state_out (S, B, H) and saved (K, B, H).
    """
    raise NotImplementedError(_UNBOUND)


def step_backward(t, xp, ids, hp, b_hh, state_in, saved, g_states, g_xp, g_hp, first_row, last_row, first_unit,
                  last_unit):
    """Step t backwards, for the same rows and units as step_forward.

    g_states (S, B, H): in, d loss / d the step's new states; out, d loss / d its previous
    states (the direct part: the path through W_hh is the caller's). Writes d xp and d hp
    of step t into g_xp and g_hp, (B, T, G*H), in the plain gate order (g_hp is g_xp
    when the cell's projections merge: rnn.fused.compiler.merged_projections; a cell that
    reads no h.<gate> writes no d hp at all).
    """
    raise NotImplementedError(_UNBOUND)


def step_inference(xp, hp, b_hh, state, new_state):
    """One step of every row and unit, nothing kept: xp, hp (B, G*H) in the plain gate
    order, state and new_state (S, B, H)."""
    raise NotImplementedError(_UNBOUND)
