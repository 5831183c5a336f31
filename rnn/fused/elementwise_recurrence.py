"""The fused recurrence of a cell whose step reads no h.<gate>: elementwise, no GEMM per step.

Cells such as minGRU, QRNN and SRU compute every gate from x alone and mix the state only
by elementwise products (rnn.cells: `Cell.recurrent_projection` is False). Their layer
has no W_hh: the input projections of the whole window are one GEMM (the layer's `linear`
node, before this one), and the recurrence is the cell's generated kernel in a loop over
the steps (the template rnn/fused/loops/elementwise.py), forward and backward, with no matrix
product at all and hence no W_hh gradient. No unit of the state depends on another, so
the cores share a window by rows (or by units, when there are fewer rows than cores)
and never wait for each other.
"""

import numpy as np

from minigrad.jit import cores, parallel_available

from rnn.fused.compiler import compile_loops
from rnn.fused.recurrence import FirstOrderOnly, projection_gradient, projection_rows


def split_of_work(batch: int, hidden: int):
    """(row bounds, unit bounds): each core a slice of the rows, or of the units if the
    rows are fewer than the cores."""
    parts = max(1, cores())
    if batch >= parts:
        return _bounds(batch, parts), _bounds(hidden, 1)
    return _bounds(batch, 1), _bounds(hidden, max(1, min(parts, hidden)))


def _bounds(size: int, count: int) -> np.ndarray:
    return np.array([k * size // count for k in range(count + 1)], np.int64)


class ElementwiseRecurrence(FirstOrderOnly):
    """inputs: xp = W_ih x + b_ih, *initial states (B,H); outputs: hidden states of every
    step (B,T,H), *final states (B,H). xp and `ids` as for rnn.fused.recurrence.FusedRecurrence."""

    def forward(self, xp, *initial, fused, ids=None):
        if fused.cell.recurrent_projection:
            raise ValueError(f"cell {fused.cell.name} reads h.<gate>: its layer needs W_hh (FusedRecurrence)")
        self.xp, self.ids, self.table_rows = projection_rows(xp, ids)
        batch, steps = self.ids.shape
        dtype, hidden = self.xp.dtype, initial[0].shape[1]
        self.row_bounds, self.unit_bounds = split_of_work(batch, hidden)
        self.loops = compile_loops(fused, "elementwise", parallel=parallel_available())
        # stand-ins for the kernels' hp and b_hh arguments, which a step without h.<gate> never reads
        self.no_hp, self.no_b_hh = np.empty((1, 1), dtype), np.empty(1, dtype)
        self.states = np.empty((steps + 1, len(initial), batch, hidden), dtype)
        self.states[0] = initial
        self.saved = np.empty((steps, fused.saved_per_step, batch, hidden), dtype)
        self.loops.elementwise_forward(self.xp, self.ids, self.no_hp, self.no_b_hh, self.states, self.saved,
                                       self.row_bounds, self.unit_bounds)
        outputs = np.ascontiguousarray(self.states[1:, 0].transpose(1, 0, 2))
        return (outputs, *(final.copy() for final in self.states[steps]))

    def kernel_source(self) -> str:
        """The generated source of the cell kernels this node runs (what mg.viz pages show)."""
        return self.options["fused"].source

    def backward(self, g_outputs, *g_final):
        batch, steps = self.ids.shape
        dtype = self.xp.dtype
        g_states = np.array(g_final, dtype=dtype)  # (S, B, H), updated step by step
        g_xp = np.empty((batch, steps, self.xp.shape[1]), dtype)
        self.loops.elementwise_backward(np.ascontiguousarray(g_outputs, dtype=dtype), self.xp, self.ids, self.no_hp,
                                        self.no_b_hh, self.states, self.saved, g_states, g_xp, self.row_bounds,
                                        self.unit_bounds)
        return (projection_gradient(g_xp, self.ids, self.table_rows), *g_states)
