"""`minigrad-rnn train`: the options of a training run, resuming, and the summary printed at the end.

The options default to None ("not given"), so that only what the user typed overrides
rnn.config's defaults, or a resumed run's own settings; `--help` shows rnn.config's
defaults (SettingOption) and offers its choice lists as they are. The training itself is
rnn.train.train.
"""

import dataclasses
import os
import sys
from pathlib import Path

import click

from cli.app import EXIT_INTERRUPTED, PROGRAM, LibraryCommand, flag
from cli.options import (CHECKPOINT, EXISTING_FILE, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, cell_file_option,
                         load_cell_file, load_checkpoint)
from cli.output import GuardedOutput, strict_json, visible
from cli.progress import TrainingDisplay, bits_per_char, format_duration, format_loss, format_rate
# rnn.config and rnn.errors are light (no numpy, no minigrad): --help reads the defaults and choices there.
from rnn.config import (DEFAULT_BATCH_SIZE, DEFAULT_TIME_BUDGET, DTYPE_NAMES, ENGINES, LIMITS,
                        MIN_WINDOWS_PER_STREAM, MODEL_OPTIONS, OPTIMIZERS, SCHEDULES, TrainConfig)
from rnn.errors import UserError


class SettingOption(click.Option):
    """An option of a TrainConfig setting: None when not given; its help shows rnn.config's default."""

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        default = TrainConfig.defaults().get(self.name)
        if "default" not in extra and default is not None and ctx.show_default is not False:
            extra["default"] = str(default)
        return extra


def setting(*names, **attributes):
    """click.option for a setting of TrainConfig (see SettingOption)."""
    return click.option(*names, cls=SettingOption, default=None, **attributes)


def _default_run_dir() -> Path:
    import datetime

    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate = Path("runs") / stamp
    suffix = 2
    while candidate.exists():
        candidate = Path("runs") / f"{stamp}-{suffix}"
        suffix += 1
    return candidate


def _shipped_corpus():
    """The tiny-shakespeare text shipped inside the package (rnn/data/tinyshakespeare.txt)."""
    import importlib.resources

    return importlib.resources.files("rnn") / "data" / "tinyshakespeare.txt"


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
@setting("--cell", help="Recurrent cell: a built-in name or one from --cell-file.")
@cell_file_option
@setting("--layers", type=POSITIVE_INT, show_default="chosen, see --hidden",
         help="Number of recurrent layers.")
@setting("--hidden", type=POSITIVE_INT, show_default="chosen: 2x256 without a time budget, smaller for a short text",
         help="Hidden size of each layer. When neither --layers nor --hidden is given and the run has a "
              "time budget, the trainer times a few steps of a 2x256 model first and takes the largest of "
              "1x256, 2x256 and 2x384 that will read the text at least 3 times in the budget (2x384 only "
              "for texts of 0.76 MB or more); it prints the choice and records it in config.json. A short "
              "text gets a smaller model (at most 2.5 parameters per character of text, down to 1x32), "
              "with or without a time budget.")
@setting("--embed", type=POSITIVE_INT, help="Size of the character embedding.")
@setting("--dropout", type=click.FloatRange(0, 1, max_open=True),
         help="Dropout between layers and before the output layer. When not given, the trainer "
              "chooses it from how many passes over the text the run will make (none for a few, "
              "more for many; with --time-budget it measures its speed over the first steps), "
              "prints the choice and records it in config.json.")
@setting("--seq-len", type=POSITIVE_INT, help="Characters per truncated-BPTT window.")
@setting("--batch-size", type=POSITIVE_INT, show_default=f"{DEFAULT_BATCH_SIZE}, fewer for a short text",
         help="Parallel streams of text per step. When not given, a text too short for "
              f"{DEFAULT_BATCH_SIZE} streams of {MIN_WINDOWS_PER_STREAM} windows each gets as many as it holds.")
