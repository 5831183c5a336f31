"""A run folder is not trusted: links, FIFOs, another run's files, hostile records.

- Nothing the trainer writes follows a link out of the folder (planted `train.lock`,
  `metrics.jsonl`, `config.json`, checkpoints); a folder with such entries is refused with
  one line, and the link's target is untouched. The folder itself may be the user's link.
- `--resume A --out B` where B holds another run is refused; resuming into the run's own
  folder, a copy of its checkpoint, or an empty folder works.
- What is read from a run folder must be a regular file of bounded size: a FIFO or a link
  to /dev/zero ends in one line, never a hang or unbounded memory (in subprocesses with a
  timeout, so that a regression fails instead of hanging the suite).
- The corpus is recorded by its resolved path and a fingerprint: resuming from another
  working directory finds it, a changed file is named.
- Checkpoint metadata and metrics lines with negative, huge, mistyped, NaN or deeply
  nested values end in one line naming the file and the field.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

try:
    import resource
except ImportError:  # not on Windows
    resource = None

import pytest
from click.testing import CliRunner

from cli.main import main
from cli_support import TINY_MODEL, assert_one_error_line, console_script, make_text, run_in_process
from rnn.checkpoint.format import CheckpointError, load_checkpoint
from rnn.data.corpus import Corpus
from rnn.runs.files import RunFileError, entry
from rnn.training.loop import RUN_FILES, RunExistsError, TrainConfig, train
from test_hostile_input import read_raw, write_signed
from train_support import tiny_configs

TEXT = make_text(1500, seed=11)


tiny_config = tiny_configs(cell="gru", hidden=6, dtype="float32", steps=2, seed=5)


@pytest.fixture
def corpus():
    return Corpus.from_text(TEXT, val_frac=0.1)


def tree(folder: Path) -> dict:
    """name -> bytes of every regular file in `folder` (what a refused command must not change)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


# ---- 4: no link is followed out of the run folder --------------------------------------------------

