"""Evaluation over random windows, each read from a zero state (nanoGPT's estimate_loss): the
library's evaluate_windows against a window-by-window reference, and `eval --windows`."""

import json
import shutil

import numpy as np
import pytest

import minigrad as mg
import rnn.evaluate
from rnn.checkpoint.format import save_checkpoint
from rnn.data.text import TextError
from rnn.data.vocab import Vocab
from rnn.errors import ArgumentError
from rnn.evaluate import evaluate_file_windows, evaluate_windows
from rnn.model.charlm import CharLM, ModelConfig

from cli_support import assert_one_error_line, run_cli

TEXT = "abracadabra, alakazam! the rain in spain falls mainly.\n" * 12


def tiny_model(vocab, dtype="float64", dropout=0.0):
    mg.random.manual_seed(5)
    return CharLM(ModelConfig(vocab_size=len(vocab), embed=8, hidden=16, layers=1, dropout=dropout, dtype=dtype))


@pytest.fixture(scope="module")
def model_and_ids():
    vocab = Vocab.from_text(TEXT)
    return tiny_model(vocab), vocab, vocab.encode(TEXT)


def window_by_window(model, ids, windows, window_len, seed):
    """The reference: the starts drawn as nanoGPT does (uniform over [0, len - window_len - 1]),
    each window scored alone by model.loss from a zero state, the losses averaged."""
    starts = np.random.default_rng(seed).integers(0, len(ids) - window_len, size=windows)
    losses = []
    with mg.no_grad():
        for start in starts:
            window = np.asarray(ids[start:start + window_len + 1], dtype=np.int64)[None, :]
            loss, _ = model.loss(window[:, :-1], window[:, 1:])
            losses.append(float(loss.data))
    return float(np.mean(losses))


# Logits of 10**6 rows a call: 32 windows a call (45 = 32 + 13); of 30 rows: one window of 40
# a call, read in two pieces with its state carried.
@pytest.mark.parametrize("rows", [10 ** 6, 30])
def test_windows_equal_the_window_by_window_reference(model_and_ids, monkeypatch, rows):
    model, _, ids = model_and_ids
    monkeypatch.setattr(rnn.evaluate, "LOGITS_BUDGET", rows * model.config.vocab_size)
    result = evaluate_windows(model, ids, windows=45, window_len=40, seed=7)
    assert result["loss_nats"] == pytest.approx(window_by_window(model, ids, 45, 40, 7), abs=1e-6)
    assert result["chars"] == 45 * 40
    assert (result["windows"], result["window_len"], result["seed"]) == (45, 40, 7)
    assert result["bpc"] == pytest.approx(result["loss_nats"] / np.log(2))


def test_a_seed_draws_the_same_windows_and_another_seed_others(model_and_ids):
    model, _, ids = model_and_ids
    first = evaluate_windows(model, ids, windows=8, window_len=30, seed=1)
    assert evaluate_windows(model, ids, windows=8, window_len=30, seed=1) == first
    assert evaluate_windows(model, ids, windows=8, window_len=30, seed=2)["loss_nats"] != first["loss_nats"]


def test_one_window_of_a_text_just_long_enough_is_the_whole_text(model_and_ids):
    model, _, ids = model_and_ids
    text = ids[:61]  # 60 predictions: the only window starts at 0, whatever the seed
    with mg.no_grad():
        loss, _ = model.loss(np.asarray(text[:-1], np.int64)[None, :], np.asarray(text[1:], np.int64)[None, :])
    for seed in (0, 3):
        assert evaluate_windows(model, text, windows=1, window_len=60, seed=seed)["loss_nats"] == \
            pytest.approx(float(loss.data), abs=1e-12)
    # The same window again and again: still that loss.
    assert evaluate_windows(model, text, windows=5, window_len=60)["loss_nats"] == pytest.approx(float(loss.data))


def test_windows_longer_than_the_text_and_no_windows_are_refused(model_and_ids):
    model, _, ids = model_and_ids
    with pytest.raises(TextError, match="at least 61 characters, got 60"):
        evaluate_windows(model, ids[:60], windows=1, window_len=60)
    with pytest.raises(ArgumentError, match="windows must be a positive integer, got 0"):
        evaluate_windows(model, ids, windows=0)
    with pytest.raises(ArgumentError, match="window_len must be a positive integer"):
        evaluate_windows(model, ids, windows=3, window_len=0)


