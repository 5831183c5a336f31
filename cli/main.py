"""The `minigrad-rnn` command line: train, sample, eval, info, gradcheck.

Argument parsing and printing only; every computation is a call into `rnn`. Two rules
shape this file:

- start-up must stay fast (`minigrad-rnn --help` well under half a second), so nothing
  heavy is imported at module level: numpy, numba, minigrad and rnn are imported inside
  the command functions;
- a user's mistake ends in one line on stderr starting with "error: ", never a
  traceback: exit code 2 for a bad command line, 1 when something fails while running,
  130 when interrupted. The library's exceptions are turned into that line in one
  place, `App.main`.
"""

import importlib
import math
import os
import sys
import warnings
from pathlib import Path

import click

from cli.output import TextWriter, is_terminal, strict_json, use_replacement_for_unencodable_output, visible
from cli.progress import TrainingDisplay, bits_per_char, format_duration, format_loss, format_rate

PROGRAM = "minigrad-rnn"
EXIT_RUNTIME_ERROR, EXIT_USAGE_ERROR, EXIT_INTERRUPTED = 1, 2, 130

# The library's "you gave me something unusable" exceptions, as (module, class name).
# Looked up only in modules already imported: if a module was never imported, none of
# its exceptions can have been raised, and start-up stays free of heavy imports.
USER_ERRORS = (
    ("rnn.data", "TextError"),
    ("rnn.checkpoint", "CheckpointError"),
    ("rnn.cells", "CellError"),
    ("rnn.train", "TrainingDiverged"),
    ("rnn.train", "RunLockedError"),
    ("rnn.train", "RunExistsError"),
)
DEBUG_VARIABLE = "MINIGRAD_RNN_DEBUG"  # set it to see the traceback of an unexpected error


def _user_error_types() -> tuple:
    # ValueError too: the library's way to say "this value cannot work" (e.g. a config combination).
    types = [ValueError]
    for module_name, class_name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, class_name, None), type):
            types.append(getattr(module, class_name))
    return tuple(types)


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _error(message, code):
    # visible(): a message may quote a file name or a checkpoint's field (see cli/output.py).
    click.echo(f"error: {visible(_one_line(message))}", err=True)
    sys.exit(code)


def _describe_os_error(error: OSError) -> str:
    what = error.strerror or str(error)
    if error.filename:
        return f"{what}: {error.filename}"
    return what


