"""The draw of a character id from the logits, for the compiled sampling loop.

It knows no cell, so it lives outside the per-cell loop template (rnn/fused/loops/sampling.py,
which imports it): it compiles once for every cell instead of once per cell (about 2 s of
compile time each, for argsort, cumsum and searchsorted).
"""

import numpy as np

from minigrad.jit import kernel


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
