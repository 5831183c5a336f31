"""The trainer's one choice (rnn.recipe): dropout from the passes over the text the run will
make. The choice is a function of the limits, the text's length and, for a time budget, the
speed measured over the first steps; it is recorded, printed, and an explicit --dropout wins."""

import json
import math

import pytest

import rnn.train as train_module
from cli_support import make_text, run_cli
from rnn import recipe
from rnn.checkpoint import load_checkpoint
from rnn.data import Corpus
from rnn.train import TrainConfig, train

CHARS_PER_STEP = 4 * 8  # batch_size x seq_len of tiny_config


def tiny_config(**changes):
    settings = dict(cell="lstm", layers=2, hidden=8, embed=4, seq_len=8, batch_size=4, warmup=0, eval_every=0,
                    sample_every=0, dtype="float64", seed=3)
    settings.update(changes)
    return TrainConfig(**settings)


# ---- the rule -----------------------------------------------------------------------------------

def test_no_dropout_for_a_few_passes_more_for_more_up_to_a_cap():
    assert recipe.dropout_for(0.5) == 0.0
    assert recipe.dropout_for(recipe.PASSES_WITHOUT_DROPOUT) == 0.0
    choices = [recipe.dropout_for(passes) for passes in (1, 4, 6, 10, 20, 40, 80, 1e6, math.inf)]
    assert choices == sorted(choices), "more passes must never get less dropout"
    assert choices[-1] == recipe.MAX_DROPOUT and recipe.MAX_DROPOUT < 1
    assert recipe.dropout_for(recipe.PASSES_WITHOUT_DROPOUT + 5) > 0


def test_planned_passes_take_the_first_limit_reached():
    limits = {"steps": 1000, "epochs": None, "time_budget": None}
    assert recipe.planned_passes(limits, chars_per_step=100, train_chars=50_000) == pytest.approx(2.0)
    limits = {"steps": 1000, "epochs": 1.5, "time_budget": None}
    assert recipe.planned_passes(limits, 100, 50_000) == pytest.approx(1.5)
    # 300 s at 50 ms a step: 6000 steps of 100 characters over a 100,000-character text
    limits = {"steps": None, "epochs": None, "time_budget": 300.0}
    assert recipe.planned_passes(limits, 100, 100_000, seconds_per_step=0.05) == pytest.approx(6.0)
    # a machine twice as fast plans twice the passes (and so never gets less dropout)
    fast = recipe.planned_passes(limits, 100, 100_000, seconds_per_step=0.025)
    assert fast == pytest.approx(12.0)
    assert recipe.dropout_for(fast) >= recipe.dropout_for(6.0)
    # the time budget cannot be planned without a speed
    assert recipe.planned_passes(limits, 100, 100_000) == math.inf
    assert recipe.needs_speed(limits) and not recipe.needs_speed({"steps": 5, "time_budget": None})


# ---- the trainer uses it --------------------------------------------------------------------------

def test_with_a_step_limit_the_choice_is_made_at_once_and_recorded(tmp_path):
    corpus = Corpus.from_text(make_text(3000, seed=1), val_frac=0.1)
    steps = 400  # 400 x 32 characters over ~2,700: about 4.7 passes
    passes = steps * CHARS_PER_STEP / len(corpus.train_ids)
    expected = recipe.dropout_for(passes)
    assert expected > 0, "the case must exercise a non-zero choice"
    events = []
    summary = train(tiny_config(steps=steps), corpus, tmp_path / "run", on_event=lambda kind, data: events.append((kind, data)))
    chosen = [data for kind, data in events if kind == "recipe"]
    assert len(chosen) == 1 and chosen[0]["dropout"] == expected
    assert chosen[0]["planned_passes"] == pytest.approx(passes, abs=0.01)
    assert events.index(("recipe", chosen[0])) < next(k for k, (kind, _) in enumerate(events) if kind == "step")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["dropout"] == expected and config["model"]["dropout"] == expected
    assert config["recipe"]["dropout"] == expected
    checkpoint = load_checkpoint(tmp_path / "run" / "latest.safetensors")
    assert checkpoint.config.dropout == expected and checkpoint.meta["train_config"]["dropout"] == expected
    assert summary["steps"] == steps


def test_an_explicit_dropout_wins(tmp_path):
    corpus = Corpus.from_text(make_text(3000, seed=1), val_frac=0.1)
    events = []
    train(tiny_config(steps=400, dropout=0.05), corpus, tmp_path / "run", on_event=lambda k, d: events.append(k))
    assert "recipe" not in events
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["dropout"] == 0.05 and config["recipe"] is None


def test_with_a_time_budget_the_choice_follows_the_measured_speed(tmp_path, monkeypatch):
    # A clock that advances 0.25 s at every reading: each training step measures 0.25 s, so
    # the plan is deterministic: 60 s / 0.25 s = 240 steps of 32 characters.
    clock = iter(range(10 ** 9))
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: next(clock) * 0.25)
    corpus = Corpus.from_text(make_text(3000, seed=1), val_frac=0.1)
    events = []
    train(tiny_config(time_budget=60.0), corpus, tmp_path / "run", on_event=lambda kind, data: events.append((kind, data)))
    chosen = [data for kind, data in events if kind == "recipe"]
    assert len(chosen) == 1
    passes = 240 * CHARS_PER_STEP / len(corpus.train_ids)
    assert chosen[0]["seconds_per_step"] == pytest.approx(0.25)
    assert chosen[0]["planned_passes"] == pytest.approx(passes, abs=0.01)
    assert chosen[0]["dropout"] == recipe.dropout_for(passes)
    first_step_after = next(data["step"] for kind, data in events[events.index(("recipe", chosen[0])):] if kind == "step")
    assert first_step_after == recipe.PROBE_STEPS[1] + 1  # chosen after the probe, before the next step


def test_the_cli_prints_the_choice_and_resume_keeps_it(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(make_text(3000, seed=2))
    options = ["--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "4",
               "--eval-every", "0", "--sample-every", "0", "--warmup", "0"]
    result = run_cli("train", text, *options, "--steps", "400", "--out", tmp_path / "run", check_exit=0)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    dropout = config["train"]["dropout"]
    assert dropout > 0 and f"dropout {dropout} for about" in result.stdout
    resumed = run_cli("train", "--resume", tmp_path / "run" / "latest.safetensors", "--steps", "420", check_exit=0)
    assert "for about" not in resumed.stdout  # the run's own choice, not a new one
    assert load_checkpoint(tmp_path / "run" / "latest.safetensors").config.dropout == dropout
