"""Honest held-out numbers: the trainer reports the val loss of its latest checkpoint beside
the best one's (the best was chosen on the validation text), with the steps they are of;
the checkpoints and the summary keep both; `eval RUN TEXT` scores both checkpoints."""

import json

import pytest

from rnn.checkpoint.format import load_checkpoint
from rnn.data.corpus import Corpus
from rnn.training.loop import TrainConfig, train

from cli_support import TINY_MODEL, make_text, run_in_process


def test_the_summary_and_checkpoints_name_the_steps_of_the_latest_and_best_val_loss(tmp_path):
    text = tmp_path / "input.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    config = TrainConfig(cell="lstm", layers=1, hidden=16, embed=8, seq_len=16, batch_size=4, steps=24,
                         eval_every=6, sample_every=0, lr=0.05, warmup=0)
    summary = train(config, Corpus.from_file(text), tmp_path / "run")
    evaluations = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluations = [(record["val_loss"], record["step"]) for record in evaluations if "val_loss" in record]
    best_loss, best_step = min(evaluations)
    assert (summary["best_val_loss_nats"], summary["best_step"]) == (best_loss, best_step)
    assert (summary["last_val_loss_nats"], summary["last_val_step"]) == evaluations[-1]
    assert summary["last_val_step"] == summary["latest_step"] == 24
    latest = load_checkpoint(tmp_path / "run" / "latest.safetensors").meta
    best = load_checkpoint(tmp_path / "run" / "best.safetensors").meta
    assert (latest["last_val_step"], latest["best_step"]) == (24, best_step)
    assert (best["step"], best["best_step"], best["best_val_loss"]) == (best_step, best_step, best_loss)


def test_train_prints_the_latest_and_the_best_and_eval_of_the_run_gives_the_same_numbers(tmp_path):
    text, val = tmp_path / "input.txt", tmp_path / "val.txt"
    text.write_text(make_text(3000, seed=1), encoding="utf-8")
    val.write_text(make_text(600, seed=2), encoding="utf-8")  # short: the trainer reads it as one stream too
    result = run_in_process("train", text, "--val-file", val, *TINY_MODEL, "--steps", "24", "--eval-every", "6",
                     "--sample-every", "0", "--lr", "0.05", "--out", tmp_path / "run", "--json", check_exit=0)
    summary = json.loads(result.stdout)
    assert f"latest val loss: {summary['last_val_loss_nats']:.4f} nats/char" in result.stderr
    assert f"at step {summary['latest_step']}" in result.stderr
    assert f"best val loss: {summary['best_val_loss_nats']:.4f} nats/char" in result.stderr
    assert f"at step {summary['best_step']} (the best checkpoint)" in result.stderr

    scored = json.loads(run_in_process("eval", tmp_path / "run", val, "--json", check_exit=0).stdout)
    assert scored["latest"]["step"] == summary["latest_step"] == 24
    assert scored["best"]["step"] == summary["best_step"]
    assert scored["latest"]["loss_nats"] == pytest.approx(summary["last_val_loss_nats"], abs=1e-6)
    assert scored["best"]["loss_nats"] == pytest.approx(summary["best_val_loss_nats"], abs=1e-6)
    info = json.loads(run_in_process("info", tmp_path / "run" / "latest.safetensors", "--json", check_exit=0).stdout)
    assert (info["val_step"], info["best_step"]) == (24, summary["best_step"])
    printed = run_in_process("eval", tmp_path / "run", val, check_exit=0).stdout
    assert printed.startswith(f"latest      {tmp_path / 'run' / 'latest.safetensors'} (step 24)\nloss")
    assert f"best        {tmp_path / 'run' / 'best.safetensors'} (step {summary['best_step']})" in printed


def test_eval_of_a_folder_without_checkpoints_is_one_line(tmp_path):
    text = tmp_path / "input.txt"
    text.write_text("some text", encoding="utf-8")
    (tmp_path / "empty_run").mkdir()
    result = run_in_process("eval", tmp_path / "empty_run", text, check_exit=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds neither latest.safetensors nor best.safetensors" in lines[0]
