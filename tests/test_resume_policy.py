"""rnn.training.resume_policy and rnn.data.reading called as a library, without the CLI: the
settings of a resumed run merged with those given, the model kept, the run's own text
recovered and checked by its fingerprint, nothing to do past a limit, the text a run names.

(tests/test_resume_options.py, test_reliability_round2.py and test_real_input.py check the same
rules through `minigrad-rnn train`, with the messages and exit codes the CLI prints.)
"""

import shutil
from pathlib import Path

import pytest

from cli.app import flag
from cli_support import make_text
from rnn.data.reading import read_corpus
from rnn.data.text import TextError
from rnn.errors import ArgumentError, ConfigError, Notice
from rnn.runs.folder import checkpoint_to_sample, run_checkpoints
from rnn.training.loop import train
from rnn.training.resume_policy import LimitReached, ResumeError, plan_run
from train_support import tiny_configs

tiny_config = tiny_configs(cell="gru", engine="eager", steps=2, seed=3)


@pytest.fixture
def run(tmp_path):
    """A tiny finished run of 2 steps on text.txt: (its text, its latest checkpoint)."""
    text = tmp_path / "text.txt"
    text.write_text(make_text(1200, seed=4))
    plan = plan_run({}, [text], out_dir=tmp_path / "run")
    train(tiny_config(), plan.corpus, plan.out_dir)
    return text, tmp_path / "run" / "latest.safetensors"


def notes_of():
    """(the notices heard, an on_note that hears them)."""
    heard = []
    return heard, lambda notice: heard.append(notice)


