"""What the CLI prints when the text is not its own (issue 15, items 10-13).

- any stdout encoding: `sample` and `info` never die on a character stdout cannot hold, and
  `sample --out FILE` writes exact UTF-8 whatever stdout is;
- names and fields from files (checkpoint metadata, run folders, file names in error lines)
  reach the terminal with their control characters escaped; the generated text too, on a
  terminal only (a pty here), while to a pipe it is exact;
- every --json output is strict JSON (no NaN/Infinity);
- memory of eval and sample does not grow with vocabulary x chunk: the rows of logits per
  forward call are bounded, the result is the same, and a 30,000-character vocabulary
  evaluates within a fixed memory bound (measured in a fresh interpreter).

The checkpoints are made here: a tiny model whose head ignores the state (weights zero) and
whose bias favours one character, so that --argmax writes that character again and again.
"""

import io
import json
import math
import os
import pty
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigrad as mg
import rnn.evaluate as evaluate_module
from cli.output import TextWriter, strict_json, visible, visible_text
from cli.progress import TrainingDisplay
from cli_support import TINY_RUN, assert_one_error_line, console_script, make_text, run_cli, run_in_process
from rnn.checkpoint.format import save_checkpoint
from rnn.data.vocab import Vocab
from rnn.evaluate import LOGITS_BUDGET, evaluate_ids
from rnn.model.charlm import CharLM, ModelConfig
from rnn.sample import sample

ESC, CSI, BIDI_OVERRIDE = "\x1b", "\x9b", "\u202e"
HOSTILE = f"{ESC}]0;owned{chr(7)}{ESC}[2J\r{BIDI_OVERRIDE}{CSI}31m"  # title, clear screen, CR, bidi, C1 CSI
RAW_CONTROLS = (ESC, "\x07", "\r", BIDI_OVERRIDE, CSI)


def make_checkpoint(path, chars, favourite=None, meta=None, dtype="float32", bias=None):
    """A tiny checkpoint over `chars`; with `favourite`, every argmax draw is that character."""
    vocab = Vocab(chars)
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed=4, hidden=8, layers=1, dtype=dtype))
    if favourite is not None:
        model.head.weight.data[:] = 0
        model.head.bias.data[:] = 0
        model.head.bias.data[vocab.chars.index(favourite)] = 10
    if bias is not None:
        model.head.bias.data[:] = bias
    return save_checkpoint(path, model, vocab=vocab, meta=meta or {"step": 1})


def run_with_encoding(encoding, *args) -> subprocess.CompletedProcess:
    """The console script with PYTHONIOENCODING=encoding; stdout and stderr as bytes."""
    environment = {**os.environ, "PYTHONIOENCODING": encoding}
    return subprocess.run(console_script() + [str(a) for a in args], capture_output=True, env=environment,
                          timeout=300)


def strict_loads(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


# ---- the escaping rule ------------------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [
    ("run\x1b[2J", "run\\x1b[2J"),
    ("a\rb\nc\td", "a\\rb\\nc\\td"),
    ("\x07\x08\x7f\x9b\x9d", "\\x07\\x08\\x7f\\x9b\\x9d"),  # BEL, BS, DEL, C1 CSI and OSC
    ("txt.\u202eexe\u2066\u200b\ufeff", "txt.\\u202eexe\\u2066\\u200b\\ufeff"),  # bidi, zero width, BOM
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("bytes\udcc4", "bytes\\udcc4"),  # an undecodable byte of a file name (surrogateescape)
])
def test_control_characters_are_escaped(raw, shown):
    assert visible(raw) == shown


@pytest.mark.parametrize("text", ["runs/2026-11-29_04-30-00", "café 日本語 😀", "a b\u00a0c", "C:\\runs\\x1b",
                                  "\ue000 private use", ""])
def test_printable_text_is_unchanged(text):
    assert visible(text) == text


def test_generated_text_keeps_line_breaks_tabs_crlf_and_joiners():
    family = "\U0001F468\u200d\U0001F469"  # an emoji sequence joined by U+200D
    assert visible_text(f"one\r\ntwo\tthree\n{family}") == f"one\r\ntwo\tthree\n{family}"
    assert visible_text(f"over\rwrite{ESC}[2J{BIDI_OVERRIDE}") == "over\\rwrite\\x1b[2J\\u202e"


