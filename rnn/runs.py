"""Reading the run folders that `rnn.train.train` writes: loss curves and one summary per run.

    run = read_run("runs/lstm")
    run.curve("val_loss", x="steps")       # [(step, val loss in nats/char), ...]
    run.summary().best_val_loss_nats

A run folder holds `metrics.jsonl` (one JSON object per line: step, time, lr, chars,
chars_per_sec, train_loss; val_loss on evaluation lines) and `config.json` (train config,
model config, parameter count). A run killed mid-write, or still being written while it
is read, leaves a torn last line: that line is skipped, the rest is used.

Nothing read here is trusted: both files are opened through rnn.runfiles (regular files
only, no links, a size bound), and a metrics line counts only if its step is an integer
in [0, MAX_STEP] and every known numeric field is a finite number; any other line is
reported as unreadable, with the field that is wrong.

What this module must not hold: printing or plotting (that is the CLI's, in cli/plot.py).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .config import X_AXES
from .errors import Setting, UserError
from .runfiles import RunFileError, exists, read_bytes

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
LOSSES = ("train_loss", "val_loss")
# The fields of a metrics line that must be numbers when present (rnn.train writes them).
NUMERIC_FIELDS = ("time", "lr", "chars", "epoch", "chars_per_sec", "train_loss", "val_loss", "val_bpc")
# Larger steps are not from a real run (and would lose precision as floats on a plot's axis).
MAX_STEP = 2 ** 53
# Size bounds: far above what a real run writes (a metrics line per 10 steps is ~200 bytes,
# so 256 MB is months of training), far below what would exhaust memory.
MAX_METRICS_BYTES = 256 << 20
MAX_CONFIG_BYTES = 4 << 20


class RunError(UserError, ValueError):
    """A path that is not a readable training run folder; the message is one clear line."""


@dataclass
class RunSummary:
    """One row of a run comparison. Unknown values (no config.json, no evaluation yet) are None."""

    name: str
    cell: str
    layers: int
    hidden: int
    parameters: int
    steps: int
    seconds: float
    chars_per_sec: float
    best_val_loss_nats: float

    @property
    def best_val_bpc(self):
        """The best val loss in bits per character (nats / ln 2)."""
        return None if self.best_val_loss_nats is None else self.best_val_loss_nats / math.log(2)


@dataclass
class Run:
    """A run folder as read from disk."""

    path: Path
    records: list  # the metrics lines, as dicts, in file order
    config: dict  # config.json ({} when the folder has none)
    bad_lines: list = field(default_factory=list)  # 1-based numbers of unreadable lines before the last
    torn_last_line: bool = False
    first_problem: str = None  # what is wrong with the first of bad_lines, e.g. "line 3: step is -1"

    @property
    def name(self) -> str:
        return self.path.name or self.path.resolve().name

    @property
    def model_config(self) -> dict:
        model = self.config.get("model")
        return model if isinstance(model, dict) else {}

    @property
    def train_config(self) -> dict:
        train = self.config.get("train")
        return train if isinstance(train, dict) else {}

    def setting(self, name):
        """A model setting (cell, layers, hidden...), from the model config or else the train config;
        None when neither holds a plausible value (config.json is not trusted)."""
        value = self.model_config.get(name)
        value = self.train_config.get(name) if value is None else value
        if name == "cell":
            return value if isinstance(value, str) else None
        return value if _count(value) else None

    def curve(self, loss: str, x: str = "steps") -> list:
        """[(x, loss)] for `loss` in LOSSES, against `x` in X_AXES; lines without either are left out."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if x not in X_AXES:
            raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
        points = []
        for record in self.records:
            x_value, y_value = self._x_value(record, x), _finite(record.get(loss))
            if x_value is not None and y_value is not None:
                points.append((x_value, y_value))
        return points

    def _x_value(self, record: dict, x: str):
        if x == "steps":
            return record["step"]
        if x == "seconds":
            return _finite(record.get("time"))
        chars = _finite(record.get("chars"))
        if chars is None:  # metrics written before the "chars" field: steps x batch x window
            batch_size, seq_len = self.train_config.get("batch_size"), self.train_config.get("seq_len")
            if _count(batch_size) and _count(seq_len):
                chars = float(record["step"] * batch_size * seq_len)
        return chars

    def summary(self) -> RunSummary:
        last = self.records[-1] if self.records else {}
        seconds = _finite(last.get("time"))
        chars = self._x_value(last, "chars") if last else None
        # The rate over the whole run (resumed sessions included); else the trainer's own figure.
        if chars is not None and seconds:
            chars_per_sec = chars / seconds
        else:
            chars_per_sec = _finite(last.get("chars_per_sec"))
        val_losses = [loss for _, loss in self.curve("val_loss")]
        parameters = self.config.get("parameters")
        return RunSummary(
            name=self.name, cell=self.setting("cell"), layers=self.setting("layers"),
            hidden=self.setting("hidden"),
            parameters=parameters if _count(parameters) else None,
            steps=last.get("step", 0), seconds=seconds, chars_per_sec=chars_per_sec,
            best_val_loss_nats=min(val_losses) if val_losses else None,
        )


