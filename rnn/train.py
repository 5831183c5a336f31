"""The training loop of the char-LM, as a library function (the CLI only wraps it).

    summary = train(TrainConfig(steps=2000), Corpus.from_file("input.txt"), "runs/one")

One step: next window of B streams -> loss (state carried from the previous window) ->
backward -> gradient-norm clipping -> optimizer step -> state detached (truncated BPTT).
The learning rate follows a schedule (constant, or cosine decaying to LR_FLOOR * lr,
both after a linear warmup). Every `eval_every` steps, and at the end, the model is
evaluated on the whole validation split (one stream, state carried) and checkpoints are
written: `latest.safetensors` always, `best.safetensors` when the val loss is the lowest.

Resuming restores the model, the optimizer state, minigrad's RNG, the data position, the
carried hidden state, the step, the training time and the best val loss, so that training
N steps, stopping, resuming and training M more is bit-identical to N + M straight.
Evaluation and sampling never draw from the training's random stream.

Files in out_dir: latest.safetensors, best.safetensors, metrics.jsonl, config.json, train.lock,
all opened through rnn.runfiles (no links followed, regular files only). A run has a random
`run_id`, recorded in config.json and in every checkpoint: resuming into a folder that holds
another run is refused. On resume the model options (MODEL_OPTIONS) must match the
checkpoint's model; every training option of the config takes effect, the optimizer's
hyperparameters included.
What this module must not hold: printing or argument parsing (that is the CLI's).
"""

import json
import math
import os
import secrets
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

import minigrad as mg
from minigrad.runtime import configured_for_training

from . import recipe
from .cells import load_cell_file
from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint, training_state
from .data import BatchStream, Corpus
from .evaluate import evaluate_ids
from .layers import ENGINES
from .model import DTYPES, CharLM, ModelConfig, detach_state
from .runfiles import (check_entries, create_new, exists, open_for_appending, open_for_update, prepare_folder,
                       read_bytes, remove_temporaries, write_atomically)
from .runs import CONFIG_FILE, MAX_METRICS_BYTES, METRICS_FILE, parse_record, read_config
from .sample import sample

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine")
# Used when none of steps / epochs / time_budget is given.
DEFAULT_TIME_BUDGET = 300.0
# The cosine schedule ends at this fraction of the peak learning rate (see TrainConfig: the
# runs decaying all the way to 0 ended lower than those stopping at a tenth of the peak).
LR_FLOOR = 0.0
# AdamW's weight decay when none is given (PyTorch's default is 0.01; see TrainConfig).
DEFAULT_WEIGHT_DECAY = 0.1
# A metrics line (mean train loss of the last steps) every this many steps.
LOG_EVERY = 10
LATEST, BEST = "latest.safetensors", "best.safetensors"
LOCK_FILE = "train.lock"
RUN_FILES = (LATEST, BEST, METRICS_FILE, CONFIG_FILE, LOCK_FILE)
# The options that define the model a checkpoint holds (its tensors' shapes and dtype): on
# resume they must be the checkpoint's. Dropout and the engine change no tensor: they may change.
MODEL_OPTIONS = ("cell", "layers", "hidden", "embed", "dtype")
# Periodic evaluation reads the validation split as this many parts side by side (see
# evaluate_ids): on a large file one stream would take minutes per evaluation; the parts
# cost a few thousandths of a nat of lost context at their cuts.
EVAL_STREAMS = 16


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


class RunLockedError(RuntimeError):
    """Another training run is writing to the same output directory."""


