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
in [0, MAX_STEP] and every known numeric field is a finite number within +-MAX_MAGNITUDE; any
other line is reported as unreadable, with the field that is wrong. The file is streamed:
one line and one run cost bounded memory whatever their shape (MAX_LINE_BYTES, MAX_RECORDS,
and only KEPT_FIELDS of a record are kept).

What this module must not hold: printing or plotting (that is the CLI's, in cli/plot.py).
"""

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import X_AXES
from .errors import Setting, UserError
from .runfiles import RunFileError, exists, open_regular, read_bytes

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
# What one line and one run may cost, whatever their shape: a real line is ~200 bytes, a real
# run writes a line per 10 steps. Longer lines are skipped unparsed; records past the first
# MAX_RECORDS are left out (and the reader says so). A kept record holds KEPT_FIELDS only.
MAX_LINE_BYTES = 4096
MAX_RECORDS = 200_000
KEPT_FIELDS = ("step",) + NUMERIC_FIELDS
SHOWN_BAD_LINES = 5  # the numbers of the first unreadable lines, for a warning
# A loss or x value beyond this is refused: the difference of two such values (a plot's span)
# must still be a finite float.
MAX_MAGNITUDE = 1e300
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
    bad_lines: list = field(default_factory=list)  # 1-based numbers of the first unreadable lines before the last
    torn_last_line: bool = False
    first_problem: str = None  # what is wrong with the first of bad_lines, e.g. "line 3: step is -1"
    bad_line_count: int = None  # how many lines before the last were unreadable (None: len(bad_lines))
    records_left_out: int = 0  # records after the first MAX_RECORDS, not read

    def __post_init__(self):
        if self.bad_line_count is None:
            self.bad_line_count = len(self.bad_lines)

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
        if value is not None and abs(value) > MAX_MAGNITUDE:
            return None, f"{name} is out of range (beyond {MAX_MAGNITUDE:g})"
    return record, None


def read_metrics(path) -> tuple:
    """(records, numbers of unreadable lines before the last, whether the last line is torn).

    Raises RunError if the file cannot be read, or if it has lines and none is a record.
    """
    read = _read_metrics(Path(path))
    return read.records, read.bad_lines, read.torn_last_line


@dataclass
class _MetricsRead:
    """What reading one metrics file gave, and what it left out."""

    records: list = field(default_factory=list)
    bad_lines: list = field(default_factory=list)  # the first SHOWN_BAD_LINES of them
    bad_line_count: int = 0
    first_problem: str = None
    torn_last_line: bool = False
    records_left_out: int = 0  # records after the first MAX_RECORDS


def _lines(file):
    """(number, line as bytes) of every line; a line longer than MAX_LINE_BYTES comes as
    None, and is read past in pieces without being held."""
    number = 0
    while True:
        line = file.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES:
            while line and not line.endswith(b"\n"):
                line = file.readline(MAX_LINE_BYTES)
            line = None
        yield number, line


def _read_metrics(path: Path) -> _MetricsRead:
    """The records of a metrics file, streamed: one line costs at most MAX_LINE_BYTES of JSON
    and a kept record only the known numeric fields (a line of a million nested objects
    would otherwise parse into 25 times its size); a run keeps at most MAX_RECORDS."""
    read, pending = _MetricsRead(), None  # pending: the last unreadable line, torn if nothing follows
    try:
        with os.fdopen(open_regular(path), "rb") as file:
            if os.fstat(file.fileno()).st_size > MAX_METRICS_BYTES:
                raise RunError(f"{path} is too large for a metrics file (over {MAX_METRICS_BYTES >> 20} MB)")
            for number, line in _lines(file):
                if line is not None and not line.strip():
                    continue
                if pending is not None:
                    _count_bad_line(read, *pending)
                    pending = None
                if line is None:
                    pending = (number, f"longer than {MAX_LINE_BYTES} bytes")
                    continue
                # Replacing undecodable bytes: a torn multi-byte character must not sink the whole file.
                record, problem = parse_record(line.decode("utf-8", errors="replace"))
                if record is None:
                    pending = (number, problem)
                elif len(read.records) < MAX_RECORDS:
                    read.records.append({name: record[name] for name in KEPT_FIELDS if name in record})
                else:
                    read.records_left_out += 1
    except RunFileError as error:
        raise RunError(str(error)) from None
    except OSError as error:
        raise RunError(f"cannot read {path}: {error.strerror or error}") from None
    if (pending or read.bad_line_count) and not read.records:
        problem = read.first_problem or f"line {pending[0]}: {pending[1]}"
        raise RunError(f"{path} is not a metrics file: {problem}")
    read.torn_last_line = pending is not None
    return read


def _count_bad_line(read: _MetricsRead, number: int, problem: str):
    read.bad_line_count += 1
    if len(read.bad_lines) < SHOWN_BAD_LINES:
        read.bad_lines.append(number)
    if read.first_problem is None:
        read.first_problem = f"line {number}: {problem}"


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
    read = _read_metrics(metrics_path)
    return Run(path=path, records=read.records, config=read_config(path / CONFIG_FILE), bad_lines=read.bad_lines,
               bad_line_count=read.bad_line_count, torn_last_line=read.torn_last_line,
               first_problem=read.first_problem, records_left_out=read.records_left_out)
