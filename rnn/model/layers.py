"""A stack of recurrent layers of any cell, run eagerly or fused.

Parameters are named and shaped like PyTorch's nn.RNN / nn.LSTM / nn.GRU:
weight_ih_l{k} (G*H, input), weight_hh_l{k} (G*H, H), bias_ih_l{k}, bias_hh_l{k},
with the G gates stacked in the cell's declared order, so weights move between the
two frameworks without reshuffling. A cell that reads no h.<gate> (mingru, qrnn, sru)
has only weight_ih_l{k} and bias_ih_l{k}: it has no W_hh to multiply by.

Two engines compute the same thing:
- "eager": the cell's gate expressions are interpreted with minigrad ops, step by
  step; every gate op is a node of the autograd graph (readable, gradcheckable);
- "fused": one GEMM projects the inputs of all steps (a `linear` node, or
  `rnn.fused.projection.PackedLinear` where the packed kernel beats the BLAS), then the
  recurrence over the window is one autograd node (`rnn.fused.recurrence.FusedRecurrence`):
  per step one GEMM for W_hh h and one generated kernel for the gates, in a compiled
  loop; backward runs the same way in reverse and gets the W_hh gradient with a single
  GEMM at the end. A cell without h.<gate> runs its recurrence as an elementwise loop
  with no GEMM at all, forward or backward (`rnn.fused.elementwise_recurrence.ElementwiseRecurrence`).
"""

import math

import numpy as np

import minigrad as mg
from minigrad import elementwise
from minigrad.nn import Dropout, LockedDropout, Module, Parameter, keep_mask

from rnn.cells.registry import Cell, get_cell
from rnn.fused.compiler import compile_cell
from rnn.fused import bf16_window, elementwise_recurrence, projection, recurrence
from rnn.model.options import ENGINES
from rnn.fused.recurrence import compile_backward_elsewhere


# ---- eager: interpret the traced step with minigrad ops ---------------------------------

def eager_step(cell: Cell, x_projection, h_projection, states, hidden: int):
    """One step of `cell` with minigrad ops. Projections are (B, G*H) tensors without gate split."""
    values = {}
    for k, gate in enumerate(cell.gates):
        columns = slice(k * hidden, (k + 1) * hidden)
        for name, projection in ((f"x.{gate}", x_projection), (f"{cell.state[0]}.{gate}", h_projection)):
            if projection is None:  # (h_projection: a cell without h.<gate>, which never reads it)
                continue
            values[name] = projection[:, columns]
            values[name].name = name  # drawings of the graph show the gate, not only the slice's columns
    values.update(zip(cell.state, states))

    computed = {}

    def value_of(node):
        if node.op == "leaf":
            return values[node.name]
        if node.op == "const":
            return node.value
        return computed[id(node)]

    for node in cell.nodes:
        args = [value_of(a) for a in node.args]
        computed[id(node)] = elementwise.ELEMENTWISE_OPS[node.op].apply(*[mg.as_tensor(a, like=states[0]) for a in args])
    return tuple(value_of(o) for o in cell.outputs)