def test_windows_run_in_eval_mode_and_restore_the_mode():
    vocab = Vocab.from_text(TEXT)
    model = tiny_model(vocab, dropout=0.5)
    model.train()
    ids = vocab.encode(TEXT)
    first = evaluate_windows(model, ids, windows=4, window_len=20)
    assert model.training
    assert evaluate_windows(model, ids, windows=4, window_len=20) == first  # no dropout noise


def test_a_file_is_scored_as_its_ids_with_unknown_characters_skipped(model_and_ids, tmp_path):
    model, vocab, _ = model_and_ids
    path = tmp_path / "held_out.txt"
    path.write_text("Q" + TEXT[:300] + "QQ", encoding="utf-8")  # 'Q' is not in the vocabulary
    with pytest.raises(TextError, match=r"'Q'"):
        evaluate_file_windows(model, vocab, path, windows=6, window_len=50)
    result = evaluate_file_windows(model, vocab, path, windows=6, window_len=50, seed=4, unknown="skip")
    expected = evaluate_windows(model, vocab.encode(TEXT[:300]), windows=6, window_len=50, seed=4)
    assert result == dict(expected, unknown_chars=3)


# ---- the CLI ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("windows")
    vocab = Vocab.from_text(TEXT)
    path = save_checkpoint(folder / "model.safetensors", tiny_model(vocab, dtype="float32"), vocab=vocab,
                           meta={"step": 3})
    text = folder / "held_out.txt"
    text.write_text(TEXT, encoding="utf-8")
    return path, text


def test_eval_windows_json_has_the_stream_and_the_windows(checkpoint):
    path, text = checkpoint
    result = json.loads(run_cli("eval", path, text, "--windows", "20", "--window-len", "32", "--seed", "3",
                                "--json", check_exit=0).stdout)
    assert set(result) == {"loss_nats", "bpc", "perplexity", "chars", "unknown_chars", "windows"}
    windows = result["windows"]
    assert set(windows) == {"loss_nats", "bpc", "windows", "window_len", "seed"}
    assert (windows["windows"], windows["window_len"], windows["seed"]) == (20, 32, 3)
    vocab = Vocab.from_text(TEXT)
    expected = evaluate_windows(tiny_model(vocab, dtype="float32"), vocab.encode(TEXT), 20, 32, 3)
    assert windows["loss_nats"] == pytest.approx(expected["loss_nats"], rel=1e-6)
    plain = json.loads(run_cli("eval", path, text, "--json", check_exit=0).stdout)
    assert plain == {key: value for key, value in result.items() if key != "windows"}


def test_eval_windows_of_a_run_scores_latest_and_best_both_ways(checkpoint, tmp_path):
    path, text = checkpoint
    for name in ("latest", "best"):
        shutil.copy(path, tmp_path / f"{name}.safetensors")
    result = json.loads(run_cli("eval", tmp_path, text, "--windows", "5", "--window-len", "16", "--json",
                                check_exit=0).stdout)
    assert set(result) == {"latest", "best"}
    assert all("windows" in result[name] and result[name]["step"] == 3 for name in result)
    lines = run_cli("eval", tmp_path, text, "--windows", "5", "--window-len", "16", check_exit=0).stdout
    assert lines.count("5 x 16 characters at random places (seed 0)") == 2


def test_eval_windows_mistakes_are_one_line(checkpoint, tmp_path):
    path, text = checkpoint
    short = tmp_path / "short.txt"
    short.write_text(TEXT[:100], encoding="utf-8")
    result = run_cli("eval", path, short, "--windows", "4", check_exit=1)
    assert_one_error_line(result.stderr, "short.txt", "at least 257 characters, got 100", "--window-len")
    assert_one_error_line(run_cli("eval", path, text, "--windows", "0", check_exit=2).stderr, "--windows")
    assert_one_error_line(run_cli("eval", path, text, "--window-len", "8", check_exit=2).stderr,
                          "--window-len", "--windows")
