"""What a training run will train with, decided before it starts: its settings, its text, its folder.

    plan = plan_run({"steps": 5000}, resume="runs/a/latest.safetensors", on_note=print)
    if plan.limit_reached is None:
        train(plan.config, plan.corpus, plan.out_dir, resume="runs/a/latest.safetensors")

A new run's settings are the ones given over TrainConfig's defaults; its text is the files and
folders named (none: the shipped tiny-shakespeare, see rnn.data.reading). A resumed run keeps
its own settings (the train config its checkpoint records) with the given ones on top:
- the options that define the model (MODEL_OPTIONS) must be the checkpoint's model's;
- a limit given replaces the run's saved limits (`steps=5000` must not stop at once because the
  first run's time budget is used up), and one the run has already reached leaves nothing to do
  (`limit_reached`: no text is read);
- its text, when none is named, is the one the checkpoint records, found by the paths it
  holds (data from a file: they only find the run's own text) and used only if its fingerprint
  (size and hashes, Corpus.fingerprint) is the recorded one; the same for the run's val_file.
  A text named is the caller's choice: another text than the run's is said in a warning.
Refusals are rnn.errors exceptions in one line: ArgumentError for what was given (a usage
error), ConfigError for the checkpoint's own settings, ResumeError for a run whose text is
gone or another; notes and warnings go to `on_note(Notice)`.
What this module must not hold: starting from a checkpoint's model and optimizer
(rnn.training.resume), the step loop (rnn.training.loop), flags or printing (the CLI's).
"""

from dataclasses import dataclass, replace
from pathlib import Path

from rnn.cells.registry import get_cell
from rnn.checkpoint.format import load_checkpoint
from rnn.checkpoint.values import finite_number, is_count
from rnn.data.corpus import Corpus
from rnn.data.reading import read_corpus
from rnn.data.text import TextContentError, TextError
from rnn.errors import ArgumentError, ConfigError, Notice, Setting, UserError
from rnn.runs.folder import dated_run_folder
from rnn.training.config import LIMITS, MODEL_OPTIONS, MODEL_SETTINGS, TrainConfig


class ResumeError(UserError, ValueError):
    """A run cannot continue on the text asked for: its checkpoint does not say which text it
    was, or the text found is not that text."""


@dataclass
class LimitReached:
    """A limit given on resume that the run has already reached: `setting` ("steps" or
    "time_budget"), the `limit` given, and where the run is (its step, or seconds trained)."""

    setting: str
    limit: float
    reached: float


@dataclass
class RunPlan:
    """What plan_run decided: the settings, the text (None if the limit is already reached),
    the text files read (empty: the shipped corpus), the run folder, and `limit_reached`."""

    config: TrainConfig
    corpus: Corpus
    texts: tuple
    out_dir: Path
    limit_reached: LimitReached = None


def checked_settings(given: dict) -> dict:
    """The settings given (TrainConfig fields), checked for what no value alone can show
    (val_file and val_frac both given), cell_file as a string and val_file resolved (a
    run resumed from another folder finds it)."""
    given = dict(given)
    if given.get("val_file") is not None and given.get("val_frac") is not None:
        raise ArgumentError("give either ", Setting("val_file"), " or ", Setting("val_frac"), ", not both")
    if given.get("cell_file") is not None:
        given["cell_file"] = str(given["cell_file"])
    if given.get("val_file") is not None:
        given["val_file"] = str(Path(given["val_file"]).resolve())
    return given