class RunExistsError(RuntimeError):
    """The output directory holds the checkpoints of an earlier run and this run does not resume it."""


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults: what trains best in a few minutes
    on a laptop CPU for character-level text."""

    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 64
    # The defaults below come from 300 s runs of a 2x256 lstm on tiny-shakespeare (best val
    # nats/char of the run; two runs of the same settings differed by 0.008, as the schedule
    # follows the clock):
    #   AdamW with weight decay 0.1, beta2 0.99, lr 6e-3, no dropout, cosine to 0: 1.444, 1.439
    #   the same with Adam (no weight decay): 1.450, 1.458; with lr 5e-3: 1.465; 8e-3: 1.456
    #   Adam with dropout 0.1: 1.457; batch 16 with lr 5e-3: 1.470
    #   the earlier defaults (Adam, beta2 0.999, dropout 0.1, cosine to 0.1 * lr): 1.466,
    #   and with lr 3e-3 / 4e-3 / 1e-2 instead of 6e-3: 1.477 / 1.479 / 1.481
    dropout: float = None  # None: chosen from the passes over the text the run will make (rnn.recipe)
    seq_len: int = 64
    batch_size: int = 32
    lr: float = 6e-3
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
    cell_file: str = None  # a Python file declaring the cell, if it is not a built-in one

    def validate(self) -> "TrainConfig":
        """Raise ValueError (one line, naming the setting) for any impossible value."""
        for name in ("layers", "hidden", "embed", "seq_len", "batch_size", "sample_length"):
            _require_int(name, getattr(self, name), minimum=1)
        for name in ("warmup", "eval_every", "sample_every", "seed"):
            _require_int(name, getattr(self, name), minimum=0)
        if self.steps is not None:
            _require_int("steps", self.steps, minimum=1)
        for name in ("epochs", "time_budget"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (_is_number(self.lr) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (_is_number(self.grad_clip) and 0 <= self.grad_clip < math.inf):
            raise ValueError(f"grad_clip must be a number >= 0 (0: no clipping), got {self.grad_clip!r}")
        if self.weight_decay is not None and not (_is_number(self.weight_decay) and 0 <= self.weight_decay < math.inf):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (_is_number(self.beta2) and 0 <= self.beta2 < 1):
            raise ValueError(f"beta2 must be in [0, 1), got {self.beta2!r}")
        if self.dropout is not None and not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not (_is_number(self.val_frac) and 0 < self.val_frac < 1):
            raise ValueError(f"val_frac must be between 0 and 1 (exclusive), got {self.val_frac!r}")
        if self.val_file is not None and not (isinstance(self.val_file, str) and self.val_file):
            raise ValueError(f"val_file must be a file name, got {self.val_file!r}")
        if not isinstance(self.separator, str):
            raise ValueError(f"separator must be a string, got {self.separator!r}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("dtype", tuple(DTYPES)),
                              ("engine", ENGINES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown train config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=self.cell, embed=self.embed, hidden=self.hidden,
                           layers=self.layers, dropout=0.0 if self.dropout is None else self.dropout,
                           dtype=self.dtype, engine=self.engine)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def make_optimizer(name: str, parameters, lr: float, beta2: float = 0.999, weight_decay: float = None):
    """The optimizer called `name`, with PyTorch's defaults but for beta2 (Adam, AdamW), SGD's
    momentum (0.9) and the weight decay (None: DEFAULT_WEIGHT_DECAY for AdamW, 0 otherwise;
    decoupled in AdamW, an L2 penalty in the others)."""
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY if name == "adamw" else 0.0
    if name == "adam":
        return mg.optim.Adam(parameters, lr=lr, betas=(0.9, beta2), weight_decay=weight_decay)
    if name == "adamw":
        return mg.optim.AdamW(parameters, lr=lr, betas=(0.9, beta2), weight_decay=weight_decay)
    if name == "sgd":
        return mg.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "rmsprop":
        return mg.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return mg.optim.Adagrad(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """The learning rate of step `step` (0-based) when a fraction `progress` of the run is done."""
    warmup = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
    if config.schedule == "constant":
        return config.lr * warmup
    floor = LR_FLOOR * config.lr
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return (floor + (config.lr - floor) * cosine) * warmup


# ---- the output directory: lock, config.json, metrics.jsonl --------------------------------

class RunLock:
    """An exclusive lock on out_dir/train.lock for the duration of a run.

    With fcntl (POSIX) the operating system releases the lock when the process dies, even
    by SIGKILL, so a crashed run never blocks the next one. Elsewhere the file itself is
    the lock and is removed at the end.
    """

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_FILE
        self.file = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            fcntl = None
        if fcntl is None:
            try:
                self.file = os.fdopen(create_new(self.path), "w")
            except FileExistsError:
                raise RunLockedError(f"{self.path.parent} is in use by another training run "
                                     f"(remove {self.path} if that run is gone)") from None
        else:
            self.file = open_for_update(self.path)  # never through a link: truncate() below
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.file.seek(0)
                owner = self.file.read().strip() or "unknown"
                self.file.close()
                raise RunLockedError(f"{self.path.parent} is in use by another training run (pid {owner}); "
                                     f"wait for it or choose another output directory") from None
            self.file.seek(0)
            self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        self._owns_file = fcntl is None
        return self

    def __exit__(self, *exc):
        self.file.close()  # releases the flock
        if self._owns_file:
            self.path.unlink(missing_ok=True)
        return False


def _write_json_atomically(path: Path, data: dict) -> None:
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def _keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume: drop metrics lines after the resumed step (and lines that are not records)."""
    if not exists(path):
        return
    text = read_bytes(path, MAX_METRICS_BYTES, what="metrics file").decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if (parse_record(line)[0] or {}).get("step", step + 1) <= step]
    write_atomically(path, "".join(line + "\n" for line in kept).encode("utf-8"))


