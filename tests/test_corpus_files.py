"""A text of several files or folders, and a separate validation file (rnn.data.text, rnn.data.corpus and
`minigrad-rnn train`): which files are read and in what order, what is skipped, the
joined text against one built by hand, the separator and its escapes, --val-file in the
training vocabulary, and what the run folder records (and resume keeps)."""

import json
import os

import numpy as np
import pytest

from rnn.data import ids
from rnn.data.corpus import Corpus
from rnn.data.text import TextError, find_text_files

from cli_support import TINY_RUN, assert_one_error_line, make_text, run_in_process


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- which files, in which order ------------------------------------------------------------

def test_arguments_keep_their_order_and_a_folder_is_sorted_by_path_inside_it(tmp_path):
    folder = tmp_path / "corpus"
    for name in ("b.txt", "a/z.txt", "a-b.txt", "A.txt", "a/sub/y.txt"):
        write(folder / name, name)
    last = write(tmp_path / "first.txt", "x")
    found = find_text_files([last, folder])
    names = [str(path.relative_to(folder.resolve())) if path != last.resolve() else "ARG" for path in found.files]
    # By path components, code point by code point: "a" before "a-b.txt" (a plain string sort
    # would put "a-b.txt" before "a/z.txt"), upper case before lower case.
    assert names == ["ARG", "A.txt", "a/sub/y.txt", "a/z.txt", "a-b.txt", "b.txt"]
    assert found.skipped == []
    assert all(path.is_absolute() for path in found.files)


def test_a_folder_skips_what_is_not_part_of_a_corpus_and_says_why(tmp_path):
    folder = tmp_path / "corpus"
    kept = write(folder / "kept.txt", "hello")
    write(folder / ".hidden.txt", "secret")
    write(folder / ".git" / "config.txt", "not text of the corpus")
    write(folder / "empty.txt", "")
    outside = write(tmp_path / "outside.txt", "elsewhere")
    # Links are not followed inside a folder (like tar and git): nothing outside it is read,
    # no cycle, no file twice.
    os.symlink(outside, folder / "out_link.txt")
    os.symlink(kept, folder / "in_link.txt")
    write(tmp_path / "other" / "o.txt", "o")
    os.symlink(tmp_path / "other", folder / "folder_link")
    os.symlink(folder, folder / "loop")
    os.symlink(tmp_path / "missing", folder / "broken.txt")
    os.mkfifo(folder / "pipe")  # never opened: reading a FIFO would hang
    found = find_text_files([folder])
    assert found.files == [kept.resolve()]
    reasons = {path.name: reason for path, reason in found.skipped}
    link = "a link (not followed)"
    assert reasons == {".hidden.txt": "hidden", ".git": "hidden", "empty.txt": "empty", "out_link.txt": link,
                       "in_link.txt": link, "folder_link": link, "loop": link, "broken.txt": link,
                       "pipe": "not a regular file"}


def test_a_link_named_on_the_command_line_is_followed(tmp_path):
    real = write(tmp_path / "real.txt", "text")
    os.symlink(real, tmp_path / "link.txt")
    assert find_text_files([tmp_path / "link.txt"]).files == [real.resolve()]


def test_a_file_given_twice_is_read_once(tmp_path):
    one = write(tmp_path / "one.txt", "abc")
    found = find_text_files([one, tmp_path])
    assert found.files == [one.resolve()]
    assert [reason for _, reason in found.skipped] == ["already included"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "no such file or folder"),
    (lambda d: (os.mkfifo(d / "pipe"), d / "pipe")[1], "not a regular file"),
    (lambda d: (d / "nothing").mkdir() or d / "nothing", "holds no text files"),
    (lambda d: (write(d / "only" / ".hidden", "x"), d / "only")[1], "holds no text files"),
])
def test_unusable_arguments_are_a_text_error(tmp_path, make, message):
    with pytest.raises(TextError, match=message):
        find_text_files([make(tmp_path)])


def test_a_file_that_is_not_utf8_in_a_folder_is_refused_not_skipped(tmp_path):
    write(tmp_path / "a.txt", "good text")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(TextError, match=r"b\.txt is not valid UTF-8"):
        Corpus.from_files(find_text_files([tmp_path]).files)


# ---- the joined text ------------------------------------------------------------------------

@pytest.mark.parametrize("separator", ["\n", "", "\n\n", "\u2029", "|#|"])
def test_the_joined_files_equal_the_text_joined_by_hand(tmp_path, separator):
    texts = [make_text(300, seed=1), "naïve café ☃\n", make_text(200, seed=2) + "€"]
    paths = [write(tmp_path / f"{i}.txt", text) for i, text in enumerate(texts)]
    corpus = Corpus.from_files(paths, val_frac=0.2, separator=separator)
    reference = Corpus.from_text(separator.join(texts), val_frac=0.2)
    assert corpus.vocab == reference.vocab
    np.testing.assert_array_equal(corpus.train_ids, reference.train_ids)  # the split is of the whole
    np.testing.assert_array_equal(corpus.val_ids, reference.val_ids)
    assert corpus.record()["files"] == [str(path) for path in paths]
    assert corpus.record()["separator"] == separator and corpus.record()["path"] is None


