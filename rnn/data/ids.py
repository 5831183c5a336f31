"""A text file as ids in a vocabulary, read in two passes over its chunks.

A first pass collects the file's vocabulary and length, a second encodes it into an array.
Large files are encoded into a memory-mapped file in the user cache dir (`_IdsCache`),
reused while the file is unchanged. `encoded_chunks` gives a file's ids in a model's
vocabulary chunk by chunk (for evaluation), never holding the file whole; `encoded_array`
gathers them into one array of ids (for windows read at random places).

What this module must not hold: the corpus and its split (rnn.data.corpus), finding or
checking files (rnn.data.text), anything about models or training.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from minigrad.files import atomic_replacement, write_atomically

from rnn.data.text import TextError, _check_file, _chunks_of_text, _describe_chars
from rnn.data.vocab import _CODE_POINTS, UNKNOWN_POLICIES, Vocab, _code_points
from rnn.errors import Setting

# Files up to this size are encoded into an in-memory array; larger ones into a cached memmap.
IN_MEMORY_BYTES = 64 << 20
# Bumped when the cache layout changes, so that old cache entries are ignored.
CACHE_FORMAT = 1


def _scan_vocab(path: Path, expected: os.stat_result, follow: bool):
    """First pass: the set of code points and the number of characters."""
    seen = np.zeros(_CODE_POINTS, dtype=bool)
    count = 0
    for text in _chunks_of_text(path, expected, follow):
        seen[_code_points(text)] = True
        count += len(text)
    return Vocab.from_code_points(np.flatnonzero(seen)), count


def _encode_into(path: Path, vocab: Vocab, out: np.ndarray, expected: os.stat_result, follow: bool) -> None:
    """Second pass: the ids of the file's characters, written into `out`."""
    position = 0
    for text in _chunks_of_text(path, expected, follow):
        if position + len(text) > len(out):
            raise TextError(f"{path} changed while it was being read")
        out[position:position + len(text)] = vocab.encode(text)
        position += len(text)
    if position != len(out):
        raise TextError(f"{path} changed while it was being read")


def encoded_chunks(path, vocab: Vocab, unknown: str = "refuse"):
    """(number of characters, iterator over the ids in `vocab` of the text file `path`, one
    chunk of the file at a time): the file is never held whole. TextError for a file the
    checks refuse (empty, binary, not UTF-8, not a regular file), and, from a first pass
    before any id is given, for characters `vocab` lacks (each named, wherever they are),
    unless `unknown` is "skip": those are then left out of the ids (the count is the file's)."""
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
    path = Path(path)
    status = _check_file(path)  # a file the user named: their link followed
    own_vocab, count = _scan_vocab(path, status, True)
    missing = set(own_vocab.chars) - set(vocab.chars)
    if missing and unknown == "refuse":
        raise TextError(f"{path} has characters not in the model's vocabulary: {_describe_chars(missing, limit=5)} (",
                        Setting("unknown", "skip"), " leaves them out: neither predicted nor fed)")
    chunks = _chunks_of_text(path, status, True)
    if missing:
        chunks = (vocab.without_unknown(text) for text in chunks)
    return count, (vocab.encode(text) for text in chunks)


