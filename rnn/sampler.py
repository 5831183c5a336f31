"""The compiled sampling loop: many characters per call, no graph, no Python per character.

Drawing a character and feeding it back is a chain of matrix-vector products over
megabytes of weights with a little arithmetic between them. Run from Python, the calls
cost more than the arithmetic; so the whole loop -- draw, look up, one fused cell step
per layer, the products, the logits -- is one Numba function, and Python only collects
the characters.

The products are where the time goes: at batch 1 a product reads a whole weight matrix
to do two flops per weight, so its speed is the speed of reading memory, and two cores
read faster than one. So the products are few, large and split over the cores
(`_matvec` runs its row blocks on all cores), and every row of a weight is read once per
character. After layer k's step ONE product multiplies its new hidden state h_k by a
matrix that stacks every use of h_k:

    rows for the layer above:  W_ih of layer k+1 (plus its b_ih)
    rows for the next step:    W_hh of layer k   (the cell adds b_hh itself)

so the next character's W_hh h product is done one character early, with the input
product of the layer above. The top layer's W_hh rows ride along in the product of the
layer below it (with the top layer's h from the character before, which is the one its
step needs), so that after the top layer's step only the small head product is left,
done on one core: one parallel product per layer but the top. (A one-layer model has
one product, [head; W_hh] h.) Layer 0's input product is a row of a table computed
once: the embedding times W_ih of layer 0, plus b_ih, for every character.

The loop's source is the same for every cell; rnn.compiler.compile_loops loads a copy of
it per cell that imports that cell's `step_inference` kernel.
"""

import numpy as np

import minigrad as mg
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
def _matvec(w, v, u, split, bias, out, blocks):
    """out = w @ v + bias for the rows before `split`, out = w @ u + bias for the rows from
    `split` on; the rows are cut into `blocks` blocks, run side by side."""
    rows = w.shape[0]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        _dot_rows(w, v, bias, out, first, min(last, split))
        _dot_rows(w, u, bias, out, max(first, split), last)


@kernel
def draw_id(logits, rng, temperature, top_k, greedy, top_p=1.0):
    """A character id drawn from softmax(logits / temperature), only among the top_k largest
    logits (ties: the lower id), and of those only the nucleus: the likeliest characters
    whose probabilities first add up to top_p or more (top-k first, then top-p, as in
    Hugging Face's samplers); the largest logit if greedy; -1 if a logit is not finite."""
    for value in logits:
        if not np.isfinite(value):
            return -1
    if greedy:
        return np.argmax(logits)
    scaled = logits.astype(np.float64) / temperature
    if top_k < scaled.size or top_p < 1.0:
        order = np.argsort(-scaled, kind="mergesort")  # stable: equal logits keep id order
        for rank in range(top_k, scaled.size):
            scaled[order[rank]] = -np.inf
        if top_p < 1.0:
            weights = np.exp(scaled - scaled.max())
            needed = top_p * weights.sum()
            likelier = 0.0  # the weight of the characters before this one in `order`
            for rank in range(scaled.size):
                if likelier >= needed:  # the nucleus is complete without this character
                    scaled[order[rank]] = -np.inf
                else:
                    likelier += weights[order[rank]]
    cumulative = np.cumsum(np.exp(scaled - scaled.max()))
    # Inverse-CDF draw: one uniform number per character.
    chosen = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
    return min(chosen, scaled.size - 1)


