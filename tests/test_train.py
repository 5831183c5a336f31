"""The training loop: it learns, it resumes exactly, it writes its files, it stops when told."""

import collections
import json
import math
import os
import signal

import numpy as np
import pytest

import minigrad as mg
import rnn.model.charlm
import rnn.training.loop as train_module
from rnn.checkpoint.format import load_checkpoint
from rnn.data.corpus import Corpus
from rnn.data.text import TextError
from rnn.errors import UserError
from rnn.training.loop import (LR_FLOOR, RunExistsError, RunLock, RunLockedError, TrainConfig, TrainingDiverged, learning_rate,
                       train)
from train_support import tiny_configs

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister"]
VERBS = ["sees", "likes", "finds", "follows", "draws"]
OBJECTS = ["the red ball", "a small house", "the garden", "two birds", "his hat"]
ENDINGS = [".", "!", " today.", " again."]


def grammar_text(n_chars, seed=0):
    """Sentences of a tiny grammar: every character is predictable except the word choices."""
    rng = np.random.default_rng(seed)
    lines, total = [], 0
    while total < n_chars:
        line = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines)


def unigram_entropy(text):
    counts = np.array(list(collections.Counter(text).values()), dtype=float)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


tiny_config = tiny_configs(cell="lstm", hidden=16, embed=8, lr=1e-2, warmup=3, eval_every=5, sample_every=3,
                           sample_length=20, seed=7)


