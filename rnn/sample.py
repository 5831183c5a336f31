"""Sampling text from a char-LM, one character at a time.

The prime text is fed first (its characters are not yielded again); then each step
turns the last logits into a distribution (temperature, optionally only the top k
and/or the nucleus of probability top_p), draws one character, yields it, and feeds it back. Batch 1, no graph, eval mode. The
draw-and-feed loop itself runs compiled, many characters per call (`rnn.sampler`).

Randomness comes from a private numpy Generator seeded by `seed`, never from minigrad's
global generator: the same seed gives the same text, and sampling in the middle of
training does not change the training's random stream.
"""

import contextlib
import math

import numpy as np

import minigrad as mg

from .errors import ModelDiverged
from .evaluate import rows_per_call
from .sampler import Sampler

# The prime is fed in pieces of this many characters (only the last logits are needed),
# fewer where the vocabulary is so large that their logits would pass LOGITS_BUDGET.
PRIME_CHUNK = 1024
# Characters drawn per call of the compiled loop: big enough that a call's cost vanishes,
# small enough that streamed text appears without a visible pause (~10 ms at 2x256).
DRAW_CHUNK = 256


@contextlib.contextmanager
def _inference(model):
    """Eval mode and no graph, for one forward call; the caller's settings come back after,
    so a half-consumed sampler never leaves the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with mg.no_grad():
            yield
    finally:
        model.train(was_training)


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


def sample(model, vocab, prime="", length=500, temperature=1.0, top_k=None, seed=None, argmax=False, top_p=None):
    """An iterator over `length` generated characters (the prime is not repeated).

    top_p keeps the likeliest characters whose probabilities first reach top_p (after top_k,
    if both are given). Arguments are checked here, before the first character: a bad
    temperature, top_k or top_p is a
    ValueError, a prime with characters outside the vocabulary a TextError naming them.
    An empty prime starts from a newline (or the vocabulary's first character).
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
                     dict(temperature=float(temperature), top_k=top_k, top_p=top_p, greedy=argmax))


def _generate(model, vocab, context, length, rng, options):
    state = None
    piece = rows_per_call(model.config.vocab_size, PRIME_CHUNK)
    for start in range(0, len(context), piece):
        with _inference(model):
            _, state = model(context[None, start:start + piece], state)
    sampler = Sampler(model, state)
    produced = 0
    while produced < length:
        wanted = min(DRAW_CHUNK, length - produced)
        ids = sampler.draw(wanted, rng, **options)
        yield from (vocab.chars[i] for i in ids)
        produced += len(ids)
        if len(ids) < wanted:
            raise ModelDiverged("the model produced non-finite logits (nan or inf): is the checkpoint diverged?")
