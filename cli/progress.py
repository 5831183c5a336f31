"""What `minigrad-rnn train` shows while it runs: a live progress line or plain log lines.

`TrainingDisplay` is the `on_event(kind, data)` callback given to `rnn.training.loop.train`.
On a terminal it keeps one progress line up to date in place (step/total or time left,
train loss, last val loss, chars/s, ETA) and prints evaluations and samples above it;
anywhere else (a pipe, a log file, CI) it writes plain, complete lines, a few of them.

Only formatting lives here: every number shown comes from the trainer's events.
This module must stay light (no numpy, no rnn): it is imported by the CLI at start-up.
"""

import math
import numbers
import shutil
import time

from cli.output import is_terminal, visible_text
from rnn.training.config import DEFAULT_SIZE, LR_BY_WIDTH_OPTIMIZERS, LR_SMALLEST_WIDTH, LR_TIMES_HIDDEN

# A terminal line is redrawn at most this often; a log gets a progress line at most this often.
REDRAW_SECONDS = 0.1
LOG_SECONDS = 10.0
SAMPLE_RULE = "-" * 60


def _real(value):
    """`value` as a float if it is a real number (not a bool), else None. The formats below
    also print values read from files (a checkpoint's train_seconds...), which may be anything."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def format_duration(seconds) -> str:
    """12s, 3m05s, 1h02m: short and fixed enough to read at a glance."""
    seconds = _real(seconds)
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_rate(per_second) -> str:
    """A count per second with a k/M suffix: 950, 12.3k, 1.2M."""
    per_second = _real(per_second)
    if per_second is None or not math.isfinite(per_second):
        return "?"
    for limit, suffix, scale in ((1e6, "M", 1e6), (1e3, "k", 1e3)):
        if per_second >= limit:
            return f"{per_second / scale:.1f}{suffix}"
    return f"{per_second:.0f}"


def format_loss(loss) -> str:
    """'2.3456'; '-' for no loss yet; '?' for a value that is not a number."""
    if loss is None:
        return "-"
    return "?" if _real(loss) is None else f"{_real(loss):.4f}"


def bits_per_char(nats):
    return None if _real(nats) is None else _real(nats) / math.log(2)


def _cell_reason(choice: dict) -> str:
    """Why rnn.training.recipe chose a cell: 'lstm: the lowest of the families measured at 300 s
    (sru 0.048 nats/char behind)'."""
    behind = choice.get("behind") if isinstance(choice.get("behind"), dict) else {}
    others = ", ".join(f"{name} {gap:.3f} nats/char behind" for name, gap in behind.items()
                       if name != choice.get("cell") and isinstance(gap, (int, float)))
    budget = choice.get("measured_budget")
    at = f" at {budget:g} s" if isinstance(budget, (int, float)) else ""
    return (f"{choice.get('cell')}: the lowest of the families measured{at}"
            + (f" ({others})" if others else ""))


