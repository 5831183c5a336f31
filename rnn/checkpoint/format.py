"""Checkpoints: a char-LM, its vocabulary and everything resuming needs, in one safetensors file.

Tensors:
- the model's parameters under their own names (`embedding.weight`, `rnn.weight_ih_l0`, ...,
  `head.bias`): the PyTorch module Embedding -> nn.LSTM -> Linear loads them as they are;
- `optimizer.<parameter name>.<state name>`: the optimizer's per-parameter arrays
  (e.g. `optimizer.head.bias.exp_avg`);
- `train_state.<name>`: extra arrays a caller asks to keep (the trainer's carried hidden state).

Metadata (safetensors allows only strings, so the values are JSON): `program`, `format_version`,
`model_config`, `vocab`, `optimizer` (its type, hyperparameters and scalar state such as step
counts), `meta` (the caller's dict: step, RNG state, data position, train config, val losses),
and `checksum`, a SHA-256 over all metadata and tensor bytes, so that corruption anywhere in
the file is caught.

Loading reads nothing but JSON and raw arrays: it never executes anything from the file, and
it checks the header's declared length against the file size before reading it, so a hostile
file cannot make it allocate unbounded memory; the file must be a regular file (a FIFO or a
device is refused before anything is read). The numbers that resuming reads from `meta` and
`optimizer` (steps, step counts, RNG state, times, losses, data position) are checked by
rnn.training.state and `_optimizer_state` as strictly as the tensors are. Every problem is a
`CheckpointError` with one line naming the file and the field.
Writing is atomic (rnn.runs.files.write_atomically, on minigrad.files: a new temporary file
beside it, fsync, rename, fsync the directory); an interrupted write leaves the previous checkpoint as it was.
"""

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as safetensors_bytes

import minigrad as mg

from rnn.cells.registry import CellError, get_cell, load_cell_file
from rnn.data.text import TextError
from rnn.data.vocab import Vocab
from rnn.errors import Setting
from rnn.model.charlm import DTYPES, CharLM, ModelConfig
from rnn.checkpoint.header import (FORMAT_VERSION, PROGRAM, CheckpointError, check_program_and_version,  # noqa: F401
                                   json_field, read_header, read_meta)
from rnn.checkpoint.values import finite_number, is_count, shown
from rnn.runs.files import RunFileError, write_atomically

OPTIMIZER_PREFIX = "optimizer."
TRAIN_STATE_PREFIX = "train_state."


@dataclass
class Checkpoint:
    path: Path
    model: CharLM  # weights loaded, in eval mode
    vocab: Vocab
    config: ModelConfig
    meta: dict
    optimizer_state: dict = None  # in the optimizer's state_dict() format, or None
    optimizer_name: str = None  # the optimizer's class name, e.g. "Adam"
    train_state: dict = field(default_factory=dict)  # the `extra_tensors` given to save_checkpoint
    format_version: int = FORMAT_VERSION


# ---- saving ---------------------------------------------------------------------------------

def _as_vocab(vocab) -> Vocab:
    if isinstance(vocab, Vocab):
        return vocab
    if isinstance(vocab, str):
        return Vocab.from_json(vocab)
    if isinstance(vocab, (list, tuple)):
        return Vocab(list(vocab))
    raise ValueError("save_checkpoint needs the vocabulary: pass vocab= or meta['vocab'] (a Vocab)")


