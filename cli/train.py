"""`minigrad-rnn train`: the options of a training run, and what is printed while and after it runs.

The options default to None ("not given"), so that only what the user typed overrides
rnn.training.config's defaults, or a resumed run's own settings; `--help` shows rnn.training.config's
defaults (SettingOption) and offers its choice lists as they are. What the run trains with
(the settings merged on resume, the text, the run's own text checked) is decided by
rnn.training.resume_policy.plan_run; the training itself is rnn.training.loop.train.
"""

import math
import os
import sys
from pathlib import Path

import click

from cli.app import EXIT_INTERRUPTED, PROGRAM, LibraryCommand, flag
from cli.options import (CHECKPOINT, EXISTING_FILE, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, cell_file_option,
                         load_cell_file)
from cli.output import GuardedOutput, strict_json, visible
from cli.progress import TrainingDisplay, bits_per_char, format_duration, format_loss, format_rate
# rnn.training.config is light (no numpy, no minigrad): --help reads the defaults and choices there.
from rnn.training.config import (DEFAULT_BATCH_SIZE, DEFAULT_TIME_BUDGET, DTYPE_NAMES, ENGINES, LR_TIMES_HIDDEN,
                                 MATMUL_PRECISIONS, MIN_WINDOWS_PER_STREAM, OPTIMIZERS, OTHER_OPTIMIZERS_LR, SCHEDULES,
                                 TrainConfig)


class SettingOption(click.Option):
    """An option of a TrainConfig setting: None when not given; its help shows rnn.training.config's default."""

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        default = TrainConfig.defaults().get(self.name)
        if "default" not in extra and default is not None and ctx.show_default is not False:
            extra["default"] = str(default)
        return extra


def setting(*names, **attributes):
    """click.option for a setting of TrainConfig (see SettingOption)."""
    return click.option(*names, cls=SettingOption, default=None, **attributes)


class EscapedText(click.ParamType):
    """A string in which \\n, \\t, \\r, \\\\, \\xHH, \\uHHHH and \\UHHHHHHHH stand for the characters they name."""

    name = "TEXT"
    _simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}
    _digits = {"x": 2, "u": 4, "U": 8}

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        out, position = [], 0
        while position < len(value):
            backslash = value.find("\\", position)
            if backslash < 0:
                out.append(value[position:])
                break
            out.append(value[position:backslash])
            kind = value[backslash + 1:backslash + 2]
            if kind in self._simple:
                out.append(self._simple[kind])
                position = backslash + 2
                continue
            digits = value[backslash + 2:backslash + 2 + self._digits.get(kind, 0)]
            if kind not in self._digits or len(digits) != self._digits[kind] \
                    or not all(d in "0123456789abcdefABCDEF" for d in digits):
                self.fail(f"unknown escape {value[backslash:backslash + 2]} in {value} "
                          f"(known: \\n \\t \\r \\\\ \\0 \\xHH \\uHHHH \\UHHHHHHHH)", param, ctx)
            code = int(digits, 16)
            if code >= 0x110000 or 0xD800 <= code < 0xE000:
                self.fail(f"{value[backslash:backslash + 2 + len(digits)]} is not a character", param, ctx)
            out.append(chr(code))
            position = backslash + 2 + len(digits)
        return "".join(out)


@click.command(cls=LibraryCommand, short_help="Train a model on text files (or tiny-shakespeare).")
@click.argument("texts", metavar="[TEXT]...", nargs=-1, type=click.Path(exists=True, path_type=Path))
@setting("--cell", show_default="chosen: lstm",
         help="Recurrent cell: a built-in name or one from --cell-file. When not given, the family that "
              "scored lowest in the runs rnn/training/recipe.py lists, at the budget nearest the run's "
              "(printed, recorded in config.json).")
@cell_file_option
@setting("--layers", type=POSITIVE_INT, show_default="chosen, see --hidden",
         help="Number of recurrent layers.")
@setting("--hidden", type=POSITIVE_INT, show_default="chosen: 2x256 without a time budget, smaller for a short text",
         help="Hidden size of each layer. When neither --layers nor --hidden is given and the run has a "
              "time budget, the trainer times a few steps of a 2x256 model first and takes the largest of "
              "1x256, 2x256, 2x384 and 2x512 that will read the text at least 4 times in the budget (2x512 "
              "only for texts of 0.90 MB or more, 2x384 of 0.51 MB); it prints the choice and records it in "
              "config.json. A short text gets a smaller model (at most 3.7 parameters per character of "
              "text, down to 1x32), "
              "with or without a time budget.")
