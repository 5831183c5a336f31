"""The compiled sampling loop: draw a character, feed it back through every layer, repeat
(see rnn.sample for why the products are laid out as they are).

A template: rnn.fused.compiler.compile_loops binds the cell's step_inference kernel (the import
from rnn.fused.loops.cell_kernels below) and loads a copy of this module per cell. The draw,
which knows no cell, is compiled once for all of them (rnn.fused.drawing).
"""

import numpy as np

from minigrad.jit import kernel, prange, summing_kernel
from rnn.fused.drawing import draw_id
from rnn.fused.loops.cell_kernels import loop_kernel, step_inference


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