class Recurrent(Module):
    """`num_layers` layers of `cell`, batch first: forward(x (B,T,I), state) -> (outputs (B,T,H), state).

    `state` is a list with one tuple of tensors (B,H) per layer, in the cell's state
    order (e.g. (h, c) for lstm), or None for zeros.

    Regularisation, in training only: `dropout` between layers (with `locked_dropout`, one
    mask per sequence for all its steps: LockedDropout), and `weight_drop`, DropConnect on
    the recurrent weights (AWD-LSTM, Merity et al. 2017): each layer's W_hh times a mask
    of its own drawn at every call (one per window), so that every step of the window runs
    on the same thinned weights. The mask is one elementwise product on a graph node before
    the recurrence, which packs the product as it packs W_hh: the fused loops do not change,
    and the gradient reaches W_hh through the mask.
    """

    def __init__(self, cell, input_size, hidden_size, num_layers=1, dropout=0.0, engine="fused",
                 dtype=np.float32, weight_drop=0.0, locked_dropout=False):
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        for what, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if int(value) < 1:
                raise ValueError(f"{what} must be at least 1, got {value}")
        self.cell = get_cell(cell)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.engine = engine
        self.matmul_precision = "float32"  # "bf16": the fused recurrent products in bf16 (set by the trainer)
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        if weight_drop and not self.cell.recurrent_projection:
            raise ValueError(f"weight_drop needs a cell with recurrent weights: {self.cell.name} reads no h.<gate>")
        self.weight_drop = weight_drop
        self.between_layers = (LockedDropout if locked_dropout else Dropout)(dropout)
        gates = len(self.cell.gates) * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        rng = mg.random.generator()
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            for name, shape in (("weight_ih", (gates, fan_in)), ("weight_hh", (gates, hidden_size)),
                                ("bias_ih", (gates,)), ("bias_hh", (gates,))):
                if name.endswith("_hh") and not self.cell.recurrent_projection:
                    continue  # nothing would read it: no parameter that gets no gradient
                setattr(self, f"{name}_l{k}", Parameter(rng.uniform(-bound, bound, shape).astype(dtype)))
        if engine == "fused" and self.cell.recurrent_projection:  # (on a cold kernel cache, a head start
            compile_backward_elsewhere(compile_cell(self.cell, dtype), dtype, hidden_size)  # for the first backward pass)

    def layer_parameters(self, k):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k; the _hh ones None for a cell
        without h.<gate>."""
        return tuple(getattr(self, f"{name}_l{k}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def recurrent_weight(self, k):
        """The W_hh layer k runs with: in training with weight_drop, W_hh times a fresh
        DropConnect mask (scaled by 1/(1-p)); else W_hh itself (None for a cell without one)."""
        w_hh = self.layer_parameters(k)[1]
        if w_hh is None or not self.training or not self.weight_drop:
            return w_hh
        return w_hh * keep_mask(w_hh.shape, self.weight_drop, w_hh.dtype)

    def initial_state(self, batch_size, dtype=None):
        dtype = dtype or self.weight_ih_l0.dtype
        return [tuple(mg.tensor(np.zeros((batch_size, self.hidden_size), dtype)) for _ in self.cell.state)
                for _ in range(self.num_layers)]

    def forward(self, x, state=None):
        x = mg.as_tensor(x)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"expected input (batch, steps, {self.input_size}), got shape {x.shape}")
        return self.forward_projected(self.input_projection(0, x), state)

    def input_projection(self, k, x):
        """W_ih x + b_ih of layer k for every step at once: one GEMM, (B,T,I) -> (B,T,G*H)
        (fused: on packed panels where those beat numpy's BLAS, see rnn.fused.projection)."""
        w_ih, _, b_ih, _ = self.layer_parameters(k)
        if self.matmul_precision == "bf16" and w_ih.dtype == np.float32 and bf16_window.fits(*w_ih.shape):
            return bf16_window.Bf16Linear.apply(x, w_ih, b_ih)
        if self.engine == "fused":
            return projection.input_projection(x, w_ih, b_ih)
        return mg.linear(x, w_ih, b_ih)

    def forward_projected(self, first_projection, state=None, ids=None):
        """forward() given layer 0's input projection instead of its input: (B,T,G*H), or
        with `ids` (B,T), a table of rows (R,G*H) of which step t of batch row b takes
        row ids[b, t].

        The char-LM uses it to fold the embedding into that projection (see CharLM.forward).
        """
        if state is None:
            batch = first_projection.shape[0] if ids is None else np.shape(ids)[0]
            state = self.initial_state(batch, first_projection.dtype)
        run = self._fused_layer if self.engine == "fused" else self._eager_layer
        new_state, hidden = [], None
        for k in range(self.num_layers):
            projection = first_projection if k == 0 else self.input_projection(k, self.between_layers(hidden))
            hidden, layer_state = run(k, projection, tuple(state[k]), ids if k == 0 else None)
            new_state.append(layer_state)
        return hidden, new_state

    def _fused_layer(self, k, projection, states, ids):
        _, _, _, b_hh = self.layer_parameters(k)
        w_hh = self.recurrent_weight(k)
        fused = compile_cell(self.cell, projection.dtype)
        if w_hh is None:  # a cell without h.<gate>: no recurrent product at all
            results = elementwise_recurrence.ElementwiseRecurrence.apply(projection, *states, fused=fused, ids=ids)
        else:
            results = recurrence.FusedRecurrence.apply(projection, w_hh, b_hh, *states, fused=fused, ids=ids,
                                                       matmul_precision=self.matmul_precision)
        return results[0], tuple(results[1:])

    def _eager_layer(self, k, projection, states, ids):
        _, _, _, b_hh = self.layer_parameters(k)
        w_hh = self.recurrent_weight(k)
        if ids is not None:
            projection = mg.embedding(projection, ids)
        outputs = []
        for t in range(projection.shape[1]):
            h_projection = None if w_hh is None else states[0] @ w_hh.T + b_hh
            states = eager_step(self.cell, projection[:, t], h_projection, states, self.hidden_size)
            outputs.append(states[0])
        if not outputs:  # a window of no steps: no outputs, the state unchanged
            return mg.tensor(np.zeros((projection.shape[0], 0, self.hidden_size), projection.dtype)), states
        return mg.stack(outputs, axis=1), states

    def extra_repr(self):
        return (f"{self.cell.name}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"dropout={self.between_layers.p}, engine={self.engine}"
                + (", locked_dropout=True" if isinstance(self.between_layers, LockedDropout) else "")
                + (f", weight_drop={self.weight_drop}" if self.weight_drop else ""))