def new_run_id() -> str:
    # From the operating system's randomness: minigrad's generator (the training's) is untouched.
    return secrets.token_hex(8)


def _folder_run_id(out_dir: Path):
    """The run id recorded in out_dir (config.json, else its latest or best checkpoint), or None."""
    run_id = read_config(out_dir / CONFIG_FILE).get("run_id")
    if run_id is None:
        for name in (LATEST, BEST):
            if exists(out_dir / name):
                run_id = read_meta(out_dir / name).get("run_id")
                break
    # Only a plausible id (it is printed): what a hostile file holds is not.
    return run_id if isinstance(run_id, str) and 0 < len(run_id) <= 64 and run_id.isalnum() else None


def _check_resume_target(out_dir: Path, resume, run_id) -> bool:
    """Refuse to resume into a folder holding another run; True if out_dir holds this very run."""
    if not any(exists(out_dir / name) for name in (LATEST, BEST, CONFIG_FILE)):
        return False  # a new or empty folder: the resumed run continues there
    try:
        if os.path.samefile(Path(resume).parent, out_dir):
            return True  # the folder's own checkpoint (a run from before run ids included)
    except OSError:
        pass
    folder_run_id = _folder_run_id(out_dir)
    if run_id is not None and folder_run_id == run_id:
        return True  # e.g. a copy of the run's checkpoint kept elsewhere
    raise RunExistsError(
        f"{out_dir} holds another run (run id {folder_run_id or 'unknown'}, {resume} is from "
        f"{run_id or 'a run without an id'}): resuming there would replace its checkpoints and metrics; "
        f"choose another --out, or resume that folder's own {LATEST}")


# ---- the run --------------------------------------------------------------------------------

