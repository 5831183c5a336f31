"""Reliability, round two (issue 25, items 12-19 and 22): hangs, unbounded memory and crashes.

Each test names its item. Where the defect was a hang, the test runs the command in a
subprocess with a generous timeout: the timeout only guards against the hang (the fixed
code takes a fraction of it); where it was memory, the peak is measured with tracemalloc
against a bound many times what the fixed code needs.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

import minigrad as mg
import rnn.checkpoint.format as checkpoint_module
from cli.main import main
from cli_support import assert_one_error_line, console_script, make_text, run_cli, sigint_heard_by_children
import rnn.data.vocab
from rnn.data.text import TextError
from rnn.data.vocab import Vocab
from rnn.model.charlm import CharLM, ModelConfig

HANG_GUARD = 240  # seconds: only ever reached by a hang; the fixed commands take a few seconds

TINY_MODEL = ["--cell", "lstm", "--hidden", "8", "--embed", "4", "--layers", "1", "--seq-len", "8",
              "--batch-size", "2"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(make_text(3000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def checkpoint(text_file, tmp_path_factory) -> Path:
    """A tiny trained run's latest checkpoint."""
    run = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(main, ["train", str(text_file), "--out", str(run), *TINY_MODEL, "--steps", "2",
                                       "--eval-every", "0", "--sample-every", "0", "-q"])
    assert result.exit_code == 0, result.output
    return run / "latest.safetensors"


def read_raw(path):
    with safe_open(str(path), framework="np") as file:
        return {name: file.get_tensor(name) for name in file.keys()}, dict(file.metadata())


def write_signed(path, tensors, metadata):
    """A checkpoint with edited content and a valid checksum (anyone can compute one)."""
    metadata = dict(metadata)
    metadata["checksum"] = checkpoint_module._checksum(metadata, tensors)
    path.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    return path


def edited(checkpoint, path, edit):
    """A signed copy of `checkpoint` with `edit(tensors, metadata)` applied."""
    tensors, metadata = read_raw(checkpoint)
    edit(tensors, metadata)
    return write_signed(path, tensors, metadata)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, *fragments):
    assert_one_error_line(result.stderr if hasattr(result, "stderr") else result.output, *fragments)


# ---- 12: the vocabulary checks are linear, and its size is bounded ------------------------------

def test_12_a_vocabulary_longer_than_unicode_is_refused_before_its_entries_are_looked_at():
    entries = [None] * (rnn.data.vocab.MAX_VOCAB + 1)  # not even characters: the length alone decides
    with pytest.raises(TextError, match="Unicode has 1,112,064 characters"):
        Vocab(entries)


def test_12_a_checkpoint_of_two_million_repeated_characters_is_one_line_not_hours(checkpoint, tmp_path):
    def vocab_of_copies(tensors, metadata):
        metadata["vocab"] = json.dumps(["a"] * 2_000_000)

    hostile = edited(checkpoint, tmp_path / "copies.safetensors", vocab_of_copies)
    result = run_cli("info", hostile, timeout=HANG_GUARD)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, str(hostile), "2,000,000 entries")


