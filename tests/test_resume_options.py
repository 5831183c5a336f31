"""`train --resume CKPT` with options: every option of `train` is covered.

- options that define the model (cell, layers, hidden, embed, dtype) must match the
  checkpoint: a different value stops the run with one line naming the option, the same
  value is accepted;
- every training option given on resume takes effect (the optimizer's hyperparameters
  inside the restored state included) and is recorded in config.json and the checkpoint;
- options not given keep the run's own settings.

One tiny run is trained once per module; each case resumes a copy of it in-process.
"""

import json
import shutil

import pytest
from click.testing import CliRunner

from cli.main import main, train as train_command
from cli_support import assert_one_error_line, make_text
from rnn.checkpoint.format import load_checkpoint
from rnn.training.recipe import lr_for

BASE = ["--cell", "gru", "--hidden", "8", "--embed", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "4",
        "--steps", "2", "--eval-every", "0", "--sample-every", "0", "--warmup", "0", "--val-frac", "0.1",
        "--dtype", "float32", "--seed", "3", "--optimizer", "adamw", "--beta2", "0.99", "--weight-decay", "0.1"]

CELL_FILE = """
from rnn import cell, sigmoid, tanh


@cell(gates=("z", "n"), state=("h",))
def resume_test_cell(x, h):
    z = sigmoid(x.z + h.z)
    return z * h + (1 - z) * tanh(x.n + h.n)
"""


def _optimizer(checkpoint):
    return checkpoint.optimizer_name, checkpoint.optimizer_state


# option name -> (value typed on resume, extra check of its effect on the resumed checkpoint or None)
TRAINING_OPTIONS = {
    "dropout": ("0.25", lambda ckpt, out: ckpt.config.dropout == 0.25),
    "weight_drop": ("0.2", lambda ckpt, out: ckpt.config.weight_drop == 0.2),
    "embed_dropout": ("0.1", lambda ckpt, out: ckpt.config.embed_dropout == 0.1),
    "engine": ("eager", lambda ckpt, out: ckpt.config.engine == "eager"),
    "seq_len": ("6", lambda ckpt, out: ckpt.meta["data_position"]["seq_len"] == 6),
    "batch_size": ("3", lambda ckpt, out: ckpt.meta["data_position"]["batch_size"] == 3),
    "lr": ("0.003", None),
    "optimizer": ("adam", lambda ckpt, out: ckpt.optimizer_name == "Adam"),
    "beta2": ("0.5", lambda ckpt, out: ckpt.optimizer_state["betas.1"] == 0.5),
    "weight_decay": ("0.5", lambda ckpt, out: ckpt.optimizer_state["weight_decay"] == 0.5),
    "schedule": ("constant", lambda ckpt, out: ckpt.optimizer_state["lr"] == lr_for("adamw", 8)),
    "warmup": ("7", None),
    "grad_clip": ("0.5", None),
    "steps": ("5", lambda ckpt, out: ckpt.meta["step"] == 5),
    "epochs": ("1000", None),
    "time_budget": ("1000", None),
    "val_frac": ("0.2", lambda ckpt, out: ckpt.meta["corpus"]["val_chars"] == 240),
    "eval_every": ("1", lambda ckpt, out: sum("val_loss" in json.loads(line) for line in
                                              (out / "metrics.jsonl").read_text().splitlines()) == 3),
    "sample_every": ("1", None),
    "sample_length": ("5", None),
    "seed": ("99", None),
    "separator": ("|", None),  # recorded; it joins files, and this run's text is one file
}
MODEL_OPTIONS = {"cell": "lstm", "layers": "2", "hidden": "16", "embed": "6", "dtype": "float64"}
SAME_AS_CHECKPOINT = {"cell": "gru", "layers": "1", "hidden": "8", "embed": "4", "dtype": "float32"}
# Parameters of `train` that are not settings of the run.
# (--include and --exclude select a TEXT folder's files: a resumed run reads its recorded files.)
NOT_SETTINGS = {"texts", "out", "resume", "rewind", "quiet", "as_json", "include", "exclude"}  # rewind: tests/test_reliability_round2.py
# Options with a test of their own below (locked_dropout, a flag: tests/test_regularisation.py;
# matmul_precision, which needs AVX512_BF16: tests/test_bf16.py).
OWN_TESTS = {"cell_file", "val_file", "locked_dropout", "matmul_precision"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_options")
    text = folder / "text.txt"
    text.write_text(make_text(1200, seed=4))
    result = CliRunner().invoke(main, ["train", str(text), *BASE, "--out", str(folder / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return text, folder / "run"


def resume(first_run, tmp_path, *options):
    text, run = first_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = CliRunner().invoke(main, ["train", "--resume", str(copy / "latest.safetensors"), "--steps", "4",
                                       *options, "--quiet"])
    return result, copy


def test_every_option_of_train_is_covered_here():
    names = {param.name for param in train_command.params}
    covered = set(TRAINING_OPTIONS) | set(MODEL_OPTIONS) | OWN_TESTS | NOT_SETTINGS
    assert names == covered, (f"options of `train` without a resume case here: {sorted(names - covered)}; "
                              f"cases for options that are gone: {sorted(covered - names)}")


@pytest.mark.parametrize("name", TRAINING_OPTIONS)
def test_a_training_option_given_on_resume_takes_effect_and_is_recorded(first_run, tmp_path, name):
    value, effect = TRAINING_OPTIONS[name]
    result, out = resume(first_run, tmp_path, f"--{name.replace('_', '-')}", value)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out / "latest.safetensors")
    recorded_config = json.loads((out / "config.json").read_text())["train"][name]
    recorded_checkpoint = checkpoint.meta["train_config"][name]
    assert str(recorded_config) == value or recorded_config == float(value), (recorded_config, value)
    assert recorded_checkpoint == recorded_config
    if effect is not None:
        assert effect(checkpoint, out), f"--{name} {value} was recorded but did not take effect"


def test_options_not_given_on_resume_keep_the_runs_settings(first_run, tmp_path):
    result, out = resume(first_run, tmp_path)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out / "latest.safetensors")
    first = load_checkpoint(first_run[1] / "latest.safetensors")
    settings = dict(first.meta["train_config"], steps=4)
    for limit in ("epochs", "time_budget"):
        settings[limit] = None  # a limit typed on resume replaces the run's limits
    assert checkpoint.meta["train_config"] == settings
    assert checkpoint.optimizer_state["betas.1"] == 0.99 and checkpoint.optimizer_state["weight_decay"] == 0.1
    assert checkpoint.config == first.config


@pytest.mark.parametrize("name", MODEL_OPTIONS)
def test_a_model_option_that_differs_from_the_checkpoint_stops_the_run(first_run, tmp_path, name):
    before = (first_run[1] / "latest.safetensors").read_bytes()
    result, out = resume(first_run, tmp_path, f"--{name}", MODEL_OPTIONS[name])
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, f"--{name} {MODEL_OPTIONS[name]}", "checkpoint's model")
    assert (out / "latest.safetensors").read_bytes() == before


def test_model_options_equal_to_the_checkpoints_are_accepted(first_run, tmp_path):
    options = [item for name, value in SAME_AS_CHECKPOINT.items() for item in (f"--{name}", value)]
    result, out = resume(first_run, tmp_path, *options)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "latest.safetensors").meta["step"] == 4


