"""The training loop of the char-LM, as a library function (the CLI only wraps it).

    summary = train(TrainConfig(steps=2000), Corpus.from_file("input.txt"), "runs/one")

One step: next window of B streams -> loss (state carried from the previous window) ->
backward -> gradient-norm clipping -> optimizer step -> state detached (truncated BPTT).
The learning rate follows a schedule (rnn.training.optimizers). Every `eval_every` steps, and at the
end, the model is evaluated on the whole validation split and checkpoints are written:
`latest.safetensors` always, `best.safetensors` when the val loss is the lowest.

Resuming restores the model, the optimizer state, minigrad's RNG, the data position, the
carried hidden state, the step, the training time and the best val loss (rnn.training.state),
so that training N steps, stopping, resuming and training M more is bit-identical to N + M
straight. Evaluation and sampling never draw from the training's random stream. On resume
the model options (MODEL_OPTIONS) must match the checkpoint's model; every training option
of the config takes effect, the optimizer's hyperparameters included.

The pieces live beside it: the settings in rnn.training.config, the optimizer and schedule in
rnn.training.optimizers, the run folder (lock, config.json, metrics.jsonl) in rnn.runs.folder, what a
checkpoint holds for resuming in rnn.training.state, and where a run starts (fresh, or
from a checkpoint) in rnn.training.resume.
What this module must not hold: printing or argument parsing (that is the CLI's).
"""

import contextlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import minigrad as mg
import numpy as np
from minigrad.runtime import configured_for_training
from minigrad.threads import ThreadChooser

from rnn.training import recipe, sizing
from rnn.cells.registry import load_cell_file
from rnn.checkpoint.format import save_checkpoint
# Re-exported: rnn.training.loop has always been where these names are imported from.
from rnn.training.config import (DEFAULT_TIME_BUDGET, DEFAULT_WEIGHT_DECAY, LR_FLOOR, MODEL_OPTIONS, OPTIMIZERS,  # noqa: F401
                     SCHEDULES, TrainConfig)
from rnn.data.batches import BatchStream
from rnn.data.corpus import Corpus
from rnn.errors import Setting, TrainingDiverged
from rnn.evaluate import evaluate_ids
from rnn.model.charlm import CharLM, detach_state
from rnn.training.optimizers import learning_rate, make_optimizer, optimizer_for, peak_lr  # noqa: F401
from rnn.runs.folder import (BEST, LATEST, RUN_FILES, RunExistsError, RunFolder, RunLock, RunLockedError,  # noqa: F401
                        RunRewindError)
from rnn.runs.folder import new_run_id
from rnn.training.resume import Start, fresh_start, resumed_start
from rnn.sample import sample
from rnn.training.time_plan import TimePlan
from rnn.training.state import TrainingState, carried_state_arrays
from rnn.training.interrupt import _GracefulInterrupt

# A metrics line (mean train loss of the last steps) every this many steps.
LOG_EVERY = 10
# Periodic evaluation reads the validation split as this many parts side by side (see
# evaluate_ids): on a large file one stream would take minutes per evaluation; the parts
# cost a few thousandths of a nat of lost context at their cuts.
EVAL_STREAMS = 16
# The ETA leaves out the first steps of a session (kernels load or compile there) and waits
# for a few steps timed after them (see _Run.eta).
ETA_SKIP_STEPS, ETA_MIN_STEPS = 2, 3


def _all_finite(array) -> bool:
    return bool(np.isfinite(array).all())


def _config_record(run_id, config: TrainConfig, model: CharLM, corpus: Corpus, corpus_record: dict,
                   resumed_from, recipe_choice, threads=None) -> dict:
    """What config.json says: this run's settings, model, text, the recipe's choice and the thread count."""
    return {"run_id": run_id, "train": config.to_meta(), "model": model.config.to_dict(),
            "parameters": model.num_parameters(), "vocab_size": len(corpus.vocab), "corpus": corpus_record,
            "resumed_from": resumed_from, "recipe": recipe_choice, "threads": threads}


