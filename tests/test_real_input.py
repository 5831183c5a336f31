"""Real input from a real user (issue 24): folders of source code with binary and empty files,
--include / --exclude, short texts with large vocabularies, characters a model has never
seen, custom cells end to end, and the small things a user meets on the way (hints that
name the right option, lines that say what is going on).

The CLI runs in-process (click's CliRunner) on tiny models: what is tested is what the
commands say and do, not the process around them (tests/test_cli.py runs the real script).
"""

import json
import math
import re
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnn.data.corpus import Corpus
from rnn.data.text import TextError, describe_skipped, find_text_files

from cli_support import TINY_MODEL, TINY_RUN, make_text

# TINY_RUN with no evaluation during the run: one at the end.
QUICK_RUN = [a for a in TINY_RUN if a not in ("--val-frac", "0.1")]


def cli(*args):
    """`minigrad-rnn *args` in this process: a click Result (.exit_code, .stdout, .stderr)."""
    from cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    """The one "error: ..." line on stderr (and nothing else there)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def trained(tmp_path_factory):
    """A run folder with a tiny model trained on a short English text, and that text."""
    folder = tmp_path_factory.mktemp("trained")
    text = write(folder / "text.txt", make_text(3000, seed=5))
    out = folder / "run"
    result = cli("train", text, *QUICK_RUN, "--out", out)
    assert result.exit_code == 0, result.output
    return out, text


# ---- 3. real folders --------------------------------------------------------------------------

def package_like_folder(root: Path) -> Path:
    """A Python package as it sits on disk: sources, an empty __init__.py, compiled files."""
    folder = root / "package"
    write(folder / "decoder.py", make_text(1500, seed=1))
    write(folder / "encoder.py", make_text(1500, seed=2))
    write(folder / "sub" / "tool.py", make_text(800, seed=3))
    write(folder / "__init__.py", "")
    (folder / "__pycache__").mkdir()
    for name in ("decoder", "encoder"):  # a .pyc starts with a magic number and NUL bytes
        (folder / "__pycache__" / f"{name}.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\0\0\0\0" + bytes(200))
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    return folder


def test_a_folder_skips_binary_and_empty_files_and_sums_them_up_in_one_line(tmp_path):
    folder = package_like_folder(tmp_path)
    found = find_text_files([folder])
    assert [path.name for path in found.files] == ["decoder.py", "encoder.py", "tool.py"]
    assert describe_skipped(found.skipped) == "skipped 4 files: 3 binary (.pyc, .png), 1 empty"
    Corpus.from_files(found.files)  # the files kept are all readable text


def test_train_on_a_folder_of_source_code_notes_what_it_skipped_in_one_line(tmp_path):
    folder = package_like_folder(tmp_path)
    result = cli("train", folder, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == ["note: skipped 4 files: 3 binary (.pyc, .png), 1 empty"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [Path(path).name for path in config["corpus"]["files"]] == ["decoder.py", "encoder.py", "tool.py"]


def test_the_note_of_skipped_files_shows_a_names_control_characters_as_escapes(tmp_path):
    """A file name is shown through cli.output.visible like any name the user did not type:
    a binary file named with a terminal escape in a folder cannot clear the screen."""
    folder = tmp_path / "src"
    write(folder / "a.txt", make_text(3000, seed=1))
    (folder / "blob\x1b[2J").write_bytes(bytes(64))
    result = cli("train", folder, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == ["note: skipped 1 file: 1 binary (blob\\x1b[2J)"]


def test_the_standard_librarys_json_package_folder_is_a_corpus():
    folder = Path(json.__path__[0])
    found = find_text_files([folder])
    assert found.files and all(path.suffix == ".py" for path in found.files)
    Corpus.from_files(found.files)  # no file stops it ("looks binary")


@pytest.mark.parametrize("include, exclude, expected", [
    (["*.py"], [], ["decoder.py", "encoder.py", "tool.py"]),
    (["sub/*"], [], ["tool.py"]),
    ([], ["sub/*"], ["decoder.py", "encoder.py"]),
    (["*.py"], ["enc*", "tool.py"], ["decoder.py"]),
    (["decoder.py", "tool.py"], [], ["decoder.py", "tool.py"]),  # a name matches at any depth
])
def test_include_and_exclude_globs_select_a_folders_files(tmp_path, include, exclude, expected):
    folder = package_like_folder(tmp_path)
    found = find_text_files([folder], include=include, exclude=exclude)
    assert [path.name for path in found.files] == expected


def test_include_and_exclude_through_train_and_its_help(tmp_path):
    folder = package_like_folder(tmp_path)
    result = cli("train", folder, *QUICK_RUN, "--include", "*.py", "--exclude", "sub/*", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [Path(path).name for path in config["corpus"]["files"]] == ["decoder.py", "encoder.py"]
    assert "left out by include/exclude" in result.stderr
    help_text = " ".join(cli("train", "--help").output.split())
    assert "--include GLOB" in help_text and "--exclude GLOB" in help_text
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "--include" in readme and "--exclude" in readme


def test_include_without_a_folder_is_a_usage_error(tmp_path):
    text = write(tmp_path / "a.py", make_text(2000))
    for arguments in ([text, "--include", "*.py"], ["--exclude", "tests/*"]):
        result = cli("train", *arguments, *QUICK_RUN, "--out", tmp_path / "run")
        assert result.exit_code == 2 and "select the files of a TEXT folder" in error_line(result)


def test_a_folder_with_nothing_to_read_says_what_it_skipped(tmp_path):
    folder = tmp_path / "compiled"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__pycache__" / "a.pyc").write_bytes(b"\0" * 10)
    with pytest.raises(TextError, match=r"holds no text files to read \(skipped 1 file: 1 binary \(\.pyc\)\)"):
        find_text_files([folder])


def test_a_named_empty_file_is_skipped_as_in_a_folder(tmp_path):
    """Naming the files of a package (`train pkg/*.py`) must not stop at its empty __init__.py."""
    empty = write(tmp_path / "__init__.py", "")
    source = write(tmp_path / "decoder.py", make_text(2000, seed=4))
    found = find_text_files([empty, source])
    assert found.files == [source.resolve()] and found.skipped == [(empty, "empty")]
    result = cli("train", empty, source, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "note: skipped 1 file: 1 empty" in result.stderr


def test_a_named_empty_file_alone_is_one_error_line(tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    result = cli("train", empty, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert f"{empty} is empty" in error_line(result)


def test_a_named_binary_file_is_refused_with_the_reason(tmp_path):
    binary = tmp_path / "a.pyc"
    binary.write_bytes(b"\xa7\r\r\n\0\0\0\0" + bytes(50))
    result = cli("train", binary, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "looks binary" in error_line(result)


# ---- 7. a Latin-1 file -------------------------------------------------------------------------

def test_a_latin1_file_gets_a_conversion_hint(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Il était une fois un café.\n".encode("latin-1") * 20)
    result = cli("train", latin1, *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = error_line(result)
    assert "is not valid UTF-8: byte 0xe9" in line and f"iconv -f latin1 -t utf-8 {latin1}" in line


# ---- 5. characters a model has never seen -------------------------------------------------------

MODERN = "The cat sat \u2014 \u201cthe dog ran\u201d \u2014 on a mat.\nThe sun is big and red. " * 4


def test_eval_refuses_unseen_characters_by_default_and_names_the_option(trained, tmp_path):
    run, _ = trained
    modern = write(tmp_path / "modern.txt", MODERN)
    result = cli("eval", run / "latest.safetensors", modern)
    assert result.exit_code == 1
    line = error_line(result)
    assert "'\u2014' (U+2014)" in line and "--unknown skip" in line


def test_eval_unknown_skip_leaves_them_out_and_counts_them(trained, tmp_path):
    run, _ = trained
    modern = write(tmp_path / "modern.txt", MODERN)
    unseen = sum(MODERN.count(c) for c in "\u2014\u201c\u201d")
    cleaned = write(tmp_path / "cleaned.txt", "".join(c for c in MODERN if c not in "\u2014\u201c\u201d"))
    skipped = cli("eval", run / "latest.safetensors", modern, "--unknown", "skip", "--json")
    assert skipped.exit_code == 0, skipped.output
    reference = cli("eval", run / "latest.safetensors", cleaned, "--json")
    skipped, reference = json.loads(skipped.stdout), json.loads(reference.stdout)
    assert skipped["unknown_chars"] == unseen and reference["unknown_chars"] == 0
    # Neither predicted nor fed: the same as scoring the text they were taken out of.
    assert skipped["chars"] == reference["chars"] == len(MODERN) - unseen - 1
    assert skipped["loss_nats"] == pytest.approx(reference["loss_nats"], rel=1e-6)
    shown = cli("eval", run, modern, "--unknown", "skip")  # a run folder: both checkpoints say it
    assert shown.exit_code == 0 and shown.stdout.count(f"skipped     {unseen} characters not in the vocabulary") == 2


def test_sample_prime_with_unseen_characters_follows_the_same_policy(trained):
    run, _ = trained
    prime = "The cat \u2014 sat"
    refused = cli("sample", run / "latest.safetensors", "--prime", prime, "-n", "5")
    assert refused.exit_code == 2 and "--unknown skip" in error_line(refused)
    skipped = cli("sample", run / "latest.safetensors", "--prime", prime, "-n", "5", "--unknown", "skip",
                  "--seed", "1")
    assert skipped.exit_code == 0, skipped.output
    assert skipped.stdout.startswith(prime) and len(skipped.stdout) == len(prime) + 5 + 1  # printed, then a newline


# ---- 6. custom cells ------------------------------------------------------------------------------

CELL_FILE = """
from rnn import cell, sigmoid, tanh