def encoded_array(path, vocab: Vocab, unknown: str = "refuse"):
    """(number of characters, ids in `vocab` of the text file `path` as one array): encoded_chunks'
    chunks gathered, with its checks and `unknown` policy. The text is never held whole as a
    string, only its ids, in the smallest integer type the vocabulary fits (2 bytes a character
    up to 65,536 characters): for a text that must be read at random places (windows)."""
    count, chunks = encoded_chunks(path, vocab, unknown)
    ids = np.empty(count, dtype=_ids_dtype(vocab))  # the file's characters: fewer once unknown ones are skipped
    filled = 0
    for chunk in chunks:
        if filled + len(chunk) > count:
            raise TextError(f"{path} changed while it was being read")
        ids[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    return count, ids[:filled]


def _ids_dtype(vocab: Vocab):
    return np.uint16 if len(vocab) <= np.iinfo(np.uint16).max + 1 else np.int32


# ---- the encoded-ids cache ------------------------------------------------------------------

class _IdsCache:
    """Encoded ids of one version of one file: `<path key>-<version key>.ids` (raw ids) and
    `.json` (what they are). Other versions of the same file are deleted when a new one is
    written, so the cache holds at most one entry per file."""

    def __init__(self, path: Path, stat: os.stat_result):
        # minigrad.kernel_cache is the one place that knows where caches live; imported here,
        # when a file's ids are cached, since importing it loads Numba (a lower layer: no cycle)
        from minigrad.kernel_cache import user_cache_dir

        self.directory = user_cache_dir() / "corpora"
        self.path_key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        version = f"{stat.st_size}:{stat.st_mtime_ns}".encode()
        stem = f"{self.path_key}-{hashlib.sha256(version).hexdigest()[:16]}"
        self.ids_path = self.directory / f"{stem}.ids"
        self.info_path = self.directory / f"{stem}.json"
        self.source = str(path.resolve())
        self.size, self.mtime_ns = stat.st_size, stat.st_mtime_ns

    def load(self):
        """(vocab, read-only memmap of ids), or None if there is no usable entry."""
        try:
            info = json.loads(self.info_path.read_text())
            if (info.get("format") != CACHE_FORMAT or info.get("source") != self.source
                    or info.get("size") != self.size or info.get("mtime_ns") != self.mtime_ns):
                return None
            vocab = Vocab(info["vocab"])
            dtype = np.dtype(info["dtype"])
            count = int(info["chars"])
            if dtype != _ids_dtype(vocab) or self.ids_path.stat().st_size != count * dtype.itemsize:
                return None
            return vocab, np.memmap(self.ids_path, dtype=dtype, mode="r", shape=(count,))
        except (OSError, ValueError, KeyError, TypeError, TextError):
            return None

    def build(self, path: Path, vocab: Vocab, count: int, expected: os.stat_result, follow: bool):
        """Encode the file into a new entry (written under temporary names, then renamed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        dtype = _ids_dtype(vocab)
        # Not fsynced (durable=False): an entry is checked against its info when read, and rebuilt.
        with atomic_replacement(self.ids_path, durable=False) as file:
            ids = np.memmap(file, dtype=dtype, mode="w+", shape=(count,))
            _encode_into(path, vocab, ids, expected, follow)
            ids.flush()
            del ids
        info = dict(format=CACHE_FORMAT, source=self.source, size=self.size, mtime_ns=self.mtime_ns,
                    chars=count, dtype=np.dtype(dtype).name, vocab=vocab.chars)
        write_atomically(self.info_path, json.dumps(info).encode("utf-8"), durable=False)
        self._remove_other_versions()
        return np.memmap(self.ids_path, dtype=dtype, mode="r", shape=(count,))

    def _remove_other_versions(self):
        for old in self.directory.glob(f"{self.path_key}-*"):
            if old not in (self.ids_path, self.info_path) and ".tmp" not in old.name:
                old.unlink(missing_ok=True)  # an open memmap of it stays valid (POSIX)


def _encode_file(path: Path, stat: os.stat_result, follow: bool = True):
    """(vocab, ids) of the file `stat` describes (see _open_checked): in memory when small, else
    through the cache."""
    if stat.st_size <= IN_MEMORY_BYTES:
        vocab, count = _scan_vocab(path, stat, follow)
        ids = np.empty(count, dtype=_ids_dtype(vocab))
        _encode_into(path, vocab, ids, stat, follow)
        return vocab, ids
    try:
        cache = _IdsCache(path, stat)
    except OSError:
        cache = None  # no writable cache dir: encode in memory
    cached = cache.load() if cache else None
    if cached:
        return cached
    vocab, count = _scan_vocab(path, stat, follow)
    if cache:
        try:
            return vocab, cache.build(path, vocab, count, stat, follow)
        except OSError:
            pass  # e.g. the disk is full: fall back to memory
    ids = np.empty(count, dtype=_ids_dtype(vocab))
    _encode_into(path, vocab, ids, stat, follow)
    return vocab, ids
