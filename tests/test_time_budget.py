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
    whole = int(EVAL_SHARE * 10.0 / 1e-5) - 1000  # a text that fits in the share
    small = plan_for(10.0, whole, clock)
    small.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)
    assert small.eval_chars(final=False) == whole


def test_the_share_is_for_all_the_evaluations_of_the_run_together():
    clock = FakeClock()
    plan = TimePlan(100.0, 0.0, 1_000_000, parameters=1000, dtype="float32", eval_every=500, clock=clock)
    plan.step_ended(0.02)  # 5000 steps in the budget: 10 evaluations every 500 steps, and the final one
    plan.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)
    assert plan.planned_evaluations() == 11
    assert plan.eval_chars(final=False) == pytest.approx(EVAL_SHARE * 100.0 / 11 / 1e-5, abs=1)
    # however many evaluations are asked for, none reads fewer than the probe
    often = TimePlan(100.0, 0.0, 1_000_000, parameters=1000, dtype="float32", eval_every=1, clock=clock)
    often.step_ended(0.02)
    often.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)
    assert often.eval_chars(final=False) == PROBE_CHARS


def test_the_schedule_s_course_ends_when_the_run_stops():
    """The learning rate follows fraction_done: it counts evaluations and saves as the run's
    clock does, and reaches 1 when no other step fits."""
    clock = FakeClock()
    plan = plan_for(10.0, 1_000_000, clock)
    plan.step_ended(0.5)
    plan.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)
    clock.now = 4.0
    assert plan.fraction_done() == pytest.approx(4.0 / (10.0 - plan.reserve()))
    while not plan.time_is_up():
        clock.now += 0.01
    assert plan.fraction_done() >= 1 - 0.5 / (10.0 - plan.reserve()) - 1e-9


def test_training_stops_when_a_step_and_the_final_evaluation_would_pass_the_budget():
    clock = FakeClock()
    plan = plan_for(10.0, 1_000_000, clock)
    plan.step_ended(0.5)
    plan.evaluated(PROBE_CHARS, PROBE_CHARS * 1e-5)  # the final evaluation: EVAL_SHARE of 10 s
    last_start = 10.0 - 0.5 - plan.reserve()  # the reserve: that evaluation and two saves
    assert plan.reserve() == pytest.approx(EVAL_SHARE * 10.0 + 2 * plan.save_seconds, abs=1e-4)
    clock.now = last_start - 0.1
    assert not plan.time_is_up()
    clock.now = last_start + 0.1
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


def test_the_learning_rate_reaches_its_floor_at_the_end_of_a_run_that_spends_time_sampling(tmp_path):
    """The schedule's clock is the budget's: a run that spends most of its wall time in samples
    still ends its cosine (before, timed by its steps alone, it ended far from the floor)."""
    text = "".join(f"{word} walks to the {place}.\n" for word in ("Anna", "the dog", "a man")
                   for place in ("river", "town", "hill")) * 2000
    config = TrainConfig(cell="lstm", layers=1, hidden=16, embed=8, seq_len=16, batch_size=4, eval_every=0,
                         sample_every=2, sample_length=3000, time_budget=3.0, dropout=0.0, warmup=1,
                         lr=1e-2, seed=1)
    events = []
    summary = train(config, Corpus.from_text(text), tmp_path, on_event=lambda kind, data: events.append((kind, data)))
    assert summary["stopped_reason"] == "time_budget"
    samples = sum(1 for kind, _ in events if kind == "sample")
    lrs = [data["lr"] for kind, data in events if kind == "step"]
    assert samples >= 3 and len(lrs) >= 6, (samples, len(lrs))
    assert lrs[-1] < 0.25 * config.lr, lrs[-3:]