class App(click.Group):
    """The command group, with error reporting of its own (see the module docstring)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        use_replacement_for_unencodable_output(sys.stdout)  # `?`, not a crash, where stdout's encoding ends
        if not standalone_mode:  # embedding code asked to handle exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        # Overflow warnings of numpy are noise to a user: a diverging run is reported as such.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|minigrad|rnn)(\.|$)")
        try:
            exit_code = super().main(args, prog_name or PROGRAM, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()  # no command given: the help is the clearest answer
            sys.exit(error.exit_code)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx is not None else PROGRAM
            _error(f"{error.format_message()} (see '{command} --help')", EXIT_USAGE_ERROR)
        except click.ClickException as error:
            _error(error.format_message(), error.exit_code)
        except click.Abort:  # Ctrl-C outside training, or a prompt aborted
            _error("interrupted", EXIT_INTERRUPTED)
        except Exception as error:  # noqa: BLE001  (the one place errors become messages)
            self._report(error)
        sys.exit(exit_code if isinstance(exit_code, int) else 0)

    @staticmethod
    def _report(error: Exception):
        if isinstance(error, _user_error_types()):
            _error(error, EXIT_RUNTIME_ERROR)
        if isinstance(error, OSError):
            _error(_describe_os_error(error), EXIT_RUNTIME_ERROR)
        if isinstance(error, MemoryError):
            _error("out of memory: try a smaller --batch-size, --hidden or --seq-len", EXIT_RUNTIME_ERROR)
        if os.environ.get(DEBUG_VARIABLE):
            raise error
        _error(f"unexpected {type(error).__name__}: {error} "
               f"(this is a bug; set {DEBUG_VARIABLE}=1 to see the traceback)", EXIT_RUNTIME_ERROR)


class LibraryCommand(click.Command):
    """A command of this file. It runs inside minigrad.runtime.configured_for_training(): the
    one place where the CLI changes process-wide settings (OpenBLAS at one thread, malloc
    keeping freed memory, the background compile helper), as training needs them. Imported
    only when the command runs, after its options are parsed (so --help stays light)."""

    def invoke(self, ctx):
        from minigrad.runtime import configured_for_training

        with configured_for_training():
            return super().invoke(ctx)


App.command_class = LibraryCommand


# ---- shared option types ------------------------------------------------------------------
POSITIVE_INT = click.IntRange(min=1)
NON_NEGATIVE_INT = click.IntRange(min=0)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
CHECKPOINT = click.Path(exists=True, dir_okay=False, path_type=Path)


def cell_file_option(function):
    return click.option(
        "--cell-file", type=EXISTING_FILE, default=None,
        help="Python file that declares cells with @rnn.cell. It is run as Python code, like `python FILE`: "
             "use only files you trust. Needed again to load its checkpoints.",
    )(function)


def _load_cell_file(path):
    if path is not None:
        from rnn.cells import load_cell_file
        load_cell_file(path)


def _load_checkpoint(path, cell_file=None):
    from rnn.checkpoint import load_checkpoint
    return load_checkpoint(path, cell_file=cell_file)


# ---- the app ------------------------------------------------------------------------------
@click.group(cls=App, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="minigrad-rnn", prog_name=PROGRAM)
def main():
    """Train and sample character-level recurrent language models on a laptop CPU.

    \b
    Quick start:
      minigrad-rnn train --time-budget 60        # tiny-shakespeare, about a minute
      minigrad-rnn sample runs/<run>/best.safetensors

    Each command has its own --help.
    """


# ---- train --------------------------------------------------------------------------------
# The library's choices (rnn.train), repeated here so that parsing needs no heavy import;
# tests/test_cli.py checks that they agree.
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine")
DTYPES = ("float32", "float64")
ENGINES = ("fused", "eager")


def _train_config_defaults() -> dict:
    """The defaults of rnn.train.TrainConfig (imports the library: for --help of train only)."""
    import dataclasses

    from rnn.train import TrainConfig
    defaults = {}
    for field in dataclasses.fields(TrainConfig):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


class TrainCommand(LibraryCommand):
    """`train`, whose --help shows the defaults of rnn.train.TrainConfig.

    The options themselves default to None ("not given"), so that only what the user
    typed overrides the library's defaults, or a resumed run's own settings. The real
    defaults are looked up when the help is shown, which keeps them in one place.
    """

    def format_options(self, ctx, formatter):
        try:
            defaults = _train_config_defaults()
            from rnn.train import DEFAULT_TIME_BUDGET
        except Exception:  # noqa: BLE001  (help without defaults beats no help)
            defaults, DEFAULT_TIME_BUDGET = {}, None
        shown = [p for p in self.params if p.name in defaults and p.default is None]
        time_budget = next(p for p in self.params if p.name == "time_budget")
        original_show_default = time_budget.show_default
        try:
            for param in shown:
                param.default = defaults[param.name]
            if DEFAULT_TIME_BUDGET is not None and defaults.get("time_budget") is None:
                time_budget.show_default = f"{DEFAULT_TIME_BUDGET:g} when no other limit is given"
            super().format_options(ctx, formatter)
        finally:
            for param in shown:
                param.default = None
            time_budget.show_default = original_show_default


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


@main.command(cls=TrainCommand, short_help="Train a model on text files (or tiny-shakespeare).")
@click.argument("texts", metavar="[TEXT]...", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--cell", default=None, help="Recurrent cell: a built-in name or one from --cell-file.")
@cell_file_option
@click.option("--layers", type=POSITIVE_INT, default=None, help="Number of recurrent layers.")
@click.option("--hidden", type=POSITIVE_INT, default=None, help="Hidden size of each layer.")
@click.option("--embed", type=POSITIVE_INT, default=None, help="Size of the character embedding.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Dropout between layers and before the output layer. When not given, the trainer "
                   "chooses it from how many passes over the text the run will make (none for a few, "
                   "more for many; with --time-budget it measures its speed over the first steps), "
                   "prints the choice and records it in config.json.")
@click.option("--seq-len", type=POSITIVE_INT, default=None, help="Characters per truncated-BPTT window.")
@click.option("--batch-size", type=POSITIVE_INT, default=None, help="Parallel streams of text per step.")
@click.option("--lr", type=POSITIVE_FLOAT, default=None, help="Peak learning rate.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None)
@click.option("--beta2", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Adam/AdamW's decay rate of the squared-gradient average.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
              help="Weight decay: decoupled in adamw (default 0.1), an L2 penalty in the others (default 0).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None, help="Learning-rate schedule after warmup.")
@click.option("--warmup", type=NON_NEGATIVE_INT, default=None, help="Steps of linear learning-rate warmup.")
@click.option("--grad-clip", type=click.FloatRange(min=0), default=None,
              help="Clip the gradient norm to this value (0: no clipping).")
@click.option("--steps", type=POSITIVE_INT, default=None,
              help="Stop after this many optimizer steps (in total: a resumed run counts its earlier steps).")
@click.option("--epochs", type=POSITIVE_FLOAT, default=None, help="Stop after this many passes over the training text.")
@click.option("--time-budget", type=POSITIVE_FLOAT, default=None, metavar="SECONDS",
              help="Stop after this many seconds of training (whichever limit comes first).")
@click.option("--val-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Fraction of the text (its end) held out for validation.")
@click.option("--val-file", type=EXISTING_FILE, default=None,
              help="Validate on this file instead of the end of the text (its characters must occur in the text).")
@click.option("--separator", type=EscapedText(), default=None, show_default="a newline",
              help="Put between two files of TEXT (escapes such as \\n, \\t, \\u2029 are understood; \"\" for none).")
@click.option("--eval-every", type=NON_NEGATIVE_INT, default=None,
              help="Steps between validation runs and checkpoints (0: only at the end).")
@click.option("--sample-every", type=NON_NEGATIVE_INT, default=None, help="Steps between samples (0: never).")
@click.option("--sample-length", type=POSITIVE_INT, default=None, help="Characters per sample.")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, dropout and sampling.")
@click.option("--dtype", type=click.Choice(DTYPES), default=None)
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="fused: one compiled kernel per step; eager: one graph node per gate op.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder for checkpoints and metrics  [default: runs/<date_time>, or the folder of --resume]")
@click.option("--resume", type=CHECKPOINT, default=None,
              help="Continue training from this checkpoint. Options given with it take effect; those that "
                   "define the model (--cell, --layers, --hidden, --embed, --dtype) must match it.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing while training.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results at the end.")
def train(texts, out, resume, quiet, as_json, **options):
    """Train a character-level language model on TEXT (UTF-8 files or folders).

    Without TEXT it trains on tiny-shakespeare, which ships with the package. Several
    TEXTs are read as one text, in the order given, with --separator between two files;
    a folder stands for the files under it, sorted by their path inside it (code point
    order; hidden files, links and files that are not regular are skipped, with a note).
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
    _load_cell_file(options["cell_file"])
    if given.get("cell") is not None:
        _check_cell_name(given["cell"])

    import dataclasses

    from rnn.train import train as run_training

    checkpoint = _load_checkpoint(resume, given.get("cell_file")) if resume else None
    resumed = checkpoint.meta if checkpoint else {}
    config = _train_config(given, resumed.get("train_config") or {}, checkpoint.config if checkpoint else None)
    if given.get("val_frac") is not None and config.val_file is not None:  # a resumed run's --val-file, replaced
        config = dataclasses.replace(config, val_file=None)
    texts_given = bool(texts)
    if not texts and resume:  # continue on the text the run was trained on
        texts = _resumed_texts(resumed, resume)
    corpus = _load_corpus(texts, config, quiet)
    if resume:
        _check_same_text(resumed, corpus, texts, texts_given, resume)
    out = out or (resume.parent if resume else _default_run_dir())

    # Progress goes to stdout, unless stdout is reserved for the --json result.
    stream = sys.stderr if as_json else sys.stdout
    live = stream.isatty() and os.environ.get("TERM") != "dumb"
    display = TrainingDisplay(stream, live=live, quiet=quiet)
    try:
        summary = run_training(config, corpus, out, resume=resume, on_event=display)
    finally:
        display.finish()

    if as_json:
        click.echo(strict_json({key: summary.get(key) for key in TRAIN_JSON_KEYS}))
    if not quiet:
        click.echo(_training_summary(summary, texts), file=stream)
    if summary.get("stopped_reason") == "interrupted":
        sys.exit(EXIT_INTERRUPTED)


