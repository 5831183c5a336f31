"""Text in, integer ids out: the vocabulary, the corpus with its validation split, and the
batches of truncated backpropagation through time.

- `Vocab`: the sorted set of the text's code points (deterministic); encode / decode.
- `Corpus`: a UTF-8 text split into `train_ids` and `val_ids` (the last `val_frac` of the
  characters, or a separate validation file in the training text's vocabulary). The text
  can be several files read as one (`find_text_files` lists a folder's), joined by a
  separator. A file is read in chunks and never held whole as a Python string: a first
  pass collects the vocabulary, a second encodes into an array. Large files are encoded
  into a memory-mapped file in the user cache dir, reused while the file is unchanged.
- `BatchStream`: B contiguous streams over the training ids, cut into windows of
  `seq_len`; the trainer carries the hidden state from one window to the next.

What this module must not hold: anything about models or training. Every problem with a
text is a `TextError` with a one-line message.
"""

import codecs
import collections
import fnmatch
import hashlib
import json
import os
import stat as file_types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minigrad.files import atomic_replacement, write_atomically

from .errors import Setting, UserError

# Files are read this many bytes at a time (both passes).
CHUNK_BYTES = 4 << 20
# Files up to this size are encoded into an in-memory array; larger ones into a cached memmap.
IN_MEMORY_BYTES = 64 << 20
# Bumped when the cache layout changes, so that old cache entries are ignored.
CACHE_FORMAT = 1
# A corpus's fingerprint hashes all its ids up to this many characters; a longer one is
# hashed in FINGERPRINT_BLOCKS evenly spaced blocks of FINGERPRINT_BLOCK_CHARS (a few ms).
FINGERPRINT_FULL_CHARS = 32 << 20
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK_CHARS = 256, 1 << 16

_UTF8_BOM = codecs.BOM_UTF8
_CODE_POINTS = 0x110000
_SURROGATES = range(0xD800, 0xE000)
# The most characters a vocabulary can hold: every code point but the surrogates.
MAX_VOCAB = _CODE_POINTS - len(_SURROGATES)


class TextError(UserError, ValueError):
    """A text file or a text that cannot be used (the message is one clear line)."""


class TextContentError(TextError):
    """A TextError whose message quotes what the file holds (a byte, characters): shown only for
    a file the user named, never for one a checkpoint named (see cli/train.py)."""


def _describe_chars(chars, limit=10) -> str:
    """'é' (U+00E9), 'ü' (U+00FC) ... : characters named so that invisible ones can be seen too."""
    chars = sorted(chars)
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def _code_points(text: str) -> np.ndarray:
    """The code points of `text` as a uint32 array (UTF-32 is one code point per 4 bytes)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


class Vocab:
    """A list of distinct characters; a character's id is its index in the list."""

    def __init__(self, chars):
        chars = list(chars)
        # Checked first: a vocabulary read from a file may be millions of entries long.
        if len(chars) > MAX_VOCAB:
            raise TextError(f"a vocabulary of {len(chars):,} entries is impossible: Unicode has "
                            f"{MAX_VOCAB:,} characters")
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TextError(f"a vocabulary entry must be one character, got {c!r}")
            if ord(c) in _SURROGATES:
                raise TextError(f"a vocabulary cannot hold the lone surrogate U+{ord(c):04X}")
        if len(set(chars)) != len(chars):  # counted in one pass: list.count per entry is quadratic
            repeated = [c for c, times in collections.Counter(chars).items() if times > 1]
            raise TextError(f"repeated characters in the vocabulary: {_describe_chars(repeated)}")
        if not chars:
            raise TextError("the vocabulary is empty")
        self.chars = chars
        # Sorted code points and where each one sits in `chars`: encoding is a binary search.
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(codes, kind="stable").astype(np.int32)
        self._sorted_codes = codes[self._order]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted set of code points of `text`."""
        if not text:
            raise TextError("cannot build a vocabulary from an empty text")
        return cls(sorted(set(text)))

    @classmethod
    def from_code_points(cls, code_points) -> "Vocab":
        return cls([chr(int(c)) for c in sorted(code_points)])

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self):
        return f"Vocab({len(self)} characters)"

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text` (int32); TextError naming any character not in the vocabulary."""
        return self.encode_code_points(_code_points(text))

    def encode_code_points(self, code_points: np.ndarray) -> np.ndarray:
        position = np.searchsorted(self._sorted_codes, code_points)
        np.minimum(position, len(self._sorted_codes) - 1, out=position)
        found = self._sorted_codes[position] == code_points
        if not found.all():
            unknown = {chr(int(c)) for c in np.unique(code_points[~found])}
            raise TextError(f"characters not in the vocabulary: {_describe_chars(unknown)}")
        return self._order[position]

    def unknown_chars(self, text: str) -> dict:
        """character -> how often it occurs in `text`, for the characters not in the vocabulary."""
        code_points = _code_points(text)
        position = np.minimum(np.searchsorted(self._sorted_codes, code_points), len(self._sorted_codes) - 1)
        missing, counts = np.unique(code_points[self._sorted_codes[position] != code_points], return_counts=True)
        return {chr(int(c)): int(n) for c, n in zip(missing, counts)}

    def without_unknown(self, text: str) -> str:
        """`text` without the characters that are not in the vocabulary."""
        unknown = self.unknown_chars(text)
        return "".join(c for c in text if c not in unknown) if unknown else text

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= len(self)):
            raise TextError(f"ids must be integers in [0, {len(self)}), got values outside that range")
        chars = self.chars
        return "".join([chars[i] for i in ids.tolist()])

    def to_json(self) -> str:
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        try:
            chars = json.loads(text)
        except (TypeError, ValueError, RecursionError) as error:  # RecursionError: hostile nesting
            raise TextError(f"the vocabulary is not valid JSON: {error}") from None
        if not isinstance(chars, list):
            raise TextError("the vocabulary JSON must be a list of characters")
        return cls(chars)


