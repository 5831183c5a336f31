"""The loops over a window of a cell whose step reads no h.<gate> (see rnn.fused.elementwise_recurrence).

A template, like window.py: rnn.fused.compiler.compile_loops binds the cell's kernels. With no
W_hh h there is no matrix product per step and no unit depends on another, so each core
takes its rows and units through every step of the window without meeting the others.
The kernels' hp and b_hh arguments are empty stand-ins: the step reads neither.
"""

from minigrad.jit import prange
from rnn.fused.loops.cell_kernels import loop_kernel, step_backward, step_forward


@loop_kernel
def elementwise_forward(xp, ids, no_hp, no_b_hh, states, saved, row_bounds, unit_bounds):
    steps, unit_blocks = ids.shape[1], unit_bounds.size - 1
    for part in prange((row_bounds.size - 1) * unit_blocks):
        r, u = part // unit_blocks, part % unit_blocks
        for t in range(steps):
            step_forward(t, xp, ids, no_hp, no_b_hh, states[t], states[t + 1], saved[t], row_bounds[r],
                         row_bounds[r + 1], unit_bounds[u], unit_bounds[u + 1])


@loop_kernel
def elementwise_backward(g_outputs, xp, ids, no_hp, no_b_hh, states, saved, g_states, g_xp, row_bounds,
                         unit_bounds):
    # steps T-1 .. 0; g_states: in, d loss / d the final states; out, d loss / d the initial ones
    steps, unit_blocks = ids.shape[1], unit_bounds.size - 1
    for part in prange((row_bounds.size - 1) * unit_blocks):
        r, u = part // unit_blocks, part % unit_blocks
        first_row, last_row, first_unit, last_unit = row_bounds[r], row_bounds[r + 1], unit_bounds[u], unit_bounds[u + 1]
        for t in range(steps - 1, -1, -1):
            for b in range(first_row, last_row):
                g_states[0, b, first_unit:last_unit] += g_outputs[b, t, first_unit:last_unit]
            # (g_hp is never written by a cell without h.<gate>: g_xp stands in for it)
            step_backward(t, xp, ids, no_hp, no_b_hh, states[t], saved[t], g_states, g_xp, g_xp, first_row,
                          last_row, first_unit, last_unit)