TRAIN_JSON_KEYS = ("steps", "seconds", "chars_per_sec", "best_val_loss_nats", "last_val_loss_nats",
                   "best_step", "last_val_step", "latest_step",
                   "checkpoint", "best_checkpoint", "out_dir", "stopped_reason")


def _check_cell_name(name):
    from rnn.cells import CellError, get_cell
    try:
        get_cell(name)
    except CellError as error:
        raise click.BadParameter(str(error), param_hint="'--cell'") from None


def _train_config(given: dict, saved: dict, saved_model=None):
    """TrainConfig from the options typed, on top of a resumed run's own settings (`saved`, and
    `saved_model`, the checkpoint's model config: the options that define the model must match it)."""
    import dataclasses

    from rnn.train import MODEL_OPTIONS, TrainConfig

    known = {field.name for field in dataclasses.fields(TrainConfig)}
    # Never the checkpoint's cell_file: a checkpoint is data, and the Python file it names
    # would be executed. Only a --cell-file the user typed is loaded.
    known.discard("cell_file")
    saved = saved if isinstance(saved, dict) else {}  # a damaged or hostile record: ignored
    settings = {name: value for name, value in saved.items() if name in known}
    if saved_model is not None:
        # The model's own record (checked when the checkpoint loaded) beats the train config's.
        settings.update({name: getattr(saved_model, name) for name in MODEL_OPTIONS + ("dropout", "engine")})
        different = [name for name in MODEL_OPTIONS
                     if given.get(name) is not None and given[name] != settings[name]]
        if different:
            typed = ", ".join(f"--{name} {given[name]}" for name in different)
            kept = ", ".join(f"{name} {settings[name]}" for name in different)
            raise click.UsageError(f"{typed} does not match the checkpoint's model ({kept}): a resumed run "
                                   f"keeps its model; leave the option out, or start a new run")
    limits = ("steps", "epochs", "time_budget")
    if any(given.get(name) is not None for name in limits):
        # A limit typed on resume replaces the run's saved limits: `--resume X --steps 5000`
        # must not stop at once because the first run's --time-budget is already used up.
        for name in limits:
            settings.pop(name, None)
    try:
        return TrainConfig(**{**settings, **given}).validate()
    except ValueError as error:  # a combination the option types alone cannot rule out
        raise click.UsageError(str(error)) from None


