"""Text files: finding them in folders, checking them, and reading them as UTF-8 in chunks.

- `find_text_files`: the files a list of files and folders stands for, in reading order
  (include/exclude globs; hidden files, links, files that are not regular, empty files and
  binary files skipped inside a folder), with `describe_skipped` summing up what was left out.
- Reading: a file is checked (a regular, non-empty file, still the one its folder listed)
  and read in chunks of `CHUNK_BYTES`, never held whole as a Python string; a NUL byte or
  invalid UTF-8 is refused with its byte offset (and, for a stray byte, the command that
  converts a Latin-1 file).
- `TextError`: every problem with a text, with a one-line message.

What this module must not hold: vocabularies or ids (rnn.data.vocab, rnn.data.ids), anything
about models or training.
"""

import codecs
import fnmatch
import os
import stat as file_types
from dataclasses import dataclass, field
from pathlib import Path

from rnn.errors import UserError

# Files are read this many bytes at a time (both passes).
CHUNK_BYTES = 4 << 20

_UTF8_BOM = codecs.BOM_UTF8


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


# ---- the text files of a list of files and folders -----------------------------------------

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