class TrainingDisplay:
    """Turns the trainer's events into output on `stream` (see the module docstring).

    quiet: print nothing while training (the final summary is the caller's business).
    live: redraw one line in place with carriage returns (only on a terminal).
    """

    def __init__(self, stream, live: bool, quiet: bool = False, clock=time.monotonic, width=None):
        self.stream, self.live, self.quiet, self.clock = stream, live, quiet, clock
        # Samples are made over the corpus's characters: a terminal gets their control
        # characters as escapes, a log file the text as it is (see cli/output.py).
        self.terminal = live or is_terminal(stream)
        # A line longer than the terminal would wrap, and "\r" could no longer redraw it.
        self.width = width or shutil.get_terminal_size().columns
        self.last_val_loss = None
        self.last_step = None
        self.line_width = 0          # characters of the progress line now on screen
        self.last_draw = -math.inf
        self.last_log = -math.inf

    # ---- the callback -------------------------------------------------------------------
    def __call__(self, kind: str, data: dict):
        if self.quiet:
            return
        handler = getattr(self, f"on_{kind}", None)
        if handler is not None:
            handler(data)

    def on_step(self, data):
        self.last_step = data
        if data.get("val_loss") is not None:
            self.last_val_loss = data["val_loss"]
        now = self.clock()
        if self.live:
            if now - self.last_draw >= REDRAW_SECONDS or data.get("step") == data.get("total_steps"):
                self._draw(self.progress_line(data))
                self.last_draw = now
        elif now - self.last_log >= LOG_SECONDS:
            self._print(self.progress_line(data))
            self.last_log = now

    def on_eval(self, data):
        self.last_val_loss = data.get("val_loss")
        step = data.get("step", "?")
        best = " (best so far)" if data.get("improved") else ""
        train_loss = self.last_step.get("train_loss") if self.last_step else None
        chars, total = data.get("val_chars"), data.get("val_total_chars")
        part = f" on {chars:,} of {total:,} chars" if isinstance(chars, int) and chars != total else ""
        self._print(f"step {step}: train loss {format_loss(train_loss)}, "
                    f"val loss{part} {format_loss(self.last_val_loss)} nats/char "
                    f"({format_loss(bits_per_char(self.last_val_loss))} bits/char){best}")

    def on_eval_progress(self, data):
        """An evaluation that has run for more than a second shows how far it is."""
        seconds, done, of = _real(data.get("seconds")), _real(data.get("done")), _real(data.get("of"))
        if seconds is None or seconds < 1 or not done or not of:
            return
        line = f"evaluating at step {data.get('step')}: {100 * done / of:.0f}% of {int(of):,} chars"
        now = self.clock()
        if self.live and now - self.last_draw >= REDRAW_SECONDS:
            self._draw(line)
            self.last_draw = now
        elif not self.live and now - self.last_log >= LOG_SECONDS:
            self._print(line)
            self.last_log = now

    def on_threads(self, data):
        how = data.get("how")
        if how == "measured":
            probe = data.get("first_probe_ms_per_unit") or {}
            timings = ", ".join(f"{count}: {_real(ms) * 1000:.1f} us" for count, ms in sorted(probe.items())
                                if _real(ms) is not None)
            self._print(f"threads: {data.get('threads')} of {data.get('available')} (measured per char: {timings}; "
                        f"measured again as the load changes; NUMBA_NUM_THREADS fixes it)")
        else:
            self._print(f"threads: {data.get('threads')} ({how})")

    def on_recipe(self, data):
        model_and_dropout = {name: choice for name, choice in data.items() if name != "lr"}
        if model_and_dropout:
            self._say_model_or_dropout(model_and_dropout)
        lr = data.get("lr")
        if isinstance(lr, dict):
            # (rnn.training.recipe.lr_for: Adam's rate from the width, one rate for the other optimizers)
            rule = (f" at {lr.get('hidden')} units ({LR_TIMES_HIDDEN:g} / hidden, at most {LR_TIMES_HIDDEN:g} / "
                    f"{LR_SMALLEST_WIDTH}: the best rate falls with the width)"
                    if lr.get("optimizer") in LR_BY_WIDTH_OPTIMIZERS else "")
            self._print(f"learning rate {lr.get('lr')} for {lr.get('optimizer')}{rule}; --lr sets it yourself")

    def _say_model_or_dropout(self, data):
        size, cell = data.get("size"), data.get("cell")
        # The cell's reason and flag, when the recipe chose it (a --cell given is not said again).
        why = f"; {_cell_reason(cell)}" if isinstance(cell, dict) else ""
        flags = "--cell/--layers/--hidden" if isinstance(cell, dict) else "--layers/--hidden"
        if isinstance(size, dict):
            model = f"model {size.get('cell')} {size.get('layers')}x{size.get('hidden')} " \
                    f"({size.get('parameters')} parameters)"
            if size.get("short_text"):
                self._print(f"{model}: a bigger one would memorise this short text{why}; {flags} set it yourself")
                return
            seconds = size.get("default_seconds_per_step")
            default = "x".join(map(str, DEFAULT_SIZE))
            measured = (f" (measured: {seconds * 1000:.0f} ms a step at {default})"
                        if isinstance(seconds, (int, float)) else "")
            self._print(f"{model} for about {size.get('planned_passes')} passes over the text in the time "
                        f"budget{measured}{why}; {flags} set it yourself")
            return
        if isinstance(cell, dict):
            self._print(f"cell {_cell_reason(cell)}; --cell sets it yourself")
            return
        passes, seconds = data.get("planned_passes"), data.get("seconds_per_step")
        plan = ""
        if isinstance(passes, (int, float)) and math.isfinite(passes):
            plan = f" for about {passes:.1f} passes over the text"
            if isinstance(seconds, (int, float)):
                plan += f" (measured: {seconds * 1000:.0f} ms a step)"
        self._print(f"dropout {data.get('dropout')}{plan}; --dropout sets it yourself")

    def on_rewind(self, data):
        self._print(f"rewinding the run from step {data.get('from_step')} to step {data.get('to_step')} (--rewind): "
                    f"its latest checkpoint and the metrics after step {data.get('to_step')} will be replaced")

    def on_sample(self, data):
        step = data.get("step", "?")
        text = data.get("text", "").strip("\n")
        if self.terminal:
            text = visible_text(text)
        self._print(f"{SAMPLE_RULE}\nsample at step {step}:\n{text}\n{SAMPLE_RULE}")

    def finish(self):
        """Leave the terminal on a fresh line (call once training returns or fails)."""
        self._clear()

    # ---- the progress line --------------------------------------------------------------
    def progress_line(self, data) -> str:
        step, total = data.get("step"), data.get("total_steps")
        parts = [f"step {step}/{total}" if total else f"step {step}"]
        if data.get("time_left") is not None:
            parts.append(f"{format_duration(data['time_left'])} left")
        parts.append(f"loss {format_loss(data.get('train_loss'))}")
        parts.append(f"val {format_loss(self.last_val_loss)}")
        parts.append(f"{format_rate(data.get('chars_per_sec'))} chars/s")
        eta, left = data.get("eta"), data.get("time_left")
        # With a time budget that ends first, the ETA is the time left, already shown.
        if eta is not None and not (left is not None and format_duration(eta) == format_duration(left)):
            parts.append(f"ETA {format_duration(eta)}")
        return " | ".join(parts)

    # ---- output -------------------------------------------------------------------------
    def _draw(self, line):
        line = line[:max(self.width - 1, 1)]
        padding = " " * max(0, self.line_width - len(line))  # wipe the rest of a longer old line
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self.line_width = len(line)

    def _clear(self):
        if self.line_width:
            self.stream.write("\r" + " " * self.line_width + "\r")
            self.stream.flush()
            self.line_width = 0

    def _print(self, text):
        """A permanent message; on a terminal it goes above the progress line, which is redrawn."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.live and self.last_step is not None:
            self._draw(self.progress_line(self.last_step))