@setting("--embed", type=POSITIVE_INT, help="Size of the character embedding.")
@setting("--dropout", type=click.FloatRange(0, 1, max_open=True),
         help="Dropout between layers and before the output layer. When not given, the trainer "
              "chooses it from how many passes over the text the run will make (none for a few, "
              "more for many; with --time-budget it measures its speed over the first steps), "
              "prints the choice and records it in config.json.")
@setting("--locked-dropout/--no-locked-dropout", help="Draw the --dropout mask once per sequence of a window "
         "and share it over its steps (variational dropout), instead of a new mask at every step.")
@setting("--weight-drop", type=click.FloatRange(0, 1, max_open=True),
         help="DropConnect on the recurrent weights (AWD-LSTM): in training, each layer's W_hh has "
              "this fraction of its weights zeroed (the rest scaled up), one mask per window. Cells "
              "with recurrent weights only.")
@setting("--embed-dropout", type=click.FloatRange(0, 1, max_open=True),
         help="In training, drop whole characters: this fraction of the embedding's rows is zeroed "
              "(the rest scaled up), one mask per window.")
@setting("--seq-len", type=POSITIVE_INT, help="Characters per truncated-BPTT window.")
@setting("--batch-size", type=POSITIVE_INT, show_default=f"{DEFAULT_BATCH_SIZE}, fewer for a short text",
         help="Parallel streams of text per step. When not given, a text too short for "
              f"{DEFAULT_BATCH_SIZE} streams of {MIN_WINDOWS_PER_STREAM} windows each gets as many as it holds.")
@setting("--lr", type=POSITIVE_FLOAT,
         show_default=f"chosen: {LR_TIMES_HIDDEN:g} / hidden for adam and adamw, {OTHER_OPTIMIZERS_LR:g} for the others",
         help="Peak learning rate (adamw at 256 units: 0.0195, at 512: 0.0098).")
@setting("--optimizer", type=click.Choice(OPTIMIZERS))
@setting("--beta2", type=click.FloatRange(0, 1, max_open=True),
         help="Adam/AdamW's decay rate of the squared-gradient average.")
@setting("--weight-decay", type=click.FloatRange(min=0),
         help="Weight decay: decoupled in adamw (default 0.1), an L2 penalty in the others (default 0).")
@setting("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule after warmup.")
@setting("--warmup", type=NON_NEGATIVE_INT, help="Steps of linear learning-rate warmup.")
@setting("--grad-clip", type=click.FloatRange(min=0),
         help="Clip the gradient norm to this value (0: no clipping).")
@setting("--steps", type=POSITIVE_INT,
         help="Stop after this many optimizer steps (in total: a resumed run counts its earlier steps).")
@setting("--epochs", type=POSITIVE_FLOAT, help="Stop after this many passes over the training text.")
@setting("--time-budget", type=POSITIVE_FLOAT, metavar="SECONDS",
         show_default=f"{DEFAULT_TIME_BUDGET:g} when no other limit is given",
         help="Stop after this many seconds of training (whichever limit comes first).")
@setting("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True),
         help="Fraction of the text (its end) held out for validation.")
@setting("--val-file", type=EXISTING_FILE,
         help="Validate on this file instead of the end of the text (its characters must occur in the text).")
@setting("--separator", type=EscapedText(), show_default="a newline",
         help="Put between two files of TEXT (escapes such as \\n, \\t, \\u2029 are understood; \"\" for none).")
@setting("--eval-every", type=NON_NEGATIVE_INT,
         help="Steps between validation runs and checkpoints (0: only at the end).")
@setting("--sample-every", type=NON_NEGATIVE_INT, help="Steps between samples (0: never).")
@setting("--sample-length", type=POSITIVE_INT, help="Characters per sample.")
@setting("--seed", type=int, help="Seed of initialisation, dropout and sampling.")
@setting("--dtype", type=click.Choice(DTYPE_NAMES))
@setting("--engine", type=click.Choice(ENGINES),
         help="fused: one compiled kernel per step; eager: one graph node per gate op.")
