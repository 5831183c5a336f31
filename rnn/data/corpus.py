"""The corpus: a text's vocabulary and ids, split into training and validation ids.

- `Corpus`: a UTF-8 text split into `train_ids` and `val_ids` (the last `val_frac` of the
  characters, or a separate validation file in the training text's vocabulary). The text
  can be several files read as one (rnn.data.text.find_text_files lists a folder's),
  joined by a separator. `record` and `fingerprint` say what was read, so that a resumed
  run can tell that a file of the same name holds another text.

What this module must not hold: reading or encoding a file (rnn.data.text, rnn.data.ids),
batches (rnn.data.batches), anything about models or training. Every problem with a text
is a `TextError` with a one-line message.
"""

import hashlib
from pathlib import Path

import numpy as np

from rnn.data.ids import _encode_file, _ids_dtype
from rnn.data.text import TextContentError, TextError, _check_file, _describe_chars, _status
from rnn.data.vocab import Vocab

# A corpus's fingerprint hashes all its ids up to this many characters; a longer one is
# hashed in FINGERPRINT_BLOCKS evenly spaced blocks of FINGERPRINT_BLOCK_CHARS (a few ms).
FINGERPRINT_FULL_CHARS = 32 << 20
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK_CHARS = 256, 1 << 16


class Corpus:
    """A text's vocabulary and ids, split into training ids and the last `val_frac` as
    validation ids (1-D integer arrays; a memmap for large files). Given `val_ids` (a
    separate validation text in the same vocabulary), all of `ids` is for training.

    `path` is the file read (None for a text given as a string or several files); `files`
    lists every file read, in order, `separator` what joined them, `val_file` the
    validation file if there is one."""

    def __init__(self, vocab: Vocab, ids: np.ndarray, val_frac: float, path=None, val_ids=None):
        total = len(ids)
        where = f"{path}" if path is not None else "the text"
        if val_ids is not None:
            if total < 2 or len(val_ids) < 2:
                which = "the training text" if total < 2 else "the validation text"
                raise TextError(f"{which} is too short: it needs at least 2 characters")
            val_chars, val_frac = 0, None
        else:
            if not isinstance(val_frac, (int, float)) or not 0.0 < val_frac < 1.0:
                raise ValueError(f"val_frac must be between 0 and 1 (exclusive), got {val_frac!r}")
            val_chars = int(round(total * val_frac))
            if val_chars < 2 or total - val_chars < 2:
                raise TextError(f"{where} is too short: {total} characters cannot be split into training and "
                                f"validation parts of at least 2 characters each (val_frac={val_frac})")
        self.vocab = vocab
        self.path = path
        self.files = [Path(path)] if path is not None else []
        self.separator = None
        self.val_file = None
        self.ids = ids
        self.train_ids = ids[:total - val_chars]
        self.val_ids = ids[total - val_chars:] if val_ids is None else val_ids
        self.val_frac = val_frac

    @classmethod
    def from_text(cls, text: str, val_frac=0.1) -> "Corpus":
        if not isinstance(text, str) or not text:
            raise TextError("the text is empty")
        vocab = Vocab.from_text(text)
        return cls(vocab, vocab.encode(text), val_frac)

    @classmethod
    def from_file(cls, path, val_frac=0.1) -> "Corpus":
        return cls.from_files([path], val_frac=val_frac)

    @classmethod
    def from_files(cls, paths, val_frac=0.1, separator="\n", val_file=None, listed=None) -> "Corpus":
        """The files read as one text, in the order given, with `separator` between two
        files; validated on `val_file` (characters of the training text only) if given,
        else on the last `val_frac` of that text. `listed` (TextFiles.listed): the files found
        in folders, each read only if it is still the file listed, never through a link."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise TextError("no text files to read")
        if not isinstance(separator, str):
            raise TypeError(f"separator must be a str, got {type(separator).__name__}")
        if len(paths) == 1:
            vocab, ids = _encode_file(paths[0], *_status(paths[0], listed))
            if len(ids) == 0:
                raise TextError(f"{paths[0]} is empty")
        else:
            vocab, ids = _join_files(paths, separator, listed)
        val_ids = _encode_in_vocab(Path(val_file), vocab) if val_file is not None else None
        corpus = cls(vocab, ids, val_frac, path=paths[0] if len(paths) == 1 else None, val_ids=val_ids)
        corpus.files = paths
        corpus.separator = separator if len(paths) > 1 else None
        corpus.val_file = Path(val_file) if val_file is not None else None
        return corpus

    def record(self) -> dict:
        """What was read, for config.json and checkpoints (JSON-able)."""
        def resolved(path):  # so that a run resumes on the same files from any folder
            return str(Path(path).resolve()) if path is not None else None

        return {"path": resolved(self.path), "files": [resolved(path) for path in self.files],
                "separator": self.separator, "val_file": resolved(self.val_file),
                "train_chars": len(self.train_ids), "val_chars": len(self.val_ids),
                "val_ids_sha256": _ids_digest(self.val_ids), **self.fingerprint()}

    def fingerprint(self) -> dict:
        """What identifies this text, whatever its path: {"chars", "vocab_sha256", "ids_sha256"}
        (so that a resumed run can tell that a file of the same name holds another text)."""
        return {"chars": len(self.ids), "vocab_sha256": hashlib.sha256(self.vocab.to_json().encode()).hexdigest(),
                "ids_sha256": _ids_digest(self.ids)}

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return (f"Corpus({self.path or 'text'}: {len(self.ids)} characters, vocab {len(self.vocab)}, "
                f"train {len(self.train_ids)}, val {len(self.val_ids)})")


def _ids_digest(ids) -> str:
    """sha256 of the ids, whole up to FINGERPRINT_FULL_CHARS, else of evenly spaced blocks."""
    if len(ids) <= FINGERPRINT_FULL_CHARS:
        starts = range(0, len(ids), FINGERPRINT_BLOCK_CHARS)
    else:
        last = len(ids) - FINGERPRINT_BLOCK_CHARS
        starts = (round(k * last / (FINGERPRINT_BLOCKS - 1)) for k in range(FINGERPRINT_BLOCKS))
    digest = hashlib.sha256()
    for start in starts:  # as little-endian uint32, whichever dtype holds the ids
        digest.update(np.asarray(ids[start:start + FINGERPRINT_BLOCK_CHARS], dtype="<u4").tobytes())
    return digest.hexdigest()


# ---- corpora of several files, and a separate validation file ---------------------------------

def _join_files(paths, separator: str, listed=None):
    """(vocab, ids) of the files read one after the other with `separator` between them."""
    parts = []
    for path in paths:
        vocab, ids = _encode_file(path, *_status(path, listed))
        parts.append((vocab, ids))
    characters = set(separator).union(*(vocab.chars for vocab, _ in parts))
    vocab = Vocab(sorted(characters))
    dtype = _ids_dtype(vocab)
    between = vocab.encode(separator).astype(dtype)
    ids = np.empty(sum(len(part) for _, part in parts) + len(between) * (len(parts) - 1), dtype)
    position = 0
    for index, (part_vocab, part) in enumerate(parts):
        if index:
            ids[position:position + len(between)] = between
            position += len(between)
        # The part's ids are in its own vocabulary: map them through a table into the joint one.
        table = vocab.encode("".join(part_vocab.chars)).astype(dtype)
        ids[position:position + len(part)] = table[np.asarray(part)]
        position += len(part)
    return vocab, ids


def _encode_in_vocab(path: Path, vocab: Vocab) -> np.ndarray:
    """The ids of a file in `vocab` (a training text's); TextError naming the first few
    characters of the file that `vocab` lacks."""
    own_vocab, own_ids = _encode_file(path, _check_file(path))  # a file the user named: their link followed
    missing = set(own_vocab.chars) - set(vocab.chars)
    if missing:
        raise TextContentError(f"{path} has {len(missing)} character(s) that are not in the training text's "
                               f"vocabulary: {_describe_chars(missing, limit=5)}")
    table = vocab.encode("".join(own_vocab.chars)).astype(_ids_dtype(vocab))
    return table[np.asarray(own_ids)]
