"""The fused recurrence: a layer of any cell over a window of steps, as one autograd node.

Forward, for t = 0 .. T-1:    hp_t = W_hh h_t             (one GEMM)
                              states_t+1 = cell(xp_t, hp_t + b_hh, states_t)   (the cell's kernel)
Backward, for t = T-1 .. 0:   the cell's backward kernel gives d xp_t, d hp_t and the direct
                              part of d states_t; the path through W_hh adds d hp_t W_hh to d h_t.
At the end one GEMM gives d W_hh = sum_t d hp_t^T h_t over all steps at once.

The loops over time are compiled too (LOOP_SOURCE below, compiled with each cell's
kernels by rnn.compiler.compile_loops), so a window never returns to Python between
steps, and each step is shared by the cores: the hidden units are cut into blocks, one
per core, and a core does its block's rows of the GEMM and its block's units of the
cell. The steps themselves must run in order; the cores wait for each other at the end
of every step.

To make a block's rows of W_hh one contiguous matrix (one GEMM call per block), the
forward pass works on W_hh with its rows reordered, "blocked": for each block, the G
gates' rows of that block's units. hp uses the same column order, which the generated
kernels know (rnn.compiler). The backward pass needs no such order (a block's part of
d hp_t W_hh is all of d hp_t times some columns of W_hh), so d xp, d hp and the
gradients are in PyTorch's order. For most cells d hp is d xp (see
rnn.compiler.merged_projections): the kernel writes it once, into one array.

On a cold kernel cache, building a layer starts compiling window_backward in a helper
process (compile_backward_elsewhere, minigrad.precompile), so that the first training
step compiles on two cores.
"""

import numpy as np

from minigrad import blas, codegen
from minigrad._jit import cores
from minigrad.autograd import Function
from minigrad.precompile import compile_elsewhere

from .compiler import compile_loops

LOOP_SOURCE = '''
from minigrad._jit import prange
from minigrad.blas import matmul_into


@loop_kernel
def window_forward(xp, w_blocked, b_hh, states, saved, hp, bounds):
    gates = w_blocked.shape[0] // w_blocked.shape[1]
    for t in range(xp.shape[1]):
        for block in prange(bounds.size - 1):
            first, last = bounds[block], bounds[block + 1]
            rows = hp[t][:, gates * first:gates * last]
            matmul_into(states[t, 0], w_blocked[gates * first:gates * last], rows, transpose_b=True)
            step_forward(t, xp, hp[t], b_hh, states[t], states[t + 1], saved[t], first, last)


@loop_kernel
def window_backward(g_outputs, xp, w_hh, b_hh, states, saved, hp, g_states, g_xp, g_hp, g_b_hh, bounds):
    steps = xp.shape[1]
    hidden = w_hh.shape[1]
    for t in range(steps - 1, -1, -1):
        for block in prange(bounds.size - 1):
            first, last = bounds[block], bounds[block + 1]
            g_h = g_states[0][:, first:last]
            if t + 1 < steps:  # the path from step t+1 through W_hh, for this block's units
                matmul_into(g_hp[:, t + 1], w_hh[:, first:last], g_h, accumulate=True)
            g_h += g_outputs[:, t, first:last]
            step_backward(t, xp, hp[t], b_hh, states[t], saved[t], g_states, g_xp, g_hp, first, last)
            # d b_hh = the sum of d hp over rows and steps, added while this block's d hp is in cache
            for k in range(g_b_hh.size // hidden):
                g_b_block = g_b_hh[k * hidden + first:k * hidden + last]
                for row in range(g_hp.shape[0]):
                    g_b_block += g_hp[row, t, k * hidden + first:k * hidden + last]
    matmul_into(g_hp[:, 0], w_hh, g_states[0], accumulate=True)  # ... and from step 0 to the initial h
'''

# A block of fewer units than this makes GEMMs too thin to gain from another core.
MIN_UNITS_PER_BLOCK = 32


