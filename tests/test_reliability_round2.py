"""Issue 25, items 1-11: a planted .pyc, lost work and files outside the run, each reproduced
as the issue describes it (in process where the process itself is not what is tested)."""

import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from rnn.cells.registry import load_cell_file
from tests.cli_support import TINY_RUN, assert_one_error_line, console_script, make_text

ROOT = Path(__file__).resolve().parent.parent


# ---- 1. --cell-file is compiled from its source text, like `python FILE` ----------------------

CELL_SOURCE = '''
import dataclasses
from rnn.cells.registry import cell, sigmoid, tanh

@dataclasses.dataclass
class Sizes:  # dataclasses look the module up in sys.modules: the file runs as a registered module
    gates: tuple = ("f", "n")

@cell(gates=Sizes().gates, state=("h",), name="{name}")
def step(x, h):
    f = sigmoid(x.f + h.f)
    return (f * h + (1 - f) * tanh(x.n + h.n),)
'''


def test_cell_file_never_runs_a_planted_pyc(tmp_path):
    source = tmp_path / "my_cells.py"
    source.write_text(CELL_SOURCE.format(name="round2_reviewed_cell"))
    marker = tmp_path / "pyc-ran"
    planted = tmp_path / "planted.py"
    planted.write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                       + CELL_SOURCE.format(name="round2_planted_cell"))
    # An unchecked-hash pyc is used by the import system whatever the source says.
    py_compile.compile(str(planted), cfile=importlib.util.cache_from_source(str(source)),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    assert load_cell_file(source) == ["round2_reviewed_cell"]
    assert not marker.exists()


def test_cell_file_writes_nothing_beside_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as a user without PYTHONDONTWRITEBYTECODE
    source = tmp_path / "fresh_cells.py"
    source.write_text(CELL_SOURCE.format(name="round2_fresh_cell"))
    assert load_cell_file(source) == ["round2_fresh_cell"]
    assert sorted(os.listdir(tmp_path)) == ["fresh_cells.py"]


def test_cell_file_error_names_the_file_and_line(tmp_path):
    source = tmp_path / "broken_cells.py"
    source.write_text("x = 1\nraise RuntimeError('boom')\n")
    from rnn.cells.registry import CellError
    with pytest.raises(CellError, match="broken_cells.py.*RuntimeError: boom"):
        load_cell_file(source)


# ---- 8. a hard link planted in a run folder is never written through ----------------------------

@pytest.mark.parametrize("name", ["train.lock", "metrics.jsonl"])
def test_a_hard_link_in_the_run_folder_is_refused(tmp_path, name):
    from rnn.runs.files import RunFileError
    from rnn.runs.folder import RunFolder

    outside = tmp_path / "notes.txt"
    outside.write_text("my notes\n")
    run = tmp_path / "run"
    run.mkdir()
    os.link(outside, run / name)
    folder = RunFolder.prepare(run)
    with pytest.raises(RunFileError, match="link"):
        if name == "train.lock":
            with folder.lock():
                pass
        else:
            folder.open_metrics().close()
    assert outside.read_text() == "my notes\n"


def test_train_refuses_a_hard_linked_lock_in_one_line(tmp_path):
    outside = tmp_path / "notes.txt"
    outside.write_text("my notes\n")
    text = tmp_path / "text.txt"
    text.write_text(make_text(3000))
    run = tmp_path / "run"
    run.mkdir()
    os.link(outside, run / "train.lock")
    result = CliRunner().invoke(main, ["train", str(text), "--out", str(run), *TINY_RUN])
    assert result.exit_code == 1
    assert "train.lock" in result.output and "link" in result.output
    assert outside.read_text() == "my notes\n"


# ---- 4. a checkpoint that is finite is never replaced by one that is not ----------------------

def _tiny_run(tmp_path, steps=5, extra=()):
    """A tiny trained run folder (in process): (run folder, its text)."""
    text = tmp_path / "text.txt"
    if not text.exists():
        text.write_text(make_text(3000))
    run = tmp_path / "run"
    arguments = ["train", str(text), "--out", str(run), "-q", *TINY_RUN, *extra]
    steps_at = arguments.index("--steps")
    arguments[steps_at + 1] = str(steps)
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    return run, text


def _checkpoint_state(path):
    import numpy as np

    from rnn.checkpoint.format import load_checkpoint

    loaded = load_checkpoint(path)
    finite = all(np.isfinite(p.data).all() for p in loaded.model.parameters())
    return loaded.meta["step"], finite


@pytest.mark.parametrize("eval_every, steps", [("0", "6"), ("1", "8")])  # one step then the end; saves each step
def test_a_nan_model_never_replaces_the_latest_checkpoint(tmp_path, eval_every, steps):
    run, text = _tiny_run(tmp_path)
    assert _checkpoint_state(run / "latest.safetensors") == (5, True)
    result = CliRunner().invoke(main, ["train", str(text), "-q", "--resume", str(run / "latest.safetensors"),
                                       "--optimizer", "sgd", "--lr", "1e300", "--warmup", "0", "--steps", steps,
                                       "--eval-every", eval_every])
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "done" not in result.output
    assert "last good checkpoint is" in result.output and "(step 5)" in result.output
    assert _checkpoint_state(run / "latest.safetensors") == (5, True)
    assert _checkpoint_state(run / "best.safetensors")[1]


# ---- 2, 3. sample -o: a temporary file renamed at the end; a checkpoint is never replaced -------

def _nan_checkpoint(tmp_path):
    import numpy as np

    from rnn.checkpoint.format import save_checkpoint
    from rnn.data.vocab import Vocab
    from rnn.model.charlm import CharLM, ModelConfig

    vocab = Vocab.from_text("abc ")
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell="lstm", embed=3, hidden=4, layers=1))
    model.head.bias.data[:] = np.nan
    path = tmp_path / "diverged.safetensors"
    save_checkpoint(path, model, vocab=vocab, meta={"step": 1})
    return path


