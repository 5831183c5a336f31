"""The `minigrad-rnn` command line. The entry point, --help, --version, Ctrl-C and a --cell-file
go through the installed console script, in a fresh process; the rest runs the same command
group in this process (cli_support.run_in_process: no interpreter start per command).

One tiny model is trained once per module (`trained_run`); sample, eval, info and
resume use it. Bad input has its own file, test_cli_errors.py.
"""

import inspect
import io
import json
import math
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from cli_support import (TINY_MODEL, TINY_RUN, assert_one_error_line, console_script, make_text, run_cli,
                         run_in_process)

TEXT_CHARS = 3000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text(make_text(TEXT_CHARS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_run(corpus, tmp_path_factory):
    """(run folder, the --json summary) of a 5-step run of the tiny model."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_in_process("train", corpus, *TINY_RUN, "--seed", "1", "--out", out, "--json", check_exit=0)
    return out, json.loads(result.stdout)


# ---- start-up -----------------------------------------------------------------------------

def test_help_lists_every_command():
    """The Commands section of --help names each command of the README, and only those: the
    quick-start text above it mentions train and sample too, so only that section counts."""
    from cli.main import main

    result = run_cli("--help", check_exit=0)
    section = result.stdout.split("\nCommands:\n", 1)[1]
    listed = {line.split()[0] for line in section.splitlines() if re.match(r"  \S", line)}
    documented = {"train", "sample", "eval", "info", "gradcheck", "graph", "plot"}
    assert listed == documented
    assert set(main.commands) == documented


def test_version_is_the_installed_distribution_version():
    result = run_cli("--version", check_exit=0)
    assert version("minigrad-rnn") in result.stdout


def test_start_up_imports_nothing_heavy():
    """--help must be instant: importing the app may not load numpy, numba or minigrad, and of
    rnn only its light modules (the settings' choices and defaults, the UserError base)."""
    probe = ("import sys, cli.main; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'numba', 'minigrad', 'rnn')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # (the sub-packages' __init__ modules hold a docstring only)
    assert set(eval(result.stdout)) <= {"rnn", "rnn.errors", "rnn.model", "rnn.model.options", "rnn.training",
                                        "rnn.training.config"}


def test_train_help_shows_the_library_defaults():
    from rnn.training.loop import TrainConfig

    defaults = TrainConfig()
    help_text = " ".join(run_in_process("train", "--help", check_exit=0).stdout.split())
    for option, field in (("--embed", "embed"), ("--seq-len", "seq_len"), ("--optimizer", "optimizer")):
        shown = rf"{option} .{{0,300}}?\[default: {re.escape(str(getattr(defaults, field)))}[;\]]"
        assert re.search(shown, help_text), f"{option}: default {getattr(defaults, field)} not shown"
    from rnn.training.config import DEFAULT_BATCH_SIZE  # the batch size's default is None: chosen for the text

    assert re.search(rf"--batch-size .{{0,300}}?\[default: \({DEFAULT_BATCH_SIZE}, fewer for a short text\)", help_text)


def test_option_choices_are_the_librarys():
    """The CLI offers rnn.training.config's choice lists themselves, not copies that could drift."""
    import click

    import rnn.training.config
    import rnn.model.charlm
    from cli.main import main

    choices = {param.name: param.type.choices for param in main.commands["train"].params
               if isinstance(param.type, click.Choice)}
    assert choices == {"optimizer": rnn.training.config.OPTIMIZERS, "schedule": rnn.training.config.SCHEDULES,
                       "dtype": rnn.training.config.DTYPE_NAMES, "engine": rnn.training.config.ENGINES,
                       "matmul_precision": rnn.training.config.MATMUL_PRECISIONS}
    assert tuple(rnn.model.charlm.DTYPES) == rnn.training.config.DTYPE_NAMES


def test_help_leaves_the_option_defaults_alone(monkeypatch):
    """train --help shows rnn.training.config's defaults without setting any option's default, even
    while it renders (the options stay None, "not given", so a resumed run keeps its settings)."""
    import click
    from click.testing import CliRunner

    from cli.main import main

    seen = {}
    real_help_extra = click.Option.get_help_extra

    def spy(option, ctx):
        seen[option.name] = option.default
        return real_help_extra(option, ctx)

    monkeypatch.setattr(click.Option, "get_help_extra", spy)
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0 and "[default: (chosen: 5 / hidden for adam and adamw, 0.006 for the others); x>0]" in " ".join(
        result.output.split())
    assert seen["lr"] is None and seen["hidden"] is None and seen["optimizer"] is None


# ---- train --------------------------------------------------------------------------------

def test_train_writes_the_run_folder(trained_run):
    out, summary = trained_run
    assert summary["steps"] == 5
    for key in ("seconds", "chars_per_sec", "best_val_loss_nats", "checkpoint"):
        assert key in summary
    assert summary["seconds"] > 0 and summary["chars_per_sec"] > 0
    assert Path(summary["checkpoint"]).is_file()
    assert (out / "latest.safetensors").is_file() and (out / "best.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "hidden" in json.dumps(config)  # the model settings are recorded
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train_loss" in r][-1] == 5
    val_losses = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    assert val_losses and math.isclose(min(val_losses), summary["best_val_loss_nats"], rel_tol=1e-6)


def test_train_without_a_terminal_prints_plain_lines(corpus, tmp_path):
    result = run_in_process("train", corpus, *TINY_RUN, "--sample-every", "5", "--sample-length", "20",
                     "--out", tmp_path / "run", check_exit=0)
    assert "\r" not in result.stdout  # no live line when stdout is a pipe
    assert "sample at step 5" in result.stdout
    assert "best val loss" in result.stdout
    assert str(tmp_path / "run" / "best.safetensors") in result.stdout


def test_train_quiet_prints_nothing(corpus, tmp_path):
    result = run_in_process("train", corpus, *TINY_RUN, "--quiet", "--out", tmp_path / "run", check_exit=0)
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "run" / "latest.safetensors").is_file()


def test_train_without_text_uses_the_shipped_corpus(tmp_path):
    result = run_in_process("train", *TINY_MODEL, "--steps", "2", "--eval-every", "2", "--sample-every", "0",
                     "--val-frac", "0.01", "--json", "--out", tmp_path / "run", check_exit=0)
    assert json.loads(result.stdout)["steps"] == 2
    info = run_in_process("info", tmp_path / "run" / "latest.safetensors", "--json", check_exit=0)
    assert json.loads(info.stdout)["vocab_size"] == 65  # tiny-shakespeare's characters


def test_default_run_folder_is_under_runs(corpus, tmp_path):
    result = run_in_process("train", corpus, *TINY_RUN, "--json", cwd=tmp_path, check_exit=0)
    checkpoint = Path(json.loads(result.stdout)["checkpoint"])
    run_folder = (tmp_path / checkpoint).parent if not checkpoint.is_absolute() else checkpoint.parent
    assert run_folder.parent == tmp_path / "runs"
    assert (run_folder / "metrics.jsonl").is_file()


def test_resume_continues_from_the_checkpoint(corpus, trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    result = run_in_process("train", corpus, "--resume", run / "latest.safetensors", "--steps", "8", "--json", check_exit=0)
    assert json.loads(result.stdout)["steps"] == 8
    info = json.loads(run_in_process("info", run / "latest.safetensors", "--json", check_exit=0).stdout)
    assert info["step"] == 8
    assert info["model_config"]["hidden"] == 16  # the checkpoint's model, not the defaults
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8


def test_a_limit_typed_on_resume_replaces_the_saved_limits(corpus, tmp_path):
    # The first run stops on its time budget; resuming it with --steps must not stop at
    # once on that used-up budget, but train on to the steps asked for.
    first = run_in_process("train", corpus, *TINY_MODEL, "--time-budget", "1", "--eval-every", "0", "--sample-every", "0",
                    "--json", "--out", tmp_path / "run", check_exit=0)
    done = json.loads(first.stdout)["steps"]
    resumed = run_in_process("train", corpus, "--resume", tmp_path / "run" / "latest.safetensors", "--steps", done + 3,
                      "--json", check_exit=0)
    summary = json.loads(resumed.stdout)
    assert summary["steps"] == done + 3 and summary["stopped_reason"] == "steps"


def test_ctrl_c_saves_a_checkpoint_and_exits_130(corpus, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        console_script() + ["train", str(corpus), *TINY_MODEL, "--steps", "1000000", "--eval-every", "1000000",
                            "--sample-every", "0", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Wait until training is under way (the first metrics line), then press Ctrl-C.
        while time.monotonic() < deadline and process.poll() is None:
            metrics = out / "metrics.jsonl"
            if metrics.is_file() and metrics.read_text().strip():
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        # A second run into the same folder is refused while the first one holds it.
        second = run_in_process("train", corpus, *TINY_RUN, "--out", out)
        assert second.returncode == 1
        assert_one_error_line(second.stderr, "in use by another training run")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert (out / "latest.safetensors").is_file()
    assert f"--resume {out / 'latest.safetensors'}" in stdout + stderr
    stopped_at = json.loads(run_in_process("info", out / "latest.safetensors", "--json", check_exit=0).stdout)["step"]
    assert stopped_at >= 1
    # --resume alone continues on the same text (no TEXT given) in the same folder.
    resumed = run_in_process("train", "--resume", out / "latest.safetensors", "--steps", stopped_at + 3, "--json",
                      check_exit=0)
    assert json.loads(resumed.stdout)["steps"] == stopped_at + 3


CELL_FILE = """
from rnn import cell, sigmoid, tanh


@cell(gates=("z", "n"), state=("h",))
def my_cell(x, h):
    z = sigmoid(x.z + h.z)
    return z * h + (1 - z) * tanh(x.n + h.n)
"""


def test_train_a_cell_from_a_file(corpus, tmp_path):
    cell_file = tmp_path / "my_cells.py"
    cell_file.write_text(CELL_FILE)
    out = tmp_path / "run"
    run_cli("train", corpus, *TINY_RUN, "--cell-file", cell_file, "--cell", "my_cell", "--engine", "eager",
            "--steps", "3", "--out", out, "--quiet", check_exit=0)
    without = run_cli("sample", out / "latest.safetensors")
    assert without.returncode == 1
    assert_one_error_line(without.stderr, "my_cell", "--cell-file")
    details = json.loads(run_cli("info", out / "latest.safetensors", "--cell-file", cell_file, "--json",
                                 check_exit=0).stdout)
    assert details["model_config"]["cell"] == "my_cell" and details["step"] == 3
    text = run_cli("sample", out / "latest.safetensors", "--cell-file", cell_file, "-n", "10", check_exit=0).stdout
    assert len(text.removesuffix("\n")) == 10


# ---- sample, eval, info -------------------------------------------------------------------

def test_sample_prints_the_prime_then_length_characters(trained_run, corpus):
    checkpoint = trained_run[0] / "best.safetensors"
    result = run_in_process("sample", checkpoint, "--length", "80", "--prime", "The cat", "--seed", "3", check_exit=0)
    text = result.stdout.removesuffix("\n")
    assert text.startswith("The cat")
    assert len(text) == len("The cat") + 80
    assert set(text) <= set(corpus.read_text())


def test_sample_with_a_seed_is_reproducible(trained_run):
    checkpoint = trained_run[0] / "best.safetensors"
    first = run_in_process("sample", checkpoint, "-n", "60", "--seed", "7", "--temperature", "0.8", check_exit=0).stdout
    again = run_in_process("sample", checkpoint, "-n", "60", "--seed", "7", "--temperature", "0.8", check_exit=0).stdout
    other = run_in_process("sample", checkpoint, "-n", "60", "--seed", "8", "--temperature", "0.8", check_exit=0).stdout
    assert first == again
    assert first != other


def test_sample_argmax_and_top_k_1_agree(trained_run):
    """Greedy decoding two ways: always the likeliest character, or sampling among the top 1."""
    checkpoint = trained_run[0] / "best.safetensors"
    greedy = run_in_process("sample", checkpoint, "-n", "40", "--argmax", "--prime", "a", check_exit=0).stdout
    top_one = run_in_process("sample", checkpoint, "-n", "40", "--top-k", "1", "--prime", "a", "--seed", "5",
                      check_exit=0).stdout
    assert greedy == top_one


def test_eval_json(trained_run, corpus):
    checkpoint = trained_run[0] / "best.safetensors"
    result = json.loads(run_in_process("eval", checkpoint, corpus, "--json", check_exit=0).stdout)
    assert set(result) == {"loss_nats", "bpc", "perplexity", "chars", "unknown_chars"}
    assert result["chars"] == TEXT_CHARS - 1  # every character but the first is predicted
    assert math.isclose(result["bpc"], result["loss_nats"] / math.log(2), rel_tol=1e-6)
    assert math.isclose(result["perplexity"], math.exp(result["loss_nats"]), rel_tol=1e-6)
    vocab_size = len(set(corpus.read_text()))
    assert 0 < result["loss_nats"] < 2 * math.log(vocab_size)  # near or below a uniform guess


def test_eval_text_output(trained_run, corpus):
    result = run_in_process("eval", trained_run[0] / "best.safetensors", corpus, check_exit=0)
    for label in ("nats/char", "bits/char", "perplexity", f"{TEXT_CHARS - 1:,}"):
        assert label in result.stdout


def test_info(trained_run, corpus):
    out, summary = trained_run
    details = json.loads(run_in_process("info", out / "latest.safetensors", "--json", check_exit=0).stdout)
    vocab = len(set(corpus.read_text()))
    embed, hidden = 8, 16
    lstm = 4 * hidden * (embed + hidden) + 2 * 4 * hidden
    assert details["vocab_size"] == vocab
    assert details["parameters"] == vocab * embed + lstm + hidden * vocab + vocab
    assert details["step"] == 5
    assert details["model_config"]["cell"] == "lstm"
    text = run_in_process("info", out / "latest.safetensors", check_exit=0).stdout
    assert f"{details['parameters']:,}" in text and "lstm" in text


# ---- gradcheck ----------------------------------------------------------------------------

def test_gradcheck_of_one_cell():
    result = run_in_process("gradcheck", "--cell", "rnn", check_exit=0)
    rows = [line for line in result.stdout.splitlines() if line.startswith("rnn (")]
    assert len(rows) == 2 and all(row.endswith(" ok") for row in rows)  # eager and fused


def test_gradcheck_of_one_op():
    result = run_in_process("gradcheck", "--op", "cross_entropy", check_exit=0)
    assert any(line.startswith("cross_entropy") and line.endswith(" ok") for line in result.stdout.splitlines())


def test_every_public_op_has_a_gradcheck_case():
    import minigrad as mg
    from rnn.model.checks import op_cases

    # The public functions are defined in minigrad.tensor; as_tensor wraps, it computes nothing.
    public_ops = {name for name, value in vars(mg).items()
                  if inspect.isfunction(value) and value.__module__ == "minigrad.tensor"} - {"as_tensor"}
    assert {"add", "tanh", "matmul", "cross_entropy", "log_softmax"} <= public_ops  # the set is the real one
    assert public_ops <= {case.name for case in op_cases()}


def test_gradcheck_failure_exits_1(monkeypatch):
    """A case whose backward is wrong makes a FAIL row and exit code 1."""
    import numpy as np
    from click.testing import CliRunner

    import minigrad as mg
    from cli.main import main
    from minigrad.autograd import Function
    from rnn.model import checks

    class WrongSquare(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return (grad * self.x,)  # should be 2 * x

    def broken_cases():
        def make():
            return WrongSquare.apply, [mg.tensor(np.array([1.0, -2.0]), requires_grad=True)]
        yield checks.GradcheckCase("wrong_square", "op", "(2,)", make)

    monkeypatch.setattr(checks, "op_cases", broken_cases)
    result = CliRunner().invoke(main, ["gradcheck", "--op", "all"])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    assert "wrong_square" in result.stderr


# ---- the live display ---------------------------------------------------------------------

def test_live_display_redraws_one_line():
    from cli.progress import TrainingDisplay

    stream = io.StringIO()
    ticks = iter(range(100))
    display = TrainingDisplay(stream, live=True, clock=lambda: float(next(ticks)), width=100)
    display("step", {"step": 1, "total_steps": 10, "train_loss": 3.5, "chars_per_sec": 2500.0, "eta": 90})
    display("step", {"step": 2, "total_steps": 10, "train_loss": 3.25, "chars_per_sec": 2600.0, "eta": 80})
    display("eval", {"step": 2, "val_loss": 3.0})
    display.finish()
    output = stream.getvalue()
    assert output.count("\r") >= 3
    assert "step 2/10" in output and "3.2500" in output and "2.6k chars/s" in output and "ETA 1m20s" in output
    assert "val loss 3.0000" in output
    assert output.endswith("\r")  # the progress line is wiped at the end


def test_live_line_fits_the_terminal():
    from cli.progress import TrainingDisplay

    stream = io.StringIO()
    display = TrainingDisplay(stream, live=True, clock=lambda: 0.0, width=30)
    display("step", {"step": 1, "total_steps": 10, "train_loss": 3.5, "chars_per_sec": 2500.0, "eta": 90})
    assert all(len(line) < 30 for line in stream.getvalue().split("\r"))


def test_log_display_prints_whole_lines():
    from cli.progress import TrainingDisplay

    stream = io.StringIO()
    display = TrainingDisplay(stream, live=False, clock=lambda: 0.0)
    display("step", {"step": 1, "time_left": 30, "train_loss": 3.5, "chars_per_sec": 100.0})
    display("sample", {"step": 1, "text": "hello"})
    output = stream.getvalue()
    assert "\r" not in output
    assert "30s left" in output and "hello" in output
    assert all(line == line.strip("\r") for line in output.splitlines())