def unit_blocks(hidden: int) -> np.ndarray:
    """Bounds of the blocks of hidden units, one block per core: [0, ..., hidden]."""
    count = max(1, min(cores(), hidden // MIN_UNITS_PER_BLOCK))
    return np.array([block * hidden // count for block in range(count + 1)], np.int64)


def blocked_rows(gates: int, bounds: np.ndarray) -> np.ndarray:
    """Row order of W_hh in the blocked layout: for each block, each gate's rows of its units."""
    hidden = bounds[-1]
    return np.concatenate([np.arange(k * hidden + first, k * hidden + last)
                           for first, last in zip(bounds[:-1], bounds[1:]) for k in range(gates)])


def window_loops(fused, hidden: int):
    """The compiled loops of `fused`'s cell for layers of `hidden` units (one-core
    versions if the units make a single block)."""
    return compile_loops(fused, "window loops", LOOP_SOURCE, parallel=len(unit_blocks(hidden)) > 2)


# On a cold kernel cache, the backward loop compiles in a helper process while this one
# compiles the forward pass (see minigrad.precompile): loop module name -> CompileJob.
_backward_compiles = {}


def compile_backward_elsewhere(fused, hidden: int, dtype) -> None:
    """If this process has just generated the window loops of `fused` (so none of them is
    in the kernel cache), start compiling window_backward in a helper process. Called when
    a layer is built; the first backward pass waits for the helper (FusedRecurrence.backward)."""
    loops = window_loops(fused, hidden)
    if not codegen.written_now(loops) or loops.__name__ in _backward_compiles or cores() < 2:
        return
    dtype = np.dtype(dtype)
    arrays = [np.empty((1,) * ndim, dtype) for ndim in (3, 3, 2, 1, 4, 4, 3, 3, 3, 3, 1)]
    # like window_backward's arguments: g_outputs, xp, w_hh, b_hh, states, saved, hp,
    # g_states, g_xp, g_hp, g_b_hh (C-contiguous arrays of the layer's dtype) and the int64 bounds
    _backward_compiles[loops.__name__] = compile_elsewhere(loops.window_backward,
                                                           [*arrays, np.empty(1, np.int64)])


class FusedRecurrence(Function):
    """inputs: xp (B,T,G*H) = W_ih x + b_ih of every step, W_hh, b_hh, *initial states (B,H)
    outputs: hidden states of every step (B,T,H), *final states (B,H)."""

    def forward(self, xp, w_hh, b_hh, *initial, fused):
        batch, steps, _ = xp.shape
        hidden = w_hh.shape[1]
        dtype = w_hh.dtype
        self.bounds = unit_blocks(hidden)
        self.loops = window_loops(fused, hidden)
        self.merged = fused.merged
        self.xp, self.b_hh = np.ascontiguousarray(xp), np.ascontiguousarray(b_hh)
        self.w_hh = np.ascontiguousarray(w_hh)
        w_blocked = np.ascontiguousarray(w_hh[blocked_rows(len(fused.cell.gates), self.bounds)])
        self.states = np.empty((steps + 1, len(initial), batch, hidden), dtype)
        self.states[0] = initial
        self.hp = np.empty((steps, batch, w_hh.shape[0]), dtype)
        self.saved = np.empty((steps, fused.saved_per_step, batch, hidden), dtype)
        self.loops.window_forward(self.xp, w_blocked, self.b_hh, self.states, self.saved, self.hp, self.bounds)
        outputs = np.ascontiguousarray(self.states[1:, 0].transpose(1, 0, 2))
        return (outputs, *(final.copy() for final in self.states[steps]))

    def backward(self, g_outputs, *g_final):
        job = _backward_compiles.get(self.loops.__name__)
        if job is not None:
            job.wait()  # (at once after the first time) window_backward then loads what the helper compiled
        steps, batch, gate_rows = self.hp.shape
        dtype = self.w_hh.dtype
        g_states = np.array(g_final, dtype=dtype)  # (S, B, H), updated step by step
        g_xp = np.empty_like(self.xp)
        g_hp = g_xp if self.merged else np.empty_like(self.xp)  # (see rnn.compiler.merged_projections)
        g_b_hh = np.zeros(gate_rows, dtype)
        self.loops.window_backward(np.ascontiguousarray(g_outputs, dtype=dtype), self.xp, self.w_hh, self.b_hh,
                                   self.states, self.saved, self.hp, g_states, g_xp, g_hp, g_b_hh, self.bounds)
        # d W_hh = sum over steps and rows of d hp_t^T h_t: one GEMM, with h in g_hp's (batch, step) row order
        previous_hidden = np.ascontiguousarray(self.states[:steps, 0].transpose(1, 0, 2)).reshape(batch * steps, -1)
        g_w_hh = blas.matmul(g_hp.reshape(batch * steps, gate_rows), previous_hidden, transpose_a=True)
        return (g_xp, g_w_hh, g_b_hh, *g_states)