class _Run:
    """The state of one training run, and the steps that change it."""

    def __init__(self, config: TrainConfig, corpus: Corpus, folder: RunFolder, start: Start, metrics_file,
                 on_event=None, corpus_record=None, resumed_from=None, choices=None):
        self.config, self.corpus, self.folder = config, corpus, folder
        self.model, self.optimizer, self.stream = start.model, start.optimizer, start.stream
        self.metrics_file = metrics_file
        self.emit = on_event or (lambda kind, data: None)
        progress = start.progress
        self.run_id = progress.run_id
        self.step = progress.step
        self.train_seconds = progress.train_seconds  # wall time of training steps, over all resumed runs
        self.best_val_loss, self.last_val_loss = progress.best_val_loss, progress.last_val_loss
        # Steps of the last evaluation and of the best one: a summary says which checkpoint a
        # val loss is of (the best was chosen on the validation text, the latest was not).
        self.last_val_step, self.best_step = progress.last_val_step, progress.best_step
        self.evaluated_step = self.step if resumed_from is not None else None
        self.state = start.carried_state  # hidden state carried to the next window
        self.saved_step = start.saved_step  # step of the checkpoint on disk (latest), if any
        self.corpus_record = corpus_record  # what config.json and the checkpoints say about the text
        self.resumed_from = resumed_from  # the checkpoint this run continued, if any
        self.session_steps = 0
        self.session_chars = 0
        self.session_seconds = 0.0
        self.probe_seconds = None  # session_seconds when the speed probe started (rnn.training.recipe)
        self.eta_mark = None  # (session_steps, session_seconds) the ETA's timing starts from
        # What rnn.training.recipe chose and why: the cell and size (before the run, `choices`), the
        # dropout (once chosen).
        self.recipe = dict(choices) if choices else None
        self.recent_losses = []
        # Thread counts, measured and re-measured as the machine's load changes (minigrad.threads):
        # one chooser per kind of work, each kept for the whole run.
        self.step_threads = ThreadChooser.for_this_machine()
        self.eval_threads = ThreadChooser.for_this_machine()
        self.sample_threads = ThreadChooser.for_this_machine()
        self.threads_reported = False
        # The wall time of everything after start-up, evaluations and saves included, against
        # the time budget (rnn.training.time_plan); None without one.
        budget = config.limits()["time_budget"]
        self.plan = TimePlan(budget, self.train_seconds, len(corpus.val_ids), self.model.num_parameters(),
                             self.model.config.dtype, eval_every=config.eval_every) if budget is not None else None
        self.stop_requested = False  # set by the SIGINT handler
        # Whether an interruption now leaves things consistent: "between" steps, "computing" a
        # step (put `snapshot` back: nothing else changed), "updating" the weights (half-updated),
        # or in an "interruptible" evaluation or sample (stopped by the first signal).
        self.phase = "between"
        self.snapshot = None  # (data position, RNG state, carried state) before the step being computed
        self.started = time.perf_counter()  # the session's wall clock, start-up included
        self.step_seconds = None  # of the last step
        self.last_val_chars = None  # (characters read, of) by the last evaluation

    # -- limits and schedule ------------------------------------------------------------------

    def progress(self) -> float:
        """The fraction of the run done, by whichever limit is nearest."""
        limits = self.config.limits()
        done = [self.step / limits["steps"] if limits["steps"] else 0.0,
                self.stream.epoch / limits["epochs"] if limits["epochs"] else 0.0,
                self.plan.fraction_done() if self.plan is not None else 0.0]
        return min(max(done), 1.0)

    def stop_reason(self):
        limits = self.config.limits()
        if limits["steps"] is not None and self.step >= limits["steps"]:
            return "steps"
        if limits["epochs"] is not None and self.stream.epoch >= limits["epochs"]:
            return "epochs"
        if self.plan is not None and self.plan.time_is_up():
            return "time_budget"
        return None

    def eta(self):
        """Seconds of training left until the nearest limit: None until ETA_MIN_STEPS steps are
        timed after the first ETA_SKIP_STEPS of this session, which may load or compile
        kernels (a 30-step run's first step once planned 4m16s for the other 29)."""
        if self.eta_mark is None and self.session_steps >= ETA_SKIP_STEPS:
            self.eta_mark = (self.session_steps, self.session_seconds)
        if self.eta_mark is None or self.session_steps - self.eta_mark[0] < ETA_MIN_STEPS:
            return None
        limits = self.config.limits()
        seconds_per_step = (self.session_seconds - self.eta_mark[1]) / (self.session_steps - self.eta_mark[0])
        left = []
        if limits["steps"] is not None:
            left.append((limits["steps"] - self.step) * seconds_per_step)
        if limits["epochs"] is not None:
            left.append((limits["epochs"] - self.stream.epoch) * self.stream.windows_per_pass * seconds_per_step)
        if self.plan is not None:
            left.append(self.plan.seconds_left())
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
        self.step_seconds = elapsed
        self.train_seconds += elapsed
        self.session_seconds += elapsed
        self.session_steps += 1
        self.session_chars += inputs.size
        self.recent_losses.append(loss_value)
        return loss_value, lr

    def diverged(self, what: str, lr: float, step=None):
        self.phase = "between"
        # Every checkpoint this run writes has finite weights (see save): the one on disk is good.
        kept = (f"the last good checkpoint is {self.folder.latest} (step {self.saved_step})"
                if self.saved_step is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"training diverged at step {step or self.step + 1}: {what}; {kept}. "
                               f"Try gradient clipping (", Setting("grad_clip", 1), ") or a lower learning rate (",
                               Setting("lr", f"{lr / 4:.2g}"), f", now {lr:.2g}).")

    @contextlib.contextmanager
    def interruptible(self):
        """While an evaluation or a sample runs (they change nothing the run keeps), the first
        Ctrl-C or SIGTERM stops it at once: waiting for its end could be minutes. The compiled
        loops run in bounded chunks, so Python sees the signal between two of them."""
        self.phase = "interruptible"
        try:
            yield
        finally:
            self.phase = "between"

    def undo_partial_step(self) -> bool:
        """After an interruption: True if the run is at a step boundary (restoring the data
        position, RNG and state of an unfinished step), False if weights may be half-updated."""
        phase = self.phase
        if phase == "computing":
            position, rng_state, state = self.snapshot
            self.stream.set_position(position)
            mg.random.set_state(rng_state)
            self.state = state
        self.phase = "between"
        return phase != "updating"

    # -- evaluation, samples, checkpoints, metrics ------------------------------------------------

    def check_finite_weights(self):
        """TrainingDiverged if a weight is NaN or infinite (the last update overflowed): such a
        model is never evaluated as a result nor saved over a finite checkpoint."""
        if not all(_all_finite(parameter.data) for parameter in self.model.parameters()):
            self.diverged("the weights are not finite after it", self.optimizer.lr, step=self.step)

    def evaluate_and_save(self, final=False):
        """Evaluate on the validation text (with a time budget, on as much of it as the plan
        allows: its first `chars` characters) and save the checkpoints."""
        self.check_finite_weights()
        total = len(self.corpus.val_ids)
        count = total if self.plan is None else self.plan.eval_chars(final)
        started = time.perf_counter()

        def progress(done, of):
            self.emit("eval_progress", {"step": self.step, "done": done, "of": of,
                                        "seconds": time.perf_counter() - started})

        with self.interruptible():
            result = evaluate_ids(self.model, self.corpus.val_ids[:count], streams=EVAL_STREAMS,
                                  threads=self.eval_threads, on_progress=progress)
        if self.plan is not None:
            self.plan.evaluated(count, time.perf_counter() - started)
        self.last_val_loss = result["loss_nats"]
        self.evaluated_step = self.last_val_step = self.step
        improved = self.best_val_loss is None or self.last_val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step = self.last_val_loss, self.step
        self.last_val_chars = (count, total)
        self.emit("eval", {"step": self.step, "val_loss": self.last_val_loss, "val_bpc": result["bpc"],
                           "best_val_loss": self.best_val_loss, "improved": improved,
                           "val_chars": count, "val_total_chars": total})
        self.write_metrics(val=result)
        started = time.perf_counter()
        self.save(self.folder.latest)
        if improved:
            self.save(self.folder.best)
        if self.plan is not None:
            self.plan.saved(time.perf_counter() - started, 2 if improved else 1)

    def training_state(self) -> TrainingState:
        """What a checkpoint saved now holds for resuming."""
        return TrainingState(step=self.step, epoch=self.stream.epoch, train_seconds=self.train_seconds,
                             rng_state=mg.random.get_state(), data_position=self.stream.position,
                             train_config=self.config.to_meta(), best_val_loss=self.best_val_loss,
                             last_val_loss=self.last_val_loss, last_val_step=self.last_val_step,
                             best_step=self.best_step, run_id=self.run_id, corpus=self.corpus_record)

    def save(self, path: Path):
        self.check_finite_weights()
        save_checkpoint(path, self.model, self.optimizer, self.training_state().to_meta(), vocab=self.corpus.vocab,
                        extra_tensors=carried_state_arrays(self.model, self.state))
        if path == self.folder.latest:
            self.saved_step = self.step
        self.emit("checkpoint", {"path": str(path), "step": self.step, "best": path == self.folder.best})

    def emit_sample(self):
        with self.interruptible():
            text = "".join(sample(self.model, self.corpus.vocab, length=self.config.sample_length,
                                  seed=self.config.seed + self.step, threads=self.sample_threads))
        self.emit("sample", {"step": self.step, "text": text})

    def write_metrics(self, val=None):
        record = {"step": self.step, "time": round(self.train_seconds, 3), "lr": self.optimizer.lr,
                  "chars": self.step * self.config.batch_size * self.config.seq_len,
                  "epoch": round(self.stream.epoch, 6), "chars_per_sec": round(self.chars_per_sec(), 1)}
        if self.recent_losses:
            record["train_loss"] = sum(self.recent_losses) / len(self.recent_losses)
        if val is not None:
            record.update(val_loss=val["loss_nats"], val_bpc=val["bpc"], val_chars=val["chars"] + 1,
                          val_total_chars=len(self.corpus.val_ids))
        record["threads"] = self.step_threads.threads
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        self.recent_losses = []

    def write_config(self):
        self.folder.write_config(_config_record(self.run_id, self.config, self.model, self.corpus,
                                                self.corpus_record, self.resumed_from, self.recipe,
                                                self.step_threads.record()))

    def summary(self, reason: str) -> dict:
        return {"steps": self.step, "seconds": self.train_seconds, "chars_per_sec": self.chars_per_sec(),
                "best_val_loss_nats": self.best_val_loss, "last_val_loss_nats": self.last_val_loss,
                "best_step": self.best_step, "last_val_step": self.last_val_step, "latest_step": self.saved_step,
                "checkpoint": str(self.folder.latest) if self.saved_step is not None else None,
                "best_checkpoint": str(self.folder.best) if self.folder.best.exists() else None,
                "out_dir": str(self.folder.path), "stopped_reason": reason,
                "wall_seconds": time.perf_counter() - self.started, "threads": self.step_threads.record(),
                "startup_seconds": (self.plan.clock_start - self.started
                                    if self.plan is not None and self.plan.clock_start is not None else None),
                "val_chars": self.last_val_chars[0] if self.last_val_chars else None,
                "val_total_chars": len(self.corpus.val_ids)}

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            reason = self.loop()
            if self.evaluated_step != self.step or self.saved_step != self.step:
                self.evaluate_and_save(final=True)
        except KeyboardInterrupt:
            if self.undo_partial_step() and self.saved_step != self.step:
                self.save(self.folder.latest)
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
            with self.step_threads.unit(config.batch_size * config.seq_len):
                loss, lr = self.train_step()
            if self.plan is not None:
                self.plan.step_ended(self.step_seconds)
                if self.plan.needs_eval_probe():
                    self.probe_eval_speed()
            self.report_threads()
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

    def probe_eval_speed(self):
        """Time an evaluation of a short piece of the validation text, so that the time plan
        knows how much of it the final evaluation can read (its loss is not used)."""
        count = self.plan.probe_chars()
        started = time.perf_counter()
        evaluate_ids(self.model, self.corpus.val_ids[:count], streams=EVAL_STREAMS, threads=self.eval_threads)
        self.plan.evaluated(count, time.perf_counter() - started)

    def report_threads(self):
        """Once the first thread probe is over: say what it chose (printed, and in config.json)."""
        if self.threads_reported or not self.step_threads.decided:
            return
        self.threads_reported = True
        self.emit("threads", self.step_threads.record())
        self.write_config()

    def choose_dropout(self):
        """Set the dropout rnn.training.recipe gives for the passes this run will make, as soon as they
        can be planned: at once, or with a time budget once the speed probe has run."""
        limits = self.config.limits()
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
        self.recipe = {**(self.recipe or {}), "dropout": dropout, "planned_passes": round(passes, 2),
                       "train_chars": len(self.corpus.train_ids),
                       "seconds_per_step": round(seconds_per_step, 5) if seconds_per_step else None,
                       "limits": limits}
        self.emit("recipe", {key: value for key, value in self.recipe.items() if key not in ("cell", "size", "lr")})
        self.write_config()

    def step_event(self, loss: float, lr: float) -> dict:
        limits = self.config.limits()
        time_left = self.plan.seconds_left() if self.plan is not None else None
        return {"step": self.step, "total_steps": limits["steps"], "time_left": time_left,
                "epoch": self.stream.epoch, "train_loss": loss, "lr": lr, "chars_per_sec": self.chars_per_sec(),
                "eta": self.eta(), "val_loss": self.last_val_loss}