# What to do with the characters of a text that a model's vocabulary lacks (rnn.evaluate, rnn.sample):
# refuse the text, naming them, or skip them (neither predicted nor fed to the model).
UNKNOWN_POLICIES = ("refuse", "skip")


def apply_unknown_policy(vocab: Vocab, text: str, policy: str, what: str = "the text"):
    """(text to use, number of characters skipped): `text` itself under "refuse", where a
    character outside `vocab` is a TextError naming them and the option that skips them;
    under "skip", the text without those characters."""
    if policy not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {policy!r}")
    unknown = vocab.unknown_chars(text)
    if not unknown:
        return text, 0
    if policy == "refuse":
        count = sum(unknown.values())
        raise TextError(f"{what} has {count} character{'s' if count != 1 else ''} not in the model's vocabulary: "
                        f"{_describe_chars(unknown, limit=5)} (", Setting("unknown", "skip"),
                        " leaves them out: neither predicted nor fed)")
    return vocab.without_unknown(text), sum(unknown.values())


# ---- reading a UTF-8 file in chunks ---------------------------------------------------------

def _check_file(path: Path) -> os.stat_result:
    if not path.exists():
        raise TextError(f"no such file: {path}")
    if path.is_dir():
        raise TextError(f"{path} is a directory, not a text file")
    try:
        stat = path.stat()
    except OSError as error:
        raise TextError(f"cannot read {path}: {error.strerror}") from None
    if not file_types.S_ISREG(stat.st_mode):  # a FIFO would hang the reader, /dev/zero never ends
        raise TextError(f"{path} is not a regular file (a FIFO, a device or a socket), not a text file")
    if stat.st_size == 0:
        raise TextError(f"{path} is empty")
    return stat


def _check_listed(path: Path, listed: os.stat_result) -> os.stat_result:
    """The status of a file found in a folder, checked to be still the file listed (not since
    replaced by a link or another file): a folder is not followed out of, even in a race."""
    try:
        status = path.lstat()
    except OSError as error:
        raise TextError(f"cannot read {path}: {error.strerror or error}") from None
    if not _same_file(status, listed):
        raise TextError(f"{path} changed after its folder was listed (it is now a link or another file): "
                        f"refusing to read it")
    return status


def _same_file(status: os.stat_result, expected: os.stat_result) -> bool:
    return (file_types.S_ISREG(status.st_mode) and status.st_dev == expected.st_dev
            and status.st_ino == expected.st_ino)