class _Run:
    """The state of one training run, and the steps that change it."""

    def __init__(self, config: TrainConfig, corpus: Corpus, out_dir: Path, on_event):
        self.config, self.corpus, self.out_dir = config, corpus, out_dir
        self.emit = on_event or (lambda kind, data: None)
        self.stream = BatchStream(corpus.train_ids, config.batch_size, config.seq_len)
        self.latest_path, self.best_path = out_dir / LATEST, out_dir / BEST
        self.step = 0
        self.train_seconds = 0.0  # wall time of training steps, over all resumed runs
        self.best_val_loss = None
        self.last_val_loss = None
        self.state = None  # hidden state carried to the next window
        self.saved_step = None  # step of the checkpoint on disk (latest), if any
        self.evaluated_step = None
        # Steps of the last evaluation and of the best one: a summary says which checkpoint a
        # val loss is of (the best was chosen on the validation text, the latest was not).
        self.last_val_step = None
        self.best_step = None
        self.session_steps = 0
        self.session_chars = 0
        self.session_seconds = 0.0
        self.probe_seconds = None  # session_seconds when the speed probe started (rnn.recipe)
        self.recipe = None  # the dropout chosen by rnn.recipe and why, once chosen
        self.recent_losses = []
        self.stop_requested = False  # set by the SIGINT handler
        self.run_id = None  # set by start_fresh / restore (see train())
        self.corpus_record = None  # what config.json and the checkpoints say about the text
        self.resumed_from = None  # the checkpoint this run continued, if any

    # -- setting up -------------------------------------------------------------------------

    def start_fresh(self):
        self.run_id = new_run_id()
        mg.random.manual_seed(self.config.seed)
        self.model = CharLM(self.config.model_config(len(self.corpus.vocab)))
        self.model.train()
        self.optimizer = self.new_optimizer()

    def new_optimizer(self):
        config = self.config
        return make_optimizer(config.optimizer, self.model.parameters(), config.lr, config.beta2, config.weight_decay)

    def restore(self, path):
        """Continue the run saved in checkpoint `path`, with this run's config: the model options
        must be the checkpoint's, every other setting (optimizer hyperparameters included) is
        the config's."""
        checkpoint = load_checkpoint(path, cell_file=self.config.cell_file)
        if checkpoint.vocab != self.corpus.vocab:
            raise CheckpointError(f"{path} was trained on a text with a different vocabulary "
                                  f"({len(checkpoint.vocab)} characters, this text has {len(self.corpus.vocab)})")
        state = training_state(path, checkpoint.meta)
        saved = checkpoint.config
        different = [name for name in MODEL_OPTIONS if getattr(self.config, name) != getattr(saved, name)]
        if different:
            raise ValueError(f"{path} holds a model with " + ", ".join(f"{n}={getattr(saved, n)}" for n in different)
                             + "; the settings say " + ", ".join(f"{n}={getattr(self.config, n)}" for n in different)
                             + ": a resumed run keeps its model (start a new run to change it)")
        model_config = self.config.model_config(len(self.corpus.vocab))
        if model_config == saved:
            self.model = checkpoint.model
        else:  # another dropout or engine: the same tensors in a model built with the new settings
            self.model = CharLM(model_config)
            self.model.load_state_dict(checkpoint.model.state_dict())
        self.model.train()
        self.optimizer = self.new_optimizer()
        if checkpoint.optimizer_state is not None and checkpoint.optimizer_name == type(self.optimizer).__name__:
            # The per-parameter state is the checkpoint's; the hyperparameters (betas, weight
            # decay, ...) are this config's, so that options given on resume take effect.
            hyperparameters = {key: value for key, value in self.optimizer.state_dict().items()
                               if not key.startswith("state.")}
            try:
                self.optimizer.load_state_dict({**checkpoint.optimizer_state, **hyperparameters})
            except (ValueError, TypeError, OverflowError) as error:
                raise CheckpointError(f"{path}: cannot restore the optimizer state: {error}") from None
        try:
            mg.random.set_state(state["rng_state"])
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            raise CheckpointError(f"{path}: invalid RNG state ({error})") from None
        saved_train_config = checkpoint.meta.get("train_config")
        saved_seed = saved_train_config.get("seed") if isinstance(saved_train_config, dict) else None
        if isinstance(saved_seed, int) and saved_seed != self.config.seed:
            mg.random.manual_seed(self.config.seed)  # a new seed given on resume: a new random stream
        self.run_id = state["run_id"]
        self.step = state["step"]
        self.train_seconds = state["train_seconds"]
        self.best_val_loss = state["best_val_loss"]
        self.last_val_loss = state["last_val_loss"]
        self.evaluated_step = self.step
        self.last_val_step = state["last_val_step"]
        self.best_step = state["best_step"]
        # Resuming from this folder's own latest checkpoint: it is already on disk.
        self.saved_step = self.step if Path(path).resolve() == self.latest_path.resolve() else None
        try:
            if state["data_position"] is None:
                raise ValueError("no usable data position")
            self.stream.set_position(state["data_position"])
            self.state = self._state_from_arrays(checkpoint.train_state)
        except ValueError:
            # A different batch size or sequence length: start the streams afresh.
            self.stream = BatchStream(self.corpus.train_ids, self.config.batch_size, self.config.seq_len)
            self.state = None

    def _state_from_arrays(self, arrays: dict):
        if not arrays:
            return None
        template = self.model.initial_state(self.config.batch_size)
        names = self.model.rnn.cell.state
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

    def _state_as_arrays(self) -> dict:
        if self.state is None:
            return {}
        names = self.model.rnn.cell.state
        return {f"l{k}.{name}": tensor.data for k, layer in enumerate(self.state)
                for name, tensor in zip(names, layer)}

    # -- limits and schedule ------------------------------------------------------------------

    def limits(self) -> dict:
        config = self.config
        limits = {"steps": config.steps, "epochs": config.epochs, "time_budget": config.time_budget}
        if all(value is None for value in limits.values()):
            limits["time_budget"] = DEFAULT_TIME_BUDGET
        return limits

    def progress(self) -> float:
        """The fraction of the run done, by whichever limit is nearest."""
        limits = self.limits()
        done = [self.step / limits["steps"] if limits["steps"] else 0.0,
                self.stream.epoch / limits["epochs"] if limits["epochs"] else 0.0,
                self.train_seconds / limits["time_budget"] if limits["time_budget"] else 0.0]
        return min(max(done), 1.0)

    def stop_reason(self):
        limits = self.limits()
        if limits["steps"] is not None and self.step >= limits["steps"]:
            return "steps"
        if limits["epochs"] is not None and self.stream.epoch >= limits["epochs"]:
            return "epochs"
        if limits["time_budget"] is not None and self.train_seconds >= limits["time_budget"]:
            return "time_budget"
        return None

    def eta(self):
        """Seconds of training left until the nearest limit (None before the first step)."""
        if not self.session_chars:
            return None
        limits = self.limits()
        seconds_per_step = self.session_seconds / (self.session_chars / (self.config.batch_size * self.config.seq_len))
        left = []
        if limits["steps"] is not None:
            left.append((limits["steps"] - self.step) * seconds_per_step)
        if limits["epochs"] is not None:
            left.append((limits["epochs"] - self.stream.epoch) * self.stream.windows_per_pass * seconds_per_step)
        if limits["time_budget"] is not None:
            left.append(limits["time_budget"] - self.train_seconds)
        return max(0.0, min(left))

    def chars_per_sec(self) -> float:
        return self.session_chars / self.session_seconds if self.session_seconds else 0.0

    # -- one step -------------------------------------------------------------------------------

    def train_step(self):
        """One optimizer step. `self.phase` says whether an interruption leaves things consistent."""
        config = self.config
        lr = learning_rate(config, self.step, self.progress())
        started = time.perf_counter()
        self.snapshot = (self.stream.position, mg.random.get_state(), self.state)
        self.phase = "computing"  # interrupted here: put the snapshot back, nothing else changed
        inputs, targets = self.stream.next_batch()
        if self.stream.wrapped:
            self.state = None  # the streams start over: the carried state belongs to their end
        loss, state = self.model.loss(inputs, targets, self.state)
        loss_value = float(loss.data)
        if not math.isfinite(loss_value):
            self.diverged(f"the loss is {loss_value}", lr)
        self.optimizer.zero_grad()
        loss.backward()
        # With clipping off the norm is still computed (max_norm inf): a NaN gradient must
        # stop the run before it reaches the weights.
        norm = mg.optim.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        if not math.isfinite(norm):
            self.diverged(f"the gradient norm is {norm}", lr)
        self.optimizer.lr = lr
        self.phase = "updating"  # interrupted here: the weights may be half-updated
        self.optimizer.step()
        self.state = detach_state(state)
        self.step += 1
        self.phase = "between"
        elapsed = time.perf_counter() - started
        self.train_seconds += elapsed
        self.session_seconds += elapsed
        self.session_steps += 1
        self.session_chars += inputs.size
        self.recent_losses.append(loss_value)
        return loss_value, lr

    def diverged(self, what: str, lr: float):
        self.phase = "between"
        kept = (f"the last good checkpoint is {self.latest_path} (step {self.saved_step})"
                if self.saved_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"training diverged at step {self.step + 1}: {what}; {kept}. "
                               f"Try gradient clipping (--grad-clip 1) or a lower learning rate "
                               f"(--lr {lr / 4:.2g}, now {lr:.2g}).")

    def undo_partial_step(self) -> bool:
        """After an interruption: True if the run is at a step boundary (restoring the data
        position, RNG and state of an unfinished step), False if weights may be half-updated."""
        phase = getattr(self, "phase", "between")
        if phase == "computing":
            position, rng_state, state = self.snapshot
            self.stream.set_position(position)
            mg.random.set_state(rng_state)
            self.state = state
        self.phase = "between"
        return phase != "updating"

    # -- evaluation, samples, checkpoints, metrics ------------------------------------------------

    def evaluate_and_save(self):
        result = evaluate_ids(self.model, self.corpus.val_ids, streams=EVAL_STREAMS)
        self.last_val_loss = result["loss_nats"]
        self.evaluated_step = self.last_val_step = self.step
        improved = self.best_val_loss is None or self.last_val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step = self.last_val_loss, self.step
        self.emit("eval", {"step": self.step, "val_loss": self.last_val_loss, "val_bpc": result["bpc"],
                           "best_val_loss": self.best_val_loss, "improved": improved})
        self.write_metrics(val=result)
        self.save(self.latest_path)
        if improved:
            self.save(self.best_path)

    def save(self, path: Path):
        meta = {
            "step": self.step,
            "epoch": self.stream.epoch,
            "train_seconds": self.train_seconds,
            "rng_state": mg.random.get_state(),
            "data_position": self.stream.position,
            "train_config": self.config.to_dict(),
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "last_val_step": self.last_val_step,
            "best_step": self.best_step,
            "run_id": self.run_id,
            "corpus": self.corpus_record,
        }
        save_checkpoint(path, self.model, self.optimizer, meta, vocab=self.corpus.vocab,
                        extra_tensors=self._state_as_arrays())
        if path == self.latest_path:
            self.saved_step = self.step
        self.emit("checkpoint", {"path": str(path), "step": self.step, "best": path == self.best_path})

    def emit_sample(self):
        text = "".join(sample(self.model, self.corpus.vocab, length=self.config.sample_length,
                              seed=self.config.seed + self.step))
        self.emit("sample", {"step": self.step, "text": text})

    def write_metrics(self, val=None):
        record = {"step": self.step, "time": round(self.train_seconds, 3), "lr": self.optimizer.lr,
                  "chars": self.step * self.config.batch_size * self.config.seq_len,
                  "epoch": round(self.stream.epoch, 6), "chars_per_sec": round(self.chars_per_sec(), 1)}
        if self.recent_losses:
            record["train_loss"] = sum(self.recent_losses) / len(self.recent_losses)
        if val is not None:
            record.update(val_loss=val["loss_nats"], val_bpc=val["bpc"])
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        self.recent_losses = []

    def summary(self, reason: str) -> dict:
        return {"steps": self.step, "seconds": self.train_seconds, "chars_per_sec": self.chars_per_sec(),
                "best_val_loss_nats": self.best_val_loss, "last_val_loss_nats": self.last_val_loss,
                "best_step": self.best_step, "last_val_step": self.last_val_step, "latest_step": self.saved_step,
                "checkpoint": str(self.latest_path) if self.saved_step is not None else None,
                "best_checkpoint": str(self.best_path) if self.best_path.exists() else None,
                "out_dir": str(self.out_dir), "stopped_reason": reason}

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            reason = self.loop()
            if self.evaluated_step != self.step or self.saved_step != self.step:
                self.evaluate_and_save()
        except KeyboardInterrupt:
            if self.undo_partial_step() and self.saved_step != self.step:
                self.save(self.latest_path)
            reason = "interrupted"
        self.emit("stop", {"reason": reason, "step": self.step})
        return self.summary(reason)

    def loop(self) -> str:
        """Train until a limit is reached (returns which) or a Ctrl-C asks to stop."""
        config = self.config
        while True:
            reason = self.stop_reason()
            if reason:
                return reason
            if self.config.dropout is None:
                self.choose_dropout()
            loss, lr = self.train_step()
            self.emit("step", self.step_event(loss, lr))
            evaluate_now = config.eval_every and self.step % config.eval_every == 0
            if evaluate_now:
                self.evaluate_and_save()  # writes its own metrics line
            elif self.step % LOG_EVERY == 0:
                self.write_metrics()
            if config.sample_every and self.step % config.sample_every == 0:
                self.emit_sample()
            if self.stop_requested:
                raise KeyboardInterrupt

    def choose_dropout(self):
        """Set the dropout rnn.recipe gives for the passes this run will make, as soon as they
        can be planned: at once, or with a time budget once the speed probe has run."""
        limits = self.limits()
        seconds_per_step = None
        if recipe.needs_speed(limits):
            first, last = recipe.PROBE_STEPS
            if self.session_steps == first:
                self.probe_seconds = self.session_seconds
            if self.session_steps < last or self.probe_seconds is None:
                return
            seconds_per_step = (self.session_seconds - self.probe_seconds) / (last - first)
        chars_per_step = self.config.batch_size * self.config.seq_len
        passes = recipe.planned_passes(limits, chars_per_step, len(self.corpus.train_ids), seconds_per_step)
        dropout = recipe.dropout_for(passes)
        self.config = replace(self.config, dropout=dropout)
        self.model.set_dropout(dropout)
        self.recipe = {"dropout": dropout, "planned_passes": round(passes, 2), "train_chars": len(self.corpus.train_ids),
                       "seconds_per_step": round(seconds_per_step, 5) if seconds_per_step else None,
                       "limits": limits}
        self.emit("recipe", dict(self.recipe))
        self.write_config()

    def write_config(self):
        """config.json: what this run is (its settings, model, text, and the recipe's choice)."""
        _write_json_atomically(self.out_dir / CONFIG_FILE, {
            "run_id": self.run_id,
            "train": self.config.to_dict(),
            "model": self.model.config.to_dict(),
            "parameters": self.model.num_parameters(),
            "vocab_size": len(self.corpus.vocab),
            "corpus": self.corpus_record,
            "resumed_from": self.resumed_from,
            "recipe": self.recipe,
        })

    def step_event(self, loss: float, lr: float) -> dict:
        limits = self.limits()
        time_left = (max(0.0, limits["time_budget"] - self.train_seconds)
                     if limits["time_budget"] is not None else None)
        return {"step": self.step, "total_steps": limits["steps"], "time_left": time_left,
                "epoch": self.stream.epoch, "train_loss": loss, "lr": lr, "chars_per_sec": self.chars_per_sec(),
                "eta": self.eta(), "val_loss": self.last_val_loss}