def _checksum(metadata: dict, tensors: dict) -> str:
    """SHA-256 of every metadata entry but the checksum itself, and of every tensor."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != "checksum":
            digest.update(json.dumps([key, metadata[key]]).encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _split_optimizer_state(model, optimizer):
    """(tensors, json-able description) of the optimizer, keyed by parameter *name*, not index,
    so that the file says what each array belongs to."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    tensors, hyperparameters, scalars = {}, {}, {}
    for key, value in optimizer.state_dict().items():
        if not key.startswith("state."):
            hyperparameters[key] = value
            continue
        _, index, state_name = key.split(".", 2)
        parameter = optimizer.params[int(index)]
        if id(parameter) not in names:
            raise ValueError("the optimizer holds a parameter that is not part of the model")
        name = f"{names[id(parameter)]}.{state_name}"
        if isinstance(value, np.ndarray):
            tensors[OPTIMIZER_PREFIX + name] = value
        else:
            scalars[name] = value
    description = {"type": type(optimizer).__name__, "hyperparameters": hyperparameters, "scalars": scalars}
    return tensors, description


def save_checkpoint(path, model, optimizer=None, meta=None, *, vocab=None, extra_tensors=None):
    """Write `model` (and the optimizer state, and `meta`) to `path`, atomically.

    The vocabulary comes from `vocab=` or `meta["vocab"]` (a Vocab, a list of characters or
    its JSON). `meta` must be JSON-able (step, RNG state, data position, ...).
    `extra_tensors` (name -> array) are stored as `train_state.<name>`.
    """
    meta = dict(meta or {})
    vocab = _as_vocab(vocab if vocab is not None else meta.pop("vocab", None))
    meta.pop("vocab", None)
    config = model.config
    if len(vocab) != config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} characters, the model {config.vocab_size}")

    tensors = {name: np.ascontiguousarray(array) for name, array in model.state_dict().items()}
    metadata = {
        "program": PROGRAM,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(config.to_dict()),
        "vocab": vocab.to_json(),
        "meta": json.dumps(meta),
    }
    if optimizer is not None:
        optimizer_tensors, description = _split_optimizer_state(model, optimizer)
        tensors.update(optimizer_tensors)
        metadata["optimizer"] = json.dumps(description)
    for name, array in (extra_tensors or {}).items():
        tensors[TRAIN_STATE_PREFIX + name] = np.ascontiguousarray(array)
    metadata["checksum"] = _checksum(metadata, tensors)
    _atomic_write(Path(path), safetensors_bytes(tensors, metadata=metadata))
    return Path(path)


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except (OSError, RunFileError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None


# ---- loading --------------------------------------------------------------------------------

def _read_tensors(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="np") as file:
            return {name: file.get_tensor(name) for name in file.keys()}
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is corrupted ({type(error).__name__})") from None


def _model_config(path: Path, metadata: dict) -> ModelConfig:
    data = json_field(path, metadata, "model_config", dict)
    try:
        return ModelConfig.from_dict(data)
    except CellError:
        raise CheckpointError(f"{path} uses the cell {data.get('cell')!r}, which is not registered: "
                              f"load the file that defines it (", Setting("cell_file"), ")") from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from None


def _model_without_touching_the_rng(config: ModelConfig) -> CharLM:
    # Building a model draws initial weights from minigrad's generator; loading a checkpoint
    # must not change the random stream a caller is using, so the state is put back.
    saved = mg.random.get_state()
    try:
        return CharLM(config)
    finally:
        mg.random.set_state(saved)


def expected_model_shapes(config: ModelConfig) -> dict:
    """name -> shape of every parameter of CharLM(config), computed without building it."""
    cell = get_cell(config.cell)
    gates = len(cell.gates) * config.hidden
    shapes = {"embedding.weight": (config.vocab_size, config.embed)}
    for k in range(config.layers):
        fan_in = config.embed if k == 0 else config.hidden
        shapes.update({f"rnn.weight_ih_l{k}": (gates, fan_in), f"rnn.bias_ih_l{k}": (gates,)})
        if cell.recurrent_projection:  # (a cell without h.<gate> has no W_hh: rnn.model.layers)
            shapes.update({f"rnn.weight_hh_l{k}": (gates, config.hidden), f"rnn.bias_hh_l{k}": (gates,)})
    shapes.update({"head.weight": (config.vocab_size, config.hidden), "head.bias": (config.vocab_size,)})
    return shapes


def _check_model_tensors(path: Path, config: ModelConfig, tensors: dict) -> None:
    """Names, shapes and dtypes, checked before a model is built: a config that declares a
    huge model cannot make the loader allocate more than the file holds."""
    given = set(model_tensor_names(tensors))
    # Each layer has 4 tensors: a config declaring more layers than the file has tensors is
    # refused before the expected names are listed (a billion layers would exhaust memory).
    if config.layers > len(given):
        raise CheckpointError(f"{path} declares {config.layers} layers but holds only {len(given)} model tensors")
    expected = expected_model_shapes(config)
    missing, extra = sorted(set(expected) - given), sorted(given - set(expected))
    if missing:
        raise CheckpointError(f"{path} lacks the tensors {', '.join(missing)}")
    if extra:
        raise CheckpointError(f"{path} has unexpected tensors {', '.join(extra)}")
    dtype = np.dtype(DTYPES[config.dtype])
    for name, shape in expected.items():
        array = tensors[name]
        if array.shape != shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {array.shape}, the model needs {shape}")
        if array.dtype != dtype:
            raise CheckpointError(f"{path}: tensor {name} is {array.dtype}, the model needs {dtype}")


def _optimizer_state(path: Path, metadata: dict, model: CharLM, tensors: dict):
    """(name, state in the optimizer's state_dict format) or (None, None)."""
    arrays = {name[len(OPTIMIZER_PREFIX):]: array for name, array in tensors.items()
              if name.startswith(OPTIMIZER_PREFIX)}
    if "optimizer" not in metadata:
        if arrays:
            raise CheckpointError(f"{path} is corrupted (optimizer tensors without an optimizer description)")
        return None, None
    description = json_field(path, metadata, "optimizer", dict)
    hyperparameters, scalars = description.get("hyperparameters"), description.get("scalars")
    if not isinstance(description.get("type"), str) or not isinstance(hyperparameters, dict) \
            or not isinstance(scalars, dict):
        raise CheckpointError(f"{path} is corrupted (bad optimizer description)")
    for key, value in hyperparameters.items():
        if not isinstance(value, bool) and finite_number(value) is None:
            raise CheckpointError(f"{path} is corrupted (optimizer hyperparameter {key} is {shown(value)}, "
                                  f"not a finite number)")
    for key, value in scalars.items():  # step counts
        if not is_count(value):
            raise CheckpointError(f"{path} is corrupted (optimizer state {key} is {shown(value)}, "
                                  f"not a step count)")
    parameters = dict(model.named_parameters())
    index = {name: i for i, name in enumerate(parameters)}
    state = dict(hyperparameters)
    for key, value in list(arrays.items()) + list(scalars.items()):
        name, _, state_name = key.rpartition(".")
        if name not in index or not state_name:
            raise CheckpointError(f"{path} has optimizer state for an unknown parameter: {key}")
        if isinstance(value, np.ndarray) and (value.shape != parameters[name].shape
                                              or value.dtype != parameters[name].dtype):
            raise CheckpointError(f"{path}: optimizer tensor {key} does not match its parameter's shape or dtype")
        state[f"state.{index[name]}.{state_name}"] = value
    return description["type"], state


def _read_checked(path: Path, follow: bool):
    """(metadata, format version, tensors) of a checkpoint file whose header, program, version
    and checksum are checked; `follow`: see load_checkpoint."""
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"no such checkpoint: {path}")
    if follow and not path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint file")
    header, identity = read_header(path, follow)
    metadata = header.get("__metadata__") or {}
    version = check_program_and_version(path, metadata)
    tensors = _read_tensors(path)
    if not follow and _identity(path) != identity:  # swapped between the two reads
        raise CheckpointError(f"{path} changed while it was being read")
    if metadata.get("checksum") != _checksum(metadata, tensors):
        raise CheckpointError(f"{path} is corrupted (checksum mismatch)")
    return metadata, version, tensors


