"""Sampling (streamed, seeded, temperature / top-k / argmax) and evaluation (nats, bits, perplexity)."""

import math

import numpy as np
import pytest

import minigrad as mg
from rnn.data.text import TextError
from rnn.data.vocab import Vocab
from rnn.evaluate import evaluate, evaluate_ids
from rnn.model.charlm import CharLM, ModelConfig
from rnn.sample import sample

TEXT = "abracadabra, alakazam! the rain in spain.\n"


@pytest.fixture(scope="module")
def model_and_vocab():
    vocab = Vocab.from_text(TEXT)
    mg.random.manual_seed(11)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed=6, hidden=12, layers=2, dtype="float64"))
    # Sharper than an untrained model, so that argmax and low temperatures have clear winners.
    model.head.weight.data *= 8.0
    return model, vocab


def last_logits(model, ids):
    """Logits after reading `ids`, recomputed from scratch (no carried state, one forward call)."""
    with mg.no_grad():
        logits, _ = model(np.asarray(ids, dtype=np.int64)[None, :])
    return logits.data[0, -1]


# ---- sampling ---------------------------------------------------------------------------------------

def test_a_seed_reproduces_the_text(model_and_vocab):
    model, vocab = model_and_vocab
    first = "".join(sample(model, vocab, prime="abra", length=60, seed=5))
    again = "".join(sample(model, vocab, prime="abra", length=60, seed=5))
    other = "".join(sample(model, vocab, prime="abra", length=60, seed=6))
    assert first == again
    assert first != other
    assert len(first) == 60 and set(first) <= set(vocab.chars)


def test_sampling_streams_characters_and_leaves_the_global_rng_alone(model_and_vocab):
    model, vocab = model_and_vocab
    state = mg.random.get_state()
    model.train()
    stream = sample(model, vocab, length=5, seed=1)
    assert not isinstance(stream, (str, list))
    assert isinstance(next(stream), str)
    assert model.training  # between characters the caller's mode is back
    assert len(list(stream)) == 4
    assert mg.random.get_state() == state
    model.eval()


def test_argmax_follows_the_model_with_its_state_carried(model_and_vocab):
    model, vocab = model_and_vocab
    prime = "the rain"
    generated = "".join(sample(model, vocab, prime=prime, length=25, argmax=True))
    # Independently: re-read the whole text so far at every step and take the largest logit.
    text = prime
    for char in generated:
        assert char == vocab.chars[int(np.argmax(last_logits(model, vocab.encode(text))))]
        text += char


def test_top_k_only_draws_from_the_k_largest(model_and_vocab):
    model, vocab = model_and_vocab
    prime = "ala"
    generated = "".join(sample(model, vocab, prime=prime, length=40, top_k=2, seed=3))
    text = prime
    for char in generated:
        top_two = np.argsort(last_logits(model, vocab.encode(text)))[-2:]
        assert vocab.chars.index(char) in top_two
        text += char
    assert "".join(sample(model, vocab, prime=prime, length=40, top_k=1, seed=9)) == \
        "".join(sample(model, vocab, prime=prime, length=40, argmax=True))


def test_temperature_sharpens_towards_argmax(model_and_vocab):
    model, vocab = model_and_vocab
    greedy = "".join(sample(model, vocab, prime="abra", length=30, argmax=True))
    cold = "".join(sample(model, vocab, prime="abra", length=30, temperature=1e-3, seed=0))
    assert cold == greedy


