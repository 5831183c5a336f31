"""Bad and hostile input: any text, any bytes, any checkpoint file.

- Texts (hypothesis): any unicode string round-trips through the vocabulary and through a
  UTF-8 file; any file of random bytes either loads exactly as Python's strict UTF-8 decoder
  reads it or raises TextError; any text file either trains one tiny step or raises a
  TextError saying why, exactly when the rules say it must.
- Checkpoints: what tests/test_checkpoint.py does not already try (hostile JSON nesting,
  a config declaring a billion layers, overlapping tensors, odd dtypes, a hostile resume
  state, a checkpoint naming a cell file), and two runs in fresh interpreters: the
  truncation and byte-flip loop (the interpreter must survive every one of them), and
  the hostile headers under a hard address-space limit (none may allocate without bound).
"""

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

import minigrad as mg
import rnn.checkpoint.format as checkpoint_module
import rnn.checkpoint.header as checkpoint_header
import rnn.data.text as text_module
from rnn.checkpoint.format import CheckpointError, load_checkpoint, save_checkpoint
from rnn.data.corpus import Corpus
from rnn.data.text import TextError
from rnn.data.vocab import Vocab
from rnn.model.charlm import CharLM, ModelConfig
from rnn.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
BOM = "\ufeff"

# Pieces that stress a text pipeline, mixed with arbitrary characters: line endings of
# every platform, combining marks, zero-width joiners, astral-plane characters (two UTF-16
# units, four UTF-8 bytes), the byte-order mark, NUL and other control characters.
AWKWARD_PIECES = ["\r\n", "\r", "\n", "e\u0301", "\u0301", "\U0001F600", "\U0001F468\u200d\U0001F469",
                  "\U00010348", "\U0010FFFD", "\ufeff", "\x00", "\x7f", "\u2028", "\t", "\u00e9", " "]
# Any character but the surrogates (category Cs): those have no UTF-8 form, so no text file
# holds them, and encoding them raised inside the test's own data generator.
awkward_text = st.lists(st.one_of(st.sampled_from(AWKWARD_PIECES), st.characters(exclude_categories=("Cs",))),
                        max_size=60).map("".join)


def write_bytes(folder, content: bytes) -> Path:
    path = Path(folder) / "input.txt"
    path.write_bytes(content)
    return path


def one_line(error) -> bool:
    return "\n" not in str(error) and str(error).strip() != ""


# ---- texts -------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(awkward_text)
def test_any_text_round_trips_through_the_vocab_and_a_file(text):
    assume(text)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert len(ids) == len(text)  # one id per code point: astral characters are not split
    assert Vocab.from_json(vocab.to_json()) == vocab

    # Through a file: what comes back is the text, except that a leading U+FEFF is read as
    # a byte-order mark (not text), and that a NUL makes the file binary.
    expected = text[1:] if text.startswith(BOM) else text
    with tempfile.TemporaryDirectory() as folder:
        path = write_bytes(folder, text.encode("utf-8"))
        try:
            corpus = Corpus.from_file(path, val_frac=0.25)
        except TextError as error:
            assert one_line(error)
            if "\x00" in text:
                assert "binary" in str(error)
            else:
                assert "empty" in str(error) or "too short" in str(error)
                assert len(expected) < 8
            return
    assert "\x00" not in text
    assert corpus.vocab.decode(corpus.train_ids) + corpus.vocab.decode(corpus.val_ids) == expected


def bytes_that_are_almost_text():
    """Random bytes, and UTF-8 text with a few bytes damaged, cut or inserted."""
    damaged = st.tuples(awkward_text, st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=3),
                        st.integers(0, 3)).map(_damage)
    return st.one_of(st.binary(max_size=200), st.text(max_size=80).map(lambda t: t.encode("utf-8")), damaged)


def _damage(arguments):
    text, edits, cut = arguments
    content = bytearray(text.encode("utf-8"))
    for position, value in edits:
        if content:
            content[position % len(content)] = value
    return bytes(content[:len(content) - cut] if cut < len(content) else content)