def _resumed_texts(meta: dict, resume) -> tuple:
    """The text files a checkpoint was trained on (empty: the shipped corpus)."""
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    files = corpus.get("files") or ([corpus["path"]] if corpus.get("path") is not None else [])
    if not isinstance(files, list):
        files = [files]
    for path in files:
        if not isinstance(path, str) or not Path(path).exists():  # anything else: Corpus.from_files says what
            raise click.UsageError(f"{resume} was trained on {path}, which no longer exists: "
                                   f"give the text as TEXT")
    return tuple(Path(path) for path in files)


def _check_same_text(meta: dict, corpus, texts, texts_given: bool, resume):
    """Compare the text with the one the checkpoint records (size and hashes; see
    Corpus.fingerprint): a changed file the run found by itself is an error, a text the
    user gave is their choice (fine-tuning on another text), said in one warning line."""
    saved = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    keys = ("chars", "vocab_sha256", "ids_sha256")
    if not (isinstance(saved.get("chars"), int) and all(isinstance(saved.get(key), str) for key in keys[1:])):
        return  # a checkpoint from before corpus fingerprints (or a damaged record): nothing to compare with
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


def _load_corpus(texts, config, quiet=False):
    from rnn.data import Corpus, find_text_files

    options = dict(val_frac=config.val_frac, separator=config.separator, val_file=config.val_file)
    if not texts:
        import importlib.resources

        with importlib.resources.as_file(_shipped_corpus()) as path:
            return Corpus.from_files([path], **options)
    found = find_text_files(texts)
    if found.skipped and not quiet:
        shown = ", ".join(f"{visible(path)} ({reason})" for path, reason in found.skipped[:5])
        more = f" and {len(found.skipped) - 5} more" if len(found.skipped) > 5 else ""
        click.echo(f"note: skipped {len(found.skipped)} file(s): {shown}{more}", err=True)
    return Corpus.from_files(found.files, **options)