@cell(gates=("z", "n"), state=("h",))
def real_input_cell(x, h):
    z = sigmoid(x.z + h.z)
    return z * h + (1 - z) * tanh(x.n + h.n)
"""


@pytest.fixture
def custom_run(tmp_path):
    """A run of a cell from a file, trained in a process of its own (the cell stays unknown here)."""
    from cli_support import run_cli

    cell_file = tmp_path / "my cells.py"  # a space: the printed command must quote it
    cell_file.write_text(CELL_FILE)
    text = write(tmp_path / "text.txt", make_text(3000, seed=6))
    out = tmp_path / "run"
    result = run_cli("train", text, *QUICK_RUN, "--steps", "3", "--cell-file", cell_file, "--cell", "real_input_cell",
                     "--engine", "eager", "--out", out, check_exit=0)
    return out, cell_file, result.stdout


def test_the_printed_sample_command_of_a_custom_cell_run_works(custom_run):
    import shlex

    from cli_support import run_cli

    out, cell_file, printed = custom_run
    line = next(line for line in printed.splitlines() if line.startswith("sample with: "))
    program, *args = shlex.split(line.removeprefix("sample with: "))
    assert program == "minigrad-rnn"
    result = run_cli(*args, "-n", "10", check_exit=0)
    assert len(result.stdout.removesuffix("\n")) == 10


def test_info_describes_a_custom_cell_checkpoint_without_its_cell_file(custom_run):
    from cli_support import run_cli

    out, cell_file, _ = custom_run
    shown = run_cli("info", out / "latest.safetensors", check_exit=0).stdout
    assert "real_input_cell (from a --cell-file, not loaded" in shown and "step        3 " in shown
    without = json.loads(run_cli("info", out / "latest.safetensors", "--json", check_exit=0).stdout)
    with_file = json.loads(run_cli("info", out / "latest.safetensors", "--json", "--cell-file", cell_file,
                                   check_exit=0).stdout)
    assert without["custom_cell"] and not with_file["custom_cell"]
    # The parameters counted from the file's tensors are the model's (its own count, with the cell).
    assert without["parameters"] == with_file["parameters"] > 0
    assert {k: v for k, v in without.items() if k != "custom_cell"} == \
           {k: v for k, v in with_file.items() if k != "custom_cell"}


def test_info_and_sample_accept_a_run_folder_as_eval_does(trained):
    from rnn.checkpoint.format import load_checkpoint

    run, _ = trained
    described = json.loads(cli("info", run, "--json").stdout)
    assert set(described) == {"latest", "best"}
    assert described["latest"]["step"] == 5
    assert described["latest"]["parameters"] == load_checkpoint(run / "latest.safetensors").model.num_parameters()
    shown = cli("info", run).stdout
    assert shown.startswith("latest\n  checkpoint  ") and "\nbest\n  checkpoint  " in shown
    from_folder = cli("sample", run, "-n", "30", "--seed", "4")
    from_best = cli("sample", run / "best.safetensors", "-n", "30", "--seed", "4")
    assert from_folder.exit_code == 0 and from_folder.stdout == from_best.stdout and len(from_best.stdout) == 31
    empty = run.parent / "empty_run"
    empty.mkdir()
    refused = cli("sample", empty)
    assert refused.exit_code == 2 and "holds neither latest.safetensors nor best.safetensors" in error_line(refused)


# ---- 4. short texts -------------------------------------------------------------------------------

def cjk_text(chars=2000, distinct=450, seed=0) -> str:
    """A short text with a large vocabulary, like a Chinese article: Zipf-distributed code points."""
    import random

    rng = random.Random(seed)
    alphabet = [chr(0x4E00 + 7 * k) for k in range(distinct)]
    weights = [1 / (k + 1) for k in range(distinct)]
    pieces = []
    while sum(map(len, pieces)) < chars:
        pieces.append("".join(rng.choices(alphabet, weights, k=rng.randint(5, 20))) + rng.choice("，。\n"))
    return "".join(pieces)[:chars]


def test_a_short_text_with_a_large_vocabulary_just_trains_a_model_it_can_carry(tmp_path):
    from rnn.training import recipe
    from rnn.checkpoint.format import load_checkpoint

    text = write(tmp_path / "article.txt", cjk_text())
    result = cli("train", text, "--steps", "3", "--eval-every", "0", "--sample-every", "0", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    train_chars, vocab = config["corpus"]["train_chars"], len(set(cjk_text()))
    # As many streams as hold 4 windows of 65 characters each (not 32 streams of one window).
    assert config["train"]["batch_size"] == train_chars // (4 * 65) < 32
    model = load_checkpoint(tmp_path / "run" / "latest.safetensors").model
    default = recipe.parameter_count(*recipe.DEFAULT_SIZE, 64, 4, vocab)
    # The smallest size: even it has more parameters than the text has characters (its vocabulary).
    assert model.num_parameters() == recipe.parameter_count(1, 32, 64, 4, vocab) < default / 10
    assert "a bigger one would memorise this short text" in result.stdout


def test_a_batch_size_the_text_is_too_short_for_gets_a_value_that_fits(tmp_path):
    text = write(tmp_path / "article.txt", cjk_text())
    result = cli("train", text, "--batch-size", "32", "--steps", "3", "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "cannot make 32 streams" in error_line(result) and "try --batch-size 27 or less" in error_line(result)
    result = cli("train", text, "--seq-len", "5000", "--steps", "3", "--out", tmp_path / "run")
    assert "try --seq-len 1799 or less" in error_line(result)


def test_the_size_for_a_text_is_the_largest_its_length_can_carry():
    from rnn.training import recipe

    for layers, hidden in recipe.SHORT_TEXT_SIZES[1:] + recipe.SIZES[:2]:
        chars = math.ceil(recipe.parameter_count(layers, hidden, 64, 4, 65) / recipe.MAX_PARAMETERS_PER_CHAR)
        assert recipe.size_for_text(chars, 64, 4, 65) == (layers, hidden)
        assert recipe.size_for_text(chars - 1, 64, 4, 65) < (layers, hidden)
    assert recipe.size_for_text(10, 64, 4, 65) == recipe.SHORT_TEXT_SIZES[0]  # the smallest at least
    assert recipe.size_for_text(10 ** 9, 64, 4, 65) == recipe.DEFAULT_SIZE  # never above the default


def test_a_validation_loss_worse_than_a_uniform_guess_is_said_at_the_end(tmp_path):
    # Trained on a's, validated on b's: the model is sure of the wrong character.
    text = write(tmp_path / "ab.txt", "a" * 1800 + "b" * 200)
    result = cli("train", text, *TINY_MODEL, "--steps", "30", "--warmup", "0", "--eval-every", "0", "--sample-every", "0",
                 "--out", tmp_path / "run", "--val-frac", "0.1")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if "worse than a uniform guess" in line]
    assert warnings == [f"warning: the latest val loss is worse than a uniform guess over the 2 characters "
                        f"(ln 2 = {math.log(2):.4f}): the model has not learnt yet, or memorised its training "
                        f"text (try a smaller --hidden, more --dropout or fewer --steps)"]
    words = write(tmp_path / "words.txt", make_text(3000))
    learnt = cli("train", words, *TINY_MODEL, "--steps", "30", "--warmup", "0", "--eval-every", "0",
                 "--sample-every", "0", "--out", tmp_path / "run2", "--json")
    assert json.loads(learnt.stdout)["last_val_loss_nats"] < math.log(len(set(words.read_text())))
    assert "uniform guess" not in learnt.stderr and "done:" in learnt.stderr


# ---- 7. small things ------------------------------------------------------------------------------

def test_no_eta_before_a_few_steps_are_timed_after_the_first(tmp_path):
    from rnn.training.config import TrainConfig
    from rnn.training.loop import ETA_MIN_STEPS, ETA_SKIP_STEPS, train

    corpus = Corpus.from_text(make_text(3000, seed=7), val_frac=0.1)
    config = TrainConfig(cell="gru", layers=1, hidden=8, embed=4, seq_len=8, batch_size=4, steps=12,
                         warmup=0, eval_every=0, sample_every=0)
    events = []
    train(config, corpus, tmp_path / "run", on_event=lambda kind, data: events.append((kind, data)))
    etas = [data["eta"] for kind, data in events if kind == "step"]
    first = ETA_SKIP_STEPS + ETA_MIN_STEPS  # the first step with an ETA (1-based)
    assert etas[:first - 1] == [None] * (first - 1)  # step 1 used to say minutes for a 12-step run
    assert all(eta is not None and eta >= 0 for eta in etas[first - 1:])
    assert etas[-1] == 0


def test_the_progress_line_shows_the_time_left_once_in_budget_mode():
    import io

    from cli.progress import TrainingDisplay

    display = TrainingDisplay(io.StringIO(), live=False, width=200)
    step = {"step": 40, "total_steps": None, "train_loss": 2.0, "chars_per_sec": 1000.0}
    budget = display.progress_line({**step, "time_left": 100.2, "eta": 100.2})
    assert "1m40s left" in budget and "ETA" not in budget
    steps_first = display.progress_line({**step, "total_steps": 50, "time_left": 100.2, "eta": 12.0})
    assert "1m40s left" in steps_first and "ETA 12s" in steps_first  # another limit ends first: both say something


def test_resuming_to_a_step_the_run_has_passed_says_there_is_nothing_to_do(trained):
    run, text = trained
    before = {path.name: path.stat().st_mtime_ns for path in run.iterdir()}
    result = cli("train", text, "--resume", run / "latest.safetensors", "--steps", "3")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == (f"nothing to do: {run / 'latest.safetensors'}: it is at step 5, --steps 3 is "
                                     f"reached (the limits count the run's earlier training: give a larger one to "
                                     f"train on)")
    assert {path.name: path.stat().st_mtime_ns for path in run.iterdir()} == before  # nothing written
    equal = cli("train", text, "--resume", run / "latest.safetensors", "--steps", "5")
    assert equal.exit_code == 0 and "nothing to do" in equal.stderr and "done:" not in equal.stdout
    onward = cli("train", text, "--resume", run / "latest.safetensors", "--steps", "6")
    assert onward.exit_code == 0 and "done: 6 steps" in onward.stdout


def test_temperature_zero_is_refused_naming_argmax(trained):
    run, _ = trained
    for value in ("0", "-1", "nan"):
        result = cli("sample", run / "latest.safetensors", "--temperature", value)
        assert result.exit_code == 2 and "--argmax" in error_line(result) and "--temperature" in error_line(result)
    assert cli("sample", run / "latest.safetensors", "--temperature", "0.5", "-n", "3").exit_code == 0


def test_a_cold_kernel_cache_is_told_apart_from_a_warm_one(tmp_path, monkeypatch):
    import minigrad.kernels
    from minigrad.kernel_cache import kernels_are_cached

    source = minigrad.kernels.__file__
    cli("train", write(tmp_path / "t.txt", make_text(2000)), *QUICK_RUN, "--out", tmp_path / "run")
    assert kernels_are_cached(source)  # after a run, in the cache this process uses
    import numba.core.config

    monkeypatch.setattr(numba.core.config, "CACHE_DIR", "")  # (numba read NUMBA_CACHE_DIR at its import)
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path / "fresh_cache"))
    assert not kernels_are_cached(source)


@pytest.mark.parametrize("cold", [True, False])
def test_train_says_it_is_compiling_kernels_on_a_cold_start_only(tmp_path, monkeypatch, cold):
    import cli.train as train_command

    monkeypatch.setattr(train_command, "_cold_start", lambda: cold)
    result = cli("train", write(tmp_path / "t.txt", make_text(2000)), *QUICK_RUN, "--out", tmp_path / "run")
    assert result.exit_code == 0
    line = "compiling kernels (first run only: later runs load them from the cache)"
    assert (line in result.stdout.splitlines()) == cold


def test_named_leaves_are_labelled_by_name_in_print_graph():
    import io

    import minigrad as mg

    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    w = mg.tensor([3.0, 4.0], requires_grad=True, name="w")
    out = io.StringIO()
    mg.viz.print_graph((x * w).sum(), file=out)
    assert out.getvalue().splitlines()[2:] == ["    x  (2,) float32  requires_grad", "    w  (2,) float32  requires_grad"]
    assert x.name == "x" and mg.tensor([1.0]).name is None


def test_the_cell_graph_names_each_gate_slice():
    from cli_support import run_cli

    shown = cli("graph", "--cell", "lstm").stdout
    for gate in "ifgo":
        for source in "xh":
            assert f"  {source}.{gate}  (1, 3) float32" in shown, f"{source}.{gate} not shown"


@pytest.mark.parametrize("fn, values, element", [
    (lambda t: t.relu(), [0.0, 1.0, -2.0], "(0,)"),
    (lambda t: t.max(axis=1), [[1.0, 1.0, 0.5]], "(0, 1)"),
])
def test_gradcheck_at_a_kink_says_the_point_may_not_be_differentiable(fn, values, element):
    import minigrad as mg
    from minigrad.gradcheck import GradcheckError

    x = mg.tensor(np.array(values), requires_grad=True, dtype=np.float64)
    with pytest.raises(GradcheckError, match=rf"note: at element {re.escape(element)} of input 0 .* may not be "
                                             rf"differentiable there \(a kink"):
        mg.gradcheck(fn, [x])


def test_gradcheck_failing_at_a_smooth_point_gives_no_kink_note():
    import minigrad as mg
    from minigrad.gradcheck import GradcheckError

    x = mg.tensor(np.array([0.3, 1.0]), requires_grad=True, dtype=np.float64)
    with pytest.raises(GradcheckError) as failure:  # central differences with a huge eps: wrong, but smooth
        mg.gradcheck(lambda t: t.exp(), [x], eps=1e-1, atol=1e-9, rtol=1e-9)
    assert "kink" not in str(failure.value)
    assert mg.gradcheck(lambda t: t.relu(), [mg.tensor(np.array([0.5, -1.0]), requires_grad=True, dtype=np.float64)])