def load_checkpoint(path, cell_file=None, *, follow: bool = True) -> Checkpoint:
    """Read and check a checkpoint; the model comes back with its weights, in eval mode.

    `cell_file`: a Python file declaring the checkpoint's cell, when it is not a built-in one
    (the checkpoint itself holds no code, and none is ever run from it). `follow=False` for
    an entry of a run folder (latest.safetensors...): a symbolic link there is refused, as
    every reader of a run folder does (rnn.runs.files).
    """
    path = Path(path)
    metadata, version, tensors = _read_checked(path, follow)

    if cell_file is not None:
        load_cell_file(cell_file)
    config = _model_config(path, metadata)
    try:
        vocab = Vocab.from_json(metadata.get("vocab", ""))
    except TextError as error:
        raise CheckpointError(f"{path} has an invalid vocabulary: {error}") from None
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{path}: the vocabulary has {len(vocab)} characters but the embedding "
                              f"has {config.vocab_size} rows")
    meta = json_field(path, metadata, "meta", dict)

    _check_model_tensors(path, config, tensors)
    model = _model_without_touching_the_rng(config)
    model.load_state_dict({name: tensors[name] for name in model_tensor_names(tensors)})
    model.eval()
    optimizer_name, optimizer_state = _optimizer_state(path, metadata, model, tensors)
    train_state = {name[len(TRAIN_STATE_PREFIX):]: array for name, array in tensors.items()
                   if name.startswith(TRAIN_STATE_PREFIX)}
    return Checkpoint(path=path, model=model, vocab=vocab, config=config, meta=meta,
                      optimizer_state=optimizer_state, optimizer_name=optimizer_name,
                      train_state=train_state, format_version=version)