def _training_summary(summary: dict, texts) -> str:
    best, last = summary.get("best_val_loss_nats"), summary.get("last_val_loss_nats")
    interrupted = summary.get("stopped_reason") == "interrupted"
    lines = [
        f"{'interrupted' if interrupted else 'done'}: {summary.get('steps')} steps in "
        f"{format_duration(summary.get('seconds'))} ({format_rate(summary.get('chars_per_sec'))} chars/s)",
    ]

    def val_loss(loss, step):
        return f"{format_loss(loss)} nats/char ({format_loss(bits_per_char(loss))} bits/char) at step {step}"

    # The latest checkpoint's number first: the best one was chosen on the validation text itself.
    if last is not None and summary.get("last_val_step") == summary.get("latest_step"):
        lines.append(f"latest val loss: {val_loss(last, summary.get('last_val_step'))}")
    elif last is not None:
        lines.append(f"latest val loss: not evaluated at step {summary.get('latest_step')} "
                     f"(last evaluation: {val_loss(last, summary.get('last_val_step'))})")
    lines.append(f"best val loss: {val_loss(best, summary.get('best_step'))} (the best checkpoint)"
                 if best is not None else "best val loss: not evaluated yet")
    latest, best_checkpoint = summary.get("checkpoint"), summary.get("best_checkpoint")
    # A resumed run's text paths come from its checkpoint: printed like any name from a file.
    latest, best_checkpoint = (visible(path) if path else path for path in (latest, best_checkpoint))
    if latest is None:
        lines.append("no checkpoint was saved")
        return "\n".join(lines)
    lines.append(f"checkpoints: {latest} (latest)" + (f", {best_checkpoint} (best)" if best_checkpoint else ""))
    if interrupted:
        import shlex

        given = "".join(f"{visible(shlex.quote(str(text)))} " for text in texts or ())
        lines.append(f"continue with: {PROGRAM} train {given}--resume {latest}")
    else:
        lines.append(f"sample with: {PROGRAM} sample {best_checkpoint or latest}")
    return "\n".join(lines)


