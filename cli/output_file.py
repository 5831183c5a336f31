"""`sample --out FILE`: where generated text is written, and what may be replaced by it.

    target = checked_output_file(path, overwrite)     # click.BadParameter before any work
    with replacing(target) as file:                    # a binary file; FILE changes only at the end
        file.write(...)

- The text goes to a temporary file beside FILE, renamed over it at the end (minigrad.files,
  the project's one atomic writer): a sample that fails halfway (a diverged checkpoint, an
  interruption) leaves FILE as it was, and no temporary file.
- FILE is replaced only if it is plain text, or missing: a checkpoint (`sample -o
  run/latest.safetensors`), or any file with NUL bytes or that is not UTF-8 (judged on its
  first bytes), is replaced only with --overwrite. Something that is not a regular file
  (a FIFO, a device, a folder) is never replaced.
- A link the user names is their own: its target is the file replaced, keeping its mode.
"""

import codecs
import contextlib
import os
import stat
from pathlib import Path

import click

# How much of an existing FILE is read to judge that it is plain text.
SNIFF_BYTES = 64 * 1024
OVERWRITE_FLAG = "--overwrite"


def _is_plain_text(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(SNIFF_BYTES)
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)  # a cut last character is fine
    except UnicodeDecodeError:
        return False
    return True


def checked_output_file(path, overwrite: bool, param_hint: str = "'--out' / '-o'") -> Path:
    """The file to write (a link named by the user resolved to its target), or click.BadParameter
    (one line, exit 2) if replacing it could destroy something that is not generated text."""
    target = Path(os.path.realpath(path))
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as error:
        raise click.BadParameter(f"cannot use {path}: {error.strerror or error}", param_hint=param_hint) from None
    if not stat.S_ISREG(status.st_mode):
        raise click.BadParameter(f"{path} is not a regular file: --out writes a file (without --out the text "
                                 f"is printed)", param_hint=param_hint)
    if overwrite:
        return target
    if target.suffix == ".safetensors":
        raise click.BadParameter(f"{path} is a checkpoint: refusing to replace it by text "
                                 f"(give {OVERWRITE_FLAG} if you mean it)", param_hint=param_hint)
    try:
        plain = _is_plain_text(target)
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror or error}", param_hint=param_hint) from None
    if not plain:
        raise click.BadParameter(f"{path} is not plain text: refusing to replace it "
                                 f"(give {OVERWRITE_FLAG} if you mean it)", param_hint=param_hint)
    return target


@contextlib.contextmanager
def replacing(target: Path):
    """A binary file whose content replaces `target` on a normal exit (see the module docstring)."""
    from minigrad.files import atomic_replacement

    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None  # a new file: the umask decides, as for any file created
    with atomic_replacement(target) as file:
        if mode is not None:
            os.fchmod(file.fileno(), mode)
        yield file