def _open_checked(path: Path, expected: os.stat_result, follow: bool):
    """A binary file object of `path`, checked (fstat) to be the file `expected` describes; not
    through a link unless `follow` (a file the user named, not one found in a folder)."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if not follow and os.path.islink(path):
            raise TextError(f"{path} changed after its folder was listed (it is now a link): "
                            f"refusing to read it") from None
        raise
    file = os.fdopen(descriptor, "rb")
    if not _same_file(os.fstat(descriptor), expected):
        file.close()
        raise TextError(f"{path} changed while it was being read (it is now another file): refusing to read it")
    os.set_blocking(descriptor, True)
    return file


def _chunks_of_text(path: Path, expected: os.stat_result, follow: bool = True):
    """Yield the text of the file `expected` describes (see _open_checked) chunk by chunk,
    checking for binary data and invalid UTF-8.

    The incremental decoder keeps a multi-byte sequence cut by a chunk boundary for the
    next chunk, so the bytes it holds are counted when reporting an offset.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0  # byte offset in the file of the chunk being decoded
    try:
        with _open_checked(path, expected, follow) as file:
            while True:
                chunk = file.read(CHUNK_BYTES)
                at_end = not chunk
                if offset == 0 and chunk.startswith(_UTF8_BOM):
                    chunk, offset = chunk[len(_UTF8_BOM):], len(_UTF8_BOM)  # a BOM is not text
                nul = chunk.find(b"\0")
                if nul >= 0:
                    raise TextContentError(f"{path} looks binary (NUL byte at byte offset {offset + nul}), "
                                           f"not UTF-8 text")
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(chunk, final=at_end)
                except UnicodeDecodeError as error:
                    at = offset - pending + error.start
                    if at_end:
                        raise TextContentError(f"{path} is not valid UTF-8: it ends inside a multi-byte character "
                                        f"(byte offset {at})") from None
                    bad = error.object[error.start]
                    raise TextContentError(f"{path} is not valid UTF-8: byte 0x{bad:02x} at byte offset {at} "
                                           f"(if it is Latin-1, convert it: {_conversion_command(path)})") from None
                if text:
                    yield text
                if at_end:
                    return
                offset += len(chunk)
    except OSError as error:
        raise TextError(f"cannot read {path}: {error.strerror or error}") from None


def _conversion_command(path: Path) -> str:
    """The shell command that converts a Latin-1 file to UTF-8 beside it (the commonest non-UTF-8 text)."""
    import shlex

    return f"iconv -f latin1 -t utf-8 {shlex.quote(str(path))} > {shlex.quote(str(path) + '.utf8')}"


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


def _ids_dtype(vocab: Vocab):
    return np.uint16 if len(vocab) <= np.iinfo(np.uint16).max + 1 else np.int32


# ---- the encoded-ids cache ------------------------------------------------------------------

class _IdsCache:
    """Encoded ids of one version of one file: `<path key>-<version key>.ids` (raw ids) and
    `.json` (what they are). Other versions of the same file are deleted when a new one is
    written, so the cache holds at most one entry per file."""

    def __init__(self, path: Path, stat: os.stat_result):
        from minigrad.kernel_cache import user_cache_dir  # the one place that knows where caches live

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

# A file found in a folder is binary, and skipped, if a NUL byte is among its first bytes (as git
# and grep tell): text in UTF-8 never holds one, compiled and image files almost always do early.
BINARY_SNIFF_BYTES = 8192


@dataclass
class TextFiles:
    """The files a list of TEXT arguments stands for, in reading order, and what was left out
    (as (path, reason) pairs, for a note to the user; `describe_skipped` sums them up)."""

    files: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    listed: dict = field(default_factory=dict)  # file found in a folder -> its lstat when listed