# ---- sample -------------------------------------------------------------------------------
@main.command(short_help="Generate text from a checkpoint.")
@click.argument("checkpoint", type=CHECKPOINT)
@click.option("--length", "-n", type=POSITIVE_INT, default=500, help="Characters to generate.")
@click.option("--temperature", "-t", type=POSITIVE_FLOAT, default=1.0,
              help="Below 1: safer, more repetitive text; above 1: more surprising.")
@click.option("--top-k", type=POSITIVE_INT, default=None, help="Sample only among the k likeliest characters.")
@click.option("--top-p", type=float, default=None, metavar="P", callback=lambda ctx, param, p: _check_top_p(p),
              help="Nucleus sampling: only among the likeliest characters whose probabilities first add up "
                   "to P (after --top-k if both are given).")
@click.option("--prime", "-p", default="", help="Text to start from (printed first).")
@click.option("--seed", type=int, default=None, help="Seed for a reproducible sample.")
@click.option("--argmax", is_flag=True, help="Always take the likeliest character (no randomness).")
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the text (the prime, then the sample) to this file, exactly, in UTF-8, "
                   "instead of printing it.")
@cell_file_option
def sample(checkpoint, length, temperature, top_k, top_p, prime, seed, argmax, out_file, cell_file):
    """Generate text from a CHECKPOINT, printing characters as they are made.

    On a terminal, control characters in the text (other than line breaks and tabs) are
    shown as escapes such as \\x1b: the checkpoint chose the characters. Piped or written
    with --out, the text is exactly what the model made.
    """
    loaded = _load_checkpoint(checkpoint, cell_file)
    from rnn.data import TextError
    from rnn.sample import sample as generate

    if prime:
        try:
            loaded.vocab.encode(prime)
        except TextError as error:
            raise click.BadParameter(str(error), param_hint="'--prime'") from None
    characters = generate(loaded.model, loaded.vocab, prime=prime, length=length, temperature=temperature,
                          top_k=top_k, top_p=top_p, seed=seed, argmax=argmax)
    if out_file is not None:
        with open(out_file, "w", encoding="utf-8", newline="") as file:  # newline="": no \n -> \r\n
            _write_text(TextWriter(file, terminal=False, flush=False), prime, characters)
        return
    writer = TextWriter(sys.stdout, terminal=is_terminal(sys.stdout))
    try:
        _write_text(writer, prime, characters)
    finally:  # also before an error message: the shell's prompt or the message starts a line of its own
        writer.write("\n")
        writer.close()


def _write_text(writer, prime, characters):
    writer.write(prime)
    for character in characters:
        writer.write(character)


def _check_top_p(value):
    # A range type would let "nan" through (every comparison with NaN is False).
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"{value} is not in the range 0 < P <= 1")
    return value