def test_large_files_joined_through_the_ids_cache_equal_the_in_memory_join(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_CACHE_DIR", str(tmp_path / "cache"))
    texts = ["abc\n" * 50, "xyz ü\n" * 40, "q"]
    paths = [write(tmp_path / f"{i}.txt", text) for i, text in enumerate(texts)]
    in_memory = Corpus.from_files(paths, separator="-")
    monkeypatch.setattr(ids, "IN_MEMORY_BYTES", 0)  # every file through the memmap cache
    cached = Corpus.from_files(paths, separator="-")
    assert cached.vocab == in_memory.vocab
    np.testing.assert_array_equal(cached.ids, in_memory.ids)
    assert in_memory.vocab.decode(in_memory.ids) == "-".join(texts)


# ---- a separate validation file -------------------------------------------------------------

def test_a_val_file_is_encoded_in_the_training_vocabulary_and_all_of_the_text_trains(tmp_path):
    text = write(tmp_path / "train.txt", "the cat sat on the mat\n" * 5)
    val = write(tmp_path / "val.txt", "a cat\nthe hat")
    corpus = Corpus.from_files([text], val_file=val)
    training_vocab = Corpus.from_file(text, val_frac=0.5).vocab
    assert corpus.vocab == training_vocab  # the val file adds nothing to the vocabulary
    assert corpus.vocab.decode(corpus.val_ids) == "a cat\nthe hat"
    assert corpus.vocab.decode(corpus.train_ids) == text.read_text()
    assert corpus.record()["val_file"] == str(val) and corpus.val_frac is None


def test_a_val_file_with_unknown_characters_names_the_first_few_escaped(tmp_path):
    text = write(tmp_path / "train.txt", "abc abc\n" * 5)
    val = write(tmp_path / "val.txt", "abc\x1b\u200b\té!?xyz")
    with pytest.raises(TextError) as raised:
        Corpus.from_files([text], val_file=val)
    message = str(raised.value)
    assert "\n" not in message and "val.txt has 9 character(s) that are not in the training text" in message
    # Sorted by code point, invisible ones escaped, five shown.
    assert "'\\t' (U+0009), '\\x1b' (U+001B), '!' (U+0021), '?' (U+003F), 'x' (U+0078) and 4 more" in message


# ---- through the command line ---------------------------------------------------------------

def test_train_on_files_and_a_folder_records_them_and_resume_keeps_the_val_file(tmp_path):
    write(tmp_path / "corpus" / "2.txt", make_text(1500, seed=2))
    write(tmp_path / "corpus" / "1.txt", make_text(1500, seed=1))
    write(tmp_path / "corpus" / ".notes", "hidden")
    first = write(tmp_path / "first.txt", make_text(1500, seed=3))
    val = write(tmp_path / "val.txt", make_text(400, seed=4))
    out = tmp_path / "run"
    result = run_in_process("train", first, tmp_path / "corpus", "--separator", "\\t", "--val-file", val,
                     *[a for a in TINY_RUN if a not in ("--val-frac", "0.1")], "--out", out, check_exit=0)
    assert "note: skipped 1 file: 1 hidden" in result.stderr
    config = json.loads((out / "config.json").read_text())
    expected_files = [str(first.resolve())] + [str((tmp_path / "corpus" / n).resolve()) for n in ("1.txt", "2.txt")]
    assert config["corpus"]["files"] == expected_files
    assert config["corpus"]["separator"] == "\t" and config["train"]["separator"] == "\t"
    assert config["corpus"]["val_file"] == str(val.resolve()) == config["train"]["val_file"]
    assert config["corpus"]["val_chars"] == 400 and config["corpus"]["train_chars"] == 4502
    # Resumed with no TEXT and no --val-file: the same files, separator and validation file.
    run_in_process("train", "--resume", out / "latest.safetensors", "--steps", "7", "-q", check_exit=0)
    resumed = json.loads((out / "config.json").read_text())
    assert resumed["corpus"] == config["corpus"] and resumed["train"]["steps"] == 7
    info = json.loads(run_in_process("info", out / "latest.safetensors", "--json", check_exit=0).stdout)
    assert info["text"] == expected_files and info["step"] == 7


def test_cli_mistakes_with_the_new_options_are_one_line(tmp_path):
    text = write(tmp_path / "train.txt", make_text(2000))
    val = write(tmp_path / "val.txt", "only Ωmega here")
    bad_val = run_in_process("train", text, "--val-file", val, *TINY_RUN[:-2], "--out", tmp_path / "a", check_exit=1)
    assert_one_error_line(bad_val.stderr, "val.txt", "not in the training text's vocabulary", "'Ω' (U+03A9)")
    both = run_in_process("train", text, "--val-file", text, "--val-frac", "0.2", "--out", tmp_path / "b", check_exit=2)
    assert_one_error_line(both.stderr, "--val-file", "--val-frac")
    escape = run_in_process("train", text, "--separator", "\\q", "--out", tmp_path / "c", check_exit=2)
    assert_one_error_line(escape.stderr, "--separator", "unknown escape")
    assert not (tmp_path / "a" / "latest.safetensors").exists()