def test_12_repeated_characters_are_found_in_one_pass(tmp_path):
    # 400,000 entries: list.count per entry took minutes; one pass takes a fraction of a second.
    code = ("from rnn.data.text import TextError\nfrom rnn.data.vocab import Vocab\n"
            "try:\n    Vocab(['a'] * 200_000 + ['b'] * 200_000)\n"
            "except TextError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.stdout.strip() == "repeated characters in the vocabulary: 'a' (U+0061), 'b' (U+0062)"


# ---- 14: train.lock is read as a bounded prefix ---------------------------------------------------

def test_14_a_huge_lock_file_gives_a_short_line(text_file, tmp_path):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    lock = run / "train.lock"
    lock.write_bytes(b"7" * (8 << 20))
    with open(lock, "rb") as holder:  # another run holds the lock
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("train", text_file, "--out", run, *TINY_MODEL, "--steps", "1")
    assert result.exit_code == 1
    one_error_line(result, "in use by another training run (pid unknown)")
    assert len(result.output) < 400


def test_14_the_pid_of_a_lock_holder_is_still_named(text_file, tmp_path):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    (run / "train.lock").write_text("4242")
    with open(run / "train.lock", "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("train", text_file, "--out", run, *TINY_MODEL, "--steps", "1")
    one_error_line(result, "(pid 4242)")


# ---- 18: sample's numeric options are usage errors -----------------------------------------------

@pytest.mark.parametrize("option, value, fragment", [
    ("--seed", "-1", "--seed"),
    ("--temperature", "nan", "not a finite number"),
    ("--temperature", "inf", "not a finite number"),
    ("--top-k", "1e23", "--top-k"),
])
def test_18_bad_sample_options_are_usage_errors(checkpoint, option, value, fragment):
    result = invoke("sample", checkpoint, "-n", "3", option, value)
    assert result.exit_code == 2, result.output
    one_error_line(result, fragment)


def test_18_a_top_k_beyond_int64_means_the_whole_vocabulary(checkpoint):
    huge = str(10 ** 23)
    result = invoke("sample", checkpoint, "-n", "20", "--seed", "3", "--top-k", huge)
    assert result.exit_code == 0, result.output
    assert result.output == invoke("sample", checkpoint, "-n", "20", "--seed", "3").output


# ---- 17: NUMBA_NUM_THREADS is checked before Numba sees it ---------------------------------------

@pytest.mark.parametrize("value", ["0", "100000", "abc", "-2", "9" * 5000])
def test_17_an_impossible_thread_count_is_one_usage_line(checkpoint, monkeypatch, value):
    monkeypatch.setenv("NUMBA_NUM_THREADS", value)
    result = invoke("sample", checkpoint, "-n", "3")
    assert result.exit_code == 2, result.output
    one_error_line(result, "NUMBA_NUM_THREADS must be a whole number from 1 to", repr(value[:20]))
    assert len(result.stderr) < 200


def test_17_a_thread_count_of_zero_in_a_fresh_process_is_one_line(checkpoint):
    # The real failure: Numba reads the variable when it is imported, before any command code.
    result = subprocess.run(console_script() + ["info", str(checkpoint)], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_NUM_THREADS": "0"}, timeout=HANG_GUARD)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "NUMBA_NUM_THREADS")


def test_17_a_valid_thread_count_is_accepted(checkpoint, monkeypatch):
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert invoke("info", checkpoint).exit_code == 0


# ---- 15: plot's memory is bounded per line and per run, whatever the lines' shape ---------------

def write_metrics(folder: Path, lines) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def peak_bytes_of(function):
    import tracemalloc

    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_15_nested_empty_objects_cost_what_the_kept_fields_cost(tmp_path):
    from rnn.runs.reader import read_run

    # 1000 lines of 2 KB of empty objects (each parses into ~20x its size) and one line of 2 MB.
    nested = ",".join(["{}"] * 680)
    lines = [f'{{"step": {step}, "train_loss": 2.5, "junk": [{nested}]}}' for step in range(1000)]
    lines.insert(500, '{"step": 1, "junk": [' + ",".join(["{}"] * 700_000) + "]}")
    folder = write_metrics(tmp_path / "run", lines)
    run, peak = peak_bytes_of(lambda: read_run(folder))
    assert len(run.records) == 1000 and run.records[0] == {"step": 0, "train_loss": 2.5}
    assert run.bad_line_count == 1 and run.first_problem == "line 501: longer than 4096 bytes"
    # The file is 4 MB; reading it whole and parsing every line took over 60 MB.
    assert peak < 12 << 20, f"peak {peak >> 20} MB"


def test_15_a_run_keeps_at_most_max_records_and_says_what_it_skipped(tmp_path, monkeypatch):
    import rnn.runs.reader

    monkeypatch.setattr(rnn.runs.reader, "MAX_RECORDS", 3)
    folder = write_metrics(tmp_path / "run", [json.dumps({"step": s, "train_loss": 2.0}) for s in range(10)])
    result = invoke("plot", folder, "--text")
    assert result.exit_code == 0, result.output
    assert "read the first 3 records only, skipped 7 more" in result.stderr


def test_15_many_unreadable_lines_are_counted_not_listed(tmp_path):
    from rnn.runs.reader import read_run

    folder = write_metrics(tmp_path / "run", ['{"step": 1, "train_loss": 2.0}'] + ["garbage"] * 50_000
                           + ['{"step": 2, "train_loss": 1.0}'])
    run = read_run(folder)
    assert run.bad_line_count == 50_000 and run.bad_lines == [2, 3, 4, 5, 6]


# ---- 19: plot of finite but extreme losses --------------------------------------------------------

@pytest.fixture
def extreme_run(tmp_path) -> Path:
    losses = [(1e308, -1e308), (1e300, -1e300), (2.0, 1.0), (-1e300, 1e300), (-1e308, 1e308), (3.0, 2.0)]
    return write_metrics(tmp_path / "extreme", [
        json.dumps({"step": 10 * i, "time": 1e299 * i, "chars": 1e299 * i, "train_loss": train, "val_loss": val})
        for i, (train, val) in enumerate(losses)])


@pytest.mark.parametrize("x_axis", ["steps", "seconds", "chars"])
@pytest.mark.parametrize("scale", [[], ["--log"]])
def test_19_extreme_losses_plot_as_text_and_image(extreme_run, tmp_path, x_axis, scale):
    pytest.importorskip("matplotlib")
    image = tmp_path / "loss.png"
    result = invoke("plot", extreme_run, "--text", "-o", image, "--x", x_axis, *scale)
    assert result.exit_code == 0, result.output
    # The lines beyond +-1e300 are skipped and named; the rest is drawn.
    assert result.stderr.strip().splitlines() == [
        f"warning: {extreme_run}/metrics.jsonl: skipped 2 unreadable line(s) (1, 5); "
        f"first: line 1: train_loss is out of range (beyond 1e+300)"]
    assert image.stat().st_size > 1000
    chart = result.stdout.split("\n\n")[0]
    assert "A" in chart and "a" in chart
    assert all(len(line) <= 72 for line in chart.splitlines())


# ---- 13: sizes from a file are bounded; a signal interrupts a sample or an evaluation ------------

@pytest.mark.parametrize("name, value", [("sample_length", 10 ** 15), ("seq_len", 10 ** 12), ("hidden", 10 ** 9),
                                         ("batch_size", 2 ** 40), ("layers", 10 ** 6), ("seed", 2 ** 64),
                                         ("eval_every", 10 ** 100000)], ids=lambda value: value if isinstance(value, str) else f"2**{value.bit_length()}")
def test_13_every_integer_setting_read_from_a_record_is_bounded(name, value):
    from rnn.training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=f"^{name} must be an? .*(up to|to) [0-9,]+, got") as raised:
        TrainConfig.from_meta({name: value})
    assert len(str(raised.value)) < 200


def test_13_resuming_a_checkpoint_that_asks_for_a_huge_sample_is_one_line(checkpoint, text_file, tmp_path):
    def huge_sample(tensors, metadata):
        meta = json.loads(metadata["meta"])
        meta["train_config"].update(sample_length=10 ** 15, sample_every=1)
        metadata["meta"] = json.dumps(meta)

    hostile = edited(checkpoint, tmp_path / "huge.safetensors", huge_sample)
    result = run_cli("train", text_file, "--resume", hostile, "--out", tmp_path / "run", "--steps", "4",
                     timeout=HANG_GUARD)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "the checkpoint's train config is not usable: sample_length must be a "
                          "positive integer up to 1,000,000", "(give --sample-length to replace it)")


def endless(event, what):
    """A stand-in for a sample or an evaluation that would take hours: it signals that it runs,
    then runs on (bounded, so that a missed signal fails the test instead of hanging it)."""
    def run(*args, **kwargs):
        event.set()
        for _ in range(30_000_000):  # a second or more; the signal comes within milliseconds
            pass
        raise AssertionError(f"the {what} was not interrupted")
    return run


def kill_when(event, signal_number):
    def send():
        assert event.wait(HANG_GUARD)
        os.kill(os.getpid(), signal_number)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("phase", ["sample", "evaluate_ids"])
def test_13_the_first_signal_stops_a_sample_or_an_evaluation_and_saves(text_file, tmp_path, monkeypatch,
                                                                        phase, signal_number):
    import rnn.training.loop
    from rnn.data.corpus import Corpus
    from rnn.training.loop import TrainConfig, train

    started = threading.Event()
    monkeypatch.setattr(rnn.training.loop, phase, endless(started, phase))
    config = TrainConfig(cell="lstm", hidden=8, embed=4, layers=1, seq_len=8, batch_size=2, steps=50,
                         eval_every=3 if phase == "evaluate_ids" else 0, sample_every=3, dropout=0.0)
    sender = kill_when(started, signal_number)
    summary = train(config, Corpus.from_file(text_file), tmp_path / "run")
    sender.join()
    assert summary["stopped_reason"] == "interrupted" and summary["steps"] == 3
    assert summary["latest_step"] == 3 and (tmp_path / "run" / "latest.safetensors").is_file()


# ---- 16: eval streams the text ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(checkpoint):
    return checkpoint_module.load_checkpoint(checkpoint)


def test_16_streamed_in_tiny_chunks_the_loss_is_exactly_the_unstreamed_one(loaded, text_file, monkeypatch):
    import rnn.data.text
    from rnn.evaluate import evaluate, evaluate_file

    text = text_file.read_text(encoding="utf-8")[:700] + "é"  # a 2-byte character, cut by 7-byte chunks
    model, vocab = loaded.model, Vocab(loaded.vocab.chars + ["é"])
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(**{**loaded.config.to_dict(), "vocab_size": len(vocab), "dtype": "float64"}))
    path = text_file.parent / "small.txt"
    path.write_text(text, encoding="utf-8")
    unstreamed = evaluate(model, vocab, text)
    monkeypatch.setattr(rnn.data.text, "CHUNK_BYTES", 7)
    streamed = evaluate_file(model, vocab, path)
    assert streamed == unstreamed and streamed["chars"] == len(text) - 1
    # And both are the mean over one forward pass of the whole text (up to rounding).
    ids = vocab.encode(text)[None, :].astype(np.int64)
    with mg.no_grad():
        loss, _ = model.loss(ids[:, :-1], ids[:, 1:])
    assert streamed["loss_nats"] == pytest.approx(float(loss.data), rel=1e-12)


