"""The loops over a window of time steps of a fused recurrent layer (see rnn.fused.recurrence).

A template: rnn.fused.compiler.compile_loops binds the cell's kernels (the import from
rnn.fused.loops.cell_kernels below) and loads a copy of this module per cell.
window_forward and window_backward run a whole window without returning to Python; the
cores share it by rows or by hidden units (rnn.fused.recurrence.split_of_work).
"""

from minigrad.jit import kernel, prange
from minigrad.blas import matmul_into
from rnn.fused.loops.cell_kernels import loop_kernel, step_backward, step_forward
from rnn.fused.packed_gemm import PANEL
from rnn.fused.packed_gemm_bf16 import panel_product_into  # (float32 or bf16 panels)


@kernel
def forward_part(t, xp, ids, w_blocked_t, w_panels, b_hh, states, saved, hp, first_row, last_row, first_unit,
                 last_unit):
    # step t for some rows and units: their part of W_hh h_t (one GEMM, on W's packed panels
    # when there are some), then the cell
    gates = hp.shape[2] // states.shape[3]
    # (w_panels None: no panels for this dtype on this CPU, and Numba compiles no packed path;
    # w_blocked_t is read only without panels)
    if w_panels is not None and w_panels.shape[0] > 0:
        panel_product_into(states[t, 0][first_row:last_row], w_panels, gates * first_unit // PANEL,
                           hp[t][first_row:last_row, gates * first_unit:gates * last_unit], False)
    else:
        matmul_into(states[t, 0][first_row:last_row], w_blocked_t[:, gates * first_unit:gates * last_unit],
                    hp[t][first_row:last_row, gates * first_unit:gates * last_unit])
    step_forward(t, xp, ids, hp[t], b_hh, states[t], states[t + 1], saved[t], first_row, last_row, first_unit,
                 last_unit)


@kernel
def backward_part(t, g_outputs, xp, ids, w_hh, w_hh_panels, b_hh, states, saved, hp, g_states, g_xp, g_hp, g_b_hh,
                  first_row, last_row, first_unit, last_unit):
    # step t backwards for some rows and units (t = -1: only the path into the initial h);
    # g_b_hh is a row of sums of its own for these rows
    g_h = g_states[0][first_row:last_row, first_unit:last_unit]
    if t + 1 < ids.shape[1]:  # the path from step t+1 through W_hh
        if w_hh_panels is not None and w_hh_panels.shape[0] > 0:
            panel_product_into(g_hp[first_row:last_row, t + 1], w_hh_panels, first_unit // PANEL, g_h, True)
        else:
            matmul_into(g_hp[first_row:last_row, t + 1], w_hh[:, first_unit:last_unit], g_h, accumulate=True)
    if t < 0:
        return
    g_h += g_outputs[first_row:last_row, t, first_unit:last_unit]
    step_backward(t, xp, ids, hp[t], b_hh, states[t], saved[t], g_states, g_xp, g_hp, first_row, last_row,
                  first_unit, last_unit)
    # d b_hh = the sum of d hp over rows and steps, added while this part of d hp is in cache
    hidden = w_hh.shape[1]
    for k in range(g_b_hh.size // hidden):
        g_b_block = g_b_hh[k * hidden + first_unit:k * hidden + last_unit]
        for row in range(first_row, last_row):
            g_b_block += g_hp[row, t, k * hidden + first_unit:k * hidden + last_unit]


# A core's part of the work: rows row_bounds[r]..row_bounds[r+1] and units
# unit_bounds[u]..unit_bounds[u+1], part = r * (unit blocks) + u. The cores take their
# parts of `run` steps, then meet: all the steps at once when the units are not cut
# (rows do not depend on each other), one step at a time when they are.

@loop_kernel
def window_forward(xp, ids, w_blocked_t, w_panels, b_hh, states, saved, hp, row_bounds, unit_bounds):
    steps, unit_blocks = ids.shape[1], unit_bounds.size - 1
    run = max(steps, 1) if unit_blocks == 1 else 1
    for first_step in range(0, steps, run):
        for part in prange((row_bounds.size - 1) * unit_blocks):
            r, u = part // unit_blocks, part % unit_blocks
            for t in range(first_step, min(first_step + run, steps)):
                forward_part(t, xp, ids, w_blocked_t, w_panels, b_hh, states, saved, hp, row_bounds[r],
                             row_bounds[r + 1], unit_bounds[u], unit_bounds[u + 1])


@loop_kernel
def window_backward(g_outputs, xp, ids, w_hh, w_hh_panels, b_hh, states, saved, hp, g_states, g_xp, g_hp, g_b_hh,
                    row_bounds, unit_bounds):
    # steps T-1 .. 0, then -1: the path from step 0 into the initial h
    steps, unit_blocks = ids.shape[1], unit_bounds.size - 1
    run = steps + 1 if unit_blocks == 1 else 1
    for last_step in range(steps - 1, -2, -run):
        for part in prange((row_bounds.size - 1) * unit_blocks):
            r, u = part // unit_blocks, part % unit_blocks
            for t in range(last_step, max(last_step - run, -2), -1):
                backward_part(t, g_outputs, xp, ids, w_hh, w_hh_panels, b_hh, states, saved, hp, g_states, g_xp, g_hp,
                              g_b_hh[r], row_bounds[r], row_bounds[r + 1], unit_bounds[u], unit_bounds[u + 1])
