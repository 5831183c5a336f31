"""TrainConfig: every setting of a training run, its defaults, its checks, and its record.

    config = TrainConfig(steps=2000, hidden=512).validate()
    config.to_meta()                          # the dict config.json and the checkpoints hold
    TrainConfig.from_meta(record, steps=10)   # back from such a record (untrusted), with overrides

Also the choice lists of the settings (OPTIMIZERS, SCHEDULES, DTYPE_NAMES, ENGINES, and the
X_AXES of a run's curves), which the CLI's options offer as they are. This module is light
on purpose: it imports neither numpy nor minigrad, so that `minigrad-rnn train --help` can
read the defaults and choices from here without loading the engine.
What this module must not hold: the training itself (rnn.training.loop), building models or
optimizers (rnn.training.resume, rnn.training.optimizers), or command-line flags (the CLI's).
"""

import math
import numbers
from dataclasses import MISSING, asdict, dataclass, fields, replace

from rnn.errors import ConfigError, Setting
from rnn.model.options import DTYPE_NAMES, ENGINES, MATMUL_PRECISIONS  # noqa: F401  (the CLI offers them from here)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine")
# (layers, hidden) when the size is not given and not chosen by rnn.training.recipe (which reads it
# from here: this module must stay light).
DEFAULT_SIZE = (2, 256)
# Streams per step when --batch-size is not given and the text is long enough (rnn.training.recipe.batch_size_for).
DEFAULT_BATCH_SIZE = 32
# ...and each stream at least this many windows long, or fewer streams (a short text).
MIN_WINDOWS_PER_STREAM = 4
# Used when none of steps / epochs / time_budget is given.
DEFAULT_TIME_BUDGET = 300.0
# The cosine schedule ends at this fraction of the peak learning rate (see TrainConfig: the
# runs decaying all the way to 0 ended lower than those stopping at a tenth of the peak).
LR_FLOOR = 0.0
# AdamW's weight decay when none is given (PyTorch's default is 0.01; see TrainConfig).
DEFAULT_WEIGHT_DECAY = 0.1
# The peak learning rate when none is given (rnn.training.recipe.lr_for, beside the runs behind it):
# for LR_BY_WIDTH_OPTIMIZERS (Adam, AdamW) LR_TIMES_HIDDEN / hidden, no more than at LR_SMALLEST_WIDTH units; the
# other optimizers' one rate.
LR_TIMES_HIDDEN = 5.0
LR_SMALLEST_WIDTH = 256
LR_BY_WIDTH_OPTIMIZERS = ("adam", "adamw")
OTHER_OPTIMIZERS_LR = 6e-3
# The options that define the model a checkpoint holds (its tensors' shapes and dtype): on
# resume they must be the checkpoint's. Dropout and the engine change no tensor: they may change.
MODEL_OPTIONS = ("cell", "layers", "hidden", "embed", "dtype")
# The model's settings that change no tensor (the model's record of them beats the train config's).
MODEL_SETTINGS = ("dropout", "weight_drop", "locked_dropout", "embed_dropout", "engine")
LIMITS = ("steps", "epochs", "time_budget")
# The largest value of each integer setting. A config may come from a file (a checkpoint's
# train_config, config.json), so every size it holds is bounded here, far above any real run
# and far below what would exhaust memory or never finish (a 10**15-character sample).
MAXIMA = {"layers": 1024, "hidden": 1 << 16, "embed": 1 << 16, "seq_len": 1 << 20, "batch_size": 1 << 16,
          "sample_length": 1_000_000, "steps": 2 ** 53, "warmup": 2 ** 53, "eval_every": 2 ** 53,
          "sample_every": 2 ** 53, "seed": 2 ** 63 - 1}