def test_16_the_evaluation_windows_do_not_depend_on_the_chunks(loaded, text_file):
    from rnn.evaluate import evaluate_chunks

    ids = loaded.vocab.encode(text_file.read_text(encoding="utf-8")[:501])
    whole = evaluate_chunks(loaded.model, [ids], chunk_size=5)
    for piece in (1, 2, 3, 64):
        pieces = [ids[start:start + piece] for start in range(0, len(ids), piece)]
        assert evaluate_chunks(loaded.model, pieces, chunk_size=5) == whole


def test_16_eval_holds_a_chunk_of_the_text_not_the_text(loaded, text_file, tmp_path, monkeypatch):
    import rnn.data.text
    from rnn.evaluate import evaluate_file

    big = tmp_path / "big.txt"
    text = text_file.read_text(encoding="utf-8")
    big.write_text(text * (400_000 // len(text)), encoding="utf-8")
    evaluate_file(loaded.model, loaded.vocab, text_file)  # compiled (and its memory counted) before
    monkeypatch.setattr(rnn.data.text, "CHUNK_BYTES", 8 << 10)
    result, peak = peak_bytes_of(lambda: evaluate_file(loaded.model, loaded.vocab, big))
    assert result["chars"] == big.stat().st_size - 1
    # 0.4 MB of text: held as a string and its ids it took 7 MB; streamed, 1.2 MB (of which
    # 1.1 MB is the table of code points seen).
    assert peak < 3 << 20, f"peak {peak / 2 ** 20:.1f} MB"


def test_16_eval_names_every_unknown_character_of_the_file(checkpoint, tmp_path):
    path = tmp_path / "unknown.txt"
    path.write_text("the cat\u00e9 sat" + "x" * 10 + "\u00fc", encoding="utf-8")
    result = invoke("eval", checkpoint, path)
    assert result.exit_code == 1
    one_error_line(result, str(path), "'é' (U+00E9)", "'ü' (U+00FC)")


# ---- 22: a deleted working folder --------------------------------------------------------------------

def test_22_train_in_a_deleted_working_folder_names_the_folder(text_file, tmp_path):
    gone, cache = tmp_path / "gone", tmp_path / "cold-cache"
    gone.mkdir()
    command = " ".join(f"'{part}'" for part in console_script() + [
        "train", str(text_file), "--out", str(tmp_path / "run"), *TINY_MODEL, "--steps", "2"])
    # The shell's cd sets PWD, as a user's shell does; the kernel cache starts empty (cold).
    result = subprocess.run(["sh", "-c", f"cd '{gone}' && rmdir '{gone}' && exec {command}"],
                            capture_output=True, text=True, timeout=HANG_GUARD,
                            env={**os.environ, "MINIGRAD_CACHE_DIR": str(cache)})
    assert result.returncode == 1
    assert_one_error_line(result.stderr, f"the working folder {gone} no longer exists")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)])
def test_13_a_long_sample_command_stops_at_a_signal(checkpoint, signal_number, exit_code):
    # The compiled loop draws DRAW_CHUNK characters a call: Python sees the signal between two calls.
    with sigint_heard_by_children():
        process = subprocess.Popen(console_script() + ["sample", str(checkpoint), "-n", str(10 ** 12)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.read(1000)  # it is drawing
        # stdout is not read while the signal arrives: once the pipe is full the writes block,
        # and the signal must win.
        time.sleep(0.2)
        process.send_signal(signal_number)
        # Then it is read again, so that the exit can flush what was left in the buffer (the
        # test's own unread pipe would otherwise hold that flush forever). A missed signal
        # still fails: the drawing would go on until the guard.
        drain = threading.Thread(target=process.stdout.read, daemon=True)
        drain.start()
        assert process.wait(timeout=HANG_GUARD) == exit_code
    finally:
        process.kill()
        process.wait()
    if signal_number == signal.SIGINT:
        assert process.stderr.read().decode().strip().splitlines()[-1] == "error: interrupted"