@settings(max_examples=150, deadline=None)
@given(content=bytes_that_are_almost_text(), chunk_bytes=st.sampled_from([3, 4, 5, 7, 4 << 20]))
def test_any_bytes_load_as_utf8_would_or_raise_text_error(content, chunk_bytes):
    """Python's strict decoder is the oracle; small chunks cut multi-byte characters."""
    try:
        oracle = content.decode("utf-8")
    except UnicodeDecodeError:
        oracle = None
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(text_module, "CHUNK_BYTES", chunk_bytes):
        path = write_bytes(folder, content)
        try:
            corpus = Corpus.from_file(path, val_frac=0.25)
        except TextError as error:  # any other exception fails the test
            assert one_line(error)
            assert oracle is None or "\x00" in oracle or len(oracle.removeprefix(BOM)) < 8, str(error)
            if oracle is None and "NUL byte" not in str(error):
                assert "not valid UTF-8" in str(error) and "byte offset" in str(error)
            return
    assert oracle is not None and "\x00" not in oracle
    text = corpus.vocab.decode(corpus.ids)
    assert text == oracle.removeprefix(BOM)


def expected_training_failure(text: str, batch_size: int, seq_len: int, val_frac: float):
    """Why the documented rules refuse `text` (a word of the message), or None if it must train."""
    if "\x00" in text:
        return "binary"
    text = text.removeprefix(BOM)
    if not text:
        return "empty"
    val_chars = int(round(len(text) * val_frac))
    if val_chars < 2 or len(text) - val_chars < 2:
        return "too short"
    if (len(text) - val_chars) // batch_size < seq_len + 1:
        return "too short"
    return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(awkward_text.map(lambda t: t * 2))
def test_any_text_file_trains_one_step_or_says_why_not(text):
    config = TrainConfig(cell="gru", layers=1, hidden=4, embed=3, seq_len=3, batch_size=2, steps=1, warmup=0,
                         eval_every=0, sample_every=0, dtype="float64")
    expected = expected_training_failure(text, config.batch_size, config.seq_len, val_frac=0.2)
    with tempfile.TemporaryDirectory() as folder:
        path = write_bytes(folder, text.encode("utf-8"))
        try:
            corpus = Corpus.from_file(path, val_frac=0.2)
            summary = train(config, corpus, Path(folder) / "run")
        except (TextError, ValueError) as error:
            assert one_line(error)
            assert expected is not None and expected in str(error), str(error)
            return
        assert expected is None
        assert summary["steps"] == 1
        checkpoint = load_checkpoint(summary["checkpoint"])
        assert checkpoint.vocab == Vocab.from_text(text.removeprefix(BOM))
        assert all(np.isfinite(array).all() for array in checkpoint.model.state_dict().values())


# ---- checkpoints: helpers ------------------------------------------------------------------------

VOCAB_TEXT = "hostile input, tested.\n"


def tiny_checkpoint(folder, name="model.safetensors", hidden=3):
    vocab = Vocab.from_text(VOCAB_TEXT)
    mg.random.manual_seed(1)
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell="gru", embed=2, hidden=hidden, layers=1,
                               dtype="float64"))
    optimizer = mg.optim.Adam(model.parameters(), lr=0.01)
    return save_checkpoint(Path(folder) / name, model, optimizer, {"step": 1}, vocab=vocab)


def read_raw(path):
    with safe_open(str(path), framework="np") as file:
        return {name: file.get_tensor(name) for name in file.keys()}, dict(file.metadata())


def write_signed(path, tensors, metadata):
    """A checkpoint with edited content and a correct checksum: anyone can compute it, so a
    hostile file passes the checksum and must be stopped by the checks after it."""
    metadata = dict(metadata)
    metadata["checksum"] = checkpoint_module._checksum(metadata, tensors)
    path.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    return path