def plan_run(given: dict, texts=(), *, resume=None, out_dir=None, include=(), exclude=(), on_note=None) -> RunPlan:
    """The plan of a run with the settings `given` (TrainConfig fields; only those the user
    gave: they override a resumed run's own) on `texts` (see rnn.data.reading.read_corpus),
    continuing checkpoint `resume` if given, into `out_dir` (default: the folder of `resume`,
    or a new runs/<date_time>: rnn.runs.folder.dated_run_folder). See the module for the rules."""
    given = checked_settings(given)
    on_note = on_note or (lambda notice: None)
    checkpoint = load_checkpoint(resume, cell_file=given.get("cell_file")) if resume else None
    meta = checkpoint.meta if checkpoint else {}
    config = merged_config(given, meta.get("train_config") or {}, checkpoint.config if checkpoint else None)
    check_weight_drop(config)
    out_dir = Path(out_dir) if out_dir is not None else Path(resume).parent if resume else dated_run_folder()
    if checkpoint:
        reached = limit_reached(meta, given)
        if reached:  # nothing is read, evaluated or written
            return RunPlan(config, None, tuple(texts), out_dir, reached)
    if given.get("val_frac") is not None and config.val_file is not None:  # a resumed run's val_file, replaced
        config = replace(config, val_file=None)
    if resume:
        corpus, config, texts = _resumed_corpus(texts, config, given, meta, resume, include, exclude, on_note)
    else:
        corpus = _read(texts, config, include, exclude, on_note)
    return RunPlan(config, corpus, tuple(texts), out_dir)


def merged_config(given: dict, saved: dict, saved_model=None) -> TrainConfig:
    """TrainConfig from the settings given, on top of a resumed run's own (`saved`, and
    `saved_model`, the checkpoint's ModelConfig: the options that define the model must match it)."""
    saved = dict(saved) if isinstance(saved, dict) else {}  # a damaged or hostile record: ignored
    if saved_model is not None:
        # The model's own record (checked when the checkpoint loaded) beats the train config's.
        model = {name: getattr(saved_model, name) for name in MODEL_OPTIONS + MODEL_SETTINGS}
        different = [name for name in MODEL_OPTIONS if given.get(name) is not None and given[name] != model[name]]
        if different:
            typed = [part for index, name in enumerate(different)
                     for part in ((", " if index else ""), Setting(name, given[name]))]
            kept = ", ".join(f"{name} {model[name]}" for name in different)
            raise ArgumentError(*typed, f" does not match the checkpoint's model ({kept}): a resumed run "
                                        f"keeps its model; leave the option out, or start a new run")
        saved.update(model)
    if any(given.get(name) is not None for name in LIMITS):
        for name in LIMITS:  # a limit given replaces the run's saved limits
            saved.pop(name, None)
    try:
        # from_meta never takes the checkpoint's cell_file: a checkpoint is data, and the Python
        # file it names would be executed. Only a cell_file given (in `given`) is loaded.
        return TrainConfig.from_meta(saved, **given)
    except UserError as error:  # a combination the values alone cannot rule out
        if error.option in saved and given.get(error.option) is None:  # the checkpoint's value, not a given one
            raise ConfigError(f"the checkpoint's train config is not usable: {error} (give ",
                              Setting(error.option), " to replace it)") from None
        raise ArgumentError(*error.parts) from None


def check_weight_drop(config: TrainConfig) -> None:
    """ArgumentError for a weight_drop on a cell that has no recurrent weights to drop (a cell
    left to the recipe is chosen among those that have them: rnn.training.sizing.choose_cell)."""
    if config.weight_drop and config.cell is not None and not get_cell(config.cell).recurrent_projection:
        raise ArgumentError(Setting("weight_drop"), f" needs a cell with recurrent weights: {config.cell} reads "
                                                    f"no h.<gate>, so it has no W_hh")


def limit_reached(meta: dict, given: dict):
    """The LimitReached of a steps or time_budget given on resume that the run (checkpoint
    `meta`) has already reached, or None: the run is as far as asked, as `make` has nothing to remake."""
    step, seconds = meta.get("step"), finite_number(meta.get("train_seconds"))
    if given.get("steps") is not None and is_count(step) and step >= given["steps"]:
        return LimitReached("steps", given["steps"], step)
    if given.get("time_budget") is not None and seconds is not None and seconds >= given["time_budget"]:
        return LimitReached("time_budget", given["time_budget"], seconds)
    return None


def _read(texts, config: TrainConfig, include, exclude, on_note) -> Corpus:
    return read_corpus(texts, val_frac=config.val_frac, separator=config.separator, val_file=config.val_file,
                       include=include, exclude=exclude, on_note=on_note)


# ---- a resumed run's text ----------------------------------------------------------------------