def find_text_files(paths, include=(), exclude=()) -> TextFiles:
    """Files in the order given; a folder stands for the files under it (recursively),
    sorted by their path inside it, code point by code point (the same on every machine).

    A file named on the command line is the user's choice: it must be a regular file
    (a link to one is followed), or it is a TextError; an empty one is skipped, as in a
    folder (it adds nothing), unless nothing else is left. Inside a folder, what a reader
    would not count as the corpus is skipped: hidden files and folders (a leading dot:
    .git, .DS_Store), links (not followed, like tar and git: nothing outside the folder
    is read, no cycles, no file twice), files that are not regular (FIFOs, sockets,
    devices: never opened, so nothing hangs), empty files and binary files (a NUL byte in
    the first BINARY_SNIFF_BYTES: __pycache__/*.pyc, images). `include` and `exclude` are
    glob patterns (fnmatch: `*` matches `/` too) on a folder's files, matched against the
    path inside the folder and against the file name: with `include`, only files matching
    one of them are read; a file matching one of `exclude` is not. A file named twice is
    read once. A named file that is not UTF-8 text is refused when read, and so is a
    folder's file that is not UTF-8 beyond its first bytes: a corpus must not silently
    lose a file.
    """
    found, seen = TextFiles(), set()

    def add(path: Path, shown: Path, listed=None):
        resolved = path.resolve()
        if resolved in seen:
            found.skipped.append((shown, "already included"))
        else:
            seen.add(resolved)
            found.files.append(resolved)
            if listed is not None:
                found.listed[resolved] = listed

    for given in map(Path, paths):
        try:
            info = given.stat()  # follows a link the user named
        except OSError:
            raise TextError(f"no such file or folder: {given}") from None
        if file_types.S_ISDIR(info.st_mode):
            entries = _files_in_folder(given, include, exclude)
            if all(reason is not None for _, reason, _ in entries):
                raise TextError(f"{given} holds no text files to read"
                                + (f" ({describe_skipped([(path, reason) for path, reason, _ in entries])})"
                                   if entries else ""))
            for path, reason, listed in entries:
                if reason is None:
                    add(path, path, listed)
                else:
                    found.skipped.append((path, reason))
        elif file_types.S_ISREG(info.st_mode):
            if info.st_size == 0:
                found.skipped.append((given, "empty"))
            else:
                add(given, given)
        else:
            raise TextError(f"{given} is not a regular file")
    if not found.files:  # only empty files were named (a folder with nothing to read is refused above)
        if len(found.skipped) == 1:
            raise TextError(f"{found.skipped[0][0]} is empty")
        raise TextError(f"no text to read: {describe_skipped(found.skipped)} ({found.skipped[0][0]}, ...)")
    return found


# How describe_skipped names a reason of _why_skip's when it counts several.
_SKIP_KINDS = {"a link (not followed)": "links (not followed)", "not a regular file": "not regular files",
               "already included": "named twice"}


def describe_skipped(skipped) -> str:
    """One line summing up (path, reason) pairs by kind, most frequent first, binary files
    with their suffixes: "skipped 14 files: 12 binary (.pyc), 2 empty"."""
    from collections import Counter

    kinds = Counter(_SKIP_KINDS.get(reason, reason) for _, reason in skipped)
    suffixes = Counter(path.suffix or path.name for path, reason in skipped if reason == "binary")
    parts = []
    for kind, count in kinds.most_common():
        if kind == "binary":
            shown = ", ".join(suffix for suffix, _ in suffixes.most_common(3))
            kind += f" ({shown}{', ...' if len(suffixes) > 3 else ''})"
        parts.append(f"{count} {kind}")
    total = len(skipped)
    return f"skipped {total} file{'s' if total != 1 else ''}: " + ", ".join(parts)


def _files_in_folder(folder: Path, include=(), exclude=()):
    """(path, None, its lstat) for each file to read under `folder`, (path, reason, None) for
    each one skipped (hidden, left out by `include`/`exclude`, or see _why_skip)."""
    entries = []
    for directory, folders, files in os.walk(folder, followlinks=False, onerror=_raise_text_error):
        directory = Path(directory)
        for name in list(folders):
            path = directory / name
            if name.startswith("."):
                entries.append((path, "hidden", None))
            elif path.is_symlink():  # os.walk does not descend into it
                entries.append((path, "a link (not followed)", None))
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in files:
            path = directory / name
            if name.startswith("."):
                entries.append((path, "hidden", None))
            elif not _selected(path.relative_to(folder), include, exclude):
                entries.append((path, "left out by include/exclude", None))
            else:
                entries.append((path, *_why_skip(path)))
    entries.sort(key=lambda entry: entry[0].relative_to(folder).parts)
    return entries


def _selected(relative: Path, include, exclude) -> bool:
    """Whether a folder's file (its path inside the folder) is chosen by the include/exclude globs."""
    def matches(patterns):
        return any(fnmatch.fnmatchcase(relative.as_posix(), pattern) or fnmatch.fnmatchcase(relative.name, pattern)
                   for pattern in patterns)

    return (not include or matches(include)) and not matches(exclude)