def test_a_new_run_takes_the_settings_given_and_reads_the_text_named(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text(make_text(600))
    plan = plan_run({"hidden": 16, "lr": 0.01}, [text], out_dir=tmp_path / "out")
    # The cell, as the layers, left to the recipe: chosen when the run starts (rnn.training.sizing)
    assert (plan.config.hidden, plan.config.lr, plan.config.cell, plan.config.layers) == (16, 0.01, None, None)
    assert plan.corpus.files == [text] and len(plan.corpus) == 600
    assert plan.texts == (text,) and plan.out_dir == tmp_path / "out" and plan.limit_reached is None


def test_a_new_run_without_a_folder_gets_a_dated_one_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(make_text(600))
    plan = plan_run({}, ["a.txt"])
    assert plan.out_dir.parent == Path("runs") and not plan.out_dir.exists()


def test_resuming_keeps_the_runs_settings_under_those_given(run):
    text, checkpoint = run
    plan = plan_run({"lr": 0.01, "time_budget": 100.0}, resume=checkpoint)
    config = plan.config
    assert (config.cell, config.hidden, config.embed, config.layers, config.seed) == ("gru", 8, 4, 1, 3)
    assert config.lr == 0.01
    # A limit given replaces the run's saved ones: its steps=2 would stop the run at once.
    assert (config.time_budget, config.steps) == (100.0, None)
    assert plan.out_dir == checkpoint.parent


def test_a_model_option_given_on_resume_must_be_the_checkpoints(run):
    _, checkpoint = run
    with pytest.raises(ArgumentError) as error:
        plan_run({"hidden": 16, "cell": "gru"}, resume=checkpoint)
    assert str(error.value) == ("hidden=16 does not match the checkpoint's model (hidden 8): a resumed run keeps "
                                "its model; leave the option out, or start a new run")
    assert error.value.render(flag).startswith("--hidden 16 does not match")
    assert plan_run({"hidden": 8, "cell": "gru"}, resume=checkpoint).config.hidden == 8  # the same: accepted


def test_a_given_setting_that_cannot_work_is_an_argument_error(tmp_path, run):
    _, checkpoint = run
    with pytest.raises(ArgumentError, match="give either val_file or val_frac, not both"):
        plan_run({"val_file": tmp_path / "v.txt", "val_frac": 0.2}, resume=checkpoint)
    with pytest.raises(ArgumentError) as error:
        plan_run({"warmup": -1}, resume=checkpoint)
    assert error.value.option == "warmup"
    with pytest.raises(ArgumentError) as error:
        plan_run({"warmup": -1}, [run[0]])
    assert error.value.option == "warmup"


def test_the_runs_own_text_is_recovered_and_checked(run):
    text, checkpoint = run
    heard, on_note = notes_of()
    plan = plan_run({}, resume=checkpoint, on_note=on_note)
    assert plan.texts == (text.resolve(),)
    from rnn.checkpoint.format import load_checkpoint

    recorded = load_checkpoint(checkpoint).meta["corpus"]
    assert {key: recorded[key] for key in ("chars", "vocab_sha256", "ids_sha256")} == plan.corpus.fingerprint()
    assert heard == []


def test_a_changed_text_found_by_the_checkpoints_path_is_refused(run):
    text, checkpoint = run
    text.write_text(make_text(1200, seed=5))  # same path, same length, other characters
    with pytest.raises(ResumeError) as error:
        plan_run({}, resume=checkpoint)
    assert str(error.value) == (f"{text.resolve()} is not the text {checkpoint} was trained on (same length, "
                                f"different characters): give the run's text as texts")
    assert error.value.render(flag).endswith("give the run's text as TEXT")
    text.write_text(make_text(1000, seed=4))
    with pytest.raises(ResumeError, match=r"\(1000 characters, the run's had 1200\)"):
        plan_run({}, resume=checkpoint)


def test_another_text_given_is_the_callers_choice_said_in_a_warning(tmp_path, run):
    _, checkpoint = run
    other = tmp_path / "other.txt"
    other.write_text(make_text(1200, seed=5))
    heard, on_note = notes_of()
    plan = plan_run({}, [other], resume=checkpoint, on_note=on_note)
    assert plan.corpus.files == [other]
    assert [(notice.kind, str(notice)) for notice in heard] == [
        ("warning", f"{other} is not the text {checkpoint} was trained on (same length, different characters); "
                    f"training continues on it")]


def test_a_text_that_is_gone_must_be_given(run):
    text, checkpoint = run
    text.unlink()
    with pytest.raises(ArgumentError) as error:
        plan_run({}, resume=checkpoint)
    assert error.value.render(flag) == (f"{checkpoint} was trained on {text.resolve()}, which no longer exists: "
                                        f"give the text as TEXT")


def test_nothing_to_do_past_a_limit_reads_no_text(run):
    text, checkpoint = run
    text.unlink()  # not read: no error for it
    plan = plan_run({"steps": 2}, resume=checkpoint)
    assert plan.limit_reached == LimitReached("steps", 2, 2) and plan.corpus is None
    plan = plan_run({"time_budget": 1e-9}, resume=checkpoint)
    assert plan.limit_reached.setting == "time_budget" and plan.limit_reached.reached > 1e-9
    with pytest.raises(ArgumentError, match="which no longer exists"):  # a limit ahead: the text is needed
        plan_run({"steps": 3}, resume=checkpoint)


def test_the_runs_val_file_is_used_only_if_it_is_the_runs(tmp_path):
    text, val = tmp_path / "text.txt", tmp_path / "val.txt"
    text.write_text(make_text(1200, seed=4))
    val.write_text(make_text(300, seed=4))
    plan = plan_run({"val_file": val}, [text], out_dir=tmp_path / "run")
    train(tiny_config(val_file=str(val.resolve())), plan.corpus, plan.out_dir)
    checkpoint = tmp_path / "run" / "latest.safetensors"
    assert plan_run({}, resume=checkpoint).corpus.val_file == val.resolve()
    val.write_text(make_text(300, seed=9))
    heard, on_note = notes_of()
    plan = plan_run({}, resume=checkpoint, on_note=on_note)
    assert plan.config.val_file is None and plan.corpus.val_file is None
    assert [notice.kind for notice in heard] == ["note"]
    assert heard[0].render(flag).startswith(f"{val.resolve()} (the run's --val-file) is not the run's validation text")


def test_read_corpus_selects_in_folders_only(tmp_path):
    with pytest.raises(ArgumentError) as error:
        read_corpus([], include=["*.txt"])
    assert error.value.render(flag) == "--include and --exclude select the files of a TEXT folder, and no TEXT was given"
    (tmp_path / "a.txt").write_text(make_text(600))
    with pytest.raises(ArgumentError, match="and no folder was given"):
        read_corpus([tmp_path / "a.txt"], exclude=["*.md"])


def test_read_corpus_reads_the_shipped_text_when_none_is_named():
    corpus = read_corpus([])
    assert len(corpus) > 1_000_000 and corpus.files[0].name == "tinyshakespeare.txt"


def test_read_corpus_notes_a_folders_skipped_files_as_a_detail(tmp_path):
    (tmp_path / "a.txt").write_text(make_text(600))
    (tmp_path / "b.bin").write_bytes(b"\0\1\2" * 10)
    heard, on_note = notes_of()
    corpus = read_corpus([tmp_path], on_note=on_note)
    assert corpus.files == [tmp_path / "a.txt"]
    assert [(notice.kind, notice.detail, str(notice)) for notice in heard] == [
        ("note", True, "skipped 1 file: 1 binary (.bin)")]
    assert isinstance(heard[0], Notice)


def test_which_checkpoints_of_a_run_folder_are_read(run):
    _, checkpoint = run
    folder = checkpoint.parent
    found = run_checkpoints(folder)
    assert set(found) <= {"latest", "best"} and found["latest"] == checkpoint
    assert checkpoint_to_sample(found) == (found.get("best") or checkpoint, False)
    assert checkpoint_to_sample(run_checkpoints(checkpoint)) == (checkpoint, True)
    empty = folder.parent / "empty"
    empty.mkdir()
    with pytest.raises(ArgumentError, match="holds neither latest.safetensors nor best.safetensors"):
        run_checkpoints(empty)


def test_evaluate_file_names_the_file_it_refuses(tmp_path, run):
    from rnn.checkpoint.format import load_checkpoint
    from rnn.evaluate import evaluate_file

    loaded = load_checkpoint(run[1])
    text = tmp_path / "short.txt"
    text.write_text(loaded.vocab.chars[0])
    with pytest.raises(TextError) as error:
        evaluate_file(loaded.model, loaded.vocab, text)
    assert str(error.value) == f"{text}: evaluation needs a text of at least 2 characters, got 1"