def test_the_writer_sees_a_crlf_split_between_pieces_and_is_exact_off_a_terminal():
    screen = io.StringIO()
    writer = TextWriter(screen, terminal=True)
    for piece in ["a\r", "\nb", "\r", "c", ESC, "\r"]:
        writer.write(piece)
    writer.close()
    assert screen.getvalue() == "a\r\nb\\rc\\x1b\\r"
    pipe = io.StringIO()
    writer = TextWriter(pipe, terminal=False)
    for piece in ["a\r", "\nb", "\r", "c", ESC, "\r"]:
        writer.write(piece)
    writer.close()
    assert pipe.getvalue() == f"a\r\nb\rc{ESC}\r"


def test_strict_json_writes_null_for_numbers_that_are_not_finite():
    value = {"nan": math.nan, "inf": -math.inf, "nested": [np.float32("nan"), (1.5, np.int64(3))], "ok": True}
    assert strict_loads(strict_json(value)) == {"nan": None, "inf": None, "nested": [None, [1.5, 3]], "ok": True}


def test_strict_json_takes_metadata_nested_as_deep_as_json_reads():
    deep = [math.nan]
    for _ in range(900):  # json.loads reads this deep: a checkpoint's train_config can be this
        deep = [deep]
    assert strict_json(deep) == "[" * 901 + "null" + "]" * 901


# ---- item 10: any stdout encoding -------------------------------------------------------------

@pytest.fixture(scope="module")
def kanji_checkpoint(tmp_path_factory):
    """Favours 日, which neither latin-1 nor ascii can write; trained on a path holding 日 too."""
    folder = tmp_path_factory.mktemp("kanji")
    meta = {"step": 3, "corpus": {"path": str(folder / "日本.txt")}}
    return make_checkpoint(folder / "model.safetensors", ["\n", "a", "é", "日"], favourite="日", meta=meta)


@pytest.mark.parametrize("encoding, expected", [("latin-1", b"\xe9?????\n"), ("ascii", b"??????\n"),
                                                ("utf-8", "é日日日日日\n".encode())])
def test_sample_writes_through_any_stdout_encoding(kanji_checkpoint, encoding, expected):
    result = run_with_encoding(encoding, "sample", kanji_checkpoint, "--argmax", "-n", "5", "--prime", "é")
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert result.stdout == expected


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_info_writes_through_any_stdout_encoding(kanji_checkpoint, encoding):
    result = run_with_encoding(encoding, "info", kanji_checkpoint)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert b"trained on" in result.stdout


def test_sample_out_writes_exact_utf8_whatever_stdout_is(kanji_checkpoint, tmp_path):
    out = tmp_path / "sample.txt"
    result = run_with_encoding("ascii", "sample", kanji_checkpoint, "--argmax", "-n", "5", "--prime", "é\n",
                               "--out", out)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert result.stdout == b""
    assert out.read_bytes() == "é\n日日日日日".encode("utf-8")  # exactly the prime and the sample


def test_training_prints_its_samples_through_any_stdout_encoding(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(make_text(1500).replace("a", "日").replace("e", "é"), encoding="utf-8")
    arguments = [*TINY_RUN, "--steps", "2", "--eval-every", "0", "--sample-every", "2", "--sample-length", "80",
                 "--out", tmp_path / "run"]
    result = run_with_encoding("ascii", "train", text, *arguments)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    assert b"sample at step 2" in result.stdout and b"?" in result.stdout


# ---- item 11: nothing from a file reaches the terminal raw ------------------------------------

def assert_no_raw_controls(text):
    for character in RAW_CONTROLS:
        assert character not in text, f"{character!r} reached the output: {text!r}"


def test_info_escapes_what_the_checkpoint_says(tmp_path):
    meta = {"step": 1, "corpus": {"path": f"/data/{HOSTILE}.txt\nstep        999999"}}
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["a", "b"], meta=meta)
    result = run_in_process("info", checkpoint, check_exit=0)
    assert_no_raw_controls(result.stdout)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\r\\u202e\\x9b31m" in result.stdout
    trained_on = [line for line in result.stdout.splitlines() if line.startswith("trained on")]
    assert trained_on == ["trained on  /data/\\x1b]0;owned\\x07\\x1b[2J\\r\\u202e\\x9b31m.txt\\nstep        999999"]
    assert not any(line.startswith("step        999999") for line in result.stdout.splitlines())


def test_info_prints_metadata_of_any_type_or_refuses_it_in_one_line(tmp_path):
    meta = {"step": f"{ESC}[2J", "train_seconds": "abc", "last_val_loss": "x", "best_val_loss": [1],
            "corpus": {"path": 5}}
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["a", "b"], meta=meta)
    result = run_in_process("info", checkpoint)
    if result.returncode == 0:  # shown, escaped, numbers that are not numbers as '?'
        assert_no_raw_controls(result.stdout)
        assert "step        \\x1b[2J (? of training)" in result.stdout
    else:  # or refused when the checkpoint is read
        assert_one_error_line(result.stderr)
        assert "unexpected" not in result.stderr


