"""Safe file primitives for a run folder: what training writes there and what it and `plot` read.

A run folder is not trusted (someone else may have planted entries in it, or copied it from
elsewhere), so every file the product opens inside it is opened by one of these functions:

- an entry is named by one path component (no separator, no `..`): nothing lands outside;
- an entry that is a symbolic link, a FIFO, a device or a folder is refused with one line
  (`O_NOFOLLOW`, then `fstat`): a planted `train.lock -> ~/notes.txt` is never truncated,
  a dangling `metrics.jsonl` link never creates a file elsewhere; an entry opened for
  writing must also have one name only (`st_nlink` 1): a hard link to a file outside the
  folder is refused, not written through;
- reads open with `O_NONBLOCK` and check `S_ISREG` before reading, and read at most a
  bound: a FIFO cannot hang a command, a link to /dev/zero cannot fill memory;
- replacing writes go through minigrad.files (the project's one atomic writer): a new
  temporary file (`O_CREAT | O_EXCL | O_NOFOLLOW`, opened here) in the same folder, fsynced
  and renamed over the entry (a rename replaces a link, it never writes through one), then
  the folder is fsynced.

The folder itself is the user's `--out` (or the folder of the checkpoint they named): that
path may be, or pass through, a symbolic link, and it is followed, as git follows a work
tree reached through a link the user made; what lies inside the folder is never followed
out of it. (Re-pointing the user's own link mid-run needs write access to a folder of the
user's, which is beyond what a run folder's contents can do.)

What this module must not hold: what the files contain (runs.py, train.py, checkpoint.py).
"""

import errno
import os
import secrets
import stat
from pathlib import Path

from rnn.errors import UserError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class RunFileError(UserError, ValueError):
    """A run-folder entry that must not be used (a link, not a regular file, too big); one line."""


def entry(folder, name: str) -> Path:
    """`folder/name`, for a `name` that is one plain path component (so it stays inside `folder`)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or os.sep in name
            or (os.altsep and os.altsep in name) or "\0" in name):
        raise RunFileError(f"{name!r} is not a plain file name inside the run folder {folder}")
    return Path(folder) / name


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refusal(path, mode: int) -> RunFileError:
    return RunFileError(f"{path} is {_kind(mode)}, not a regular file: refusing to use it "
                        f"(move it away, or choose another run folder)")


def exists(path) -> bool:
    """Whether the entry exists; raises RunFileError if it exists and is not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise _refusal(path, mode)
    return True


def check_entries(folder, names) -> None:
    """Refuse (one line) a run folder in which any of `names` is a link or not a regular file."""
    for name in names:
        exists(entry(folder, name))


def _lstat_mode(path):
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _open(path, flags: int, follow: bool, mode: int = 0o666) -> int:
    """os.open with O_NOFOLLOW (unless `follow`) and O_NONBLOCK, then checked to be a regular file."""
    flags |= _NONBLOCK | _CLOEXEC | _BINARY | (0 if follow else _NOFOLLOW)
    try:
        descriptor = os.open(path, flags, mode)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            raise RunFileError(f"{path} is a symbolic link: refusing to follow it out of the run folder") from None
        if error.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO without a reader; a folder
            mode_of_entry = _lstat_mode(path)
            if mode_of_entry is not None and not stat.S_ISREG(mode_of_entry):
                raise _refusal(path, mode_of_entry) from None
        raise
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _refusal(path, status.st_mode)
        if flags & (os.O_WRONLY | os.O_RDWR) and status.st_nlink != 1:
            # a hard link: the same file is also outside the folder, and would be written there
            raise RunFileError(f"{path} is a hard link ({status.st_nlink} names for one file): refusing to "
                               f"write through it (move it away, or choose another run folder)")
        if _NONBLOCK:  # only there so that opening a FIFO could not block; regular files ignore it
            os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def open_regular(path, *, follow: bool = False) -> int:
    """A read-only descriptor of the regular file `path` (RunFileError for anything else).
    `follow=True` for a path the user typed (their own link is theirs to use)."""
    return _open(path, os.O_RDONLY, follow)


def read_bytes(path, max_bytes: int, *, follow: bool = False, what: str = "file") -> bytes:
    """The bytes of the regular file `path`, refused (one line) if it holds more than `max_bytes`."""
    descriptor = open_regular(path, follow=follow)
    with os.fdopen(descriptor, "rb") as file:
        if os.fstat(file.fileno()).st_size > max_bytes:
            raise RunFileError(f"{path} is too large for a {what} (over {max_bytes >> 20} MB)")
        data = file.read(max_bytes + 1)  # the size may grow while we read: still bounded
    if len(data) > max_bytes:
        raise RunFileError(f"{path} is too large for a {what} (over {max_bytes >> 20} MB)")
    return data


def open_for_appending(path):
    """A text file object appending to the regular file `path` (created if missing), UTF-8."""
    descriptor = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow=False)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def open_for_update(path):
    """A text file object for reading and writing the regular file `path` (created if missing)."""
    descriptor = _open(path, os.O_RDWR | os.O_CREAT, follow=False)
    return os.fdopen(descriptor, "r+", encoding="utf-8")


def create_new(path) -> int:
    """A read-write descriptor of a file that did not exist (O_EXCL: never an existing file or link)."""
    return _open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, follow=False)


def write_atomically(path, data: bytes) -> None:
    """Replace `path` by `data` with minigrad.files' one atomic writer, its temporary file
    created by create_new (a plain name inside the folder, O_EXCL, no link, a regular file).
    An interruption at any point leaves the previous file as it was (and no temporary file)."""
    path = Path(path)
    # Imported here, not at the top: `import minigrad` loads the engine (Numba), which taking a
    # lock or reading config.json must not (tests/test_layering.py).
    from minigrad import files

    entry(path.parent, path.name)  # one plain component: the temporary file stays beside it
    files.write_atomically(path, data, create=create_new)


def remove_temporaries(folder, names) -> None:
    """Remove `.<name>.*tmp*` left by a killed write of one of `names` (unlink removes a link
    itself, never its target)."""
    for name in names:
        for leftover in Path(folder).glob(f".{name}.*tmp*"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass


def prepare_folder(folder) -> Path:
    """Create the run folder if needed and check that a file can be created in it (OSError with
    one line if not). A link given as the folder is the user's own, and is followed."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = entry(folder, f".write-test-{secrets.token_hex(6)}")
        os.close(create_new(probe))
        os.unlink(probe)
    except OSError as error:
        raise OSError(f"cannot write to the output directory {folder}: {error.strerror or error}") from None
    return folder