def raw_file(path, header, data=b""):
    """A file in the safetensors layout with any header (a dict, or raw bytes)."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(header_bytes).to_bytes(8, "little") + header_bytes + data)
    return path


DEEP = 100_000  # far beyond Python's recursion limit


def edit_metadata(key, value):
    def edit(tensors, metadata):
        metadata[key] = value
    return edit


def edit_model_config(**changes):
    def edit(tensors, metadata):
        metadata["model_config"] = json.dumps({**json.loads(metadata["model_config"]), **changes})
    return edit


def edit_tensor(name, array_from):
    def edit(tensors, metadata):
        tensors[name] = array_from(tensors[name])
    return edit


SIGNED_EDITS = {
    "meta nested 100000 deep": (edit_metadata("meta", "[" * DEEP + "]" * DEEP), "meta"),
    "model config nested 100000 deep": (edit_metadata("model_config", '{"a":' * DEEP + "1" + "}" * DEEP),
                                        "model_config"),
    "vocab nested 100000 deep": (edit_metadata("vocab", "[" * DEEP + "]" * DEEP), "vocabulary"),
    "optimizer nested 100000 deep": (edit_metadata("optimizer", "[" * DEEP + "]" * DEEP), "optimizer"),
    "a billion layers": (edit_model_config(layers=10 ** 9), "layers"),
    "vocab size of a billion": (edit_model_config(vocab_size=10 ** 9), "vocabulary"),
    "float16 weights": (edit_tensor("head.bias", lambda a: a.astype(np.float16)), "float16"),
    "integer weights": (edit_tensor("head.weight", lambda a: a.astype(np.int64)), "int64"),
    "transposed weights": (edit_tensor("rnn.weight_hh_l0", lambda a: np.ascontiguousarray(a.T.copy()[:, :1])),
                           "shape"),
    "vocab with a lone surrogate": (edit_metadata("vocab", json.dumps(["a", "\ud800"])), "vocabulary"),
    "vocab with a repeated character": (edit_metadata("vocab", json.dumps(sorted(set(VOCAB_TEXT))[:-1] + ["h"])),
                                        "vocabulary"),
    "format version not a number": (edit_metadata("format_version", "one"), "format version"),
}


@pytest.mark.parametrize("case", SIGNED_EDITS)
def test_hostile_but_correctly_signed_checkpoints(tmp_path, case):
    edit, fragment = SIGNED_EDITS[case]
    path = tiny_checkpoint(tmp_path)
    tensors, metadata = read_raw(path)
    edit(tensors, metadata)
    write_signed(path, tensors, metadata)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert one_line(error.value) and fragment in str(error.value), str(error.value)


def _entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# Metadata that passes the program and version checks, so that the layout checks are what refuses.
OURS = {"__metadata__": {"program": "minigrad-rnn", "format_version": "1"}}


RAW_HEADERS = {
    "header nested 100000 deep": (b"[" * DEEP + b"]" * DEEP, b""),
    "metadata values not strings": ({"__metadata__": {"program": 1}}, b""),
    "metadata not an object": ({"__metadata__": ["program"]}, b""),
    "overlapping tensors": ({**OURS, "a": _entry("F32", [2], 0, 8), "b": _entry("F32", [2], 0, 8)}, bytes(8)),
    "a gap between tensors": ({**OURS, "a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 8, 12)}, bytes(12)),
    "offsets backwards": ({**OURS, "a": _entry("F32", [2], 8, 0)}, bytes(8)),
    "negative dimension": ({**OURS, "a": _entry("F32", [-2], 0, 8)}, bytes(8)),
    "float dimension": ({**OURS, "a": _entry("F32", [2.0], 0, 8)}, bytes(8)),
    "unknown dtype": ({**OURS, "a": _entry("F128", [1], 0, 16)}, bytes(16)),
    "dimensions overflowing 64 bits": ({**OURS, "a": _entry("U8", [2 ** 40, 2 ** 40], 0, 16)}, bytes(16)),
    "a terabyte tensor in a small file": ({**OURS, "a": _entry("F64", [2 ** 37], 0, 2 ** 40)}, bytes(64)),
    "header longer than the file": (b"{}", b""),  # length rewritten below
}


@pytest.mark.parametrize("case", RAW_HEADERS)
def test_hostile_safetensors_headers(tmp_path, case):
    header, data = RAW_HEADERS[case]
    path = raw_file(tmp_path / "hostile.safetensors", header, data)
    if case == "header longer than the file":
        content = bytearray(path.read_bytes())
        content[:8] = (checkpoint_header.MAX_HEADER_BYTES - 1).to_bytes(8, "little")
        path.write_bytes(bytes(content))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert one_line(error.value)


def test_an_alien_safetensors_with_the_right_names_but_no_metadata(tmp_path):
    """A PyTorch-saved state dict of the right model, without our metadata: not ours."""
    path = tiny_checkpoint(tmp_path)
    tensors, _ = read_raw(path)
    path.write_bytes(safetensors_bytes({k: v for k, v in tensors.items() if not k.startswith("optimizer.")}))
    with pytest.raises(CheckpointError, match="not written by minigrad-rnn"):
        load_checkpoint(path)


# ---- checkpoints: hostile training state (what --resume reads) -----------------------------------

HOSTILE_META = {
    "train_seconds a list": {"train_seconds": [1]},
    "train_seconds text": {"train_seconds": "soon"},
    "best_val_loss text": {"best_val_loss": "low"},
    "last_val_loss a dict": {"last_val_loss": {}},
    "rng_state of another generator": {"rng_state": {"bit_generator": "MT19937", "state": {"key": [1]}}},
    "data_position not a dict": {"data_position": [0, 0]},
}


@pytest.mark.parametrize("case", HOSTILE_META)
def test_resuming_from_a_checkpoint_with_a_hostile_training_state(tmp_path, case):
    """The model loads; resuming says what is wrong (or ignores a position it cannot use)."""
    text = "a small text to train on, twice. " * 8
    corpus = Corpus.from_text(text, val_frac=0.2)
    config = TrainConfig(cell="gru", layers=1, hidden=4, embed=3, seq_len=4, batch_size=2, steps=2, warmup=0,
                         eval_every=0, sample_every=0, dtype="float64")
    path = Path(train(config, corpus, tmp_path / "run")["checkpoint"])
    tensors, metadata = read_raw(path)
    meta = json.loads(metadata["meta"])
    meta.update(HOSTILE_META[case])
    metadata["meta"] = json.dumps(meta)
    write_signed(path, tensors, metadata)
    load_checkpoint(path)  # still a valid model

    resumed_config = TrainConfig(**{**config.to_meta(), "steps": 3})
    try:
        summary = train(resumed_config, corpus, tmp_path / "resumed", resume=path)
    except CheckpointError as error:
        assert one_line(error)
        return
    # Only a data position it cannot use may be ignored (the streams start afresh).
    assert case == "data_position not a dict" and summary["steps"] == 3


def test_resuming_never_runs_a_cell_file_named_by_the_checkpoint(tmp_path):
    """The checkpoint records the --cell-file of its run; resuming must not execute a file
    the checkpoint names (a downloaded checkpoint would run code): only the user's own."""
    from click.testing import CliRunner

    from cli.main import main

    marker = tmp_path / "executed"
    evil = tmp_path / "evil_cells.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    text_path = tmp_path / "text.txt"
    text_path.write_text("a small text to train on, twice. " * 8)
    config = TrainConfig(cell="gru", layers=1, hidden=4, embed=3, seq_len=4, batch_size=2, steps=2, warmup=0,
                         eval_every=0, sample_every=0, dtype="float64")
    path = Path(train(config, Corpus.from_file(text_path, val_frac=0.2), tmp_path / "run")["checkpoint"])
    tensors, metadata = read_raw(path)
    meta = json.loads(metadata["meta"])
    meta["train_config"]["cell_file"] = str(evil)
    metadata["meta"] = json.dumps(meta)
    write_signed(path, tensors, metadata)

    result = CliRunner().invoke(main, ["train", "--resume", str(path), "--steps", "3", "--quiet"])
    assert not marker.exists(), "resuming executed a file named inside the checkpoint"
    assert result.exit_code == 0, result.output
    assert load_checkpoint(path).meta["step"] == 3


