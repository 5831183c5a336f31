"""Sampling text from a char-LM, one character at a time.

The prime text is fed first (its characters are not yielded again); then each step
turns the last logits into a distribution (temperature, optionally only the top k),
draws one character, yields it, and feeds it back. Batch 1, no graph, eval mode.

Randomness comes from a private numpy Generator seeded by `seed`, never from minigrad's
global generator: the same seed gives the same text, and sampling in the middle of
training does not change the training's random stream.
"""

import contextlib
import math

import numpy as np

import minigrad as mg

# The prime is fed in pieces of this many characters (only the last logits are needed).
PRIME_CHUNK = 1024


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


def _check_options(length, temperature, top_k):
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")


def next_id(logits: np.ndarray, rng: np.random.Generator, temperature=1.0, top_k=None, argmax=False) -> int:
    """One character id drawn from `logits` (V,)."""
    if not np.all(np.isfinite(logits)):
        raise ValueError("the model produced non-finite logits (nan or inf): is the checkpoint diverged?")
    if argmax:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.size:
        keep = np.argpartition(scaled, -top_k)[-top_k:]  # exactly k, ties broken by position
        masked = np.full_like(scaled, -np.inf)
        masked[keep] = scaled[keep]
        scaled = masked
    # Inverse-CDF draw: the same distribution as rng.choice(p=...), without its checks' cost.
    cumulative = np.cumsum(np.exp(scaled - scaled.max()))
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), scaled.size - 1))


def sample(model, vocab, prime="", length=500, temperature=1.0, top_k=None, seed=None, argmax=False):
    """An iterator over `length` generated characters (the prime is not repeated).

    Arguments are checked here, before the first character: a bad temperature or top_k is a
    ValueError, a prime with characters outside the vocabulary a TextError naming them.
    An empty prime starts from a newline (or the vocabulary's first character).
    """
    _check_options(length, temperature, top_k)
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
                     dict(temperature=float(temperature), top_k=top_k, argmax=argmax))


def _generate(model, vocab, context, length, rng, options):
    state = None
    for start in range(0, len(context), PRIME_CHUNK):
        with _inference(model):
            logits, state = model(context[None, start:start + PRIME_CHUNK], state)
    last = logits.data[0, -1]
    state = [tuple(s.data for s in layer) for layer in state]
    for produced in range(length):
        chosen = next_id(last, rng, **options)
        yield vocab.chars[chosen]
        if produced + 1 < length:
            # One character at a time through the graph-free fused step (model.next_logits).
            next_logits, state = model.next_logits(np.array([chosen]), state)
            last = next_logits[0]
