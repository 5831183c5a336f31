"""The compiled sampling loop: many characters per call, no graph, no Python per character.

Drawing a character and feeding it back is a chain of matrix-vector products over
megabytes of weights with a little arithmetic between them. Run from Python, the calls
cost more than the arithmetic; so the whole loop -- draw, look up, one fused cell step
per layer, the products, the logits -- is one Numba function, and Python only collects
the characters.

Each layer ends with ONE product, of its new hidden state h_k with a matrix that stacks
every use of h_k:

    rows for the layer above:  W_ih of layer k+1 (for the top layer: the head's weight)
    rows for the next step:    W_hh of layer k   (the cell adds b_hh itself)

so the next step's W_hh h product is done one step early, with the input product of the
layer above. That is one product per layer and character, split over the cores
(`_matvec` runs its row blocks on all cores): at batch 1 a product reads a whole weight matrix to do
two flops per weight, so its speed is the speed of reading memory, and two cores read
faster than one. Layer 0's input product is a row of a table computed once: the
embedding times W_ih of layer 0, plus b_ih, for every character.

The loop's source is the same for every cell; rnn.compiler.compile_loops loads a copy of
it per cell that imports that cell's `step_inference` kernel.
"""

import numpy as np

from minigrad._jit import cores

from .compiler import compile_cell, compile_loops

LOOP_SOURCE = '''
import numpy as np
from minigrad._jit import kernel, prange, summing_kernel


@summing_kernel
def _dot_rows(w, v, bias, out, first, last):
    for r in range(first, last):
        total = bias[r]
        for j in range(v.size):
            total += w[r, j] * v[j]
        out[r] = total


@loop_kernel
def _matvec(w, v, bias, out, blocks):
    """out = w @ v + bias, the rows split into `blocks` blocks, run side by side."""
    rows = w.shape[0]
    for block in prange(blocks):
        _dot_rows(w, v, bias, out, block * rows // blocks, (block + 1) * rows // blocks)


@kernel
def draw_id(logits, rng, temperature, top_k, greedy):
    """A character id drawn from softmax(logits / temperature), only among the top_k largest
    logits (ties: the lower id); the largest logit if greedy; -1 if a logit is not finite."""
    for value in logits:
        if not np.isfinite(value):
            return -1
    if greedy:
        return np.argmax(logits)
    scaled = logits.astype(np.float64) / temperature
    if top_k < scaled.size:
        order = np.argsort(-scaled, kind="mergesort")  # stable: equal logits keep id order
        for rank in range(top_k, scaled.size):
            scaled[order[rank]] = -np.inf
    cumulative = np.cumsum(np.exp(scaled - scaled.max()))
    # Inverse-CDF draw: one uniform number per character.
    chosen = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return min(chosen, scaled.size - 1)


@kernel
def sample_ids(ids, first_table, stacked, bias, bounds, b_hh, state, products, blocks, rng, temperature, top_k,
               greedy):
    """Fill `ids` with drawn characters, updating `state` and `products` in place;
    returns how many were drawn (fewer than ids.size if the logits stopped being finite).

    Layer k's product occupies products[bounds[k, 0]:bounds[k, 2]]: first its rows for
    the layer above (or the logits), up to bounds[k, 1], then the next W_hh h.
    """
    layers = bounds.shape[0]
    new_state = np.empty_like(state[0])
    for i in range(ids.size):
        chosen = draw_id(products[bounds[-1, 0]:bounds[-1, 1]], rng, temperature, top_k, greedy)
        if chosen < 0:
            return i
        ids[i] = chosen
        x = first_table[chosen]
        for k in range(layers):
            first, split, last = bounds[k, 0], bounds[k, 1], bounds[k, 2]
            hp = products[split:last]
            step_inference(x.reshape((1, x.size)), hp.reshape((1, hp.size)), b_hh[k], state[k], new_state)
            state[k] = new_state
            _matvec(stacked[first:last], state[k, 0, 0], bias[first:last], products[first:last], blocks)
            x = products[first:split]
    return ids.size
'''


class Sampler:
    """Draws characters from a CharLM at batch 1, carrying its state between calls.

    The weights are copied and restacked when the sampler is made: a sampler does not
    see later changes to the model.
    """

    def __init__(self, model, state):
        """`state`: the model's state (a list per layer of (1, H) arrays or tensors)."""
        rnn, head = model.rnn, model.head
        dtype = rnn.weight_hh_l0.dtype
        self.blocks = 2 * cores()  # two blocks per core: evens out a core that lags
        fused = compile_cell(rnn.cell, dtype)
        self.loop = compile_loops(fused, "sampling loop", LOOP_SOURCE, parallel=self.blocks > 2)
        w_ih0, _, b_ih0, _ = (p.data for p in rnn.layer_parameters(0))
        self.first_table = np.ascontiguousarray(model.embedding.weight.data @ w_ih0.T + b_ih0, dtype)
        blocks, biases, bounds = [], [], []
        row = 0
        for k in range(rnn.num_layers):
            _, w_hh, _, b_hh = (p.data for p in rnn.layer_parameters(k))
            if k + 1 < rnn.num_layers:
                w_above, _, b_above, _ = (p.data for p in rnn.layer_parameters(k + 1))
            else:
                w_above, b_above = head.weight.data, head.bias.data
            blocks += [w_above, w_hh]
            biases += [b_above, np.zeros(len(w_hh), dtype)]
            bounds.append((row, row + len(w_above), row + len(w_above) + len(w_hh)))
            row = bounds[-1][2]
        self.stacked = np.ascontiguousarray(np.concatenate(blocks), dtype)
        self.bias = np.ascontiguousarray(np.concatenate(biases), dtype)
        self.bounds = np.array(bounds, np.int64)
        self.b_hh = np.stack([rnn.layer_parameters(k)[3].data for k in range(rnn.num_layers)]).astype(dtype)
        self.state = np.stack([np.stack([np.asarray(getattr(s, "data", s), dtype) for s in layer])
                               for layer in state])  # (layers, states, 1, H)
        if self.state.shape[2] != 1:
            raise ValueError(f"a Sampler draws one stream: the state has batch {self.state.shape[2]}")
        # Before the first draw, every layer's product of its current hidden state.
        self.products = np.empty(row, dtype)
        for k, (first, _, last) in enumerate(self.bounds):
            self.products[first:last] = self.stacked[first:last] @ self.state[k, 0, 0] + self.bias[first:last]

    @property
    def logits(self):
        """The logits (V,) of the next character."""
        first, split, _ = self.bounds[-1]
        return self.products[first:split]

    def draw(self, count, rng, temperature=1.0, top_k=None, greedy=False):
        """Up to `count` character ids (int64 array), fewer only if the logits stop being finite."""
        ids = np.empty(count, np.int64)
        top_k = len(self.logits) if top_k is None else int(top_k)
        drawn = self.loop.sample_ids(ids, self.first_table, self.stacked, self.bias, self.bounds, self.b_hh,
                                     self.state, self.products, self.blocks, rng, float(temperature), top_k,
                                     bool(greedy))
        return ids[:drawn]