@pytest.mark.parametrize("train_config, corpus", [([1, 2], {"path": 5}), ("text", "text")],
                         ids=["wrong types", "strings"])
def test_resuming_a_checkpoint_with_a_malformed_run_record(tmp_path, train_config, corpus):
    """`train --resume` reads the run's settings and text path from the checkpoint's meta:
    malformed ones end in one error line, or are ignored, never in a crash."""
    from click.testing import CliRunner

    from cli.main import main

    text_path = tmp_path / "text.txt"
    text_path.write_text("a small text to train on, twice. " * 8)
    config = TrainConfig(cell="gru", layers=1, hidden=4, embed=3, seq_len=4, batch_size=2, steps=2, warmup=0,
                         eval_every=0, sample_every=0, dtype="float64")
    path = Path(train(config, Corpus.from_file(text_path, val_frac=0.2), tmp_path / "run")["checkpoint"])
    tensors, metadata = read_raw(path)
    meta = json.loads(metadata["meta"])
    meta.update(train_config=train_config, corpus=corpus)
    metadata["meta"] = json.dumps(meta)
    write_signed(path, tensors, metadata)

    without_text = CliRunner().invoke(main, ["train", "--resume", str(path), "--steps", "3", "--quiet"])
    assert without_text.exit_code in (0, 1, 2), without_text.output
    assert "unexpected" not in without_text.output and "Traceback" not in without_text.output
    with_text = CliRunner().invoke(main, ["train", str(text_path), "--resume", str(path), "--steps", "3",
                                          "--batch-size", "2", "--seq-len", "4", "--val-frac", "0.2", "--quiet"])
    assert with_text.exit_code == 0, with_text.output
    assert load_checkpoint(path).meta["step"] == 3


