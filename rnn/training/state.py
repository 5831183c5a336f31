"""TrainingState: what a checkpoint's `meta` holds so that a run can resume, saved and read back.

    meta = TrainingState(step=..., rng_state=mg.random.get_state(), ...).to_meta()
    state = TrainingState.from_meta(path, checkpoint.meta)    # checked: CheckpointError if bad

A checkpoint is not trusted, so from_meta checks every field resuming uses as strictly as
the loader checks the tensors: step (a count), rng_state (the shape of minigrad's generator
state), train_seconds (a finite number >= 0), the val losses (finite numbers or None), run_id
(a short printable string or None). Records only shown to the user (last_val_step,
best_step) are forgotten when unusable, and an unusable data_position makes the streams
start afresh. The carried hidden state travels as tensors beside it (`carried_state_arrays`,
`carried_state_from_arrays`).
What this module must not hold: the step loop (rnn.training.loop) or how files are written (rnn.checkpoint.format).
"""

from dataclasses import asdict, dataclass

import minigrad as mg

from rnn.checkpoint.header import CheckpointError
from rnn.checkpoint.values import MAX_COUNT, finite_number, is_count, shown

# The fields of a data position (rnn.data.batches.BatchStream.position) that must be counts.
POSITION_FIELDS = ("pass", "window", "batch_size", "seq_len", "train_chars")


@dataclass
class TrainingState:
    """A run's progress at a checkpoint (the field order is the order in the file's meta)."""

    step: int = 0
    epoch: float = 0.0  # passes over the training text (for readers: resuming uses data_position)
    train_seconds: float = 0.0  # wall time of training steps, over all resumed runs
    rng_state: dict = None  # minigrad's random generator
    data_position: dict = None  # rnn.data.batches.BatchStream.position; None: the streams start afresh
    train_config: dict = None  # TrainConfig.to_meta() of the run that saved it
    best_val_loss: float = None
    last_val_loss: float = None
    last_val_step: int = None  # the step last_val_loss was measured at
    best_step: int = None  # the step best_val_loss was measured at
    run_id: str = None
    corpus: dict = None  # rnn.data.corpus.Corpus.record(): the text's paths and fingerprint

    def to_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, path, meta: dict) -> "TrainingState":
        """The state a checkpoint's `meta` holds, checked; CheckpointError names the file and the field."""
        def bad(field, value, expected):
            return CheckpointError(f"{path} is corrupted (meta field {field} is {shown(value)}, not {expected})")

        if "step" not in meta or "rng_state" not in meta:
            raise CheckpointError(f"{path} holds no training state to resume from")
        if not is_count(meta["step"]):
            raise bad("step", meta["step"], f"an integer in [0, {MAX_COUNT}]")
        if not _same_shape_as(meta["rng_state"], mg.random.get_state()):
            raise bad("rng_state", meta["rng_state"], "the state of minigrad's random generator")
        seconds = meta.get("train_seconds")
        if seconds is not None and (finite_number(seconds) is None or seconds < 0):
            raise bad("train_seconds", seconds, "a finite number of seconds >= 0")
        losses = {}
        for key in ("best_val_loss", "last_val_loss"):
            value = meta.get(key)
            if value is not None and finite_number(value) is None:
                raise bad(key, value, "a finite number")
            losses[key] = None if value is None else float(value)
        run_id = meta.get("run_id")
        if run_id is not None and not (isinstance(run_id, str) and 0 < len(run_id) <= 64 and run_id.isprintable()):
            raise bad("run_id", run_id, "a run id")
        position = meta.get("data_position")
        usable = isinstance(position, dict) and all(is_count(position.get(key)) for key in POSITION_FIELDS)
        epoch = finite_number(meta.get("epoch"))
        return cls(step=meta["step"], epoch=epoch or 0.0, train_seconds=float(seconds or 0.0),
                   rng_state=meta["rng_state"], data_position=position if usable else None,
                   train_config=_dict_or_none(meta.get("train_config")), **losses,
                   # records for the summary: a bad one is forgotten
                   last_val_step=meta.get("last_val_step") if is_count(meta.get("last_val_step")) else None,
                   best_step=meta.get("best_step") if is_count(meta.get("best_step")) else None,
                   run_id=run_id, corpus=_dict_or_none(meta.get("corpus")))


def _dict_or_none(value):
    return value if isinstance(value, dict) else None


def _same_shape_as(value, template, bits: int = 128) -> bool:
    """Whether JSON `value` has the structure of `template` (keys, types), its ints in [0, 2**bits),
    its strings equal to the template's (e.g. the name of the generator)."""
    if isinstance(template, dict):
        return (isinstance(value, dict) and set(value) == set(template)
                and all(_same_shape_as(value[key], template[key], bits) for key in template))
    if isinstance(template, bool):
        return isinstance(value, bool)
    if isinstance(template, int):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** bits
    if isinstance(template, str):
        return value == template
    return False


def carried_state_arrays(model, state) -> dict:
    """The hidden state carried between windows as named arrays ("l0.h", "l0.c", ...), for a checkpoint."""
    if state is None:
        return {}
    names = model.rnn.cell.state
    return {f"l{k}.{name}": tensor.data for k, layer in enumerate(state) for name, tensor in zip(names, layer)}


def carried_state_from_arrays(model, batch_size: int, arrays: dict):
    """The carried hidden state back from carried_state_arrays() (None if there was none);
    ValueError if it does not fit `model` and `batch_size`."""
    if not arrays:
        return None
    template = model.initial_state(batch_size)
    names = model.rnn.cell.state
    state = []
    for k, layer in enumerate(template):
        tensors = []
        for name, zeros in zip(names, layer):
            array = arrays.get(f"l{k}.{name}")
            if array is None or array.shape != zeros.shape or array.dtype != zeros.dtype:
                raise ValueError("the carried state does not fit this model and batch size")
            tensors.append(mg.tensor(array))
        state.append(tuple(tensors))
    return state
