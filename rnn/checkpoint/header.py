"""A checkpoint's safetensors header, read and checked without loading the model or numpy:
its length, its tensor entries against the file, the program and format version, the JSON
fields of its metadata, and `read_meta` (which run a checkpoint belongs to).

Light on purpose: the run folder (rnn.runs.folder) reads checkpoints' meta when it takes a
lock, and must not load the engine for it. Loading a whole checkpoint is rnn.checkpoint.format.
"""

import json
import math
import os
from pathlib import Path

from rnn.errors import UserError
from rnn.runs.files import RunFileError, open_regular

FORMAT_VERSION = 1
PROGRAM = "minigrad-rnn"
# No real header comes near this; a larger declared length means "not a checkpoint".
MAX_HEADER_BYTES = 16 << 20

_SAFETENSORS_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2,
                       "I32": 4, "U32": 4, "I64": 8, "U64": 8, "BOOL": 1}


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be used (the message is one clear line)."""


def read_header(path: Path, follow: bool = True):
    """(the safetensors JSON header, (st_dev, st_ino) of the file read), after checking the
    header's length and entries against the file. `follow`: whether `path` may be a symbolic
    link (one the user typed, not a run folder's entry)."""
    not_safetensors = f"{path} is not a minigrad-rnn checkpoint (not a safetensors file)"
    try:
        # The path the user gave may be their own link; a FIFO or a device is refused unread.
        with os.fdopen(open_regular(path, follow=follow), "rb") as file:
            status = os.fstat(file.fileno())
            size = status.st_size
            if size < 8:
                raise CheckpointError(f"{path} is truncated or not a checkpoint ({size} bytes)")
            header_length = int.from_bytes(file.read(8), "little")
            if header_length < 2 or header_length > MAX_HEADER_BYTES:
                raise CheckpointError(not_safetensors)
            if header_length > size - 8:
                raise CheckpointError(f"{path} is truncated (its header alone should be {header_length} bytes)")
            raw = file.read(header_length)
    except RunFileError as error:
        raise CheckpointError(f"{path} is not a checkpoint file ({error})") from None
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror or error}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: hostile nesting ([[[[...)
        raise CheckpointError(not_safetensors) from None
    if not isinstance(header, dict):
        raise CheckpointError(not_safetensors)
    check_tensor_entries(path, header, data_size=size - 8 - header_length)
    return header, (status.st_dev, status.st_ino)


def check_tensor_entries(path: Path, header: dict, data_size: int) -> None:
    """Every tensor's dtype, shape and byte range must be sane and lie inside the file."""
    corrupted = f"{path} is corrupted (bad safetensors header)"
    end_of_data = 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(corrupted)
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in _SAFETENSORS_DTYPES:
            raise CheckpointError(corrupted)
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and o >= 0 for o in offsets)):
            raise CheckpointError(corrupted)
        begin, end = offsets
        if end - begin != math.prod(shape) * _SAFETENSORS_DTYPES[entry["dtype"]]:
            raise CheckpointError(corrupted)
        end_of_data = max(end_of_data, end)
    if end_of_data > data_size:
        raise CheckpointError(f"{path} is truncated ({data_size} bytes of tensor data, {end_of_data} expected)")
    if end_of_data < data_size:
        raise CheckpointError(f"{path} is corrupted ({data_size - end_of_data} unexpected bytes after the tensors)")


def check_program_and_version(path: Path, metadata: dict) -> int:
    if metadata.get("program") != PROGRAM:
        raise CheckpointError(f"{path} was not written by {PROGRAM} (a safetensors file from another program)")
    try:
        version = int(metadata.get("format_version"))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} is corrupted (bad format version)") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}, newer than this {PROGRAM} "
                              f"reads ({FORMAT_VERSION}): upgrade {PROGRAM}")
    if version < 1:
        raise CheckpointError(f"{path} is corrupted (format version {version})")
    return version


def json_field(path: Path, metadata: dict, key: str, expected_type):
    if key not in metadata:
        raise CheckpointError(f"{path} is corrupted (no {key} in its metadata)")
    try:
        value = json.loads(metadata[key])
    except (ValueError, RecursionError):  # RecursionError: hostile nesting ([[[[...)
        raise CheckpointError(f"{path} is corrupted ({key} is not valid JSON)") from None
    if not isinstance(value, expected_type):
        raise CheckpointError(f"{path} is corrupted ({key} is not a JSON {expected_type.__name__})")
    return value


def read_meta(path, *, follow: bool = True) -> dict:
    """A checkpoint's `meta`, from its checked header alone (no tensors read, no checksum):
    to tell which run a file belongs to, not to resume from it. `follow`: see
    rnn.checkpoint.format.load_checkpoint."""
    path = Path(path)
    metadata = read_header(path, follow)[0].get("__metadata__") or {}
    check_program_and_version(path, metadata)
    return json_field(path, metadata, "meta", dict)
