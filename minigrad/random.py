"""The one random number generator of minigrad (initialisation, dropout, sampling).

A single seedable numpy Generator, so a seed reproduces a run and a checkpoint can save
and restore the exact stream (its state is a small JSON-able dict, no pickle).
"""

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _generator


def get_state() -> dict:
    return _generator.bit_generator.state


def set_state(state: dict) -> None:
    _generator.bit_generator.state = state