@setting("--matmul-precision", type=click.Choice(MATMUL_PRECISIONS),
         help="bf16: the recurrent layers' products on bf16 operands with float32 sums (CPUs with "
              "AVX512_BF16; fused engine, float32); weights and checkpoints stay float32.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Read only the files of a TEXT folder that match GLOB (the path inside the folder or the "
                   "file name; * matches / too; repeat for several, e.g. --include '*.py').")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Leave out the files of a TEXT folder that match GLOB (as --include; repeat for several).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder for checkpoints and metrics  [default: runs/<date_time>, or the folder of --resume]")
@click.option("--resume", type=CHECKPOINT, default=None,
              help="Continue training from this checkpoint. Options given with it take effect; those that "
                   "define the model (--cell, --layers, --hidden, --embed, --dtype) must match it.")
@click.option("--rewind", is_flag=True,
              help="Let --resume take an earlier checkpoint of the run folder's own run (its best, say): "
                   "its later latest checkpoint and metrics are replaced. Without it that is refused.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing while training.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results at the end.")
def train(texts, out, resume, rewind, quiet, as_json, include, exclude, **options):
    """Train a character-level language model on TEXT (UTF-8 files or folders).

    Without TEXT it trains on tiny-shakespeare, which ships with the package. Several
    TEXTs are read as one text, in the order given, with --separator between two files;
    a folder stands for the files under it, sorted by their path inside it (code point
    order; hidden, empty and binary files, links and files that are not regular are
    skipped, with a one-line note; --include and --exclude select among them). An empty
    file named as TEXT is skipped too.
    The last --val-frac of the whole is held out for validation, unless --val-file is
    given. The run folder gets latest.safetensors, best.safetensors, metrics.jsonl and
    config.json. Ctrl-C saves a checkpoint and stops; --resume continues from it.
    """
    context = click.get_current_context()
    # What the user typed (or set through the environment / a default map): only that
    # overrides a resumed run's own settings.
    given = {name: value for name, value in options.items()
             if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    from rnn.training.resume_policy import checked_settings, plan_run

    given = checked_settings(given)  # an ArgumentError is a usage error (LibraryCommand)
    load_cell_file(options["cell_file"])
    if given.get("cell") is not None:
        _check_cell_name(given["cell"])

    from rnn.training.loop import train as run_training

    plan = plan_run(given, texts, resume=resume, out_dir=out, include=include, exclude=exclude,
                    on_note=_note_printer(quiet))
    if plan.limit_reached:  # exit 0, as `make` with nothing to remake: nothing is evaluated or written
        click.echo(f"nothing to do: {visible(resume)}: {_reached(plan.limit_reached)} (the limits count the run's "
                   f"earlier training: give a larger one to train on)", err=True)
        sys.exit(0)
    config, corpus, texts, out = plan.config, plan.corpus, plan.texts, plan.out_dir

    # Progress goes to stdout, unless stdout is reserved for the --json result. A closed stdout
    # (or a pipe whose reader is gone) stops the printing, never the run: said once at the end.
    stdout = GuardedOutput(sys.stdout)
    stream = GuardedOutput(sys.stderr) if as_json else stdout
    live = stream.isatty() and os.environ.get("TERM") != "dumb"
    display = TrainingDisplay(stream, live=live, quiet=quiet)
    if not quiet and _cold_start():
        click.echo("compiling kernels (first run only: later runs load them from the cache)", file=stream)
    try:
        summary = run_training(config, corpus, out, resume=resume, on_event=display, rewind=rewind)
    finally:
        display.finish()

    if as_json:
        stdout.write(strict_json({key: summary.get(key) for key in TRAIN_JSON_KEYS}) + "\n")
    if not quiet:
        stream.write(_training_summary(summary, texts, config.cell_file, len(corpus.vocab)) + "\n")
    stdout.flush()
    if stdout.lost:
        latest = summary.get("checkpoint")
        click.echo(f"warning: standard output was closed, so printing stopped; the run went on to step "
                   f"{summary.get('steps')}" + (f" and saved {visible(latest)}" if latest else ""), err=True)
    if summary.get("stopped_reason") == "interrupted":
        sys.exit(EXIT_INTERRUPTED)


TRAIN_JSON_KEYS = ("steps", "seconds", "chars_per_sec", "best_val_loss_nats", "last_val_loss_nats",
                   "best_step", "last_val_step", "latest_step",
                   "checkpoint", "best_checkpoint", "out_dir", "stopped_reason", "wall_seconds", "val_chars",
                   "val_total_chars", "threads")


def _cold_start() -> bool:
    """Whether the engine's kernels are not in the cache yet: the first steps then compile them
    for seconds, without a word otherwise."""
    import minigrad.kernels
    from minigrad.kernel_cache import kernels_are_cached

    return not kernels_are_cached(minigrad.kernels.__file__)


def _check_cell_name(name):
    from rnn.cells.registry import CellError, get_cell
    try:
        get_cell(name)
    except CellError as error:
        raise click.BadParameter(str(error), param_hint="'--cell'") from None


def _note_printer(quiet: bool):
    """on_note for the library: a note or warning in one line on stderr (--quiet leaves out the details)."""
    def note(notice):
        if not (quiet and notice.detail):
            click.echo(f"{notice.kind}: {visible(notice.render(flag))}", err=True)
    return note


def _reached(limit) -> str:
    """What a rnn.training.resume_policy.LimitReached says."""
    if limit.setting == "steps":
        return f"it is at step {limit.reached}, {flag(limit.setting)} {limit.limit} is reached"
    return f"it has trained {format_duration(limit.reached)}, {flag(limit.setting)} {limit.limit:g} is reached"


def _training_summary(summary: dict, texts, cell_file=None, vocab_size=None) -> str:
    best, last = summary.get("best_val_loss_nats"), summary.get("last_val_loss_nats")
    interrupted = summary.get("stopped_reason") == "interrupted"
    lines = [
        f"{'interrupted' if interrupted else 'done'}: {summary.get('steps')} steps in "
        f"{format_duration(summary.get('seconds'))} ({format_rate(summary.get('chars_per_sec'))} chars/s), "
        f"{format_duration(summary.get('wall_seconds'))} in all",
    ]

    chars, total = summary.get("val_chars"), summary.get("val_total_chars")
    part = f" on {chars:,} of {total:,} chars" if isinstance(chars, int) and chars != total else ""

    def val_loss(loss, step):
        return f"{format_loss(loss)} nats/char ({format_loss(bits_per_char(loss))} bits/char) at step {step}"

    # The latest checkpoint's number first: the best one was chosen on the validation text itself.
    if last is not None and summary.get("last_val_step") == summary.get("latest_step"):
        lines.append(f"latest val loss{part}: {val_loss(last, summary.get('last_val_step'))}")
    elif last is not None:
        lines.append(f"latest val loss: not evaluated at step {summary.get('latest_step')} "
                     f"(last evaluation: {val_loss(last, summary.get('last_val_step'))})")
    lines.append(f"best val loss: {val_loss(best, summary.get('best_step'))} (the best checkpoint)"
                 if best is not None else "best val loss: not evaluated yet")
    import math

    if last is not None and vocab_size and last > math.log(vocab_size):  # nan compares False: said elsewhere
        lines.append(f"warning: the latest val loss is worse than a uniform guess over the {vocab_size} characters "
                     f"(ln {vocab_size} = {math.log(vocab_size):.4f}): the model has not learnt yet, or memorised its "
                     f"training text (try a smaller --hidden, more --dropout or fewer --steps)")
    latest, best_checkpoint = summary.get("checkpoint"), summary.get("best_checkpoint")
    # A resumed run's text paths come from its checkpoint: printed like any name from a file.
    latest, best_checkpoint = (visible(path) if path else path for path in (latest, best_checkpoint))
    if latest is None:
        lines.append("no checkpoint was saved")
        return "\n".join(lines)
    lines.append(f"checkpoints: {latest} (latest)" + (f", {best_checkpoint} (best)" if best_checkpoint else ""))
    import shlex

    # A checkpoint of a custom cell loads only with the file that declares the cell.
    cell = f" --cell-file {visible(shlex.quote(str(cell_file)))}" if cell_file else ""
    if interrupted:
        given = "".join(f"{visible(shlex.quote(str(text)))} " for text in texts or ())
        lines.append(f"continue with: {PROGRAM} train {given}--resume {latest}{cell}")
    else:
        lines.append(f"sample with: {PROGRAM} sample {best_checkpoint or latest}{cell}")
    return "\n".join(lines)