class _GracefulInterrupt:
    """While training: the first Ctrl-C (or SIGTERM) asks the loop to stop after the current step
    (and save); a second one interrupts at once. Only in the main thread, where signals are delivered."""

    def __init__(self, run: _Run):
        self.run, self.previous = run, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (kill, a container stopping) saves like Ctrl-C does.
            self.previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.run.stop_requested:
            raise KeyboardInterrupt
        self.run.stop_requested = True

    def __exit__(self, *exc):
        for number, handler in (self.previous or {}).items():
            signal.signal(number, handler)
        return False


@configured_for_training()  # BLAS threads, malloc, compile helper: set for training only (minigrad.runtime)
def train(config: TrainConfig, corpus: Corpus, out_dir, resume=None, on_event=None) -> dict:
    """Train a char-LM on `corpus`, writing checkpoints and metrics into `out_dir`.

    Returns {"steps", "seconds", "chars_per_sec", "best_val_loss_nats", "last_val_loss_nats",
    "best_step", "last_val_step", "latest_step", "checkpoint", "best_checkpoint", "out_dir",
    "stopped_reason"}: the val losses of the best checkpoint and of the last evaluation, the steps
    they were measured at and the step of the latest checkpoint; stopped_reason is "steps",
    "epochs", "time_budget" or "interrupted". `seconds` counts training steps only (not
    evaluation, sampling or saving), over all resumed runs, as the time budget does.
    `on_event(kind, data)` is called with kind "step", "eval", "sample", "checkpoint", "stop".
    Raises ValueError (bad config), TextError (text too short for the batches),
    CheckpointError (bad resume checkpoint, or a failed save), RunLockedError, RunExistsError, OSError
    (out_dir not writable), TrainingDiverged.
    """
    config = replace(config).validate()  # a copy: resuming may change the architecture fields
    if config.cell_file:
        load_cell_file(config.cell_file)
    out_dir = prepare_folder(out_dir)
    check_entries(out_dir, RUN_FILES)  # a planted link or FIFO: refused before anything is written
    run = _Run(config, corpus, out_dir, on_event)  # TextError here if the text is too short
    with RunLock(out_dir):
        remove_temporaries(out_dir, (LATEST, BEST, CONFIG_FILE, METRICS_FILE))
        if resume is None and (exists(out_dir / LATEST) or exists(out_dir / BEST)):
            # Never overwrite an earlier run's checkpoints by repeating a command.
            raise RunExistsError(
                f"{out_dir} already holds a run's checkpoints: continue it with --resume "
                f"{out_dir / LATEST}, or choose another --out")
        if resume is not None:
            run.restore(resume)
            if not _check_resume_target(out_dir, resume, run.run_id) or run.run_id is None:
                run.run_id = new_run_id()  # a new folder (or a run from before run ids): a run of its own
        else:
            run.start_fresh()
        run.corpus_record = corpus.record()  # resolved paths and a fingerprint: resumable from anywhere
        metrics_path = out_dir / METRICS_FILE
        if resume is not None:
            _keep_metrics_up_to(metrics_path, run.step)
        elif exists(metrics_path):
            metrics_path.unlink()  # a fresh run in this directory starts a fresh curve
        run.resumed_from = str(resume) if resume is not None else None
        run.write_config()
        with open_for_appending(metrics_path) as run.metrics_file, _GracefulInterrupt(run):
            return run.run()