@configured_for_training()  # BLAS threads, malloc, compile helper: set for training only (minigrad.runtime)
def train(config: TrainConfig, corpus: Corpus, out_dir, resume=None, on_event=None, rewind=False) -> dict:
    """Train a char-LM on `corpus`, writing checkpoints and metrics into `out_dir` (the config,
    corpus and folder of a resumed run as `minigrad-rnn train` makes them: rnn.training.resume_policy.plan_run).

    Returns {"steps", "seconds", "chars_per_sec", "best_val_loss_nats", "last_val_loss_nats",
    "best_step", "last_val_step", "latest_step", "checkpoint", "best_checkpoint", "out_dir",
    "stopped_reason"}: the val losses of the best checkpoint and of the last evaluation, the steps
    they were measured at and the step of the latest checkpoint; stopped_reason is "steps",
    "epochs", "time_budget" or "interrupted". `seconds` counts training steps only (not
    evaluation, sampling or saving), over all resumed runs, as the time budget does.
    `on_event(kind, data)` is called with kind "step", "eval", "sample", "checkpoint", "recipe", "rewind",
    "stop". Resuming a checkpoint of the folder's own run that is earlier than its latest (its best,
    say) would replace the latest and drop the later metrics: RunRewindError, unless `rewind`.
    Raises ConfigError (bad config), TextError (text too short for the batches),
    CheckpointError (bad resume checkpoint, or a failed save), RunLockedError, RunExistsError,
    RunRewindError, RunFileError, OSError (out_dir not writable), TrainingDiverged: all but OSError are
    rnn.errors.UserError.
    """
    started = time.perf_counter()
    config = replace(config).validate()  # a copy: resuming may change the architecture fields
    if config.batch_size is None:  # what config.json and the checkpoints record is the number used
        config = replace(config, batch_size=recipe.batch_size_for(len(corpus.train_ids), config.seq_len))
    if config.cell_file:
        load_cell_file(config.cell_file)
    folder = RunFolder.prepare(out_dir)  # a planted link or FIFO: refused before anything is written
    stream = BatchStream(corpus.train_ids, config.batch_size, config.seq_len)  # TextError if the text is too short
    with folder.lock():
        folder.remove_temporaries()
        choices = {}  # what the recipe chose before the run: "cell", "size", "lr"
        if resume is None:
            folder.check_new_run()
            config, choices["cell"] = sizing.choose_cell(config)
            config, choices["size"] = sizing.choose_size(config, corpus)
            if config.lr is None:  # the recipe's for the width: config.json records the number used
                config = replace(config, lr=peak_lr(config))
                choices["lr"] = {"lr": config.lr, "hidden": config.hidden, "optimizer": config.optimizer}
            choices = {name: choice for name, choice in choices.items() if choice}
            start = fresh_start(config, corpus, stream)
        else:
            start = resumed_start(config, corpus, stream, resume, folder)
            config = config.with_size(start.model.config.layers, start.model.config.hidden).with_cell(
                start.model.config.cell)
            config = replace(config, lr=peak_lr(config))
            holds_run = folder.holds_run(resume, start.progress.run_id)
            if holds_run:  # an earlier checkpoint of this folder's run: later work is not dropped silently
                latest_step = folder.check_rewind(resume, start.progress.step, rewind)
                if latest_step is not None and on_event:
                    on_event("rewind", {"from_step": latest_step, "to_step": start.progress.step})
            if not holds_run or start.progress.run_id is None:
                # a new folder (or a run from before run ids): a run of its own
                start.progress = replace(start.progress, run_id=new_run_id())
        folder.start_metrics(start.progress.step if resume is not None else None)
        with folder.open_metrics() as metrics_file:
            run = _Run(config, corpus, folder, start, metrics_file, on_event,
                       corpus_record=corpus.record(),  # resolved paths and a fingerprint: resumable from anywhere
                       resumed_from=str(resume) if resume is not None else None, choices=choices)
            run.started = started  # the wall time the summary reports counts start-up too
            if choices:
                run.emit("recipe", choices)
            run.write_config()
            with _GracefulInterrupt(run):
                return run.run()