def test_plot_escapes_folder_names_and_config_fields(tmp_path):
    run = tmp_path / f"run{ESC}[2J"
    run.mkdir()
    records = [{"step": 10, "train_loss": 2.5, "time": 1.0, "chars_per_sec": 500.0},
               {"step": 10, "val_loss": 2.4, "time": 1.2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {"model": {"cell": f"lstm{HOSTILE}", "layers": f"2{ESC}[1m", "hidden": 16}, "train": {}}
    (run / "config.json").write_text(json.dumps(config))
    result = run_in_process("plot", "--text", run, check_exit=0)
    assert_no_raw_controls(result.stdout)
    assert "run\\x1b[2J" in result.stdout and "lstm\\x1b]0;owned" in result.stdout
    table = result.stdout[result.stdout.index("run  "):]
    assert "run\\x1b[2J  lstm\\x1b]0;owned" in table
    assert " ?x16 " in table  # a layer count that is not a number is not shown as one


def test_an_error_line_escapes_the_file_name(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["a", "b"])
    binary = tmp_path / f"text{ESC}]0;owned{chr(7)}.txt"
    binary.write_bytes(b"\x00\x01\x02" * 50)
    result = run_in_process("eval", checkpoint, binary, check_exit=1)
    assert_no_raw_controls(result.stderr)
    assert_one_error_line(result.stderr, "text\\x1b]0;owned\\x07.txt")


def run_on_a_terminal(*args) -> bytes:
    """What the console script writes to a terminal (a pseudo-terminal): stdout's bytes."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(console_script() + [str(a) for a in args], stdout=follower,
                               stderr=subprocess.PIPE)
    os.close(follower)
    output = b""
    while True:
        try:
            piece = os.read(leader, 4096)
        except OSError:  # EIO: the other end closed
            break
        if not piece:
            break
        output += piece
    os.close(leader)
    _, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors.decode("utf-8", "replace")
    # colorama's reset at exit, on a terminal only: numba's error formatting may start colorama.
    return output.removesuffix(b"\x1b[0m")


def test_sampled_control_characters_are_escaped_on_a_terminal_and_exact_in_a_pipe(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["\n", "a", ESC], favourite=ESC)
    on_terminal = run_on_a_terminal("sample", checkpoint, "--argmax", "-n", "3", "--prime", "a")
    assert on_terminal.replace(b"\r\n", b"\n") == b"a\\x1b\\x1b\\x1b\n"  # the pty writes \n as \r\n
    piped = run_cli("sample", checkpoint, "--argmax", "-n", "3", "--prime", "a", check_exit=0)
    assert piped.stdout == f"a{ESC * 3}\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_training_samples_are_escaped_on_a_terminal_and_exact_in_a_log():
    text = f"to be{ESC}[2J\r\nor not"
    for stream, expected in ((Terminal(), "to be\\x1b[2J\r\nor not"), (io.StringIO(), text)):
        TrainingDisplay(stream, live=False, width=80)("sample", {"step": 5, "text": text})
        assert f"sample at step 5:\n{expected}\n" in stream.getvalue()


# ---- item 12 (part): strict JSON --------------------------------------------------------------

def test_eval_json_is_strict_for_a_loss_that_is_not_finite(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["\n", "a", "b"], bias=np.nan)
    text = tmp_path / "text.txt"
    text.write_text("abba\nbaab\n")
    result = run_in_process("eval", checkpoint, text, "--json", check_exit=0)
    assert strict_loads(result.stdout) == {"loss_nats": None, "bpc": None, "perplexity": None, "chars": 9,
                                          "unknown_chars": 0}
    assert "not finite" in result.stderr


def test_info_json_is_strict_or_one_error_line(tmp_path):
    meta = {"step": 4, "train_seconds": math.inf, "last_val_loss": math.nan, "best_val_loss": 1.5}
    checkpoint = make_checkpoint(tmp_path / "model.safetensors", ["a", "b"], meta=meta)
    result = run_in_process("info", checkpoint, "--json")
    if result.returncode == 0:  # the metadata may be refused instead: then with one line
        details = strict_loads(result.stdout)
        assert details["val_loss_nats"] is None and details["best_val_loss_nats"] == 1.5
    else:
        assert_one_error_line(result.stderr, "last_val_loss")


def test_train_json_is_strict(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(make_text(2000))
    result = run_in_process("train", text, *TINY_RUN, "--out", tmp_path / "run", "--json", "--quiet", check_exit=0)
    summary = strict_loads(result.stdout)
    assert summary["steps"] == 5 and math.isfinite(summary["best_val_loss_nats"])


# ---- item 13: logits memory is bounded --------------------------------------------------------

def count_logits_rows(model, monkeypatch) -> list:
    """Patch model.forward to record how many positions each call predicts."""
    calls, forward = [], model.forward

    def recording(ids, state=None):
        calls.append(int(np.asarray(ids).size))
        return forward(ids, state)

    monkeypatch.setattr(model, "forward", recording)
    return calls


def test_eval_and_sample_bound_the_rows_of_logits_a_call_makes(monkeypatch):
    vocab = Vocab([chr(0x4E00 + i) for i in range(5000)])  # 1024 rows x 5000 would pass the budget
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed=2, hidden=4, layers=1))
    ids = np.random.default_rng(0).integers(0, len(vocab), 1500)
    calls = count_logits_rows(model, monkeypatch)
    evaluate_ids(model, ids)
    evaluate_ids(model, ids, streams=4)
    "".join(sample(model, vocab, prime=vocab.decode(ids), length=3, seed=0))
    assert sum(calls) > 3 * 1499
    assert max(calls) * len(vocab) <= LOGITS_BUDGET


@pytest.fixture(scope="module")
def small_model_and_text():
    text = make_text(700, seed=3)
    vocab = Vocab.from_text(text)
    mg.random.manual_seed(5)
    return CharLM(ModelConfig(vocab_size=len(vocab), embed=6, hidden=10, layers=2, dtype="float64")), vocab, text


@pytest.mark.parametrize("streams", [1, 3])
def test_bounded_calls_give_the_same_loss_as_whole_chunks(small_model_and_text, monkeypatch, streams):
    model, vocab, text = small_model_and_text
    ids = vocab.encode(text)
    whole = evaluate_ids(model, ids, chunk_size=200, streams=streams)
    monkeypatch.setattr(evaluate_module, "LOGITS_BUDGET", 7 * len(vocab))  # 7 rows a call
    calls = count_logits_rows(model, monkeypatch)
    bounded = evaluate_ids(model, ids, chunk_size=200, streams=streams)
    assert max(calls) <= 7
    assert bounded["loss_nats"] == pytest.approx(whole["loss_nats"], rel=1e-12)
    assert bounded["chars"] == whole["chars"] == len(text) - 1


def test_bounded_prime_pieces_give_the_same_sample(small_model_and_text, monkeypatch):
    model, vocab, text = small_model_and_text
    whole = "".join(sample(model, vocab, prime=text, length=50, seed=4))
    monkeypatch.setattr(evaluate_module, "LOGITS_BUDGET", 5 * len(vocab))
    assert "".join(sample(model, vocab, prime=text, length=50, seed=4)) == whole


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource
    import numpy as np
    import minigrad as mg
    from rnn.data.vocab import Vocab
    from rnn.evaluate import evaluate
    from rnn.model.charlm import CharLM, ModelConfig
    from rnn.sample import sample

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    vocab = Vocab([chr(0x20000 + i) for i in range(30000)])  # no surrogates in that range
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed=2, hidden=4, layers=1))
    text = vocab.decode(np.random.default_rng(0).integers(0, len(vocab), 1100))
    evaluate(model, vocab, text[:50])  # compile, and the model's own tables, before measuring
    "".join(sample(model, vocab, prime=text[:50], length=2, seed=0))
    before = peak_mb()
    "".join(sample(model, vocab, prime=text, length=2, seed=0))
    after_sample = peak_mb()
    evaluate(model, vocab, text)
    print(json.dumps({"sample": after_sample - before, "eval": peak_mb() - before}))
""")


def test_a_large_vocabulary_evaluates_within_a_memory_bound():
    """Peak RSS growth of eval and sample at V = 30,000 over 1,100 characters, in a fresh
    interpreter: whole 1024-row chunks took ~90 MB more to sample and ~200 MB to evaluate
    (logits, softmax, head output); bounded rows take ~5 MB. 50 MB leaves room for allocator
    noise, not for the old way.
    (An RSS figure, not only the rows asserted above: it sees every copy the loss makes.)"""
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    growth = json.loads(result.stdout)
    assert growth["sample"] < 50 and growth["eval"] < 50, growth