def _why_skip(path: Path):
    """(None, its lstat) if the file found in a folder is to be read, else (why not, None)."""
    try:
        info = path.lstat()
    except OSError as error:
        return f"cannot read it: {error.strerror or error}", None
    if file_types.S_ISLNK(info.st_mode):
        return "a link (not followed)", None
    if not file_types.S_ISREG(info.st_mode):
        return "not a regular file", None
    if info.st_size == 0:
        return "empty", None
    try:
        # A regular file (lstat said so; opened without following a link): a few bytes cannot hang.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with open(descriptor, "rb") as file:
            if b"\0" in file.read(BINARY_SNIFF_BYTES):
                return "binary", None
    except OSError as error:
        return f"cannot read it: {error.strerror or error}", None
    return None, info


def _raise_text_error(error: OSError):
    raise TextError(f"cannot read the folder {error.filename}: {error.strerror or error}")


def _status(path: Path, listed):
    """(status, follow) of a file to read: one found in a folder (in `listed`) as it was listed
    and not through a link, one the user named as it is now (their link followed)."""
    if listed and path in listed:
        return _check_listed(path, listed[path]), False
    return _check_file(path), True


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


# ---- batches for truncated BPTT --------------------------------------------------------------

class BatchStream:
    """B contiguous streams over `ids`, read window after window of `seq_len` characters.

    Stream b is the b-th of B equal slices of the ids, so row b of one batch continues
    row b of the previous batch: the hidden state carried across windows is meaningful.
    Targets are the inputs shifted by one character. After the last full window the
    streams wrap around to their start; the batch returned then has `wrapped` True,
    and the carried state must be reset (it belongs to the end of the streams).
    """

    def __init__(self, ids, batch_size: int, seq_len: int):
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.total_chars = len(ids)
        stream_length = self.total_chars // self.batch_size
        if stream_length < self.seq_len + 1:
            fitting = self.total_chars // (self.seq_len + 1)  # the most streams of one window each
            fix = (("try ", Setting("batch_size", fitting), " or less, or a longer text") if fitting
                   else ("try ", Setting("seq_len", self.total_chars - 1), " or less, or a longer text"))
            raise TextError(f"the training text is too short: {self.total_chars} characters cannot make "
                            f"{self.batch_size} streams of seq_len + 1 = {self.seq_len + 1} characters (", *fix, ")")
        self._streams = ids[:self.batch_size * stream_length].reshape(self.batch_size, stream_length)
        # The remainder (< seq_len characters per stream) is skipped: every window has the same shape.
        self.windows_per_pass = (stream_length - 1) // self.seq_len
        self._pass = 0  # completed passes over the streams
        self._window = 0  # index of the next window in this pass
        self.wrapped = False

    def next_batch(self):
        """(inputs, targets), each (batch_size, seq_len) int64."""
        self.wrapped = False
        if self._window == self.windows_per_pass:
            self._pass, self._window, self.wrapped = self._pass + 1, 0, True
        start = self._window * self.seq_len
        block = np.asarray(self._streams[:, start:start + self.seq_len + 1], dtype=np.int64)
        self._window += 1
        return np.ascontiguousarray(block[:, :-1]), np.ascontiguousarray(block[:, 1:])

    @property
    def epoch(self) -> float:
        """Passes over the training data so far (a fraction: 1.5 = one and a half)."""
        return self._pass + self._window / self.windows_per_pass

    @property
    def position(self) -> dict:
        """Where the next batch comes from, as JSON-able numbers (for checkpoints)."""
        return {"pass": self._pass, "window": self._window, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "train_chars": self.total_chars}

    def set_position(self, position: dict) -> None:
        """Continue from `position` (from `.position` of a stream over the same data and shape)."""
        if not isinstance(position, dict):
            raise ValueError(f"a data position must be a dict, got {type(position).__name__}")
        shape = {"batch_size": self.batch_size, "seq_len": self.seq_len, "train_chars": self.total_chars}
        for key, expected in shape.items():
            if position.get(key) != expected:
                raise ValueError(f"the data position is for {key}={position.get(key)!r}, this stream has {expected}")
        done, window = position.get("pass"), position.get("window")
        if not (isinstance(done, int) and isinstance(window, int) and done >= 0
                and 0 <= window <= self.windows_per_pass):
            raise ValueError(f"invalid data position: pass={done!r}, window={window!r}")
        self._pass, self._window, self.wrapped = done, window, False
