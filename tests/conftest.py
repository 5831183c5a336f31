"""Fixtures shared by several test files. (Plain helpers they share are modules beside this
one: cli_support.py runs the CLI, helpers.py checks ops and makes leaves, train_support.py
makes the tiny training settings.)"""

import pytest


@pytest.fixture(scope="session")
def draw_id():
    """The compiled sampling loop's draw: draw_id(logits, rng, temperature, top_k, greedy[, top_p])
    -> the id drawn (-1 for non-finite logits). One kernel for every cell (rnn.fused.drawing)."""
    from rnn.fused.drawing import draw_id

    return draw_id