# What a run's loss curve can be drawn against (rnn.runs.reader): optimizer steps, seconds of training,
# characters seen.
X_AXES = ("steps", "seconds", "chars")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: what trains best in a few minutes
    on a laptop CPU for character-level text."""

    cell: str = None  # None: the family rnn.training.recipe.choose_cell takes for the time budget (lstm)
    # None: chosen by rnn.training.recipe from the time budget and this machine's speed (1x256, 2x256 or
    # 2x384); rnn.training.recipe.DEFAULT_SIZE (2x256) for runs limited by steps or epochs.
    layers: int = None
    hidden: int = None
    embed: int = 64
    # The defaults below come from 300 s runs of a 2x256 lstm on tiny-shakespeare (best val
    # nats/char of the run; two runs of the same settings differed by 0.008, as the schedule
    # follows the clock):
    #   AdamW with weight decay 0.1, beta2 0.99, lr 6e-3, no dropout, cosine to 0: 1.444, 1.439
    #   the same with Adam (no weight decay): 1.450, 1.458; with lr 5e-3: 1.465; 8e-3: 1.456
    #   Adam with dropout 0.1: 1.457; batch 16 with lr 5e-3: 1.470
    #   the earlier defaults (Adam, beta2 0.999, dropout 0.1, cosine to 0.1 * lr): 1.466,
    #   and with lr 3e-3 / 4e-3 / 1e-2 instead of 6e-3: 1.477 / 1.479 / 1.481
    # The learning rate no longer has one default: the fixed-step runs of rnn.training.recipe.LR_RUNS
    # (scored on the latest checkpoint, one seed's spread 0.005) put Adam's best rate at about
    # 5 / hidden, above 6e-3 at every width measured.
    dropout: float = None  # None: chosen from the passes over the text the run will make (rnn.training.recipe)
    # AWD-LSTM's regularisers (rnn.model.charlm.ModelConfig), off unless given; measured against
    # the dropout alone in docs/regularisation.md.
    weight_drop: float = 0.0  # DropConnect on the recurrent weights, one mask per window
    locked_dropout: bool = False  # the dropout's mask shared by all steps of a sequence
    embed_dropout: float = 0.0  # drop whole characters' embedding rows, one mask per window
    seq_len: int = 64
    batch_size: int = None  # None: DEFAULT_BATCH_SIZE, fewer for a short text (rnn.training.recipe.batch_size_for)
    lr: float = None  # None: chosen from the model's width (rnn.training.recipe.lr_for); the number used is recorded
    optimizer: str = "adamw"
    beta2: float = 0.99  # Adam/AdamW's decay of the squared-gradient average (PyTorch's default: 0.999)
    weight_decay: float = None  # None: DEFAULT_WEIGHT_DECAY for adamw, 0 for the other optimizers
    schedule: str = "cosine"
    warmup: int = 100  # steps of linear warmup
    grad_clip: float = 5.0  # max total gradient norm; 0 turns clipping off
    steps: int = None  # stop after this many steps in total (resumed runs included)...
    epochs: float = None  # ...or passes over the training split...
    time_budget: float = None  # ...or seconds of training; the first reached wins (none: DEFAULT_TIME_BUDGET)
    val_frac: float = 0.1
    val_file: str = None  # validate on this file instead of the last val_frac of the text
    separator: str = "\n"  # between the files of a text given as several files or a folder
    eval_every: int = 500  # 0: evaluate only at the end (each evaluation of tiny-shakespeare takes ~2 s at 2x256)
    sample_every: int = 500  # 0: no samples during training
    sample_length: int = 200
    seed: int = 1234
    dtype: str = "float32"
    engine: str = "fused"
    # "bf16": the recurrent layers' products on bf16 operands with float32 sums, where the CPU has
    # AVX512_BF16 (measured in docs/speed-measurement.md); weights, optimizer and checkpoints stay float32
    matmul_precision: str = "float32"
    cell_file: str = None  # a Python file declaring the cell, if it is not a built-in one

    def validate(self) -> "TrainConfig":
        """Raise ConfigError (a ValueError; one line, naming the setting) for any impossible value."""
        for name in ("layers", "hidden"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name), minimum=1)
        for name in ("embed", "seq_len", "sample_length"):
            _require_int(name, getattr(self, name), minimum=1)
        if self.batch_size is not None:
            _require_int("batch_size", self.batch_size, minimum=1)
        for name in ("warmup", "eval_every", "sample_every", "seed"):
            _require_int(name, getattr(self, name), minimum=0)
        if self.steps is not None:
            _require_int("steps", self.steps, minimum=1)
        for name in ("epochs", "time_budget"):
            _require_number(name, getattr(self, name), lambda v: 0 < v < math.inf, "a positive number", optional=True)
        if self.lr is not None:
            _require_number("lr", self.lr, lambda v: 0 < v < math.inf, "a positive number")
        _require_number("grad_clip", self.grad_clip, lambda v: 0 <= v < math.inf, "a number >= 0 (0: no clipping)")
        _require_number("weight_decay", self.weight_decay, lambda v: 0 <= v < math.inf, "a number >= 0",
                        optional=True)
        _require_number("beta2", self.beta2, lambda v: 0 <= v < 1, "in [0, 1)")
        _require_number("dropout", self.dropout, lambda v: 0 <= v < 1, "in [0, 1)", optional=True)
        for name in ("weight_drop", "embed_dropout"):
            _require_number(name, getattr(self, name), lambda v: 0 <= v < 1, "in [0, 1)")
        if not isinstance(self.locked_dropout, bool):
            raise _bad("locked_dropout", "true or false", self.locked_dropout)
        _require_number("val_frac", self.val_frac, lambda v: 0 < v < 1, "between 0 and 1 (exclusive)")
        if self.val_file is not None and not (isinstance(self.val_file, str) and self.val_file):
            raise _bad("val_file", "a file name", self.val_file)
        if not isinstance(self.separator, str):
            raise _bad("separator", "a string", self.separator)
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("dtype", DTYPE_NAMES),
                              ("engine", ENGINES), ("matmul_precision", MATMUL_PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise _bad(name, f"one of {', '.join(allowed)}", getattr(self, name))
        if self.matmul_precision == "bf16" and (self.dtype, self.engine) != ("float32", "fused"):
            raise ConfigError(Setting("matmul_precision"), " bf16 needs dtype float32 and the fused engine, "
                              f"got dtype {self.dtype} and the {self.engine} engine")
        return self

    def to_meta(self) -> dict:
        """The record of this config in config.json and in every checkpoint (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_meta(cls, record, **overrides) -> "TrainConfig":
        """The config a record of to_meta() holds, with `overrides` on top, validated.

        The record is not trusted (it comes from a file): what is not a setting is left out,
        and so is `cell_file` (the Python file it names would be run: only a cell file the
        user gives is loaded, through `overrides`)."""
        known = {field.name for field in fields(cls)}
        record = record if isinstance(record, dict) else {}
        settings = {name: value for name, value in record.items() if name in known and name != "cell_file"}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown train config keys: {', '.join(sorted(unknown))}")
        return cls(**{**settings, **overrides}).validate()

    @classmethod
    def defaults(cls) -> dict:
        """name -> default of every setting (what `train --help` shows)."""
        return {field.name: field.default for field in fields(cls) if field.default is not MISSING}

    def limits(self) -> dict:
        """{"steps", "epochs", "time_budget"}: the limits given, or DEFAULT_TIME_BUDGET if none is."""
        limits = {name: getattr(self, name) for name in LIMITS}
        if all(value is None for value in limits.values()):
            limits["time_budget"] = DEFAULT_TIME_BUDGET
        return limits

    def with_cell(self, cell: str) -> "TrainConfig":
        """This config with the cell given where it was left to the recipe (None)."""
        return replace(self, cell=self.cell if self.cell is not None else cell)

    def with_size(self, layers: int, hidden: int) -> "TrainConfig":
        """This config with the model size given where it was left to the recipe (None)."""
        return replace(self, layers=self.layers if self.layers is not None else layers,
                       hidden=self.hidden if self.hidden is not None else hidden)


def _is_number(value) -> bool:
    # numbers.Real covers numpy's scalars too, without importing numpy.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _bad(name: str, expected: str, value) -> ConfigError:
    if isinstance(value, numbers.Integral) and abs(value).bit_length() > 64:  # from a file: maybe 10**100000
        shown = f"an integer of about {int(abs(value).bit_length() * math.log10(2)) + 1:,} digits"
    else:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return ConfigError(Setting(name), f" must be {expected}, got {shown}")


def _require_number(name: str, value, in_range, expected: str, optional: bool = False):
    """Raise ConfigError unless `value` is a number with `in_range(value)` (or None, if `optional`)."""
    if optional and value is None:
        return
    if not (_is_number(value) and in_range(value)):
        raise _bad(name, expected, value)


def _require_int(name, value, minimum):
    maximum = MAXIMA[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not minimum <= value <= maximum:
        kind = f"a positive integer up to {maximum:,}" if minimum == 1 else f"an integer from {minimum} to {maximum:,}"
        raise _bad(name, kind, value)