@setting("--lr", type=POSITIVE_FLOAT, help="Peak learning rate.")
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
    if given.get("val_file") is not None and given.get("val_frac") is not None:
        raise click.UsageError("give either --val-file or --val-frac, not both")
    if given.get("cell_file") is not None:
        given["cell_file"] = str(given["cell_file"])
    if given.get("val_file") is not None:
        given["val_file"] = str(given["val_file"].resolve())
    load_cell_file(options["cell_file"])
    if given.get("cell") is not None:
        _check_cell_name(given["cell"])

    from rnn.train import train as run_training

    checkpoint = load_checkpoint(resume, given.get("cell_file")) if resume else None
    resumed = checkpoint.meta if checkpoint else {}
    config = _train_config(given, resumed.get("train_config") or {}, checkpoint.config if checkpoint else None)
    if checkpoint:
        _exit_if_nothing_to_do(resumed, given, resume)
    if given.get("val_frac") is not None and config.val_file is not None:  # a resumed run's --val-file, replaced
        config = dataclasses.replace(config, val_file=None)
    if resume:
        corpus, config, texts = _load_resumed_corpus(texts, config, given, resumed, resume, quiet, include, exclude)
    else:
        corpus = _load_corpus(texts, config, quiet, include, exclude)
    out = out or (resume.parent if resume else _default_run_dir())

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
    from rnn.cells import CellError, get_cell
    try:
        get_cell(name)
    except CellError as error:
        raise click.BadParameter(str(error), param_hint="'--cell'") from None


def _train_config(given: dict, saved: dict, saved_model=None):
    """TrainConfig from the options typed, on top of a resumed run's own settings (`saved`, and
    `saved_model`, the checkpoint's model config: the options that define the model must match it)."""
    saved = dict(saved) if isinstance(saved, dict) else {}  # a damaged or hostile record: ignored
    if saved_model is not None:
        # The model's own record (checked when the checkpoint loaded) beats the train config's.
        model = {name: getattr(saved_model, name) for name in MODEL_OPTIONS + ("dropout", "engine")}
        different = [name for name in MODEL_OPTIONS if given.get(name) is not None and given[name] != model[name]]
        if different:
            typed = ", ".join(f"{flag(name)} {given[name]}" for name in different)
            kept = ", ".join(f"{name} {model[name]}" for name in different)
            raise click.UsageError(f"{typed} does not match the checkpoint's model ({kept}): a resumed run "
                                   f"keeps its model; leave the option out, or start a new run")
        saved.update(model)
    if any(given.get(name) is not None for name in LIMITS):
        # A limit typed on resume replaces the run's saved limits: `--resume X --steps 5000`
        # must not stop at once because the first run's --time-budget is already used up.
        for name in LIMITS:
            saved.pop(name, None)
    try:
        # from_meta never takes the checkpoint's cell_file: a checkpoint is data, and the Python
        # file it names would be executed. Only a --cell-file the user typed (in `given`) is loaded.
        return TrainConfig.from_meta(saved, **given)
    except UserError as error:  # a combination the option types alone cannot rule out
        if error.option in saved and given.get(error.option) is None:  # the checkpoint's value, not a typed one
            raise click.ClickException(f"the checkpoint's train config is not usable: {error} "
                                       f"(give {flag(error.option)} to replace it)") from None
        raise click.UsageError(error.render(flag)) from None


def _exit_if_nothing_to_do(meta: dict, given: dict, resume):
    """A --steps or --time-budget typed on resume that the run has already reached: say so in one
    line and exit 0, as `make` does with nothing to remake (the run is already as far as asked;
    nothing is evaluated or written), instead of a summary of 0 steps."""
    from rnn.checkpoint import finite_number, is_count

    step, seconds = meta.get("step"), finite_number(meta.get("train_seconds"))
    reached = None
    if given.get("steps") is not None and is_count(step) and step >= given["steps"]:
        reached = f"it is at step {step}, --steps {given['steps']} is reached"
    elif given.get("time_budget") is not None and seconds is not None and seconds >= given["time_budget"]:
        reached = (f"it has trained {format_duration(seconds)}, --time-budget {given['time_budget']:g} "
                   f"is reached")
    if reached:
        click.echo(f"nothing to do: {visible(resume)}: {reached} (the limits count the run's earlier training: "
                   f"give a larger one to train on)", err=True)
        sys.exit(0)


def _resumed_texts(meta: dict, resume) -> tuple:
    """The text files a checkpoint was trained on (empty: the shipped corpus)."""
    corpus = _saved_corpus(meta)
    files = corpus.get("files") or ([corpus["path"]] if corpus.get("path") is not None else [])
    if not isinstance(files, list):
        files = [files]
    for path in files:
        if not isinstance(path, str) or not Path(path).exists():  # anything else: Corpus.from_files says what
            raise click.UsageError(f"{resume} was trained on {path}, which no longer exists: "
                                   f"give the text as TEXT")
    return tuple(Path(path) for path in files)