def test_sample_out_refuses_to_replace_a_checkpoint(tmp_path):
    run, _ = _tiny_run(tmp_path)
    latest = run / "latest.safetensors"
    before = latest.read_bytes()
    result = CliRunner().invoke(main, ["sample", str(latest), "-n", "20", "-o", str(latest)])
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.output, "--overwrite")
    assert latest.read_bytes() == before
    # the flag says the user means it
    result = CliRunner().invoke(main, ["sample", str(run / "best.safetensors"), "-n", "20", "-o", str(latest),
                                       "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(latest.read_text(encoding="utf-8")) == 20


def test_sample_out_refuses_to_replace_a_file_that_is_not_text(tmp_path):
    run, _ = _tiny_run(tmp_path)
    data = tmp_path / "photo.jpg"
    data.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    result = CliRunner().invoke(main, ["sample", str(run / "latest.safetensors"), "-n", "5", "-o", str(data)])
    assert result.exit_code == 2
    assert_one_error_line(result.output, "not plain text", "--overwrite")
    assert data.read_bytes() == b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


def test_a_failing_sample_leaves_the_out_file_as_it_was(tmp_path):
    out = tmp_path / "story.txt"
    out.write_text("my earlier sample\n")
    result = CliRunner().invoke(main, ["sample", str(_nan_checkpoint(tmp_path)), "-n", "20", "-o", str(out)])
    assert result.exit_code == 1
    assert "diverged" in result.output
    assert out.read_text() == "my earlier sample\n"
    assert sorted(os.listdir(tmp_path)) == ["diverged.safetensors", "story.txt"]  # no temporary file left


def test_sample_out_replaces_a_text_file_and_keeps_its_mode(tmp_path):
    run, _ = _tiny_run(tmp_path)
    out = tmp_path / "story.txt"
    out.write_text("an earlier sample\n")
    out.chmod(0o640)
    result = CliRunner().invoke(main, ["sample", str(run / "latest.safetensors"), "-n", "30", "--prime", "The",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("The") and len(out.read_text(encoding="utf-8")) == 33
    assert out.stat().st_mode & 0o777 == 0o640


# ---- 6. a closed or broken stdout stops the printing, never the work -----------------------------

def _run_with_stdout(how, *args):
    """Run `minigrad-rnn *args` in a real process whose stdout is closed (`>&-`) or a pipe whose
    reader has gone before the first line; (exit code, stderr)."""
    command = console_script() + [str(a) for a in args]
    if how == "closed":
        result = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=False,
                                stderr=subprocess.PIPE, text=True, timeout=300)
        return result.returncode, result.stderr
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone (`| head -c 0`): every write gets EPIPE
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


@pytest.mark.parametrize("how", ["closed", "broken pipe"])
@pytest.mark.parametrize("quiet", [False, True])
def test_train_goes_on_when_stdout_is_closed(tmp_path, how, quiet):
    from rnn.checkpoint.format import read_meta

    text = tmp_path / "text.txt"
    text.write_text(make_text(3000))
    run = tmp_path / "run"
    args = ["train", text, "--out", run, *TINY_RUN, "--eval-every", "2", "--sample-every", "2"]
    code, stderr = _run_with_stdout(how, *args, *(["-q"] if quiet else []))
    assert code == 0, stderr
    if quiet:  # nothing was to be printed: nothing was lost
        assert stderr == ""
    else:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "standard output" in lines[0] and "Traceback" not in stderr, stderr
    assert read_meta(run / "latest.safetensors")["step"] == 5
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # steps 2, 4, 5


@pytest.mark.parametrize("how", ["closed", "broken pipe"])
def test_sample_stops_in_one_line_when_stdout_is_closed(tmp_path, how):
    run, _ = _tiny_run(tmp_path)
    code, stderr = _run_with_stdout(how, "sample", run / "latest.safetensors", "-n", "2000")
    assert code == 1
    assert_one_error_line(stderr, "standard output")


# ---- 9. eval of a run folder follows no link out of it -------------------------------------------

def test_eval_of_a_run_folder_refuses_a_planted_link(tmp_path):
    run, text = _tiny_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "latest.safetensors").rename(elsewhere / "other.safetensors")
    (run / "latest.safetensors").symlink_to(elsewhere / "other.safetensors")
    result = CliRunner().invoke(main, ["eval", str(run), str(text)])
    assert result.exit_code == 1, result.output
    assert_one_error_line(result.output, "latest.safetensors", "symbolic link")


def test_a_run_folders_checkpoint_is_read_without_following_links(tmp_path):
    from rnn.checkpoint.format import CheckpointError, load_checkpoint, read_meta

    run, _ = _tiny_run(tmp_path)
    link = run / "planted.safetensors"
    link.symlink_to(run / "best.safetensors")
    for read in (lambda: load_checkpoint(link, follow=False), lambda: read_meta(link, follow=False)):
        with pytest.raises(CheckpointError, match="symbolic link"):
            read()
    assert load_checkpoint(link).meta["step"] == 5  # a path the user typed: their link, followed


# ---- 5. resuming from an earlier checkpoint of the run never discards later work silently -------

def _run_with_best_before_latest(tmp_path):
    """A run whose best checkpoint (step 2) is earlier than its latest (step 6), as when the
    later evaluations were worse (made so here by putting the step-2 best back)."""
    from rnn.checkpoint.format import read_meta

    run, text = _tiny_run(tmp_path, steps=2, extra=["--eval-every", "2"])
    best_at_2 = (run / "best.safetensors").read_bytes()
    result = CliRunner().invoke(main, ["train", str(text), "-q", "--resume", str(run / "latest.safetensors"),
                                       "--steps", "6", "--eval-every", "2"])
    assert result.exit_code == 0, result.output
    (run / "best.safetensors").write_bytes(best_at_2)
    assert read_meta(run / "best.safetensors")["step"] == 2 and read_meta(run / "latest.safetensors")["step"] == 6
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    return run, text


def test_resuming_from_best_refuses_to_rewind_the_run(tmp_path):
    from rnn.checkpoint.format import read_meta

    run, text = _run_with_best_before_latest(tmp_path)
    best_step = read_meta(run / "best.safetensors")["step"]
    latest, metrics = (run / "latest.safetensors").read_bytes(), (run / "metrics.jsonl").read_bytes()
    result = CliRunner().invoke(main, ["train", str(text), "-q", "--resume", str(run / "best.safetensors"),
                                       "--steps", "8"])
    assert result.exit_code == 1, result.output
    assert_one_error_line(result.output, f"step {best_step}", "step 6", "--rewind")
    assert (run / "latest.safetensors").read_bytes() == latest
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_rewind_says_what_it_discards(tmp_path):
    from rnn.checkpoint.format import read_meta

    run, text = _run_with_best_before_latest(tmp_path)
    best_step = read_meta(run / "best.safetensors")["step"]
    result = CliRunner().invoke(main, ["train", str(text), "--resume", str(run / "best.safetensors"),
                                       "--steps", "8", "--rewind"])
    assert result.exit_code == 0, result.output
    assert f"rewinding the run from step 6 to step {best_step}" in result.output
    assert read_meta(run / "latest.safetensors")["step"] == 8


# ---- 11. a folder's file swapped for a link between listing and reading is not read -------------

@pytest.mark.parametrize("swap", ["link", "other file"])
def test_a_folder_file_swapped_after_listing_is_not_read(tmp_path, monkeypatch, swap):
    """train's reading of TEXT folders (rnn.data.reading.read_corpus), with b.txt replaced right after
    the folder was listed: the file read must be the one listed, or none."""
    import rnn.data.text
    from rnn.data.reading import read_corpus
    from rnn.data.text import TextError

    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET KEY 1234\n" * 100)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(make_text(2000))
    (folder / "b.txt").write_text(make_text(2000, seed=1))
    listing = rnn.data.text.find_text_files

    def listing_then_swap(paths, **options):
        found = listing(paths, **options)
        (folder / "b.txt").unlink()
        if swap == "link":
            (folder / "b.txt").symlink_to(secret)
        else:
            os.link(secret, folder / "b.txt")
        return found

    monkeypatch.setattr(rnn.data.text, "find_text_files", listing_then_swap)
    with pytest.raises(TextError, match="b.txt") as error:
        read_corpus([folder], val_frac=0.1, separator="\n", val_file=None)
    assert "SECRET" not in str(error.value)


# ---- 10. a checkpoint's paths only find the run's own text, verified by fingerprint --------------

SECRET_TEXT = "ZQX#@!~ private 0987\n" * 50


def _crafted(run, tmp_path, edit):
    """A copy of the run's latest checkpoint, with its meta changed by `edit(meta)` (re-checksummed:
    a hostile checkpoint is as valid as any)."""
    from rnn.checkpoint.format import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(run / "latest.safetensors")
    meta = dict(loaded.meta)
    edit(meta)
    crafted = tmp_path / "crafted" / "latest.safetensors"
    crafted.parent.mkdir()
    save_checkpoint(crafted, loaded.model, meta=meta, vocab=loaded.vocab)
    return crafted


def test_a_checkpoints_val_file_is_not_read_when_the_user_names_the_text(tmp_path):
    run, text = _tiny_run(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT)
    crafted = _crafted(run, tmp_path, lambda meta: meta["train_config"].update(val_file=str(secret)))
    out = tmp_path / "continued"
    result = CliRunner().invoke(main, ["train", str(text), "-q", "--resume", str(crafted), "--out", str(out),
                                       "--steps", "7"])
    assert result.exit_code == 0, result.output
    assert not any(character in result.output for character in "ZQX#@!~")
    import json
    assert json.loads((out / "config.json").read_text())["train"]["val_file"] is None


def test_a_checkpoints_val_file_is_used_only_if_it_is_the_runs_own(tmp_path):
    import json

    text = tmp_path / "text.txt"
    text.write_text(make_text(3000))
    val = tmp_path / "val.txt"
    val.write_text(make_text(300, seed=2))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(text), "--val-file", str(val), "--out", str(run), "-q",
                                       *TINY_RUN[:TINY_RUN.index("--val-frac")]])
    assert result.exit_code == 0, result.output
    # the run's own validation file, unchanged: used on resume without TEXT
    result = CliRunner().invoke(main, ["train", "-q", "--resume", str(run / "latest.safetensors"), "--steps", "6"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["val_file"] == str(val.resolve())
    # the same path, now holding another text: not the run's, not read into an error, not used
    val.write_text(SECRET_TEXT)
    result = CliRunner().invoke(main, ["train", "-q", "--resume", str(run / "latest.safetensors"), "--steps", "7"])
    assert result.exit_code == 0, result.output
    assert not any(character in result.output for character in "ZQX#@!~")
    assert "not the run's validation text" in result.output
    assert json.loads((run / "config.json").read_text())["train"]["val_file"] is None


def test_a_checkpoints_text_files_without_fingerprint_are_not_trained_on(tmp_path):
    run, _ = _tiny_run(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT)
    crafted = _crafted(run, tmp_path, lambda meta: meta.update(corpus={"files": [str(secret)]}))
    result = CliRunner().invoke(main, ["train", "-q", "--resume", str(crafted), "--steps", "7"])
    assert result.exit_code != 0
    assert_one_error_line(result.output, "give the run's text as TEXT")
    assert not (crafted.parent / "metrics.jsonl").exists()


# ---- 7. examples/continue_in_pytorch.py checks --out before it trains -----------------------------

@pytest.mark.parametrize("out", ["source", "run file", "missing folder", "folder"])
def test_continue_in_pytorch_checks_out_before_training(tmp_path, out):
    pytest.importorskip("torch")
    run, text = _tiny_run(tmp_path)
    source = run / "latest.safetensors"
    before = source.read_bytes()
    target = {"source": source, "run file": run / "best.safetensors",
              "missing folder": tmp_path / "no" / "such" / "out.safetensors", "folder": tmp_path}[out]
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "continue_in_pytorch.py"), str(source),
                             str(text), "--steps", "3", "--batch-size", "2", "--seq-len", "8", "--out", str(target)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert_one_error_line(result.stderr, "--out")
    assert "step" not in result.stdout  # refused before any training
    assert source.read_bytes() == before


def test_what_a_checkpoint_named_file_holds_is_never_printed(tmp_path):
    run, _ = _tiny_run(tmp_path)
    binary = tmp_path / "key.bin"
    binary.write_bytes(b"\xc3\x28 private \x00")
    crafted = _crafted(run, tmp_path, lambda meta: meta["corpus"].update(files=[str(binary)], path=str(binary)))
    result = CliRunner().invoke(main, ["train", "-q", "--resume", str(crafted), "--steps", "7"])
    assert result.exit_code == 1
    assert_one_error_line(result.output, "give the run's text as TEXT")
    assert "0xc3" not in result.output and "offset" not in result.output
