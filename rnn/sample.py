"""Sampling text from a char-LM: `sample` (the prime, the options, the characters) and
`Sampler`, which runs the compiled loop that draws them.

The prime text is fed first (its characters are not yielded again); then each step
turns the last logits into a distribution (temperature, optionally only the top k
and/or the nucleus of probability top_p), draws one character, yields it, and feeds it
back. Batch 1, no graph, eval mode.

Randomness comes from a private numpy Generator seeded by `seed`, never from minigrad's
global generator: the same seed gives the same text, and sampling in the middle of
training does not change the training's random stream.

Drawing a character and feeding it back is a chain of matrix-vector products over
megabytes of weights with a little arithmetic between them. Run from Python, the calls
cost more than the arithmetic; so the whole loop -- draw, look up, one fused cell step
per layer, the products, the logits -- is one Numba function (the template
rnn/fused/loops/sampling.py, bound to the cell's `step_inference` kernel by
rnn.fused.compiler.compile_loops), and Python only collects the characters.

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
"""

import math

import numpy as np

import minigrad as mg
from minigrad.jit import cores, parallel_available
from minigrad.threads import ThreadChooser

from rnn.fused.compiler import compile_cell, compile_loops
from rnn.errors import ModelDiverged
from rnn.evaluate import rows_per_call, inference

# The prime is fed in pieces of this many characters (only the last logits are needed),
# fewer where the vocabulary is so large that their logits would pass LOGITS_BUDGET.
PRIME_CHUNK = 1024
# Characters drawn per call of the compiled loop: big enough that a call's cost vanishes,
# small enough that streamed text appears without a visible pause (~10 ms at 2x256).
DRAW_CHUNK = 256


class Sampler:
    """Draws characters from a CharLM at batch 1, carrying its state between calls.

    The weights are copied and restacked when the sampler is made: a sampler does not
    see later changes to the model.
    """

    def __init__(self, model, state):
        """`state`: the model's state (a list per layer of (1, H) arrays or tensors)."""
        rnn, head = model.rnn, model.head
        dtype = rnn.weight_ih_l0.dtype
        fused = compile_cell(rnn.cell, dtype)
        # the parallel loop whatever the count: minigrad.threads may change it between calls
        self.loop = compile_loops(fused, "sampling", parallel=parallel_available())
        with mg.no_grad():  # layer 0's input projection of every character, as the model's forward makes it
            self.first_table = np.ascontiguousarray(model.projected_embedding().data, dtype)
        layers, top = rnn.num_layers, rnn.num_layers - 1
        gate_rows = len(rnn.weight_ih_l0)
        # A cell without h.<gate> has no W_hh: no rows for it in the products (its step reads no hp)
        no_w_hh, no_b_hh = np.zeros((0, rnn.hidden_size), dtype), np.zeros(gate_rows, dtype)
        parameters = [tuple(no_w_hh if p is None and i == 1 else no_b_hh if p is None else p.data
                            for i, p in enumerate(rnn.layer_parameters(k))) for k in range(layers)]
        w_head, b_head = head.weight.data, head.bias.data
        # The rows of `stacked`, as (weight, bias) pieces in order.
        pieces, layout, row = [], [], 0

        def place(weight, bias=None):  # (no bias: zeros)
            nonlocal row
            bias = np.zeros(len(weight), dtype) if bias is None else bias
            pieces.append((weight, bias))
            row += len(weight)
            return row - len(weight)

        place(w_head, b_head)  # rows 0:vocab, so products[:vocab] are the logits
        if layers == 1:
            hp_at = place(parameters[0][1])
            layout.append((0, row, row, 1, hp_at, 0))
        else:
            top_product = (0, row, row, 0)  # after the top layer's step: the head alone, on one core
            x_at, hp_at = [0] * layers, [0] * layers
            for k in range(top):
                first = row
                x_at[k + 1] = place(parameters[k + 1][0], parameters[k + 1][2])  # W_ih, b_ih of layer k+1
                hp_at[k] = place(parameters[k][1])
                split = row
                if k + 1 == top:  # the top layer's W_hh h, with the top layer's h
                    hp_at[top] = place(parameters[top][1])
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
        # More than the vocabulary is all of it (and a huge int would not fit the kernel's int64).
        top_k = len(self.logits) if top_k is None else min(int(top_k), len(self.logits))
        top_p = 1.0 if top_p is None else float(top_p)
        # Blocks for the thread count now in force (minigrad.threads may change it between calls)
        blocks = 2 * cores()  # two blocks per core: evens out a core that lags
        drawn = self.loop.sample_ids(ids, self.first_table, self.stacked, self.bias, self.products, self.layout,
                                     self.b_hh, self.state, blocks, rng, float(temperature), top_k, top_p,
                                     bool(greedy))
        return ids[:drawn]


def _check_options(length, temperature, top_k, top_p):
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating))
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")


def sample(model, vocab, prime="", length=500, temperature=1.0, top_k=None, seed=None, argmax=False, top_p=None,
           threads=None):
    """An iterator over `length` generated characters (the prime is not repeated).

    top_p keeps the likeliest characters whose probabilities first reach top_p (after top_k,
    if both are given). Arguments are checked here, before the first character: a bad
    temperature, top_k or top_p is a
    ValueError, a prime with characters outside the vocabulary a TextError naming them.
    An empty prime starts from a newline (or the vocabulary's first character).
    The characters are drawn in chunks, each on the thread count `threads` (a
    minigrad.threads.ThreadChooser; a new one for this machine if None) measures and chooses.
    """
    _check_options(length, temperature, top_k, top_p)
    if not isinstance(prime, str):
        raise TypeError(f"prime must be a str, got {type(prime).__name__}")
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} characters, the model {model.config.vocab_size}")
    if prime:
        context = vocab.encode(prime)
    else:
        context = np.array([vocab.chars.index("\n") if "\n" in vocab.chars else 0])
    rng = np.random.default_rng(seed)
    return _generate(model, vocab, context.astype(np.int64), length, rng,
                     {"temperature": float(temperature), "top_k": top_k, "top_p": top_p, "greedy": argmax},
                     threads or ThreadChooser.for_this_machine())


def _generate(model, vocab, context, length, rng, options, threads):
    state = None
    piece = rows_per_call(model.config.vocab_size, PRIME_CHUNK)
    for start in range(0, len(context), piece):
        with inference(model):  # per forward call: a half-consumed sampler never leaves the model in eval mode
            _, state = model(context[None, start:start + piece], state)
    sampler = Sampler(model, state)
    produced = 0
    while produced < length:
        wanted = min(DRAW_CHUNK, length - produced)
        with threads.unit(wanted):
            ids = sampler.draw(wanted, rng, **options)
        yield from (vocab.chars[i] for i in ids)
        produced += len(ids)
        if len(ids) < wanted:
            raise ModelDiverged("the model produced non-finite logits (nan or inf): is the checkpoint diverged?")