# ---- checkpoints, in fresh interpreters ---------------------------------------------------------

def run_python(script: str, *args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


DAMAGE_LOOP = """
    import json, sys
    from pathlib import Path
    import numpy as np
    import minigrad as mg
    from rnn.checkpoint.format import CheckpointError, load_checkpoint, save_checkpoint
    from rnn.data.vocab import Vocab
    from rnn.model.charlm import CharLM, ModelConfig

    folder = Path(sys.argv[1])
    vocab = Vocab.from_text("truncate me.\\n")
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell="lstm", embed=2, hidden=2, layers=1))
    optimizer = mg.optim.Adam(model.parameters())
    content = save_checkpoint(folder / "good.safetensors", model, optimizer, {"step": 1}, vocab=vocab).read_bytes()
    damaged = folder / "damaged.safetensors"

    counts = {"size": len(content), "truncated_rejected": 0, "flips": 0, "flips_rejected": 0,
              "flips_loaded_unchanged": 0}
    for length in range(len(content)):
        damaged.write_bytes(content[:length])
        try:
            load_checkpoint(damaged)
        except CheckpointError:
            counts["truncated_rejected"] += 1
    rng = np.random.default_rng(int(sys.argv[2]))
    for _ in range(400):
        flipped = bytearray(content)
        for position in rng.integers(len(content), size=int(rng.integers(1, 4))):
            flipped[position] ^= int(rng.integers(1, 256))
        damaged.write_bytes(bytes(flipped))
        counts["flips"] += 1
        try:
            loaded = load_checkpoint(damaged)
        except CheckpointError:
            counts["flips_rejected"] += 1
            continue
        if all(np.array_equal(loaded.model.state_dict()[k], v) for k, v in model.state_dict().items()):
            counts["flips_loaded_unchanged"] += 1
    print(json.dumps(counts))
"""


def test_truncations_and_byte_flips_never_crash_the_interpreter(tmp_path):
    """Every truncation and 400 random multi-byte flips, in a fresh interpreter: the loop
    finishes (no segfault, no abort in native code), each damaged file is refused with a
    CheckpointError, or loads with nothing that matters changed."""
    result = run_python(DAMAGE_LOOP, tmp_path, 7)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["truncated_rejected"] == counts["size"] > 1000
    assert counts["flips"] == 400
    assert counts["flips_rejected"] + counts["flips_loaded_unchanged"] == 400
    assert counts["flips_rejected"] > 300  # almost every flip is caught (header whitespace is the exception)


MEMORY_LIMITED_LOADS = """
    import json, resource, sys
    from pathlib import Path
    from rnn.checkpoint.format import CheckpointError, load_checkpoint

    paths = [Path(p) for p in json.loads(sys.argv[1])]
    control = Path(sys.argv[2])
    load_checkpoint(control)  # everything imported and compiled before the limit is set

    def address_space() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    headroom = int(sys.argv[3])
    limit = address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (120, 120))
    outcomes = {}
    for path in paths:
        try:
            load_checkpoint(path)
            outcomes[path.name] = "loaded"
        except CheckpointError as error:
            outcomes[path.name] = "CheckpointError"
        except Exception as error:  # MemoryError, or anything else: reported, not fatal
            outcomes[path.name] = type(error).__name__
    try:
        bytearray(2 * headroom)  # the limit is real: more than the headroom is refused
        outcomes["limit"] = "not enforced"
    except MemoryError:
        outcomes["limit"] = "enforced"
    outcomes["control"] = type(load_checkpoint(control).model).__name__
    print(json.dumps(outcomes))
"""


def test_hostile_headers_cannot_make_the_loader_allocate_without_bound(tmp_path):
    """Under an address-space limit of 64 MB beyond what a loaded interpreter uses, each
    hostile file is refused with a CheckpointError (never a MemoryError, never a crash),
    and a real checkpoint still loads."""
    control = tiny_checkpoint(tmp_path, "control.safetensors")
    tensors, metadata = read_raw(control)
    hostile = [
        raw_file(tmp_path / "header-2-62.safetensors", b"{}", b""),
        raw_file(tmp_path / "header-just-under-the-cap.safetensors", b"{}", b""),
        raw_file(tmp_path / "terabyte-tensor.safetensors", {**OURS, "a": _entry("F64", [2 ** 37], 0, 2 ** 40)}, bytes(64)),
        raw_file(tmp_path / "deep-header.safetensors", b"[" * DEEP + b"]" * DEEP),
    ]
    for path, declared in ((hostile[0], 2 ** 62), (hostile[1], checkpoint_header.MAX_HEADER_BYTES)):
        content = bytearray(path.read_bytes())
        content[:8] = declared.to_bytes(8, "little")
        path.write_bytes(bytes(content))
    for name, changes in (("billion-layers", dict(layers=10 ** 9)), ("huge-hidden", dict(hidden=10 ** 9, embed=10 ** 9)),
                          ("huge-vocab", dict(vocab_size=10 ** 12))):
        edited = dict(metadata)
        edited["model_config"] = json.dumps({**json.loads(metadata["model_config"]), **changes})
        hostile.append(write_signed(tmp_path / f"{name}.safetensors", tensors, edited))

    result = run_python(MEMORY_LIMITED_LOADS, json.dumps([str(p) for p in hostile]), control, 64 << 20)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcomes.pop("limit") == "enforced"
    assert outcomes.pop("control") == "CharLM"
    assert outcomes == {path.name: "CheckpointError" for path in hostile}