def _resumed_corpus(texts, config, given: dict, meta: dict, resume, include, exclude, on_note):
    """(corpus, config, texts) of a resumed run. Paths read from the checkpoint are data: they only
    find the run's own text and validation file, each used only if it matches the fingerprint the
    checkpoint records, and nothing of a file the caller did not name is ever in a message. Texts
    and a val_file given are the caller's choice."""
    saved = saved_corpus(meta)
    texts_given = bool(texts)
    if not texts_given:  # continue on the text the run was trained on
        if not has_fingerprint(saved):
            raise ResumeError(f"{resume} records no fingerprint of the text it was trained on: "
                              f"give the run's text as ", Setting("texts"))
        texts = recorded_texts(meta, resume)
    corpus = None
    val_file = config.val_file if given.get("val_file") is None else None  # the checkpoint's choice
    if val_file is not None:
        try:
            corpus = _read(texts, config, include, exclude, on_note)
        except TextError:
            corpus = None  # said below, without what the file holds
        if corpus is not None and corpus.record()["val_ids_sha256"] != saved.get("val_ids_sha256"):
            corpus = None
        if corpus is None:
            on_note(Notice("note", f"{val_file} (the run's ", Setting("val_file"), ") is not the run's validation "
                           f"text, or the checkpoint records no fingerprint of it: validating on the last ",
                           Setting("val_frac"), " of the text instead (", Setting("val_file"), " chooses a file)"))
            config = replace(config, val_file=None)
    if corpus is None:
        try:
            corpus = _read(texts, config, include, exclude, on_note)
        except TextContentError:  # its message quotes the file: only for a file the caller named
            if texts_given:
                raise
            raise ResumeError(f"{resume} names {', '.join(str(text) for text in texts)} as its text, which is not "
                              f"that text: give the run's text as ", Setting("texts")) from None
    check_same_text(meta, corpus, texts, texts_given, resume, on_note)
    return corpus, config, texts


def saved_corpus(meta: dict) -> dict:
    """The record of the text a checkpoint's run was trained on (Corpus.record), or {}."""
    return meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}


def has_fingerprint(saved: dict) -> bool:
    """Whether a corpus record holds a fingerprint of its text (checkpoints before them do not)."""
    return isinstance(saved.get("chars"), int) and all(isinstance(saved.get(key), str)
                                                       for key in ("vocab_sha256", "ids_sha256"))


def recorded_texts(meta: dict, resume) -> tuple:
    """The text files a checkpoint was trained on (empty: the shipped corpus); ArgumentError
    if one is gone."""
    corpus = saved_corpus(meta)
    files = corpus.get("files") or ([corpus["path"]] if corpus.get("path") is not None else [])
    if not isinstance(files, list):
        files = [files]
    for path in files:
        if not isinstance(path, str) or not Path(path).exists():  # anything else: Corpus.from_files says what
            raise ArgumentError(f"{resume} was trained on {path}, which no longer exists: give the text as ",
                                Setting("texts"))
    return tuple(Path(path) for path in files)


def check_same_text(meta: dict, corpus: Corpus, texts, texts_given: bool, resume, on_note=None):
    """Compare the text with the one the checkpoint records (size and hashes; see
    Corpus.fingerprint): a changed file the run found by itself is a ResumeError, a text the
    caller gave is their choice (fine-tuning on another text), said in a warning Notice."""
    saved = saved_corpus(meta)
    if not has_fingerprint(saved):
        return  # a checkpoint from before corpus fingerprints (or a damaged record): nothing to compare with
    keys = ("chars", "vocab_sha256", "ids_sha256")
    fingerprint = corpus.fingerprint()
    if all(saved[key] == fingerprint[key] for key in keys):
        return
    name = ", ".join(str(text) for text in texts) if texts else "tiny-shakespeare"
    what = (f"{fingerprint['chars']} characters, the run's had {saved['chars']}"
            if saved["chars"] != fingerprint["chars"] else "same length, different characters")
    if not texts_given:
        raise ResumeError(f"{name} is not the text {resume} was trained on ({what}): give the run's text as ",
                          Setting("texts"))
    if on_note is not None:
        on_note(Notice("warning", f"{name} is not the text {resume} was trained on ({what}); "
                                  f"training continues on it"))
