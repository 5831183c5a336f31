"""`--time-budget` bounds the wall time: the final evaluation and saves are planned inside it
(rnn.training.time_plan), on a bounded first part of the validation text where the whole would not fit."""

import json

import pytest

from rnn.training import time_plan
from rnn.data.corpus import Corpus
from rnn.training.time_plan import EVAL_SHARE, PROBE_CHARS, TimePlan
from rnn.training.loop import TrainConfig, train


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def plan_for(budget, val_chars, clock):
    return TimePlan(budget, 0.0, val_chars, parameters=1000, dtype="float32", clock=clock)


def test_the_evaluation_reads_what_fits_in_its_share_of_the_budget():
    clock = FakeClock()
    plan = plan_for(10.0, 1_000_000, clock)
    assert plan.eval_chars(final=False) == PROBE_CHARS  # nothing measured yet: the probe's size
    plan.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)  # 100k chars/s: the whole text would take 10 s
    assert plan.eval_chars(final=False) == pytest.approx(EVAL_SHARE * 10.0 / 1e-5, abs=1)
    small = plan_for(10.0, 50_000, clock)
    small.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)  # 0.5 s for all of it: the whole text
    assert small.eval_chars(final=False) == 50_000


def test_training_stops_when_a_step_and_the_final_evaluation_would_pass_the_budget():
    clock = FakeClock()
    plan = plan_for(10.0, 1_000_000, clock)
    plan.step_ended(0.5)
    plan.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)  # the final evaluation: 1 s (its 10% share)
    clock.now = 8.0
    assert not plan.time_is_up()  # 8 + 0.5 + 1 + the saves < 10
    clock.now = 8.6
    assert plan.time_is_up()
    # the final evaluation shrinks to what is left, but never below the probe's size
    clock.now = 9.5
    assert plan.eval_chars(final=True) < plan.eval_chars(final=False)
    clock.now = 20.0
    assert plan.eval_chars(final=True) == PROBE_CHARS


def test_a_resumed_run_counts_its_earlier_training():
    plan = TimePlan(10.0, 12.0, 1000, parameters=10, dtype="float32", clock=FakeClock())
    assert plan.time_is_up() and plan.seconds_left() == 0


def test_train_ends_within_the_budget_on_a_text_too_long_to_evaluate_whole(tmp_path, monkeypatch):
    """A 4 s budget, and a validation text that a full evaluation could not read in its share.
    The bound is on the run's own clock: wall time <= budget + 5% + start-up (the time to its
    first step), so it tests the plan, not the machine's speed."""
    budget = 4.0
    text = "".join(f"{word} sees the {other} garden today.\n" for word in ("the cat", "a dog", "my friend")
                   for other in ("red", "old", "small", "green")) * 60000  # ~2.8M characters
    corpus = Corpus.from_text(text, val_frac=0.5)
    # A model too small to split over threads: the thread probe cannot make a step slow (under
    # load a step split over threads may take seconds, and a step in progress is not stopped).
    config = TrainConfig(cell="lstm", layers=1, hidden=16, embed=8, seq_len=32, batch_size=8, eval_every=0,
                         sample_every=0, time_budget=budget, dropout=0.0, seed=1)
    events = []
    summary = train(config, corpus, tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    assert summary["stopped_reason"] == "time_budget"
    assert summary["wall_seconds"] <= budget * 1.05 + summary["startup_seconds"], summary
    # the whole validation text was not read, and the output says how much was
    assert summary["val_chars"] < summary["val_total_chars"] == len(corpus.val_ids)
    final = [data for kind, data in events if kind == "eval"][-1]
    assert (final["val_chars"], final["val_total_chars"]) == (summary["val_chars"], summary["val_total_chars"])
    record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert (record["val_chars"], record["val_total_chars"]) == (summary["val_chars"], len(corpus.val_ids))