@dataclass
class CheckpointSummary:
    """What a checkpoint says about itself (`describe_checkpoint`), with no model built."""

    path: Path
    config: ModelConfig  # its cell may be one no loaded file declares (cell_registered False)
    cell_registered: bool
    vocab: Vocab
    meta: dict
    parameters: int  # elements of the model's tensors
    optimizer_name: str = None


def describe_checkpoint(path, *, follow: bool = True) -> CheckpointSummary:
    """A checkpoint's model config, vocabulary, size, optimizer and meta, checked as
    load_checkpoint checks them (checksum included) but without building the model: a
    checkpoint of a custom cell is described without its cell file (no code is run).
    `follow`: see load_checkpoint."""
    path = Path(path)
    metadata, _, tensors = _read_checked(path, follow)
    data = json_field(path, metadata, "model_config", dict)
    try:
        config = ModelConfig.from_dict(data, check_cell=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from None
    try:
        get_cell(config.cell)
        registered = True
    except CellError:
        registered = False
    if registered:
        _check_model_tensors(path, config, tensors)
    try:
        vocab = Vocab.from_json(metadata.get("vocab", ""))
    except TextError as error:
        raise CheckpointError(f"{path} has an invalid vocabulary: {error}") from None
    optimizer = json_field(path, metadata, "optimizer", dict) if "optimizer" in metadata else {}
    name = optimizer.get("type") if isinstance(optimizer.get("type"), str) else None
    parameters = sum(int(tensors[name_].size) for name_ in model_tensor_names(tensors))
    return CheckpointSummary(path=path, config=config, cell_registered=registered, vocab=vocab,
                             meta=json_field(path, metadata, "meta", dict), parameters=parameters,
                             optimizer_name=name)


def _identity(path: Path):
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def model_tensor_names(names) -> list:
    """The names among `names` that are model parameters (not optimizer or trainer state)."""
    return [name for name in names if not name.startswith((OPTIMIZER_PREFIX, TRAIN_STATE_PREFIX))]


__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointError", "CheckpointSummary", "describe_checkpoint",
           "load_checkpoint", "save_checkpoint",
           "model_tensor_names", "expected_model_shapes", "read_meta"]