def _load_resumed_corpus(texts, config, given: dict, meta: dict, resume, quiet, include=(), exclude=()):
    """(corpus, config, texts) of a resumed run. Paths read from the checkpoint are data: they only
    find the run's own text and validation file, each used only if it matches the fingerprint the
    checkpoint records, and nothing of a file the user did not name is ever printed. TEXT and
    --val-file typed are the user's choice."""
    from rnn.data import TextContentError, TextError

    saved = _saved_corpus(meta)
    texts_given = bool(texts)
    if not texts_given:  # continue on the text the run was trained on
        if not _has_fingerprint(saved):
            raise click.ClickException(f"{resume} records no fingerprint of the text it was trained on: "
                                       f"give the run's text as TEXT")
        texts = _resumed_texts(meta, resume)
    corpus = None
    val_file = config.val_file if given.get("val_file") is None else None  # the checkpoint's choice
    if val_file is not None:
        try:
            corpus = _load_corpus(texts, config, quiet, include, exclude)
        except TextError:
            corpus = None  # said below, without what the file holds
        if corpus is not None and corpus.record()["val_ids_sha256"] != saved.get("val_ids_sha256"):
            corpus = None
        if corpus is None:
            click.echo(f"note: {visible(val_file)} (the run's --val-file) is not the run's validation text, or the "
                       f"checkpoint records no fingerprint of it: validating on the last --val-frac of the text "
                       f"instead (--val-file chooses a file)", err=True)
            config = dataclasses.replace(config, val_file=None)
    if corpus is None:
        try:
            corpus = _load_corpus(texts, config, quiet, include, exclude)
        except TextContentError:  # its message quotes the file: only for a file the user named
            if texts_given:
                raise
            raise click.ClickException(f"{resume} names {', '.join(visible(text) for text in texts)} as its text, "
                                       f"which is not that text: give the run's text as TEXT") from None
    _check_same_text(meta, corpus, texts, texts_given, resume)
    return corpus, config, texts


def _saved_corpus(meta: dict) -> dict:
    return meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}


def _has_fingerprint(saved: dict) -> bool:
    return isinstance(saved.get("chars"), int) and all(isinstance(saved.get(key), str)
                                                       for key in ("vocab_sha256", "ids_sha256"))


def _check_same_text(meta: dict, corpus, texts, texts_given: bool, resume):
    """Compare the text with the one the checkpoint records (size and hashes; see
    Corpus.fingerprint): a changed file the run found by itself is an error, a text the
    user gave is their choice (fine-tuning on another text), said in one warning line."""
    saved = _saved_corpus(meta)
    if not _has_fingerprint(saved):
        return  # a checkpoint from before corpus fingerprints (or a damaged record): nothing to compare with
    keys = ("chars", "vocab_sha256", "ids_sha256")
    fingerprint = corpus.fingerprint()
    if all(saved[key] == fingerprint[key] for key in keys):
        return
    name = ", ".join(str(text) for text in texts) if texts else "tiny-shakespeare"
    what = (f"{fingerprint['chars']} characters, the run's had {saved['chars']}"
            if saved["chars"] != fingerprint["chars"] else "same length, different characters")
    if not texts_given:
        raise click.ClickException(f"{name} is not the text {resume} was trained on ({what}): "
                                   f"give the run's text as TEXT")
    click.echo(f"warning: {visible(name)} is not the text {visible(resume)} was trained on ({what}); "
               f"training continues on it", err=True)


def _load_corpus(texts, config, quiet=False, include=(), exclude=()):
    from rnn.data import Corpus, describe_skipped, find_text_files

    options = dict(val_frac=config.val_frac, separator=config.separator, val_file=config.val_file)
    if not texts:
        if include or exclude:
            raise click.UsageError("--include and --exclude select the files of a TEXT folder, and no TEXT was given")
        import importlib.resources

        with importlib.resources.as_file(_shipped_corpus()) as path:
            return Corpus.from_files([path], **options)
    if (include or exclude) and not any(Path(text).is_dir() for text in texts):
        raise click.UsageError("--include and --exclude select the files of a TEXT folder, and no folder was given")
    found = find_text_files(texts, include=include, exclude=exclude)
    if found.skipped and not quiet:
        click.echo(f"note: {describe_skipped(found.skipped)}", err=True)
    return Corpus.from_files(found.files, listed=found.listed, **options)


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

