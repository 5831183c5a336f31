"""Fixtures shared by several test files. (Plain helpers they share are modules beside this
one: cli_support.py runs the CLI, helpers.py checks ops and makes leaves, train_support.py
makes the tiny training settings.)"""

import pytest


@pytest.fixture(scope="session")
def draw_id():
    """The compiled sampling loop's draw: draw_id(logits, rng, temperature, top_k, greedy[, top_p])
    -> the id drawn (-1 for non-finite logits). Compiled once per run, for a tiny float64 model."""
    import minigrad as mg
    from rnn.model.charlm import CharLM, ModelConfig
    from rnn.sample import Sampler

    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=7, cell="rnn", embed=3, hidden=4, layers=1, dtype="float64"))
    return Sampler(model, model.initial_state(1)).loop.draw_id