def read_metrics(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a, b):
    assert set(a) == set(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


# ---- it learns -------------------------------------------------------------------------------------

def test_an_lstm_learns_the_structure_of_a_generated_corpus(tmp_path):
    text = grammar_text(30_000)
    corpus = Corpus.from_text(text, val_frac=0.1)
    config = TrainConfig(layers=2, hidden=64, embed=16, seq_len=32, batch_size=16, lr=1e-2, warmup=10,
                         steps=200, eval_every=100, sample_every=0, dtype="float32", seed=1)
    summary = train(config, corpus, tmp_path / "run")

    # What cannot be learned: the word choices, ln 5 + ln 5 + ln 5 + ln 4 nats per line.
    lines = text.splitlines(keepends=True)
    entropy_rate = (3 * math.log(5) + math.log(4)) / np.mean([len(line) for line in lines])
    unigram = unigram_entropy(text)
    assert summary["stopped_reason"] == "steps" and summary["steps"] == 200
    assert summary["best_val_loss_nats"] < 0.5 * unigram  # a real margin over character frequencies
    assert summary["best_val_loss_nats"] < entropy_rate + 0.3  # close to what is learnable at all


# ---- resume is exact -------------------------------------------------------------------------------

CORPUS_TEXT = grammar_text(700, seed=3)  # 4 streams of ~157 chars: the streams wrap every ~19 steps


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_is_bit_identical_to_training_straight(tmp_path, schedule):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    total, first = 45, 26  # the streams wrap inside both parts; evaluations at 5, 10, ...
    config = tiny_config(schedule=schedule, steps=total, dropout=0.2)  # dropout draws from the RNG

    straight = train(config, corpus, tmp_path / "straight")

    if schedule == "constant":
        # Stop by the step limit, then resume with a larger one (the schedule does not depend on it).
        part = train(tiny_config(schedule=schedule, steps=first, dropout=0.2), corpus, tmp_path / "parts")
        assert part["stopped_reason"] == "steps"
    else:
        # The cosine schedule depends on the total: stop the run with an interruption instead.
        def interrupt_at_first(kind, data):
            if kind == "step" and data["step"] == first:
                raise KeyboardInterrupt

        part = train(config, corpus, tmp_path / "parts", on_event=interrupt_at_first)
        assert part["stopped_reason"] == "interrupted"
    assert load_checkpoint(tmp_path / "parts" / "latest.safetensors").meta["step"] == first

    mg.random.manual_seed(12345)  # as in a new process: the RNG state must come from the checkpoint
    resumed = train(config, corpus, tmp_path / "parts", resume=tmp_path / "parts" / "latest.safetensors")
    assert resumed["steps"] == straight["steps"] == total
    a = load_checkpoint(tmp_path / "straight" / "latest.safetensors")
    b = load_checkpoint(tmp_path / "parts" / "latest.safetensors")
    assert_same_weights(a.model.state_dict(), b.model.state_dict())
    assert a.optimizer_state.keys() == b.optimizer_state.keys()
    for key in a.optimizer_state:
        assert np.array_equal(np.asarray(a.optimizer_state[key]), np.asarray(b.optimizer_state[key])), key
    assert a.meta["rng_state"] == b.meta["rng_state"]
    assert a.meta["data_position"] == b.meta["data_position"]
    assert resumed["best_val_loss_nats"] == straight["best_val_loss_nats"]
    # The metrics of the resumed run continue the file instead of repeating steps.
    steps = [record["step"] for record in read_metrics(tmp_path / "parts")]
    assert steps == sorted(set(steps))


# ---- files and events ----------------------------------------------------------------------------

def test_run_folder_contents_and_events(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    events = collections.defaultdict(list)
    summary = train(tiny_config(steps=23, sample_every=10), corpus, tmp_path,
                    on_event=lambda kind, data: events[kind].append(data))

    assert summary["steps"] == 23 and summary["stopped_reason"] == "steps"
    assert [e["step"] for e in events["step"]] == list(range(1, 24))
    assert [e["step"] for e in events["eval"]] == [5, 10, 15, 20, 23]  # and once at the end
    assert all(len(e["text"]) == 20 and set(e["text"]) <= set(CORPUS_TEXT) for e in events["sample"])
    assert events["stop"] == [{"reason": "steps", "step": 23}]
    assert events["step"][-1]["total_steps"] == 23

    metrics = read_metrics(tmp_path)
    val_lines = [m for m in metrics if "val_loss" in m]
    assert [m["step"] for m in val_lines] == [5, 10, 15, 20, 23]
    assert all({"step", "time", "lr", "train_loss", "chars_per_sec"} <= set(m) for m in metrics)
    best = min(m["val_loss"] for m in val_lines)
    assert summary["best_val_loss_nats"] == best
    assert load_checkpoint(tmp_path / "best.safetensors").meta["best_val_loss"] == best
    assert load_checkpoint(tmp_path / "latest.safetensors").meta["step"] == 23

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["steps"] == 23
    assert config["model"]["hidden"] == 16
    assert config["parameters"] == load_checkpoint(tmp_path / "latest.safetensors").model.num_parameters()


def test_the_best_checkpoint_really_has_the_best_val_loss(tmp_path):
    from rnn.evaluate import evaluate_ids

    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    summary = train(tiny_config(steps=10), corpus, tmp_path)
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert evaluate_ids(best.model, corpus.val_ids)["loss_nats"] == pytest.approx(summary["best_val_loss_nats"])


def test_epoch_and_time_limits(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    summary = train(tiny_config(epochs=1, eval_every=0), corpus, tmp_path / "epochs")
    windows = (len(corpus.train_ids) // 4 - 1) // 8
    assert summary["stopped_reason"] == "epochs" and summary["steps"] == windows
    summary = train(tiny_config(time_budget=0.3, steps=10 ** 6, eval_every=0), corpus, tmp_path / "time")
    assert summary["stopped_reason"] == "time_budget"
    assert 0 < summary["seconds"] <= summary["wall_seconds"]


def test_interrupt_saves_a_checkpoint(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)

    def interrupt(kind, data):
        if kind == "step" and data["step"] == 3:
            raise KeyboardInterrupt

    summary = train(tiny_config(steps=100), corpus, tmp_path, on_event=interrupt)
    assert summary["stopped_reason"] == "interrupted" and summary["steps"] == 3
    assert load_checkpoint(summary["checkpoint"]).meta["step"] == 3


def test_divergence_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    real_loss = rnn.model.charlm.CharLM.loss
    training_calls = []

    def loss_that_turns_nan(model, ids, targets, state=None):
        loss, state = real_loss(model, ids, targets, state)
        if model.training:
            training_calls.append(1)
            if len(training_calls) == 7:
                loss = loss * float("nan")
        return loss, state

    monkeypatch.setattr(rnn.model.charlm.CharLM, "loss", loss_that_turns_nan)
    with pytest.raises(TrainingDiverged) as error:
        train(tiny_config(steps=20), corpus, tmp_path)
    message = str(error.value)
    # The library names its own settings; the CLI turns them into its flags (test_cli_errors).
    assert "step 7" in message and "grad_clip=1" in message and "lr=" in message and "--" not in message
    assert [setting.name for setting in error.value.settings] == ["grad_clip", "lr"]
    assert error.value.option == "grad_clip"
    assert isinstance(error.value, RuntimeError) and isinstance(error.value, UserError)
    assert load_checkpoint(tmp_path / "latest.safetensors").meta["step"] == 5


def test_a_second_run_in_the_same_folder_is_refused(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by another training run"):
            train(tiny_config(steps=2), corpus, tmp_path)
    assert train(tiny_config(steps=2), corpus, tmp_path)["steps"] == 2  # released


def test_a_fresh_run_never_overwrites_an_earlier_runs_checkpoints(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    train(tiny_config(steps=2), corpus, tmp_path)
    before = (tmp_path / "latest.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="continue it with resume=") as error:
        train(tiny_config(steps=2), corpus, tmp_path)
    assert [setting.name for setting in error.value.settings] == ["resume", "out"]
    assert (tmp_path / "latest.safetensors").read_bytes() == before
    assert train(tiny_config(steps=3), corpus, tmp_path, resume=tmp_path / "latest.safetensors")["steps"] == 3


def test_sigterm_saves_like_ctrl_c(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)

    def terminate_at_step_4(kind, data):
        if kind == "step" and data["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    summary = train(tiny_config(steps=50, eval_every=0), corpus, tmp_path, on_event=terminate_at_step_4)
    assert summary["stopped_reason"] == "interrupted"
    assert load_checkpoint(tmp_path / "latest.safetensors").meta["step"] == summary["steps"] >= 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_bad_settings_and_short_texts_fail_before_anything_is_written(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    with pytest.raises(TextError, match="too short"):
        train(tiny_config(steps=2, batch_size=64, seq_len=64), corpus, tmp_path / "a")
    for bad in (dict(lr=0), dict(hidden=0), dict(optimizer="lbfgs"), dict(schedule="step"), dict(steps=-1),
                dict(val_frac=1.0), dict(time_budget=0), dict(dropout=1.0), dict(grad_clip=-1), dict(beta2=1.0),
                dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            train(tiny_config(**bad), corpus, tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("optimizer", train_module.OPTIMIZERS)
def test_every_optimizer_trains_and_resumes(tmp_path, optimizer):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    config = tiny_config(optimizer=optimizer, steps=4, eval_every=2, sample_every=0)
    train(config, corpus, tmp_path)
    resumed = train(tiny_config(optimizer=optimizer, steps=6, eval_every=2, sample_every=0), corpus, tmp_path,
                    resume=tmp_path / "latest.safetensors")
    assert resumed["steps"] == 6
    assert load_checkpoint(tmp_path / "latest.safetensors").optimizer_name.lower() == optimizer


def test_weight_decay_defaults_to_decoupled_for_adamw_only():
    parameters = lambda: [mg.nn.Parameter(np.zeros(3))]  # noqa: E731
    adamw = train_module.make_optimizer("adamw", parameters(), 1e-3, beta2=0.99)
    assert isinstance(adamw, mg.optim.AdamW) and adamw.weight_decay == train_module.DEFAULT_WEIGHT_DECAY
    assert adamw.betas == (0.9, 0.99)
    for name in ("adam", "sgd", "rmsprop", "adagrad"):
        assert train_module.make_optimizer(name, parameters(), 1e-3).weight_decay == 0.0
    assert train_module.make_optimizer("adam", parameters(), 1e-3, weight_decay=0.05).weight_decay == 0.05
    assert train_module.make_optimizer("adamw", parameters(), 1e-3, weight_decay=0.0).weight_decay == 0.0


def test_learning_rate_schedules():
    config = TrainConfig(lr=1.0, warmup=10, schedule="cosine")
    assert learning_rate(config, 0, 0.0) == pytest.approx(0.1)  # warmup: (step + 1) / warmup
    assert learning_rate(config, 9, 0.0) == pytest.approx(1.0)
    assert learning_rate(config, 100, 0.5) == pytest.approx(LR_FLOOR + (1 - LR_FLOOR) / 2)
    assert learning_rate(config, 100, 1.0) == pytest.approx(LR_FLOOR)
    constant = TrainConfig(lr=0.5, warmup=0, schedule="constant")
    assert learning_rate(constant, 0, 0.0) == learning_rate(constant, 500, 1.0) == 0.5


def test_ctrl_c_stops_after_the_step_and_saves(tmp_path):
    import os
    import signal

    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    previous_handler = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(kind, data):
        if kind == "step" and data["step"] == 4:
            os.kill(os.getpid(), signal.SIGINT)

    summary = train(tiny_config(steps=100), corpus, tmp_path, on_event=press_ctrl_c)
    assert summary["stopped_reason"] == "interrupted" and summary["steps"] == 4
    assert load_checkpoint(tmp_path / "latest.safetensors").meta["step"] == 4
    assert signal.getsignal(signal.SIGINT) is previous_handler


def test_resuming_on_a_text_with_another_vocabulary_is_refused(tmp_path):
    from rnn.checkpoint.format import CheckpointError

    train(tiny_config(steps=2), Corpus.from_text(CORPUS_TEXT, val_frac=0.1), tmp_path)
    other = Corpus.from_text(CORPUS_TEXT.upper(), val_frac=0.1)
    with pytest.raises(CheckpointError, match="different vocabulary"):
        train(tiny_config(steps=4), other, tmp_path, resume=tmp_path / "latest.safetensors")


def test_resuming_into_another_folder_writes_its_checkpoints_there(tmp_path):
    corpus = Corpus.from_text(CORPUS_TEXT, val_frac=0.1)
    train(tiny_config(steps=3), corpus, tmp_path / "first")
    summary = train(tiny_config(steps=3), corpus, tmp_path / "second", resume=tmp_path / "first" / "latest.safetensors")
    assert summary["steps"] == 3  # nothing left to train, but the new folder gets its checkpoint
    assert load_checkpoint(summary["checkpoint"]).meta["step"] == 3
    assert summary["checkpoint"] == str(tmp_path / "second" / "latest.safetensors")