@kernel
def sample_ids(ids, first_table, stacked, bias, products, layout, b_hh, state, blocks, rng, temperature, top_k,
               top_p, greedy):
    """Fill `ids` with drawn characters, updating `state` and `products` in place;
    returns how many were drawn (fewer than ids.size if the logits stopped being finite).

    layout[k] = (first, split, last, parallel, hp_at, x_at): after layer k's step, rows
    first:split of `stacked` are multiplied by its h and rows split:last by the top
    layer's h, on all cores if `parallel`; layer k's W_hh h is at products[hp_at:], its
    input product at products[x_at:] (layer 0: first_table). The logits come first.
    """
    layers, vocab, gate_rows = layout.shape[0], first_table.shape[0], b_hh.shape[1]
    top = layers - 1
    new_state = np.empty_like(state[0])
    for i in range(ids.size):
        chosen = draw_id(products[:vocab], rng, temperature, top_k, greedy, top_p)
        if chosen < 0:
            return i
        ids[i] = chosen
        x = first_table[chosen]
        for k in range(layers):
            first, split, last, parallel, hp_at, x_at = layout[k]
            if k > 0:
                x = products[x_at:x_at + gate_rows]
            hp = products[hp_at:hp_at + gate_rows]
            step_inference(x.reshape((1, x.size)), hp.reshape((1, hp.size)), b_hh[k], state[k], new_state)
            state[k] = new_state
            if parallel:
                _matvec(stacked[first:last], state[k, 0, 0], state[top, 0, 0], split - first, bias[first:last],
                        products[first:last], blocks)
            else:
                _dot_rows(stacked, state[k, 0, 0], bias, products, first, last)
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
        with mg.no_grad():  # layer 0's input projection of every character, as the model's forward makes it
            self.first_table = np.ascontiguousarray(model.projected_embedding().data, dtype)
        layers, top = rnn.num_layers, rnn.num_layers - 1
        parameters = [tuple(p.data for p in rnn.layer_parameters(k)) for k in range(layers)]
        w_head, b_head = head.weight.data, head.bias.data
        gate_rows = len(parameters[0][1])
        no_bias = np.zeros(gate_rows, dtype)
        # The rows of `stacked`, as (weight, bias) pieces in order.
        pieces, layout, row = [], [], 0

        def place(weight, bias):
            nonlocal row
            pieces.append((weight, bias))
            row += len(weight)
            return row - len(weight)

        place(w_head, b_head)  # rows 0:vocab, so products[:vocab] are the logits
        if layers == 1:
            hp_at = place(parameters[0][1], no_bias)
            layout.append((0, row, row, 1, hp_at, 0))
        else:
            top_product = (0, row, row, 0)  # after the top layer's step: the head alone, on one core
            x_at, hp_at = [0] * layers, [0] * layers
            for k in range(top):
                first = row
                x_at[k + 1] = place(parameters[k + 1][0], parameters[k + 1][2])  # W_ih, b_ih of layer k+1
                hp_at[k] = place(parameters[k][1], no_bias)
                split = row
                if k + 1 == top:  # the top layer's W_hh h, with the top layer's h
                    hp_at[top] = place(parameters[top][1], no_bias)
                layout.append((first, split, row, 1, hp_at[k], x_at[k]))
            layout.append((*top_product, hp_at[top], x_at[top]))
        self.vocab = len(w_head)
        self.stacked = np.ascontiguousarray(np.concatenate([w for w, _ in pieces]), dtype)
        self.bias = np.ascontiguousarray(np.concatenate([b for _, b in pieces]), dtype)
        self.layout = np.array(layout, np.int64)
        self.b_hh = np.stack([p[3] for p in parameters]).astype(dtype)
        self.state = np.stack([np.stack([np.asarray(getattr(s, "data", s), dtype) for s in layer])
                               for layer in state])  # (layers, states, 1, H)
        if self.state.shape[2] != 1:
            raise ValueError(f"a Sampler draws one stream: the state has batch {self.state.shape[2]}")
        # Before the first draw, every product of the current hidden states.
        self.products = np.empty(row, dtype)
        for k, (first, split, last, *_) in enumerate(self.layout):
            self.products[first:split] = self.stacked[first:split] @ self.state[k, 0, 0] + self.bias[first:split]
            self.products[split:last] = self.stacked[split:last] @ self.state[top, 0, 0] + self.bias[split:last]

    @property
    def logits(self):
        """The logits (V,) of the next character."""
        return self.products[:self.vocab]

    def draw(self, count, rng, temperature=1.0, top_k=None, top_p=None, greedy=False):
        """Up to `count` character ids (int64 array), fewer only if the logits stop being finite."""
        ids = np.empty(count, np.int64)
        top_k = len(self.logits) if top_k is None else int(top_k)
        top_p = 1.0 if top_p is None else float(top_p)
        drawn = self.loop.sample_ids(ids, self.first_table, self.stacked, self.bias, self.products, self.layout,
                                     self.b_hh, self.state, self.blocks, rng, float(temperature), top_k, top_p,
                                     bool(greedy))
        return ids[:drawn]
