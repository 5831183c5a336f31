"""The one way this project replaces a file: write a temporary file beside it, then rename.

    write_atomically(path, data)              # bytes
    with atomic_replacement(path) as file:    # a binary file, read-write (np.memmap can map it)
        ...

The temporary file is created new (`O_CREAT | O_EXCL`, so never an existing file or a
link) in the target's folder, under a random name `.<name>.<random>.tmp`; when the block
ends it is flushed, fsynced (unless `durable=False`), and renamed over the target, and the
folder is fsynced. A rename replaces a link, it never writes through one; a reader sees the
old file or the new one, never half of one. Any exception (KeyboardInterrupt included)
removes the temporary file and leaves the target as it was.

`create` lets a caller open the temporary file its own way (rnn.runs.files adds its checks
for untrusted folders); it gets the path and returns a descriptor open for writing.
`durable=False` skips the fsyncs, for files that are checked when read and rebuilt when
wrong (caches, generated kernels): atomic still, but not worth a disk flush.
What this module must not hold: what the files contain, or any knowledge of rnn.
"""

import contextlib
import os
import secrets
from pathlib import Path

_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
          | getattr(os, "O_BINARY", 0))


def create_exclusive(path) -> int:
    """A read-write descriptor of a new file at `path` (never an existing file, never through a link)."""
    return os.open(path, _FLAGS, 0o666)


def temporary_name(path: Path) -> Path:
    """Where the new content of `path` is written before the rename (same folder, hidden, random)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"


@contextlib.contextmanager
def atomic_replacement(path, *, create=None, durable: bool = True):
    """Yield a binary file for the new content of `path`; on a normal exit it replaces `path`."""
    path = Path(path)
    temporary = temporary_name(path)
    descriptor = (create or create_exclusive)(temporary)
    try:
        with os.fdopen(descriptor, "w+b") as file:
            yield file
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # including KeyboardInterrupt: never leave a half-written temporary file
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if durable:
        fsync_folder(path.parent)


def write_atomically(path, data: bytes, *, create=None, durable: bool = True) -> None:
    """Replace `path` by `data` (see the module docstring)."""
    with atomic_replacement(path, create=create, durable=durable) as file:
        file.write(data)


def fsync_folder(folder) -> None:
    # Makes a rename durable; not possible on every platform (Windows), so best effort.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