@pytest.mark.parametrize("name", RUN_FILES)
def test_a_planted_link_in_the_run_folder_is_refused_and_its_target_untouched(tmp_path, corpus, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(victim)
    with pytest.raises(RunFileError, match="symbolic link") as error:
        train(tiny_config(), corpus, out)
    assert "\n" not in str(error.value) and name in str(error.value)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", ("train.lock", "metrics.jsonl", "config.json"))
def test_a_dangling_link_never_creates_a_file_outside_the_run_folder(tmp_path, corpus, name):
    outside = tmp_path / "outside" / "created-by-training"
    outside.parent.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(outside)
    with pytest.raises(RunFileError):
        train(tiny_config(), corpus, out)
    assert not outside.exists()


def test_a_link_planted_before_resuming_is_refused_too(tmp_path, corpus):
    out = tmp_path / "run"
    train(tiny_config(), corpus, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "train.lock").unlink()
    (out / "train.lock").symlink_to(victim)
    with pytest.raises(RunFileError, match="train.lock"):
        train(tiny_config(steps=4), corpus, out, resume=out / "latest.safetensors")
    assert victim.read_text() == "precious"


def test_the_run_folder_itself_may_be_the_users_link(tmp_path, corpus):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    summary = train(tiny_config(), corpus, link)
    assert summary["steps"] == 2 and (real / "latest.safetensors").is_file() and (real / "config.json").is_file()
    resumed = train(tiny_config(steps=3), corpus, link, resume=link / "latest.safetensors")
    assert resumed["steps"] == 3


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/etc/passwd", "../x"])
def test_entry_names_cannot_leave_the_folder(tmp_path, name):
    with pytest.raises(RunFileError):
        entry(tmp_path, name)
    assert entry(tmp_path, "metrics.jsonl") == tmp_path / "metrics.jsonl"


# ---- 5: one run per folder, on resume too ----------------------------------------------------------

def test_resuming_into_a_folder_that_holds_another_run_is_refused(tmp_path, corpus):
    first, other = tmp_path / "first", tmp_path / "other"
    train(tiny_config(), corpus, first)
    train(tiny_config(steps=6, seed=9), corpus, other)
    before = tree(other)
    with pytest.raises(RunExistsError, match="holds another run") as error:
        train(tiny_config(steps=4), corpus, other, resume=first / "latest.safetensors")
    assert "\n" not in str(error.value)
    assert tree(other) == before  # checkpoints, config.json and metrics.jsonl untouched


def _train_in_process(text, out, steps: str):
    """A fresh tiny run of `steps` steps into `out`, through the CLI in this process."""
    result = CliRunner().invoke(main, ["train", str(text), *TINY_MODEL, "--steps", steps, "--eval-every", "0",
                                       "--sample-every", "0", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output


def test_the_cli_refuses_it_in_one_line(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    first, other = tmp_path / "first", tmp_path / "other"
    for out, steps in ((first, "2"), (other, "3")):
        _train_in_process(text, out, steps)
    before = tree(other)
    result = CliRunner().invoke(main, ["train", "--resume", str(first / "latest.safetensors"), "--steps", "4",
                                       "--out", str(other), "--quiet"])
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, "holds another run", str(other))
    assert tree(other) == before


def test_resuming_the_same_run_works_from_its_folder_a_copy_or_into_an_empty_folder(tmp_path, corpus):
    first = tmp_path / "first"
    train(tiny_config(), corpus, first)
    run_id = json.loads((first / "config.json").read_text())["run_id"]
    assert load_checkpoint(first / "latest.safetensors").meta["run_id"] == run_id
    # its own folder
    assert train(tiny_config(steps=3), corpus, first, resume=first / "latest.safetensors")["steps"] == 3
    # a copy of its checkpoint kept elsewhere, resumed into the run's folder
    backup = tmp_path / "backup.safetensors"
    shutil.copy(first / "latest.safetensors", backup)
    assert train(tiny_config(steps=4), corpus, first, resume=backup)["steps"] == 4
    assert json.loads((first / "config.json").read_text())["run_id"] == run_id
    # an empty folder: the continuation is a run of its own there
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(tiny_config(steps=5), corpus, empty, resume=first / "latest.safetensors")["steps"] == 5
    branch_id = json.loads((empty / "config.json").read_text())["run_id"]
    assert branch_id != run_id and load_checkpoint(empty / "latest.safetensors").meta["run_id"] == branch_id
    # ...which the first run's checkpoint may not now overwrite
    with pytest.raises(RunExistsError):
        train(tiny_config(steps=6), corpus, empty, resume=first / "latest.safetensors")


# ---- 6: only regular files of bounded size are read --------------------------------------------------

def _trained_run(tmp_path) -> tuple:
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    run_in_process("train", text, *TINY_MODEL, "--steps", "2", "--eval-every", "0", "--sample-every", "0",
            "--out", out, "--quiet", check_exit=0)
    return text, out


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """One trained run folder, copied by the tests that spoil an entry of it (its text stays put)."""
    return _trained_run(tmp_path_factory.mktemp("shared"))[1]


def _replace_with_fifo(path: Path):
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _replace_with_dev_zero(path: Path):
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


HOSTILE_ENTRIES = {"fifo": _replace_with_fifo, "link to /dev/zero": _replace_with_dev_zero}


def run_cli_bounded(*args) -> subprocess.CompletedProcess:
    """run_cli in 3 GB of address space and 60 s: a regression fails fast instead of hanging
    the suite or filling the machine's memory."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(console_script() + [str(a) for a in args], capture_output=True, text=True,
                          encoding="utf-8", timeout=60, preexec_fn=limit)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or resource is None, reason="needs FIFOs and rlimits (POSIX)")
@pytest.mark.parametrize("kind", HOSTILE_ENTRIES)
@pytest.mark.parametrize("name", ("metrics.jsonl", "config.json"))
def test_plot_and_resume_refuse_a_fifo_or_dev_zero_in_one_line(shared_run, tmp_path, kind, name):
    out = tmp_path / "run"
    shutil.copytree(shared_run, out)
    HOSTILE_ENTRIES[kind](out / name)
    plotted = run_cli_bounded("plot", out, "--text")
    assert plotted.returncode == 1
    assert_one_error_line(plotted.stderr, name)
    resumed = run_cli_bounded("train", "--resume", out / "latest.safetensors", "--steps", "3", "--quiet")
    assert resumed.returncode == 1
    assert_one_error_line(resumed.stderr, name, "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo") or resource is None, reason="needs FIFOs and rlimits (POSIX)")
def test_a_fifo_as_the_text_of_a_resumed_run_is_one_line(tmp_path):
    text, out = _trained_run(tmp_path)
    _replace_with_fifo(text)
    resumed = run_cli_bounded("train", "--resume", out / "latest.safetensors", "--steps", "3", "--quiet")
    assert resumed.returncode == 1
    assert_one_error_line(resumed.stderr, "not a regular file")


def test_an_oversized_metrics_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    import rnn.runs.reader
    from rnn.runs.reader import RunError, read_run

    out = tmp_path / "run"
    train(tiny_config(steps=20), Corpus.from_text(TEXT, val_frac=0.1), out)
    monkeypatch.setattr(rnn.runs.reader, "MAX_METRICS_BYTES", 64)
    with pytest.raises(RunError, match="too large"):
        read_run(out)


# ---- 8: the corpus is found by its resolved path and recognised by its fingerprint -------------------

def test_resuming_from_another_working_directory_uses_the_runs_own_text(tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "text.txt").write_text(TEXT)
    (elsewhere / "text.txt").write_text(make_text(1500, seed=99))  # same name, another text
    monkeypatch.chdir(home)
    result = CliRunner().invoke(main, ["train", "text.txt", *TINY_MODEL, "--steps", "2", "--eval-every", "0",
                                       "--sample-every", "0", "--out", "run", "--quiet"])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(home / "run" / "latest.safetensors").meta
    assert meta["corpus"]["path"] == str((home / "text.txt").resolve())
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(main, ["train", "--resume", str(home / "run" / "latest.safetensors"),
                                       "--steps", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = load_checkpoint(home / "run" / "latest.safetensors").meta
    assert resumed["step"] == 3 and resumed["corpus"] == meta["corpus"]


def test_a_changed_text_is_named_on_resume(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    _train_in_process(text, out, "2")
    before = tree(out)
    text.write_text(TEXT[::-1])  # same characters, same length, another text
    found = CliRunner().invoke(main, ["train", "--resume", str(out / "latest.safetensors"), "--steps", "3",
                                      "--quiet"])
    assert found.exit_code == 1
    assert_one_error_line(found.stderr, str(text), "is not the text", "trained on")
    assert tree(out) == before
    # Given explicitly it is the user's choice (fine-tuning): one warning line, and it trains.
    given = CliRunner().invoke(main, ["train", str(text), "--resume", str(out / "latest.safetensors"),
                                      "--steps", "3", "--quiet"])
    assert given.exit_code == 0, given.output
    assert given.stderr.startswith("warning: ") and "is not the text" in given.stderr
    assert len(given.stderr.strip().splitlines()) == 1


def test_the_fingerprint_tells_texts_apart_and_ignores_the_split():
    a = Corpus.from_text(TEXT, val_frac=0.1)
    assert a.fingerprint() == Corpus.from_text(TEXT, val_frac=0.3).fingerprint()
    assert a.fingerprint() != Corpus.from_text(TEXT[1:] + TEXT[0], val_frac=0.1).fingerprint()


# ---- 12: checkpoint metadata and metrics lines are checked field by field ----------------------------

HOSTILE_META = {
    "step negative": ("step", -1),
    "step huge": ("step", 2 ** 70),
    "step text": ("step", "3"),
    "step a bool": ("step", True),
    "step a float": ("step", 1.5),
    "train_seconds NaN": ("train_seconds", float("nan")),
    "train_seconds negative": ("train_seconds", -5.0),
    "best_val_loss NaN": ("best_val_loss", float("nan")),
    "last_val_loss infinite": ("last_val_loss", float("inf")),
    "rng_state with a huge int": ("rng_state", {"bit_generator": "PCG64", "state": {"state": 2 ** 200, "inc": 1},
                                                "has_uint32": 0, "uinteger": 0}),
    "rng_state without its state": ("rng_state", {"bit_generator": "PCG64"}),
    "rng_state nested": ("rng_state", {"bit_generator": "PCG64", "state": {"state": [[[1]]], "inc": 1},
                                       "has_uint32": 0, "uinteger": 0}),
    "run_id a list": ("run_id", ["x"]),
}


def _checkpoint_with(tmp_path, edit) -> Path:
    out = tmp_path / "run"
    path = Path(train(tiny_config(), Corpus.from_text(TEXT, val_frac=0.1), out)["checkpoint"])
    tensors, metadata = read_raw(path)
    edit(metadata)
    write_signed(path, tensors, metadata)
    return path


@pytest.mark.parametrize("case", HOSTILE_META)
def test_hostile_checkpoint_metadata_is_one_line_naming_the_field(tmp_path, case):
    field, value = HOSTILE_META[case]

    def edit(metadata):
        meta = json.loads(metadata["meta"])
        meta[field] = value
        metadata["meta"] = json.dumps(meta)

    path = _checkpoint_with(tmp_path, edit)
    with pytest.raises(CheckpointError) as error:
        train(tiny_config(steps=3), Corpus.from_text(TEXT, val_frac=0.1), tmp_path / "run", resume=path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and field in message
    assert len(message) < 400  # a hostile value is described, not printed whole


HOSTILE_OPTIMIZER = {
    "step count negative": ("scalars", -1),
    "step count infinite": ("scalars", float("inf")),
    "step count text": ("scalars", "many"),
    "step count huge": ("scalars", 10 ** 40),
    "hyperparameter NaN": ("hyperparameters", float("nan")),
    "hyperparameter a list": ("hyperparameters", [0.9]),
}


@pytest.mark.parametrize("case", HOSTILE_OPTIMIZER)
def test_hostile_optimizer_numbers_are_one_line(tmp_path, case):
    part, value = HOSTILE_OPTIMIZER[case]

    def edit(metadata):
        description = json.loads(metadata["optimizer"])
        key = next(iter(description[part]))
        description[part][key] = value
        metadata["optimizer"] = json.dumps(description)

    path = _checkpoint_with(tmp_path, edit)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value) and "optimizer" in str(error.value)


DEEP = "[" * 100000 + "]" * 100000
HOSTILE_LINES = {
    "deep nesting": (DEEP, "longer than 4096 bytes"),  # skipped unparsed (rnn.runs.reader.MAX_LINE_BYTES)
    "deep nesting in a short line": ("[" * 2000 + "]" * 2000, "not JSON"),
    "negative step": ('{"step": -3, "train_loss": 1.0}', "step"),
    "huge step": ('{"step": 1' + "0" * 40 + ', "train_loss": 1.0}', "step"),
    "step text": ('{"step": "7", "train_loss": 1.0}', "step"),
    "loss text": ('{"step": 1, "train_loss": "low"}', "train_loss"),
    "loss NaN": ('{"step": 1, "train_loss": NaN}', "train_loss"),
    "time huge": ('{"step": 1, "time": 1' + "0" * 400 + "}", "time"),
}


@pytest.mark.parametrize("case", HOSTILE_LINES)
def test_hostile_metrics_lines_are_skipped_and_named_by_plot_and_resume(tmp_path, case):
    line, field = HOSTILE_LINES[case]
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    _train_in_process(text, out, "20")
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], line] + lines[1:]) + "\n")

    plotted = CliRunner().invoke(main, ["plot", str(out), "--text"])
    assert plotted.exit_code == 0, plotted.output
    assert "unexpected" not in plotted.output
    warning = plotted.stderr.strip().splitlines()
    assert len(warning) == 1 and "line 2" in warning[0] and field in warning[0], plotted.stderr

    resumed = CliRunner().invoke(main, ["train", "--resume", str(out / "latest.safetensors"), "--steps", "21",
                                        "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    kept = [json.loads(kept_line)["step"] for kept_line in metrics.read_text().splitlines()]
    assert kept == sorted(kept) and line not in metrics.read_text()


def test_hostile_config_json_is_one_line_for_plot(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(steps=10), Corpus.from_text(TEXT, val_frac=0.1), out)
    (out / "config.json").write_text(DEEP)
    plotted = CliRunner().invoke(main, ["plot", str(out), "--text"])
    assert plotted.exit_code == 1
    assert_one_error_line(plotted.stderr, "config.json")
