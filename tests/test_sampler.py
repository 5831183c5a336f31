"""The compiled sampling loop (rnn.sample.Sampler): the same logits as the model's forward pass,
for every registered cell and a user's cell; the draw's rules (top-k ties, greedy,
non-finite logits)."""

import numpy as np
import pytest

import minigrad as mg
from rnn.cells.registry import available_cells, cell, sigmoid, tanh
from rnn.data.vocab import Vocab
from rnn.model.charlm import CharLM, ModelConfig
from rnn.sample import Sampler, sample

from helpers import cell_sweep


@cell(gates=("a", "u"), state=("h", "m"), name="test_sampler_user_cell")
def user_cell(x, h, m):
    """A two-state cell written for this test: a leaky memory m read through a gate."""
    a = sigmoid(x.a + h.a)
    m = a * m + (1 - a) * tanh(x.u + h.u)
    return tanh(m) * a, m


def make_model(cell_name, dtype="float64", layers=2):
    mg.random.manual_seed(5)
    model = CharLM(ModelConfig(vocab_size=11, cell=cell_name, embed=5, hidden=7, layers=layers, dtype=dtype))
    model.head.weight.data *= 6.0  # clear winners for the greedy draws
    return model.eval()


def forward_logits(model, ids):
    """Logits after reading `ids`, from one forward call over all of them (float64 numpy)."""
    with mg.no_grad():
        logits, _ = model(np.asarray(ids, dtype=np.int64)[None, :])
    return logits.data[0, -1].astype(np.float64)


def prime_state(model, ids):
    with mg.no_grad():
        _, state = model(np.asarray(ids, dtype=np.int64)[None, :])
    return state


# The sampling loop is one template for every cell: the README's command runs it for lstm, a
# cell without W_hh (sru) and a user's cell; the other cells with -m slow.
@pytest.mark.parametrize("cell_name", cell_sweep([name for name in available_cells() if not name.startswith("test_")]
                                                 + ["test_sampler_user_cell"],
                                                 quick=("lstm", "sru", "test_sampler_user_cell")))
@pytest.mark.parametrize("layers", [1, 3])
def test_the_loop_carries_the_same_logits_as_the_forward_pass(cell_name, layers):
    model = make_model(cell_name, layers=layers)
    prime = [3, 1, 4, 1, 5]
    sampler = Sampler(model, prime_state(model, prime))
    np.testing.assert_allclose(sampler.logits, forward_logits(model, prime), rtol=1e-10, atol=1e-12)
    text = list(prime)
    for _ in range(12):
        expected_choice = int(np.argmax(sampler.logits))
        (chosen,) = sampler.draw(1, np.random.default_rng(0), greedy=True)
        assert chosen == expected_choice
        text.append(chosen)
        np.testing.assert_allclose(sampler.logits, forward_logits(model, text), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_float32_loop_agrees_with_the_float64_forward_pass(cell_name):
    model32 = make_model(cell_name, dtype="float32")
    model64 = make_model(cell_name, dtype="float64")
    for p32, p64 in zip(model32.parameters(), model64.parameters()):
        p64.data[...] = p32.data  # the same weights, widened
    sampler = Sampler(model32, model32.initial_state(1))
    ids = sampler.draw(40, np.random.default_rng(1))
    np.testing.assert_allclose(sampler.logits, forward_logits(model64, ids), atol=1e-4)


def test_the_sampler_copies_what_it_is_given():
    model = make_model("lstm")
    state = prime_state(model, [1, 2, 3])
    before = [[s.data.copy() for s in layer] for layer in state]
    weights = [p.data.copy() for p in model.parameters()]
    Sampler(model, state).draw(30, np.random.default_rng(0))
    for layer, saved in zip(state, before):
        for s, value in zip(layer, saved):
            np.testing.assert_array_equal(s.data, value)
    for p, value in zip(model.parameters(), weights):
        np.testing.assert_array_equal(p.data, value)
    with pytest.raises(ValueError, match="one stream"):
        Sampler(model, model.initial_state(2))


def test_top_k_keeps_the_k_largest_and_breaks_ties_by_id(draw_id):
    logits = np.array([0.0, 2.0, 2.0, 1.0, 2.0], np.float32)
    rng = np.random.default_rng(0)
    assert {draw_id(logits, rng, 1.0, 1, False) for _ in range(200)} == {1}
    assert {draw_id(logits, rng, 1.0, 2, False) for _ in range(400)} == {1, 2}
    assert {draw_id(logits, rng, 1.0, 4, False) for _ in range(800)} == {1, 2, 3, 4}
    assert draw_id(logits, rng, 1.0, 5, True) == 1  # greedy: the first largest


def test_draws_follow_the_softmax_of_logits_over_temperature(draw_id):
    logits = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    rng = np.random.default_rng(3)
    counts = np.bincount([draw_id(logits, rng, 2.0, 4, False) for _ in range(20000)], minlength=4)
    expected = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum()
    assert np.abs(counts / counts.sum() - expected).max() < 0.015  # ~4.5 standard errors


def test_a_non_finite_logit_draws_nothing(draw_id):
    rng = np.random.default_rng(0)
    for bad in (np.nan, np.inf, -np.inf):
        assert draw_id(np.array([0.0, bad, 1.0], np.float32), rng, 1.0, 3, False) == -1


def test_sampling_a_diverged_model_is_a_clear_error():
    model = make_model("lstm")
    model.head.bias.data[2] = np.nan
    vocab = Vocab.from_text("abcdefghijk")
    with pytest.raises(ValueError, match="non-finite logits"):
        "".join(sample(model, vocab, prime="abc", length=10, seed=0))