# ---- eval ---------------------------------------------------------------------------------
@main.command(name="eval", short_help="Loss of a checkpoint on a text: nats/char, bits/char.")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path), metavar="CHECKPOINT|RUN")
@click.argument("text", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (loss_nats, bpc, perplexity, chars).")
@cell_file_option
def evaluate_command(checkpoint, text, as_json, cell_file):
    """Loss of a CHECKPOINT on TEXT, read as one stream: nats/char, bits/char, perplexity.

    Given a RUN folder instead, both its latest and its best checkpoint are scored (the
    best was chosen on the run's validation text: on that text only the latest is a fair
    held-out number); --json then prints {"latest": {...}, "best": {...}} with their steps.
    """
    if not checkpoint.is_dir():
        result = _evaluate_checkpoint(checkpoint, text, cell_file)
        if as_json:
            # A loss that is not finite is null: JSON has no nan.
            click.echo(strict_json({key: result[key] for key in ("loss_nats", "bpc", "perplexity", "chars")}))
            return
        click.echo(_evaluation_lines(result))
        return
    from rnn.train import BEST, LATEST

    results = {}
    for name, file_name in (("latest", LATEST), ("best", BEST)):
        if (checkpoint / file_name).exists():
            results[name] = _evaluate_checkpoint(checkpoint / file_name, text, cell_file)
    if not results:
        raise click.BadParameter(f"{checkpoint} holds neither {LATEST} nor {BEST}", param_hint="'CHECKPOINT|RUN'")
    if as_json:
        click.echo(strict_json({name: {key: result[key] for key in ("loss_nats", "bpc", "perplexity", "chars", "step")}
                                for name, result in results.items()}))
        return
    click.echo("\n".join(f"{name:<12}{visible(checkpoint / file_name)} (step {results[name]['step']})\n"
                         + _evaluation_lines(results[name])
                         for name, file_name in (("latest", LATEST), ("best", BEST)) if name in results))


def _evaluate_checkpoint(checkpoint, text, cell_file) -> dict:
    """evaluate()'s metrics of one checkpoint on a text file, with its step."""
    loaded = _load_checkpoint(checkpoint, cell_file)
    from rnn.data import TextError
    from rnn.evaluate import evaluate

    try:
        result = evaluate(loaded.model, loaded.vocab, _read_text(text))
    except TextError as error:  # say which file, as the message about unknown characters does not
        message = str(error)
        raise click.ClickException(message if str(text) in message else f"{text}: {message}") from None
    if not math.isfinite(result["loss_nats"]):
        click.echo(f"warning: the loss is not finite ({result['loss_nats']}): is {visible(checkpoint)} diverged?",
                   err=True)
    step = loaded.meta.get("step")
    return dict(result, step=step if isinstance(step, int) and not isinstance(step, bool) else None)


def _evaluation_lines(result: dict) -> str:
    return (f"loss        {result['loss_nats']:.4f} nats/char\n"
            f"bits/char   {result['bpc']:.4f}\n"
            f"perplexity  {result['perplexity']:.3f}\n"
            f"characters  {result['chars']:,}")


def _read_text(path) -> str:
    """The text of a UTF-8 file, with the library's checks (empty, binary, bad bytes...)."""
    from rnn.data import Corpus

    # Corpus.from_file holds the file checks; its ids in its own vocabulary give back the text.
    corpus = Corpus.from_file(path, val_frac=0.5)
    return corpus.vocab.decode(corpus.ids)


# ---- info ---------------------------------------------------------------------------------
@main.command(short_help="Show what a checkpoint holds.")
@click.argument("checkpoint", type=CHECKPOINT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@cell_file_option
def info(checkpoint, as_json, cell_file):
    """What a CHECKPOINT holds: model config, vocab size, parameters, step, val loss."""
    loaded = _load_checkpoint(checkpoint, cell_file)
    meta = loaded.meta
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    details = {
        "checkpoint": str(checkpoint),
        "model_config": loaded.config.to_dict(),
        "vocab_size": len(loaded.vocab),
        "parameters": loaded.model.num_parameters(),
        "step": meta.get("step"),
        "train_seconds": meta.get("train_seconds"),
        "val_loss_nats": meta.get("last_val_loss"),
        "best_val_loss_nats": meta.get("best_val_loss"),
        "val_step": meta.get("last_val_step"),  # the step val_loss_nats was measured at
        "best_step": meta.get("best_step"),
        "optimizer": loaded.optimizer_name,
        "text": corpus.get("path") or corpus.get("files"),  # one file, or the list of a several-file text
        "train_config": meta.get("train_config"),
    }
    if as_json:
        click.echo(strict_json(details))
        return
    config = loaded.config
    val_loss, best = details["val_loss_nats"], details["best_val_loss_nats"]
    rows = [
        ("checkpoint", checkpoint),
        ("model", f"{config.cell}, {config.layers} layer(s), hidden {config.hidden}, embed {config.embed}, "
                  f"dropout {config.dropout}, {config.dtype}, {config.engine} engine"),
        ("vocab", f"{details['vocab_size']} characters"),
        ("parameters", f"{details['parameters']:,}"),
        ("step", f"{details['step']} ({format_duration(details['train_seconds'])} of training)"),
        ("val loss", f"{format_loss(val_loss)} nats/char ({format_loss(bits_per_char(val_loss))} bits/char)"
                     f"{_at_step(details['val_step'])}, best {format_loss(best)}{_at_step(details['best_step'])}"),
        ("optimizer", details["optimizer"] or "-"),
        ("trained on", _files_line(details["text"])),
    ]
    # visible(): every value but the counts came from the checkpoint (or is a path).
    click.echo("\n".join(f"{label:<12}{visible(value)}" for label, value in rows))


def _at_step(step) -> str:
    return f" at step {step}" if isinstance(step, int) and not isinstance(step, bool) else ""


def _files_line(text) -> str:
    if isinstance(text, list) and text:
        return f"{len(text)} files: {text[0]}" + (f" ... {text[-1]}" if len(text) > 1 else "")
    return str(text) if text else "-"


# ---- gradcheck ----------------------------------------------------------------------------
@main.command(short_help="Check every op's and cell's gradients numerically.")
@click.option("--cell", "cell_name", metavar="NAME|all", default=None,
              help="Check only this cell (or every cell); default: every op and every cell.")
@click.option("--op", "op_name", metavar="NAME|all", default=None,
              help="Check only this op (or every op).")
@cell_file_option
def gradcheck(cell_name, op_name, cell_file):
    """Compare every op's and cell's backward with finite differences (float64).

    Cells run both engines (eager and fused) over 5 steps in 2 layers with a carried
    state. Prints one row per check and exits with 1 if any check fails.
    """
    _load_cell_file(cell_file)
    from rnn import checks

    cases = _selected_cases(checks, cell_name, op_name)
    header = f"{'check':<24} {'kind':<5} {'shape':<32} {'max abs err':>12} {'max rel err':>12}  ok"
    click.echo(header)
    click.echo("-" * len(header))
    failures = []
    for case in cases:
        result = checks.run_case(case)
        click.echo(f"{result.name:<24} {result.kind:<5} {result.shape:<32} "
                   f"{result.max_abs_error:>12.2e} {result.max_rel_error:>12.2e}  {'ok' if result.ok else 'FAIL'}")
        if not result.ok:
            failures.append(result)
    for result in failures:
        for report in result.failed_inputs:
            click.echo(f"FAIL {result.name}: input {report.index} {report.shape}, element {report.worst_element}: "
                       f"analytic {report.analytic:.8g}, numeric {report.numeric:.8g}", err=True)
    if failures:
        _error(f"{len(failures)} gradient check(s) failed: {', '.join(r.name for r in failures)}",
               EXIT_RUNTIME_ERROR)
    click.echo(f"all {len(cases)} checks passed")


def _selected_cases(checks, cell_name, op_name) -> list:
    from rnn.cells import CellError

    if cell_name is None and op_name is None:
        return list(checks.gradcheck_cases())
    cases = []
    if op_name is not None:
        ops = list(checks.op_cases())
        if op_name != "all":
            ops = [case for case in ops if case.name == op_name]
            if not ops:
                names = ", ".join(case.name for case in checks.op_cases())
                raise click.BadParameter(f"unknown op {op_name!r}; available: {names}", param_hint="'--op'")
        cases += ops
    if cell_name is not None:
        try:
            cases += list(checks.cell_cases(None if cell_name == "all" else [cell_name]))
        except CellError as error:
            raise click.BadParameter(str(error), param_hint="'--cell'") from None
    return cases


# ---- commands that live in their own modules ---------------------------------------------
def _register_optional_commands():
    """`graph` and `plot` are written in cli/graph.py and cli/plot.py; the app works without them."""
    for module_name, command_name in (("cli.graph", "graph"), ("cli.plot", "plot")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        command = getattr(module, command_name, None)
        if isinstance(command, click.Command):
            main.add_command(command, command_name)


_register_optional_commands()


if __name__ == "__main__":
    main()
