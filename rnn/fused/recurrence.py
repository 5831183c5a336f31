"""The fused recurrence: a layer of any cell over a window of steps, as one autograd node.

Forward, for t = 0 .. T-1:    hp_t = W_hh h_t             (one GEMM)
                              states_t+1 = cell(xp_t, hp_t + b_hh, states_t)   (the cell's kernel)
Backward, for t = T-1 .. 0:   the cell's backward kernel gives d xp_t, d hp_t and the direct
                              part of d states_t; the path through W_hh adds d hp_t W_hh to d h_t.
At the end one GEMM gives d W_hh = sum_t d hp_t^T h_t over all steps at once.

The loops over time are compiled too (the template rnn/fused/loops/window.py, bound to each
cell's kernels by rnn.fused.compiler.compile_loops), so a window never returns to Python between
steps. The cores share a window in one of two ways (split_of_work):
- by rows of the batch: the rows of a batch do not depend on each other, so each core
  runs its rows through all the steps, with no waiting. Each core reads all of W_hh at
  every step: the way for small layers, with enough rows per core;
- by hidden units: each core does its units' part of the GEMM and its units of the cell,
  and the cores wait for each other at the end of every step (step t+1 needs all of h_t).

To make a block's part of the product one GEMM call, the forward pass works on W_hh^T
(h_t @ W_hh^T: a GEMM without a transposed operand, faster here) with its columns
reordered, "blocked": for each block, the G gates' columns of that block's units (with
one block, that is PyTorch's order). hp uses the same column order, which the generated
kernels know (rnn.fused.compiler). The backward pass needs no such order (a block's part of
d hp_t W_hh is all of d hp_t times some columns of W_hh), so d xp, d hp and the
gradients are in PyTorch's order. For most cells d hp is d xp (see
rnn.fused.compiler.merged_projections): the kernel writes it once, into one array.

On a cold kernel cache, building a layer during training (minigrad.runtime) starts
compiling window_backward in a helper process (compile_backward_elsewhere,
minigrad.precompile), so that the first training step compiles on two cores.
"""

from itertools import pairwise

import numpy as np

from minigrad import blas, codegen, kernels, ops
from minigrad.jit import cores, most_cores, parallel_available
from minigrad.autograd import Function
from minigrad.precompile import compile_elsewhere

from rnn.fused import bf16_window, packed_gemm, packed_gemm_bf16
from rnn.fused.compiler import compile_loops

# The per-step products run on W packed once per window (rnn.fused.packed_gemm) where they can.
USE_PANELS = True

# Fewer rows than this in a core's part, or units in its block, make its GEMMs too thin
# to gain from another core.
MIN_ROWS_PER_PART = 16
MIN_UNITS_PER_BLOCK = 32
# Above this many weights in W_hh, a core that reads all of them at every step (as a
# part of the rows does) spends more time on it than the cores' meeting costs.
MAX_WEIGHTS_FOR_ROWS = 2 ** 19


