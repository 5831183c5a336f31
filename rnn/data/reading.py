"""The text a run names, read into a Corpus: files and folders, or the shipped tiny-shakespeare.

    corpus = read_corpus(["notes/", "extra.txt"], include=["*.md"], on_note=print)
    corpus = read_corpus([])          # the tiny-shakespeare text shipped in rnn/corpora

A folder stands for the files under it, listed by rnn.data.text's rules (hidden, empty and
binary files, links and files that are not regular are skipped: said in one Notice);
`include` and `exclude` select among them, and are refused when there is no folder to select in.
What this module must not hold: checking, reading or encoding one file (rnn.data.text,
rnn.data.ids), the corpus itself (rnn.data.corpus), printing (the caller's `on_note`).
"""

import importlib.resources
from pathlib import Path

import rnn.data.text as text_files  # its functions looked up at each call (a test replaces one)
from rnn.data.corpus import Corpus
from rnn.errors import ArgumentError, Setting, Notice


def shipped_corpus():
    """The tiny-shakespeare text shipped inside the package (rnn/corpora/tinyshakespeare.txt)."""
    return importlib.resources.files("rnn") / "corpora" / "tinyshakespeare.txt"


def read_corpus(texts=(), *, val_frac=0.1, separator="\n", val_file=None, include=(), exclude=(),
                on_note=None) -> Corpus:
    """The Corpus of `texts` (files and folders, read as one text in the order given, `separator`
    between two files; none: the shipped corpus), validated on `val_file` or the last `val_frac`.
    `on_note(Notice)` hears of a folder's skipped files. ArgumentError: `include` or `exclude`
    with no folder among `texts`; TextError: a text that cannot be read."""
    options = dict(val_frac=val_frac, separator=separator, val_file=val_file)
    if include or exclude:
        if not texts:
            raise ArgumentError(Setting("include"), " and ", Setting("exclude"), " select the files of a ",
                                Setting("texts"), " folder, and no ", Setting("texts"), " was given")
        if not any(Path(text).is_dir() for text in texts):
            raise ArgumentError(Setting("include"), " and ", Setting("exclude"), " select the files of a ",
                                Setting("texts"), " folder, and no folder was given")
    if not texts:
        with importlib.resources.as_file(shipped_corpus()) as path:
            return Corpus.from_files([path], **options)
    found = text_files.find_text_files(texts, include=include, exclude=exclude)
    if found.skipped and on_note is not None:
        on_note(Notice("note", text_files.describe_skipped(found.skipped), detail=True))
    return Corpus.from_files(found.files, listed=found.listed, **options)