def test_a_cell_file_given_on_resume_is_loaded_and_recorded(first_run, tmp_path):
    cell_file = tmp_path / "cells.py"
    cell_file.write_text(CELL_FILE)
    result, out = resume(first_run, tmp_path, "--cell-file", str(cell_file))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["train"]["cell_file"] == str(cell_file)
    from rnn.cells.registry import get_cell
    get_cell("resume_test_cell")  # it was loaded


def test_a_val_file_given_on_resume_takes_effect_and_is_recorded(first_run, tmp_path):
    text, _ = first_run
    val_file = tmp_path / "val.txt"
    val_file.write_text(text.read_text()[:100])  # characters of the training vocabulary
    result, out = resume(first_run, tmp_path, "--val-file", str(val_file))
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out / "latest.safetensors")
    assert checkpoint.meta["train_config"]["val_file"] == str(val_file.resolve())
    assert json.loads((out / "config.json").read_text())["train"]["val_file"] == str(val_file.resolve())
    assert checkpoint.meta["corpus"]["val_chars"] == 100  # validated on the file, not on a split


def test_the_library_refuses_a_config_whose_model_differs_from_the_checkpoint(first_run, tmp_path):
    from dataclasses import replace

    from rnn.data.corpus import Corpus
    from rnn.training.loop import TrainConfig, train

    text, run = first_run
    first = load_checkpoint(run / "latest.safetensors")
    config = TrainConfig(**{**first.meta["train_config"], "steps": 3})
    with pytest.raises(ValueError, match="hidden=8.*hidden=12"):
        train(replace(config, hidden=12), Corpus.from_file(text, val_frac=0.1), tmp_path / "other",
              resume=run / "latest.safetensors")
