"""Text pipeline: vocabulary, corpus files (streamed, cached) and the truncated-BPTT batches."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnn.data.ids
import rnn.data.text
from rnn.data.batches import BatchStream
from rnn.data.corpus import Corpus
from rnn.data.text import TextError
from rnn.data.vocab import Vocab

TEXT = "Grüße, 世界! naïve café — ok?\nLine two: ünïcödé.\n" * 20


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(directory))
    return directory


# ---- Vocab -----------------------------------------------------------------------------------

def test_vocab_is_the_sorted_set_of_code_points():
    vocab = Vocab.from_text("banana!")
    assert vocab.chars == ["!", "a", "b", "n"]
    assert len(vocab) == 4
    assert vocab.encode("nab!").tolist() == [3, 1, 2, 0]
    assert vocab.encode("nab!").dtype == np.int32
    assert vocab.decode([2, 1, 3]) == "ban"


def test_vocab_in_any_order_encodes_by_position():
    vocab = Vocab(["z", "a", "é"])
    assert vocab.encode("aéz").tolist() == [1, 2, 0]
    assert vocab.decode(np.array([2, 0])) == "éz"


def test_unknown_characters_are_named():
    vocab = Vocab.from_text("abc")
    with pytest.raises(TextError, match=r"'x' \(U\+0078\).*'é' \(U\+00E9\)"):
        vocab.encode("abxcé")


def test_vocab_json_round_trip_and_errors():
    vocab = Vocab.from_text(TEXT)
    assert Vocab.from_json(vocab.to_json()).chars == vocab.chars
    for bad in ("not json", '{"a": 1}', '["ab"]', '["a", "a"]', "[]", "[1]"):
        with pytest.raises(TextError):
            Vocab.from_json(bad)


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(TextError):
        Vocab.from_text("ab").decode([0, 2])


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1))
def test_any_text_round_trips(text):
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.chars == sorted(set(text))


# ---- Corpus ----------------------------------------------------------------------------------

def test_validation_split_is_the_last_fraction():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    corpus = Corpus.from_text(text, val_frac=0.1)
    assert len(corpus.val_ids) == 100
    assert corpus.vocab.decode(corpus.val_ids) == text[-100:]
    assert corpus.vocab.decode(corpus.train_ids) == text[:-100]


@pytest.mark.parametrize("val_frac", [0, 1, -0.1, 1.5])
def test_val_frac_must_be_inside_zero_one(val_frac):
    with pytest.raises(ValueError, match="val_frac"):
        Corpus.from_text("abcdefghij" * 10, val_frac=val_frac)


def test_too_short_texts_are_refused():
    with pytest.raises(TextError, match="too short"):
        Corpus.from_text("abc", val_frac=0.1)


@pytest.mark.parametrize("chunk_bytes", [5, 7, 64, 1 << 20])
def test_file_read_in_chunks_equals_the_text(tmp_path, monkeypatch, chunk_bytes):
    # Small chunks cut multi-byte characters in two: the incremental decoder must join them.
    monkeypatch.setattr(rnn.data.text, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    corpus = Corpus.from_file(path, val_frac=0.2)
    reference = Corpus.from_text(TEXT, val_frac=0.2)
    assert corpus.vocab.chars == sorted(set(TEXT))
    assert np.array_equal(corpus.train_ids, reference.train_ids)
    assert np.array_equal(corpus.val_ids, reference.val_ids)
    assert corpus.path == path


def test_a_utf8_byte_order_mark_is_not_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ("hello world " * 10).encode())
    corpus = Corpus.from_file(path)
    assert "\ufeff" not in corpus.vocab.chars
    assert len(corpus) == 120


def test_large_files_are_encoded_into_a_reused_memmap_cache(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setattr(rnn.data.ids, "IN_MEMORY_BYTES", 0)  # treat every file as large
    monkeypatch.setattr(rnn.data.text, "CHUNK_BYTES", 64)
    path = tmp_path / "big.txt"
    path.write_text(TEXT, encoding="utf-8")
    first = Corpus.from_file(path)
    assert isinstance(first.ids, np.memmap)
    reference = Corpus.from_text(TEXT)
    assert np.array_equal(first.train_ids, reference.train_ids)
    entries = sorted(p.name for p in (cache_dir / "corpora").iterdir())
    assert len(entries) == 2 and entries[0].endswith(".ids") and entries[1].endswith(".json")
    assert json.loads((cache_dir / "corpora" / entries[1]).read_text())["chars"] == len(TEXT)

    def no_second_scan(*args):
        raise AssertionError("the cached encoding should have been reused")

    monkeypatch.setattr(rnn.data.ids, "_scan_vocab", no_second_scan)
    second = Corpus.from_file(path)
    assert np.array_equal(second.val_ids, reference.val_ids)
    monkeypatch.undo()

    # A changed file gets a new entry, and the old one is removed.
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(rnn.data.ids, "IN_MEMORY_BYTES", 0)
    path.write_text(TEXT + "more text\n", encoding="utf-8")
    os.utime(path, ns=(1, 10**18))  # a different mtime even on coarse-clock filesystems
    third = Corpus.from_file(path)
    assert third.vocab.decode(third.val_ids).endswith("more text\n")
    assert len(list((cache_dir / "corpora").iterdir())) == 2


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setattr(rnn.data.ids, "IN_MEMORY_BYTES", 0)
    path = tmp_path / "big.txt"
    path.write_text(TEXT, encoding="utf-8")
    Corpus.from_file(path)
    ids_file = next((cache_dir / "corpora").glob("*.ids"))
    ids_file.write_bytes(b"\x00\x01")  # wrong size
    corpus = Corpus.from_file(path)
    assert np.array_equal(corpus.train_ids, Corpus.from_text(TEXT).train_ids)


def test_missing_file_directory_and_empty_file(tmp_path):
    with pytest.raises(TextError, match="no such file"):
        Corpus.from_file(tmp_path / "nope.txt")
    with pytest.raises(TextError, match="directory"):
        Corpus.from_file(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(TextError, match="empty"):
        Corpus.from_file(tmp_path / "empty.txt")


def test_invalid_utf8_names_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"hello caf\xe9 world, more text here")
    with pytest.raises(TextError, match=r"not valid UTF-8: byte 0xe9 at byte offset 9"):
        Corpus.from_file(path)


@pytest.mark.parametrize("chunk_bytes", [3, 5, 6, 4096])
def test_invalid_utf8_offset_across_a_chunk_boundary(tmp_path, monkeypatch, chunk_bytes):
    # "é" starts at offset 4 but is followed by "x" instead of its continuation byte.
    monkeypatch.setattr(rnn.data.text, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abcd\xc3xyz and more")
    with pytest.raises(TextError, match=r"byte 0xc3 at byte offset 4"):
        Corpus.from_file(path)


def test_a_file_ending_inside_a_character(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes(("x" * 40).encode() + "é".encode()[:1])
    with pytest.raises(TextError, match=r"ends inside a multi-byte character \(byte offset 40\)"):
        Corpus.from_file(path)


def test_binary_files_are_detected(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(TextError, match=r"binary \(NUL byte at byte offset 8\)"):
        Corpus.from_file(path)


# ---- BatchStream -----------------------------------------------------------------------------

def test_batches_are_contiguous_streams_with_shifted_targets():
    ids = np.arange(100, dtype=np.int32)
    stream = BatchStream(ids, batch_size=3, seq_len=4)  # streams of 33: 0..32, 33..65, 66..98
    assert stream.windows_per_pass == 8
    inputs, targets = stream.next_batch()
    assert inputs.dtype == np.int64 and inputs.shape == (3, 4)
    assert inputs.tolist() == [[0, 1, 2, 3], [33, 34, 35, 36], [66, 67, 68, 69]]
    assert np.array_equal(targets, inputs + 1)
    inputs, _ = stream.next_batch()
    assert inputs[:, 0].tolist() == [4, 37, 70]  # each row continues where it stopped
    assert not stream.wrapped
    assert stream.epoch == pytest.approx(2 / 8)


def test_streams_wrap_around_and_say_so():
    stream = BatchStream(np.arange(100), batch_size=3, seq_len=4)
    batches = [stream.next_batch() for _ in range(8)]
    assert batches[-1][1][:, -1].tolist() == [32, 65, 98]  # the last window reaches each stream's end
    assert stream.epoch == 1.0
    inputs, _ = stream.next_batch()
    assert stream.wrapped
    assert inputs.tolist() == batches[0][0].tolist()
    stream.next_batch()
    assert not stream.wrapped


def test_position_resumes_the_same_batches():
    stream = BatchStream(np.arange(200), batch_size=4, seq_len=5)
    for _ in range(13):
        stream.next_batch()
    position = json.loads(json.dumps(stream.position))
    expected = [stream.next_batch()[0] for _ in range(20)]
    other = BatchStream(np.arange(200), batch_size=4, seq_len=5)
    other.set_position(position)
    assert all(np.array_equal(a, other.next_batch()[0]) for a in expected)


def test_position_from_another_shape_is_refused():
    position = BatchStream(np.arange(200), batch_size=4, seq_len=5).position
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(np.arange(200), batch_size=2, seq_len=5).set_position(position)


def test_text_too_short_for_the_streams():
    with pytest.raises(TextError, match="too short.*4 streams of seq_len \\+ 1 = 11"):
        BatchStream(np.arange(40), batch_size=4, seq_len=10)
    BatchStream(np.arange(44), batch_size=4, seq_len=10)  # exactly enough


def test_batches_from_a_memmap(tmp_path):
    path = tmp_path / "ids.bin"
    ids = np.memmap(path, dtype=np.uint16, mode="w+", shape=(50,))
    ids[:] = np.arange(50)
    inputs, targets = BatchStream(np.memmap(path, dtype=np.uint16, mode="r"), 2, 3).next_batch()
    assert inputs.dtype == np.int64
    assert inputs.tolist() == [[0, 1, 2], [25, 26, 27]]