def test_sample_frequencies_follow_the_softmax(model_and_vocab):
    """One long sample at T=2: at every step the model gives the softmax the draw should follow
    (re-read with one forward call over the whole text), so each character's count must match the
    sum of its probabilities over the steps, within a few standard errors. One sample() call with
    a new context per draw tests as much as thousands of calls from one context."""
    model, vocab = model_and_vocab
    prime, draws = "abra", 3000
    generated = "".join(sample(model, vocab, prime=prime, length=draws, temperature=2.0, seed=0))
    ids = vocab.encode(prime + generated)
    with mg.no_grad():
        logits, _ = model(np.asarray(ids[:-1], dtype=np.int64)[None, :])
    logits = logits.data[0, len(prime) - 1:].astype(np.float64)  # the logits each draw came from
    counts = np.bincount(ids[len(prime):], minlength=len(vocab))

    def largest_z(temperature):
        """The largest |count - expected| / standard deviation over the characters."""
        probabilities = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        expected = probabilities.sum(axis=0)
        spread = np.sqrt((probabilities * (1 - probabilities)).sum(axis=0))
        return np.max(np.abs(counts - expected) / np.maximum(spread, 1e-12))

    bound = 4.5  # standard errors
    assert largest_z(2.0) < bound
    assert largest_z(1.0) > bound  # the check tells the temperatures apart: T=1 would fail it


def test_bad_sampling_options(model_and_vocab):
    model, vocab = model_and_vocab
    for temperature in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            sample(model, vocab, temperature=temperature)
    with pytest.raises(ValueError, match="top_k"):
        sample(model, vocab, top_k=0)
    with pytest.raises(TextError, match=r"'Z' \(U\+005A\).*'é' \(U\+00E9\)"):
        sample(model, vocab, prime="abZé")


# ---- evaluation -------------------------------------------------------------------------------------

def reference_nats(model, ids):
    """Mean cross-entropy from logits of one forward call over the whole text, computed with numpy."""
    with mg.no_grad():
        logits, _ = model(np.asarray(ids[:-1], dtype=np.int64)[None, :])
    logits = logits.data[0].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(ids) - 1), ids[1:]].mean())


def test_evaluate_reports_nats_bits_and_perplexity(model_and_vocab):
    model, vocab = model_and_vocab
    text = TEXT * 3
    result = evaluate(model, vocab, text)
    expected = reference_nats(model, vocab.encode(text))
    assert result["chars"] == len(text) - 1
    assert result["loss_nats"] == pytest.approx(expected, abs=1e-10)
    assert result["bpc"] == pytest.approx(expected / math.log(2))
    assert result["perplexity"] == pytest.approx(math.exp(expected))


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 10_000])
def test_streaming_in_chunks_carries_the_state(model_and_vocab, chunk_size):
    model, vocab = model_and_vocab
    ids = vocab.encode(TEXT * 2)
    assert evaluate_ids(model, ids, chunk_size=chunk_size)["loss_nats"] == \
        pytest.approx(reference_nats(model, ids), abs=1e-10)


@pytest.mark.parametrize("streams", [2, 7])
def test_parallel_streams_predict_every_character_once_from_its_own_part(model_and_vocab, streams):
    model, vocab = model_and_vocab
    ids = vocab.encode(TEXT * 40)
    predictions = len(ids) - 1
    part = predictions // streams
    # Reference: each part evaluated alone from a fresh state (the last one also takes the tail).
    total = 0.0
    for s in range(streams):
        stop = (s + 1) * part if s < streams - 1 else predictions
        alone = evaluate_ids(model, ids[s * part:stop + 1], chunk_size=16)
        total += alone["loss_nats"] * alone["chars"]
    together = evaluate_ids(model, ids, chunk_size=16, streams=streams)
    assert together["chars"] == predictions
    assert together["loss_nats"] == pytest.approx(total / predictions, rel=1e-12)


def test_evaluate_uses_eval_mode_and_restores_the_mode():
    vocab = Vocab.from_text(TEXT)
    mg.random.manual_seed(2)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed=4, hidden=8, layers=2, dropout=0.5, dtype="float64"))
    model.train()
    first = evaluate(model, vocab, TEXT)
    assert model.training
    assert evaluate(model, vocab, TEXT) == first  # no dropout noise


def test_evaluate_names_unknown_characters_and_needs_two(model_and_vocab):
    model, vocab = model_and_vocab
    with pytest.raises(TextError, match=r"'Q' \(U\+0051\)"):
        evaluate(model, vocab, "abQra")
    with pytest.raises(TextError, match="at least 2"):
        evaluate(model, vocab, "a")
