"""Nucleus sampling (`sample --top-p`): the draw follows the renormalised nucleus computed
here independently with numpy from the logits (temperature, then top-k, then top-p, as in
Hugging Face's samplers); top-p 1 changes nothing; a seed makes the text reproducible;
bad values are refused in one line."""

import numpy as np
import pytest

import minigrad as mg
from rnn.checkpoint.format import save_checkpoint
from rnn.data.vocab import Vocab
from rnn.model.charlm import CharLM, ModelConfig
from rnn.sample import Sampler, sample

from cli_support import assert_one_error_line, run_cli


def nucleus_distribution(logits, temperature=1.0, top_k=None, top_p=1.0):
    """The reference: probabilities after temperature, top-k and top-p, renormalised (float64)."""
    scaled = np.asarray(logits, np.float64) / temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    # Likeliest first; equal probabilities in id order.
    order = sorted(range(len(scaled)), key=lambda i: (-scaled[i], i))
    if top_k is not None:
        for i in order[top_k:]:
            probabilities[i] = 0.0
        probabilities /= probabilities.sum()
    kept, mass = [], 0.0
    for i in order:
        if mass >= top_p:
            break
        kept.append(i)
        mass += probabilities[i]
    nucleus = np.zeros_like(probabilities)
    nucleus[kept] = probabilities[kept]
    return nucleus / nucleus.sum()


def test_the_reference_itself_on_a_hand_worked_case():
    # Probabilities 0.5, 0.3, 0.2: p = 0.5 keeps one character, 0.6 two, 0.8 two, 0.81 three.
    logits = np.log([0.3, 0.5, 0.2])
    np.testing.assert_allclose(nucleus_distribution(logits, top_p=0.5), [0, 1, 0])
    np.testing.assert_allclose(nucleus_distribution(logits, top_p=0.6), [0.375, 0.625, 0])
    np.testing.assert_allclose(nucleus_distribution(logits, top_p=0.81), [0.3, 0.5, 0.2])
    np.testing.assert_allclose(nucleus_distribution(logits, top_k=1, top_p=1.0), [0, 1, 0])


@pytest.mark.parametrize("temperature, top_k, top_p", [
    (1.0, None, 0.5), (1.0, None, 0.9), (0.7, None, 0.75), (2.0, None, 0.6), (1.0, 4, 0.7), (1.5, 3, 0.95),
])
def test_draws_follow_the_renormalised_nucleus(draw_id, temperature, top_k, top_p):
    logits = np.array([0.3, 2.0, -1.0, 1.2, 1.2, 0.0, -0.4], np.float32)
    expected = nucleus_distribution(logits, temperature, top_k, top_p)
    rng = np.random.default_rng(11)
    k = len(logits) if top_k is None else top_k
    draws = [draw_id(logits, rng, temperature, k, False, top_p) for _ in range(20000)]
    counts = np.bincount(draws, minlength=len(logits))
    assert set(np.flatnonzero(counts)) == set(np.flatnonzero(expected))  # exactly the nucleus
    assert np.abs(counts / counts.sum() - expected).max() < 0.016  # ~4.5 standard errors at most


def test_top_p_one_draws_exactly_what_no_top_p_draws(draw_id):
    logits = np.array([0.3, 2.0, -1.0, 1.2, 1.2, 0.0, -0.4], np.float32)
    first, second = np.random.default_rng(5), np.random.default_rng(5)
    without = [draw_id(logits, first, 0.8, 7, False) for _ in range(300)]
    with_one = [draw_id(logits, second, 0.8, 7, False, 1.0) for _ in range(300)]
    assert without == with_one


def make_model():
    mg.random.manual_seed(3)
    model = CharLM(ModelConfig(vocab_size=9, cell="lstm", embed=5, hidden=8, layers=2, dtype="float64"))
    model.head.weight.data *= 4.0  # peaked distributions: small nuclei
    return model.eval()


VOCAB = Vocab(list("\nabcdefgh"))


def test_every_sampled_character_lies_in_the_nucleus_of_the_forward_pass():
    model = make_model()
    text = "".join(sample(model, VOCAB, prime="ab", length=40, top_p=0.6, seed=2))
    context = VOCAB.encode("ab").tolist()
    for character in text:
        with mg.no_grad():
            logits, _ = model(np.array(context, np.int64)[None, :])
        allowed = nucleus_distribution(logits.data[0, -1], top_p=0.6) > 0
        assert allowed[VOCAB.chars.index(character)], (text, character)
        context.append(VOCAB.chars.index(character))


def test_a_seed_makes_top_p_samples_reproducible_and_a_tiny_p_is_argmax():
    model = make_model()
    first = "".join(sample(model, VOCAB, length=60, top_p=0.8, top_k=5, seed=7))
    assert first == "".join(sample(model, VOCAB, length=60, top_p=0.8, top_k=5, seed=7))
    greedy = "".join(sample(model, VOCAB, length=60, argmax=True))
    assert "".join(sample(model, VOCAB, length=60, top_p=1e-9, seed=1)) == greedy


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.0001, float("nan"), True, "0.5"])
def test_a_bad_top_p_is_refused_before_the_first_character(bad):
    with pytest.raises(ValueError, match="top_p"):
        sample(make_model(), VOCAB, length=5, top_p=bad)


def test_the_cli_samples_with_top_p_and_refuses_a_bad_one_in_one_line(tmp_path):
    from click.testing import CliRunner

    from cli.main import main

    checkpoint = save_checkpoint(tmp_path / "model.safetensors", make_model(), vocab=VOCAB)
    arguments = ["sample", str(checkpoint), "--top-p", "0.7", "--top-k", "4", "--seed", "3", "-n", "50"]
    console = run_cli(*arguments, check_exit=0)  # the real console script, in a fresh process
    in_process = CliRunner().invoke(main, arguments)
    assert in_process.exit_code == 0 and console.stdout == in_process.stdout and len(console.stdout) == 51
    for bad in ("0", "1.5", "nan", "-1"):
        result = CliRunner().invoke(main, ["sample", str(checkpoint), "--top-p", bad])
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, "--top-p")
