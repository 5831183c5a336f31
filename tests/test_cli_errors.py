"""Bad input to `minigrad-rnn`: one line on stderr starting with "error: ", no traceback,
exit code 2 for a bad command line and 1 for a failure while running, nothing lost.

Every case runs the command group in this process (cli_support.run_in_process: the console
script's error handling, stray warnings printed to stderr as a fresh process prints them), which
also lets some of them break the machine (a full disk, an unwritable folder) or the library.
"""

import errno
import json
import os
import shutil
import struct

import numpy as np
import pytest

from cli_support import TINY_RUN, assert_one_error_line, make_text, run_in_process

USAGE, RUNTIME = 2, 1
TEXT = make_text(2000, seed=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder of good and bad inputs, and a real (untrained) checkpoint of a tiny model."""
    from rnn.checkpoint.format import save_checkpoint
    from rnn.data.vocab import Vocab
    from rnn.model.charlm import CharLM, ModelConfig

    folder = tmp_path_factory.mktemp("inputs")
    (folder / "good.txt").write_text(TEXT, encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "short.txt").write_text(TEXT[:60], encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf".encode() + b"\xe9 au lait, " * 20)  # 0xe9 at byte offset 3
    (folder / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (folder / "a_directory").mkdir()
    (folder / "a_file").write_text("not a folder")
    (folder / "strange.txt").write_text("Zebra \u20ac", encoding="utf-8")  # 'Z' and the euro sign are not in TEXT

    vocab = Vocab.from_text(TEXT)
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell="lstm", embed=4, hidden=8, layers=1))
    good = save_checkpoint(folder / "model.safetensors", model, meta={"step": 0}, vocab=vocab)
    data = good.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "not_a_checkpoint.safetensors").write_text(TEXT)
    _write_safetensors(folder / "other_program.safetensors", {"weight": np.zeros((2, 2), np.float32)},
                       {"format": "pt"})
    _write_with_metadata(good, folder / "future.safetensors", format_version="99")
    return folder


def _write_safetensors(path, tensors, metadata):
    from safetensors.numpy import save_file
    save_file(tensors, str(path), metadata=metadata)


def _write_with_metadata(source, target, **changes):
    """A copy of a safetensors file with some metadata entries changed (header rewritten)."""
    data = source.read_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + header_length])
    header["__metadata__"].update(changes)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    target.write_bytes(struct.pack("<Q", len(new_header)) + new_header + data[8 + header_length:])


# (command line with {placeholders} under the inputs folder, exit code, what the message must say)
CASES = {
    "missing text": (["train", "{dir}/missing.txt"], USAGE, ["missing.txt", "does not exist"]),
    # A folder is a corpus of the files under it (issue 19); an empty one is a clear error.
    "text is an empty directory": (["train", "{dir}/a_directory"], RUNTIME, ["a_directory", "holds no text files"]),
    "empty text": (["train", "{dir}/empty.txt", *TINY_RUN], RUNTIME, ["empty.txt", "empty"]),
    "text shorter than seq-len + 1": (["train", "{dir}/short.txt", *TINY_RUN], RUNTIME, ["too short"]),
    "text not UTF-8": (["train", "{dir}/latin1.txt", *TINY_RUN], RUNTIME, ["UTF-8", "byte offset 3"]),
    "binary text": (["train", "{dir}/binary.bin", *TINY_RUN], RUNTIME, ["binary"]),
    "zero hidden size": (["train", "{dir}/good.txt", "--hidden", "0"], USAGE, ["--hidden"]),
    "zero layers": (["train", "{dir}/good.txt", "--layers", "0"], USAGE, ["--layers"]),
    "negative seq-len": (["train", "{dir}/good.txt", "--seq-len", "-5"], USAGE, ["--seq-len"]),
    "zero batch size": (["train", "{dir}/good.txt", "--batch-size", "0"], USAGE, ["--batch-size"]),
    "negative embed": (["train", "{dir}/good.txt", "--embed", "-1"], USAGE, ["--embed"]),
    "zero steps": (["train", "{dir}/good.txt", "--steps", "0"], USAGE, ["--steps"]),
    "zero learning rate": (["train", "{dir}/good.txt", "--lr", "0"], USAGE, ["--lr"]),
    "val-frac 0": (["train", "{dir}/good.txt", "--val-frac", "0"], USAGE, ["--val-frac"]),
    "val-frac 1": (["train", "{dir}/good.txt", "--val-frac", "1"], USAGE, ["--val-frac"]),
    "val-frac negative": (["train", "{dir}/good.txt", "--val-frac", "-0.2"], USAGE, ["--val-frac"]),
    "val-frac above 1": (["train", "{dir}/good.txt", "--val-frac", "1.5"], USAGE, ["--val-frac"]),
    "training diverges": (["train", "{dir}/good.txt", *TINY_RUN, "--cell", "rnn_relu", "--optimizer", "sgd",
                           "--lr", "1e12", "--grad-clip", "0", "--warmup", "0"], RUNTIME, ["diverged", "--lr"]),
    "unknown cell": (["train", "{dir}/good.txt", "--cell", "transformer"], USAGE, ["--cell", "transformer", "lstm"]),
    "unknown option": (["train", "--hidden-size", "3"], USAGE, ["--hidden-size"]),
    "out under a file": (["train", "{dir}/good.txt", *TINY_RUN, "--out", "{dir}/a_file/run"], RUNTIME,
                         ["a_file", "cannot write"]),
    "resume from a missing checkpoint": (["train", "{dir}/good.txt", "--resume", "{dir}/nope.safetensors"],
                                         USAGE, ["nope.safetensors"]),
    "temperature 0": (["sample", "{dir}/model.safetensors", "--temperature", "0"], USAGE, ["--temperature"]),
    "negative temperature": (["sample", "{dir}/model.safetensors", "-t", "-1"], USAGE, ["--temperature"]),
    "zero length": (["sample", "{dir}/model.safetensors", "--length", "0"], USAGE, ["--length"]),
    "prime not in the vocab": (["sample", "{dir}/model.safetensors", "--prime", "Zebra"], USAGE,
                               ["--prime", "'Z'"]),
    "missing checkpoint": (["sample", "{dir}/nope.safetensors"], USAGE, ["nope.safetensors", "does not exist"]),
    "truncated checkpoint": (["sample", "{dir}/truncated.safetensors"], RUNTIME, ["truncated"]),
    "text file as checkpoint": (["info", "{dir}/not_a_checkpoint.safetensors"], RUNTIME, ["not a"]),
    "checkpoint from another program": (["eval", "{dir}/other_program.safetensors", "{dir}/good.txt"], RUNTIME,
                                        ["another program"]),
    "checkpoint from the future": (["info", "{dir}/future.safetensors"], RUNTIME, ["format 99", "upgrade"]),
    "eval text with unknown characters": (["eval", "{dir}/model.safetensors", "{dir}/strange.txt"], RUNTIME,
                                          ["'Z'", "U+20AC"]),
    "eval text missing": (["eval", "{dir}/model.safetensors", "{dir}/missing.txt"], USAGE, ["missing.txt"]),
    "unknown gradcheck cell": (["gradcheck", "--cell", "nope"], USAGE, ["--cell", "nope"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, files, tmp_path):
    arguments, expected_exit, fragments = CASES[case]
    result = run_in_process(*(a.format(dir=files) for a in arguments), cwd=tmp_path)  # a default runs/ lands there
    assert result.returncode == expected_exit, f"{result.returncode}: {result.stderr}"
    assert_one_error_line(result.stderr, *fragments)


# ---- failures of the machine, simulated in-process ------------------------------------------

def test_out_not_writable(files, tmp_path, monkeypatch):
    """Tests run as root, so a read-only folder is simulated: creating the run folder fails."""
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = run_in_process("train", files / "good.txt", *TINY_RUN, "--out", tmp_path / "locked" / "run")
    assert result.returncode == RUNTIME
    assert_one_error_line(result.stderr, "Permission denied", "locked")


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(files, tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = run_in_process("train", files / "good.txt", *TINY_RUN, "--out", run, "--quiet")
    assert first.returncode == 0, first.stdout + first.stderr
    latest = run / "latest.safetensors"
    before = latest.read_bytes()

    real_fdopen = os.fdopen

    class FullDisk:
        """A file that takes part of the data, then fails like a full disk."""

        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[: len(data) // 3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: FullDisk(real_fdopen(fd, *args, **kwargs)))
    second = run_in_process("train", files / "good.txt", "--resume", latest, "--steps", "10", "--quiet")
    monkeypatch.undo()

    assert second.returncode == RUNTIME, second.stdout + second.stderr
    assert_one_error_line(second.stderr, "No space left on device")
    assert latest.read_bytes() == before  # the previous checkpoint is intact...
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # ...and no half-written file is left
    info = run_in_process("info", latest, "--json", check_exit=0)
    assert json.loads(info.stdout)["step"] == 5


def test_unexpected_errors_are_one_line_too(files, monkeypatch):
    """A bug (not a user error) still ends in one line, pointing at the debug variable."""
    import rnn.checkpoint.format

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(rnn.checkpoint.format, "describe_checkpoint", broken)
    result = run_in_process("info", files / "model.safetensors")
    assert result.returncode == RUNTIME
    assert_one_error_line(result.stderr, "ZeroDivisionError", "MINIGRAD_RNN_DEBUG")


def test_a_plain_value_error_from_the_library_is_a_bug_not_a_user_error(files, monkeypatch):
    """Only rnn.errors.UserError is the user's situation: a ValueError from inside the library
    is reported as a bug (and shows its traceback with MINIGRAD_RNN_DEBUG set)."""
    import rnn.checkpoint.format

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(rnn.checkpoint.format, "describe_checkpoint", broken)
    result = run_in_process("info", files / "model.safetensors")
    assert result.returncode == RUNTIME
    assert_one_error_line(result.stderr, "unexpected ValueError", "this is a bug", "MINIGRAD_RNN_DEBUG")
    monkeypatch.setenv("MINIGRAD_RNN_DEBUG", "1")
    with pytest.raises(ValueError, match="an internal invariant broke"):
        run_in_process("info", files / "model.safetensors")


def test_a_user_error_names_the_clis_flags(files, monkeypatch):
    """The library names its settings (grad_clip); the CLI's line names its flags (--grad-clip)."""
    import rnn.checkpoint.format
    from rnn.errors import Setting, TrainingDiverged

    def diverged(*args, **kwargs):
        raise TrainingDiverged("it diverged. Try ", Setting("grad_clip", 1), " or a lower ", Setting("lr"), ".")

    monkeypatch.setattr(rnn.checkpoint.format, "describe_checkpoint", diverged)
    result = run_in_process("info", files / "model.safetensors")
    assert result.returncode == RUNTIME
    assert_one_error_line(result.stderr, "it diverged. Try --grad-clip 1 or a lower --lr.")


def test_every_error_message_is_a_single_line(files):
    """Multi-line library messages are folded: stderr never has a second line."""
    result = run_in_process("train", files / "good.txt", "--dropout", "1.5")
    assert result.returncode == USAGE
    assert_one_error_line(result.stderr, "--dropout")


def test_copying_a_checkpoint_keeps_it_loadable(files, tmp_path):
    """The checkpoint fixture itself is sound, so the failures above are the files' fault."""
    copy = tmp_path / "copy.safetensors"
    shutil.copy(files / "model.safetensors", copy)
    result = run_in_process("info", copy, "--json", check_exit=0)
    assert json.loads(result.stdout)["vocab_size"] == len(set(TEXT))
