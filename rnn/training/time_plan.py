"""The time budget of a training run as the wall time the user waits: what it may still
spend on steps, and how much of the validation text its evaluations may read.

    plan = TimePlan(budget=120, seconds_before=0, val_chars=111_540, parameters=800_000, dtype="float32",
                    eval_every=500)

The clock starts when the session's first step ends (what comes before, loading the text,
timing the model sizes, loading or compiling the kernels in the first step, is start-up) and counts everything after it: steps, evaluations,
samples, checkpoint saves. Training stops when one more step, the final evaluation and
the final saves would not fit in what is left (`time_is_up`), so the run ends within the
budget instead of evaluating after it.

The final evaluation is planned from a measured speed: a few steps in, the trainer times
an evaluation of a short piece of the validation text (`needs_eval_probe`, PROBE_CHARS);
every evaluation after it updates the speed. All the evaluations of the run together (one
every `eval_every` steps, as many as the budget holds at the speed of the last step, and
the final one) may take EVAL_SHARE of the budget: where the whole validation text would
take longer, every evaluation of the run reads the same first N characters of it (a
contiguous piece, so that the loss is that of reading a text in order, and the losses of
the run are comparable), and says "on N of M characters". The final one reads fewer if
the time left is shorter than planned; none reads fewer than PROBE_CHARS.

A resumed run's earlier sessions count with their training time (`seconds_before`, the
checkpoint's train_seconds), as the budget always has.
"""

import time

import numpy as np

# The share of the budget the run's evaluations may take together before they read only a part
# of the text. (It was 0.1 for each evaluation: a 300 s run of a 2x512 model spent ~7% of its
# budget outside its steps, mostly in evaluations of all of tiny-shakespeare's validation
# text; at 0.04 its five evaluations read 61,413 of the 111,539 characters, 12.4 s in all.)
EVAL_SHARE = 0.04
# Characters of the validation text the speed probe reads (16 streams of 256, as training's
# evaluations read it), and the fewest any evaluation under a budget reads.
PROBE_CHARS = 4096
# The probe runs after this many steps of the session: the first steps compile the kernels
# and let the thread choice settle (minigrad.threads), both of which a probe would time.
PROBE_AFTER_STEPS = 3
# Until a save has been timed: a checkpoint (weights and two optimizer moments) is written
# at this many bytes a second, plus a fixed cost. Cautious: a save is usually faster.
SAVE_BYTES_PER_SECOND = 100e6
SAVE_SECONDS = 0.05


def _now() -> float:
    return time.perf_counter()  # looked up at each call: the same clock as the training loop's


class TimePlan:
    """The time budget of one session of a run: what is used, what is left, what an evaluation
    may read and when to stop (see the module's docstring). `clock`: seconds, for tests."""

    def __init__(self, budget: float, seconds_before: float, val_chars: int, parameters: int, dtype,
                 eval_every: int = 0, clock=None):
        self.budget = budget
        self.eval_every = eval_every  # steps between two evaluations (0: only the final one)
        self.seconds_before = seconds_before
        self.val_chars = val_chars
        self.clock = clock or _now
        self.clock_start = None  # when this session's first step started
        self.steps = 0  # steps of this session
        self.last_step_seconds = 0.0
        self.eval_seconds_per_char = None  # measured
        self.planned_chars = None  # what every evaluation reads, once planned
        self.save_seconds = SAVE_SECONDS + 3 * parameters * np.dtype(dtype).itemsize / SAVE_BYTES_PER_SECOND

    # -- the clock -------------------------------------------------------------------------------

    def used(self) -> float:
        """Seconds of the budget spent: earlier sessions' training, and this session's wall time."""
        if self.clock_start is None:
            return self.seconds_before
        return self.seconds_before + self.clock() - self.clock_start

    def seconds_left(self) -> float:
        return max(0.0, self.budget - self.used())

    def step_ended(self, seconds: float) -> None:
        """A step took `seconds`. The first one ends start-up: the clock starts."""
        if self.clock_start is None:
            self.clock_start = self.clock()
        self.steps += 1
        self.last_step_seconds = seconds

    def reserve(self) -> float:
        """Seconds kept for the end: the final evaluation and saving two checkpoints (latest, best)."""
        rate = self.eval_seconds_per_char
        evaluation = rate * self.eval_chars(final=False) if rate is not None else 0.0
        return evaluation + 2 * self.save_seconds

    def fraction_done(self) -> float:
        """How far the run is through the time it has for steps, from 0 to 1: the learning-rate
        schedule follows it, so that it ends when the run does. The run's last step is the one
        after which `time_is_up`: the budget less the reserve for the final evaluation and saves.
        It counts the wall time evaluations, samples and saves take during the run (a 60 s run
        of a 1x256 model spent 13 s in them; timed by its steps alone, its schedule ended at
        78% of its course, the learning rate at 11% of its peak instead of its floor)."""
        for_steps = self.budget - self.reserve()
        return min(1.0, self.used() / for_steps) if for_steps > 0 else 1.0

    def time_is_up(self) -> bool:
        """Whether another step would leave too little time for the final evaluation and saves."""
        if self.clock_start is None:  # before the first step: only a budget already spent stops it
            return self.used() >= self.budget
        return self.used() + self.last_step_seconds + self.reserve() >= self.budget

    # -- evaluations -----------------------------------------------------------------------------

    def needs_eval_probe(self) -> bool:
        return self.eval_seconds_per_char is None and self.steps >= PROBE_AFTER_STEPS

    def probe_chars(self) -> int:
        return min(self.val_chars, PROBE_CHARS)

    def eval_chars(self, final: bool) -> int:
        """How many characters of the validation text (its first ones) an evaluation reads now."""
        rate = self.eval_seconds_per_char
        if rate is None:  # nothing measured yet (the run ends before the probe): the probe's size
            return self.probe_chars()
        if self.planned_chars is None:
            affordable = EVAL_SHARE * self.budget / self.planned_evaluations() / rate
            self.planned_chars = self.val_chars if self.val_chars <= affordable else max(self.probe_chars(),
                                                                                        int(affordable))
        if not final:
            return self.planned_chars
        fits = int((self.budget - self.used() - 2 * self.save_seconds) / rate)
        return max(self.probe_chars(), min(self.planned_chars, fits))

    def planned_evaluations(self) -> int:
        """The evaluations the run will make: one every `eval_every` of the steps the budget holds
        at the last step's speed, and the final one."""
        if not self.eval_every or self.last_step_seconds <= 0:
            return 1
        steps = (self.budget - self.seconds_before) / self.last_step_seconds
        return 1 + int(steps // self.eval_every)

    def evaluated(self, chars: int, seconds: float) -> None:
        """An evaluation of `chars` characters took `seconds`: the speed the next ones are planned with."""
        self.eval_seconds_per_char = seconds / max(chars, 1)

    def saved(self, seconds: float, files: int) -> None:
        """Saving `files` checkpoints took `seconds`."""
        self.save_seconds = seconds / max(files, 1)