def _finite(value):
    """`value` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)  # an int beyond the float range raises OverflowError
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _count(value) -> bool:
    """Whether `value` is a plausible size or count: an int (not a bool) in [1, MAX_STEP]."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_STEP


def parse_record(line: str):
    """(the metrics record on `line`, None) or (None, what is wrong with it)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: hostile nesting ([[[[...)
        return None, "not JSON"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        return None, "no integer step" if step is None else f"step is {type(step).__name__}, not an integer"
    if not 0 <= step <= MAX_STEP:
        return None, f"step {step if abs(step) < 10 ** 20 else 'of ' + str(len(str(step))) + ' digits'} is out of range"
    for name in NUMERIC_FIELDS:
        value = record.get(name)
        if value is not None and _finite(value) is None:
            return None, f"{name} is not a finite number"
    return record, None


def read_metrics(path) -> tuple:
    """(records, numbers of unreadable lines before the last, whether the last line is torn).

    Raises RunError if the file cannot be read, or if it has lines and none is a record.
    """
    records, bad_lines, torn_last_line, _ = _read_metrics(Path(path))
    return records, bad_lines, torn_last_line


def _read_metrics(path: Path) -> tuple:
    """read_metrics, and what is wrong with the first bad line ("line 3: step is -1", or None)."""
    try:
        # Replacing undecodable bytes: a torn multi-byte character must not sink the whole file.
        text = read_bytes(path, MAX_METRICS_BYTES, what="metrics file").decode("utf-8", errors="replace")
    except RunFileError as error:
        raise RunError(str(error)) from None
    except OSError as error:
        raise RunError(f"cannot read {path}: {error.strerror or error}") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records, unreadable = [], []
    for number, line in lines:
        record, problem = parse_record(line)
        if record is None:
            unreadable.append((number, problem))
        else:
            records.append(record)
    if lines and not records:
        number, problem = unreadable[0]
        raise RunError(f"{path} is not a metrics file: line {number}: {problem}")
    torn_last_line = bool(unreadable) and unreadable[-1][0] == lines[-1][0]
    bad = unreadable[:-1] if torn_last_line else unreadable
    first_problem = f"line {bad[0][0]}: {bad[0][1]}" if bad else None
    return records, [number for number, _ in bad], torn_last_line, first_problem


def read_config(path) -> dict:
    """config.json of a run as a dict; {} if the file does not exist. Raises RunError if it is not JSON."""
    path = Path(path)
    try:
        if not exists(path):
            return {}
        config = json.loads(read_bytes(path, MAX_CONFIG_BYTES, what="config.json").decode("utf-8"))
    except RunFileError as error:
        raise RunError(str(error)) from None
    except OSError as error:
        raise RunError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:  # bad JSON, bytes that are not UTF-8, hostile nesting
        raise RunError(f"{path} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return config


def read_run(path) -> Run:
    """The run in folder `path`. Raises RunError if it is not a folder or has no metrics.jsonl."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} does not exist")
    if not path.is_dir():
        hint = f" (its folder {path.parent} is one)" if (path.parent / METRICS_FILE).is_file() else ""
        raise RunError(f"{path} is not a folder: give a run folder, the ", Setting("out"), f" of a training run{hint}")
    metrics_path = path / METRICS_FILE
    try:
        has_metrics = exists(metrics_path)
    except RunFileError as error:
        raise RunError(str(error)) from None
    if not has_metrics:
        raise RunError(f"{path} has no {METRICS_FILE}: not a training run folder, or its run has not started")
    records, bad_lines, torn_last_line, first_problem = _read_metrics(metrics_path)
    return Run(path=path, records=records, config=read_config(path / CONFIG_FILE),
               bad_lines=bad_lines, torn_last_line=torn_last_line, first_problem=first_problem)