def split_of_work(batch: int, hidden: int, gates: int, core_count=None):
    """How the cores share a window: (row bounds, unit bounds), each [0, ..., end]. One
    of the two has a single part (the loops would take both cut, each core a rectangle).

    - By rows: each core takes its rows through every step on its own, with all of W_hh.
    - By units: each core takes its units of every row, with its rows of W_hh, and the
      cores meet after every step (a step needs all of the previous h).

    Rows when they give every core a part of MIN_ROWS_PER_PART rows or more (fewer parts
    would leave cores idle that units could use) and W_hh is small. Measured here (2
    cores, B=32, medians of the window loops in training): by rows, a 1x128 LSTM's
    backward loop takes 3.1 ms against 3.8, and a 2x256 one's 10.4 against 11.8 (the
    forward loops are even); at 2x512 (B=64), rows lose: 90 against 76 ms forward, as
    each core reads all 4 MB of W_hh at every step.

    `core_count`: the cores to share among (default: as many as the kernels run on now).
    """
    core_count = cores() if core_count is None else core_count
    if (core_count >= 2 and batch // MIN_ROWS_PER_PART >= core_count
            and gates * hidden * hidden <= MAX_WEIGHTS_FOR_ROWS):
        return _bounds(batch, core_count), _bounds(hidden, 1)
    return _bounds(batch, 1), _bounds(hidden, max(1, min(core_count, hidden // MIN_UNITS_PER_BLOCK)))


def _bounds(size: int, count: int) -> np.ndarray:
    return np.array([k * size // count for k in range(count + 1)], np.int64)


def blocked_rows(gates: int, bounds: np.ndarray) -> np.ndarray:
    """Row order of W_hh in the blocked layout: for each block, each gate's rows of its units."""
    hidden = bounds[-1]
    return np.concatenate([np.arange(k * hidden + first, k * hidden + last)
                           for first, last in pairwise(bounds) for k in range(gates)])


def window_loops(fused, batch: int, hidden: int):
    """The compiled loops of `fused`'s cell for windows of `batch` rows and `hidden` units
    (the parallel version only where `shared_windows` says so)."""
    return compile_loops(fused, "window", parallel=shared_windows(batch, hidden, len(fused.cell.gates)))


def shared_windows(batch: int, hidden: int, gates: int) -> bool:
    """Whether the cores could ever share a window of this size: split_of_work cuts it on the
    most cores this process may use (so a thread count that minigrad.threads changes between
    calls needs no second version of the loops). A tiny layer's window (a gradient check's,
    B=2 H=3) is never shared: its parallel loops would compile in about twice the time
    (measured: a float64 GRU's two loops, 4.7 s of CPU against 2.7) and wake the thread pool
    at every call for a single part of work."""
    rows, units = split_of_work(batch, hidden, gates, core_count=most_cores())
    return parallel_available() and (len(rows) > 2 or len(units) > 2)


# On a cold kernel cache, the backward loop compiles in a helper process while this one
# compiles the forward pass (see minigrad.precompile): loop module name -> CompileJob.
_backward_compiles = {}


def compile_backward_elsewhere(fused, dtype, hidden: int) -> None:
    """If this process has just generated the parallel window loops of `fused` (so none of
    them is in the kernel cache), start compiling window_backward in a helper process. Called
    when a layer of `hidden` units is built, before its batch is known: only a layer whose
    units alone let the cores share its windows gets a helper (batch 1 here); the first
    backward pass waits for the helper (FusedRecurrence.backward)."""
    if not shared_windows(1, hidden, len(fused.cell.gates)):
        return
    loops = window_loops(fused, 1, hidden)
    if not codegen.written_now(loops) or loops.__name__ in _backward_compiles or cores() < 2:
        return
    dtype = np.dtype(dtype)
    # window_backward's arguments (C-contiguous arrays): g_outputs, xp, ids, w_hh, w_hh_panels, b_hh,
    # states, saved, hp, g_states, g_xp, g_hp, g_b_hh, row bounds, unit bounds
    arguments = [np.empty((1,) * ndim, np.int64 if kind == "i" else dtype)
                 for ndim, kind in ((3, "f"), (2, "f"), (2, "i"), (2, "f"), (3, "f"), (1, "f"), (4, "f"), (4, "f"),
                                    (3, "f"), (3, "f"), (3, "f"), (3, "f"), (2, "f"), (1, "i"), (1, "i"))]
    arguments[4] = packed_gemm.no_panels(dtype)  # (None where the loops compile without panels)
    job = compile_elsewhere(loops.window_backward, arguments)  # None outside minigrad.runtime's training setup
    if job is not None:
        _backward_compiles[loops.__name__] = job


class FirstOrderOnly(Function):
    """An op node whose backward is a compiled loop on arrays (the fused recurrences): it has no
    differentiable backward and no forward-mode rule, and asking for either is refused in one
    clear line (the eager engine, every gate op a node, has both)."""

    def graph_backward(self, *output_grads):
        raise RuntimeError('a fused recurrent layer cannot be differentiated twice (create_graph=True): '
                           'build it with engine="eager" (CLI: --engine eager)')

    def jvp(self, out, *tangents):
        raise RuntimeError('a fused recurrent layer has no forward mode (jvp): '
                           'build it with engine="eager" (CLI: --engine eager)')


class FusedRecurrence(FirstOrderOnly):
    """inputs: xp = W_ih x + b_ih, W_hh, b_hh, *initial states (B,H)
    outputs: hidden states of every step (B,T,H), *final states (B,H).

    xp is (B,T,G*H), one row per batch row and step; or, with `ids` (B,T), a table of
    rows (R,G*H) from which step t of batch row b takes row ids[b, t]. (The char-LM's
    first layer: its input projection is one row per character, read straight from the
    table instead of being copied out for every step.)

    First order only (FirstOrderOnly).
    """

    def forward(self, xp, w_hh, b_hh, *initial, fused, ids=None, matmul_precision="float32"):
        hidden = w_hh.shape[1]
        dtype = w_hh.dtype
        self.xp, self.ids, self.table_rows = projection_rows(xp, ids)
        batch, steps = self.ids.shape
        self.row_bounds, self.unit_bounds = split_of_work(batch, hidden, len(fused.cell.gates))
        self.loops = window_loops(fused, batch, hidden)
        self.merged = fused.merged
        self.b_hh = np.ascontiguousarray(b_hh)
        self.w_hh = np.ascontiguousarray(w_hh)
        self.bf16 = matmul_precision == "bf16" and dtype == np.float32  # (float64 stays float64)
        gates = len(fused.cell.gates)
        # The forward pass multiplies by W_hh^T with its columns in the blocked order: h_t @ W_hh^T,
        # not transposed in the GEMM, runs 7-16% faster here at 16-32 rows per core
        one_block = len(self.unit_bounds) == 2  # (then the blocked order is the plain one)
        w_blocked = w_hh if one_block else w_hh[blocked_rows(gates, self.unit_bounds)]
        # W_hh^T (forward) and W_hh (backward) packed once for the whole window, when each core's
        # columns fall on panel boundaries (see rnn.fused.packed_gemm); else the loops call BLAS
        # (matmul_precision "bf16": packed as bf16 pairs, rnn.fused.packed_gemm_bf16)
        pack = packed_gemm_bf16.pack_panels_bf16 if self.bf16 else packed_gemm.pack_panels
        if USE_PANELS and packed_gemm.panels_fit(dtype, gates * self.unit_bounds):
            # packed straight from W_hh, transposing on the way: the loops read no W_hh^T then. A
            # transposed copy first (numpy's strided copy, on one core) made packing 3-5x slower:
            # measured per layer and window, 58 against 18 us at H=128, 3.6 against 0.7 ms at H=512
            self.w_panels = pack(w_blocked, transpose=True)
            w_blocked_t = np.empty((0, 0), dtype)
        else:
            self.w_panels = packed_gemm.no_panels(dtype)
            w_blocked_t = np.ascontiguousarray(w_blocked.T)
        self.w_hh_panels = (pack(self.w_hh) if USE_PANELS and packed_gemm.panels_fit(
            dtype, self.unit_bounds) else packed_gemm.no_panels(dtype))
        self.states = np.empty((steps + 1, len(initial), batch, hidden), dtype)
        self.states[0] = initial
        self.hp = np.empty((steps, batch, w_hh.shape[0]), dtype)
        self.saved = np.empty((steps, fused.saved_per_step, batch, hidden), dtype)
        self.loops.window_forward(self.xp, self.ids, w_blocked_t, self.w_panels, self.b_hh, self.states, self.saved,
                                  self.hp, self.row_bounds, self.unit_bounds)
        outputs = np.ascontiguousarray(self.states[1:, 0].transpose(1, 0, 2))
        return (outputs, *(final.copy() for final in self.states[steps]))

    def kernel_source(self) -> str:
        """The generated source of the cell kernels this node runs (what mg.viz pages show)."""
        return self.options["fused"].source

    def backward(self, g_outputs, *g_final):
        job = _backward_compiles.get(self.loops.__name__)
        if job is not None:
            job.wait()  # (at once after the first time) window_backward then loads what the helper compiled
        steps, batch, gate_rows = self.hp.shape
        dtype = self.w_hh.dtype
        g_states = np.array(g_final, dtype=dtype)  # (S, B, H), updated step by step
        g_xp = np.empty((batch, steps, gate_rows), dtype)  # d xp of every batch row and step
        g_hp = g_xp if self.merged else np.empty_like(g_xp)  # (see rnn.fused.compiler.merged_projections)
        g_b_hh = np.zeros((len(self.row_bounds) - 1, gate_rows), dtype)  # a row per part of the rows
        self.loops.window_backward(np.ascontiguousarray(g_outputs, dtype=dtype), self.xp, self.ids, self.w_hh,
                                   self.w_hh_panels, self.b_hh, self.states, self.saved, self.hp, g_states, g_xp,
                                   g_hp, g_b_hh, self.row_bounds, self.unit_bounds)
        # d W_hh = sum over steps and rows of d hp_t^T h_t: one GEMM, with h in g_hp's (batch, step) row order
        # (bf16 matmul precision: rnn.fused.bf16_window; float32: on h packed into panels where the
        # BLAS runs narrower vectors than the host has, rnn.fused.packed_gemm)
        hidden = self.w_hh.shape[1]
        g_hp_rows = g_hp.reshape(batch * steps, gate_rows)
        bf16 = self.bf16 and bf16_window.fits(hidden)
        if not bf16 and packed_gemm.window_product_fits(dtype, hidden):
            panels = self.states[:steps, 0].reshape(steps, batch, hidden // packed_gemm.PANEL, packed_gemm.PANEL)
            panels = np.ascontiguousarray(panels.transpose(2, 1, 0, 3)).reshape(-1, batch * steps, packed_gemm.PANEL)
            g_w_hh = packed_gemm.window_product(g_hp_rows, panels, transpose_a=True)
        else:
            previous_hidden = np.ascontiguousarray(self.states[:steps, 0].transpose(1, 0, 2)).reshape(batch * steps, -1)
            product = bf16_window.matmul_bf16 if bf16 else blas.matmul
            g_w_hh = product(g_hp_rows, previous_hidden, transpose_a=True)
        return (projection_gradient(g_xp, self.ids, self.table_rows), g_w_hh, g_b_hh.sum(axis=0), *g_states)


def projection_rows(xp, ids):
    """(rows, ids, table_rows): xp as the 2-D table the loops read, step t of batch row b
    at row ids[b, t]. Without `ids`, xp is (B,T,G*H) and row b*T + t is its own
    (table_rows None); with them, xp is already the table (R,G*H) and ids are checked."""
    if ids is None:
        batch, steps, _ = xp.shape
        rows = np.ascontiguousarray(xp).reshape(batch * steps, xp.shape[2])
        return rows, np.arange(batch * steps, dtype=np.int64).reshape(batch, steps), None
    ids = ops.check_indices(np.asarray(ids), xp.shape[0], "recurrence", "id")
    if ids.ndim != 2:
        raise ValueError(f"recurrence: ids must be (batch, steps), got shape {ids.shape}")
    return np.ascontiguousarray(xp), ids, xp.shape[0]


def projection_gradient(g_xp, ids, table_rows):
    """d loss / d xp from g_xp (B,T,G*H): itself, or with a table, the sum over the steps
    that read each row."""
    if table_rows is None:
        return g_xp
    g_input = np.zeros((table_rows, g_xp.shape[2]), g_xp.dtype)
    kernels.scatter_add_rows(g_xp.reshape(-1, g_xp.shape[2]), ids.reshape(-1), g_input)
    return g_input
