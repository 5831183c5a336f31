"""`minigrad-rnn plot` and `rnn.runs.reader`: loss curves and the comparison of real (tiny) training runs.

Two runs are trained once per module with `rnn.training.loop.train`; every expected number is
computed here from their metrics.jsonl (or from the model's shape), never taken from the
code under test.
"""

import json
import math
import shutil
import struct
import sys

import pytest
from click.testing import CliRunner

from cli.main import main
from cli_support import assert_one_error_line, make_text, run_cli
from rnn.data.corpus import Corpus
from rnn.runs.reader import RunError, read_run
from rnn.training.loop import TrainConfig, train

TEXT = make_text(4000)
HIDDEN, EMBED, SEQ_LEN, BATCH_SIZE, STEPS = 16, 8, 16, 4, 30
GATES = {"lstm": 4, "gru": 3}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{cell: run folder} for an LSTM and a GRU, each trained STEPS steps with a val point every 10."""
    corpus = Corpus.from_text(TEXT, val_frac=0.1)
    folders = {}
    for cell in GATES:
        folder = tmp_path_factory.mktemp("runs") / cell
        config = TrainConfig(cell=cell, layers=1, hidden=HIDDEN, embed=EMBED, seq_len=SEQ_LEN,
                             batch_size=BATCH_SIZE, steps=STEPS, eval_every=10, sample_every=0, warmup=0)
        train(config, corpus, folder)
        folders[cell] = folder
    return folders


def metrics_lines(folder) -> list:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def kept_fields(records) -> list:
    """The records as the reader keeps them: its KEPT_FIELDS only (what plot uses)."""
    from rnn.runs.reader import KEPT_FIELDS

    return [{key: value for key, value in record.items() if key in KEPT_FIELDS} for record in records]


def best_val_loss(folder) -> float:
    return min(record["val_loss"] for record in metrics_lines(folder) if "val_loss" in record)


def parameter_count(cell) -> int:
    """Embedding, one recurrent layer (weights and two biases per gate), linear head."""
    vocab, gates = len(set(TEXT)), GATES[cell]
    recurrent = gates * HIDDEN * (EMBED + HIDDEN) + 2 * gates * HIDDEN
    return vocab * EMBED + recurrent + HIDDEN * vocab + vocab


def invoke(*arguments):
    return CliRunner().invoke(main, ["plot", *[str(a) for a in arguments]])


def table_row(output: str, name: str) -> list:
    rows = [line.split() for line in output.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, f"no single table row for {name} in:\n{output}"
    return rows[0]


def chart_lines(output: str) -> list:
    """The terminal chart: from its title down to the legend, before the table."""
    return output.split("\n\n")[0].splitlines()


# ---- the image ----------------------------------------------------------------------------
def test_a_png_of_both_runs_is_written(runs, tmp_path):
    pytest.importorskip("matplotlib")
    image = tmp_path / "loss.png"
    result = invoke(runs["lstm"], runs["gru"], "-o", image)
    assert result.exit_code == 0, result.output + result.stderr
    data = image.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000  # lines, legend and labels, not an empty canvas
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert (width, height) == (800, 450)
    assert str(image) in result.output
    # The table is printed with the image too.
    assert table_row(result.output, "lstm")[1] == "lstm"


@pytest.mark.parametrize("x_axis", ["seconds", "chars"])
def test_other_x_axes_and_a_log_scale_draw_too(runs, tmp_path, x_axis):
    pytest.importorskip("matplotlib")
    image = tmp_path / "loss.png"
    result = invoke(runs["lstm"], runs["gru"], "-o", image, "--x", x_axis, "--log")
    assert result.exit_code == 0, result.output + result.stderr
    assert image.read_bytes()[:8] == PNG_SIGNATURE


def test_an_unknown_image_format_is_one_line(runs, tmp_path):
    pytest.importorskip("matplotlib")
    result = invoke(runs["lstm"], "-o", tmp_path / "loss.xyz")
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, "loss.xyz", ".png")


# ---- the terminal chart and the table -----------------------------------------------------
def test_the_table_lists_both_runs_with_their_best_val_loss(runs):
    result = invoke(runs["lstm"], runs["gru"], "--text")
    assert result.exit_code == 0, result.output + result.stderr
    for cell, folder in runs.items():
        best = best_val_loss(folder)
        row = table_row(result.output, folder.name)
        assert row[1] == cell
        assert row[2] == f"1x{HIDDEN}"
        assert row[3] == f"{parameter_count(cell):,}"
        assert row[4] == str(STEPS)
        assert row[-2] == f"{best:.4f}"
        assert row[-1] == f"{best / math.log(2):.4f}"


def test_the_terminal_chart_fits_72_columns_and_marks_each_run(runs):
    result = invoke(runs["lstm"], runs["gru"], "--text")
    chart = chart_lines(result.output)
    assert max(len(line) for line in chart) <= 72
    plot_area = "\n".join(line.split("|", 1)[1] for line in chart if "|" in line)
    for marker in "aAbB":  # run a and run b, train (lowercase) and val (UPPERCASE)
        assert marker in plot_area
    assert any("a A" in line and "lstm (lstm 1x16)" in line for line in chart)
    assert any("b B" in line and "gru (gru 1x16)" in line for line in chart)
    # The y axis is labelled with losses spanning the curves.
    labels = [float(line.split("|")[0]) for line in chart if "|" in line and line.split("|")[0].strip()]
    losses = [record[key] for folder in runs.values() for record in metrics_lines(folder)
              for key in ("train_loss", "val_loss") if key in record]
    assert max(labels) == pytest.approx(max(losses), abs=1e-3)
    assert min(labels) == pytest.approx(min(losses), abs=1e-3)


def test_curves_against_steps_seconds_and_characters(runs):
    run = read_run(runs["gru"])
    lines = metrics_lines(runs["gru"])
    evaluations = [record for record in lines if "val_loss" in record]
    assert run.curve("val_loss", "steps") == [(r["step"], r["val_loss"]) for r in evaluations]
    assert run.curve("val_loss", "seconds") == [(r["time"], r["val_loss"]) for r in evaluations]
    assert [x for x, _ in run.curve("train_loss", "chars")] == [
        r["step"] * BATCH_SIZE * SEQ_LEN for r in lines if "train_loss" in r]


# ---- damaged and wrong run folders --------------------------------------------------------
@pytest.fixture
def torn_run(runs, tmp_path):
    """A copy of the LSTM run whose metrics end in half a line, as a run killed mid-write leaves them."""
    folder = tmp_path / "torn"
    shutil.copytree(runs["lstm"], folder)
    with open(folder / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 40, "time": 9.5, "train_loss": 0.01, "val_loss": 0.0')
    return folder


def test_a_torn_last_line_is_skipped_and_the_rest_used(runs, torn_run):
    run = read_run(torn_run)
    assert run.torn_last_line and run.bad_lines == []
    assert run.records == kept_fields(metrics_lines(runs["lstm"]))
    summary = run.summary()
    assert summary.steps == STEPS
    assert summary.best_val_loss_nats == best_val_loss(runs["lstm"])

    result = invoke(torn_run, "--text")
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stderr == ""  # a torn last line is normal: no warning
    assert table_row(result.output, "torn")[-2] == f"{best_val_loss(runs['lstm']):.4f}"


def test_a_garbled_line_before_the_end_is_skipped_with_a_warning(runs, tmp_path):
    folder = tmp_path / "garbled"
    shutil.copytree(runs["lstm"], folder)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, "not json")
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert read_run(folder).records == kept_fields(metrics_lines(runs["lstm"])) and read_run(folder).bad_lines == [2]
    result = invoke(folder, "--text")
    assert result.exit_code == 0
    assert "skipped 1 unreadable line(s) (2)" in result.stderr
    assert table_row(result.output, "garbled")[-2] == f"{best_val_loss(runs['lstm']):.4f}"


def _empty_folder(path):
    path.mkdir()
    return path


def _plain_file(path):
    path.write_text("x")
    return path


@pytest.mark.parametrize("make, fragments", [
    (_empty_folder, ("no metrics.jsonl",)),
    (lambda path: path, ("does not exist",)),
    (_plain_file, ("not a folder",)),
], ids=["folder without metrics", "missing", "a file"])
def test_a_path_that_is_not_a_run_folder_is_one_line(runs, tmp_path, make, fragments):
    not_a_run = make(tmp_path / "empty")
    with pytest.raises(RunError):
        read_run(not_a_run)
    result = invoke(runs["lstm"], not_a_run, "--text")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert_one_error_line(result.stderr, str(not_a_run), *fragments)


def test_a_metrics_file_that_is_not_metrics_is_one_line(tmp_path):
    folder = tmp_path / "binary"
    folder.mkdir()
    (folder / "metrics.jsonl").write_bytes(b"\x00\xff\xfe garbage\nmore garbage\n")
    result = invoke(folder, "--text")
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, "not a metrics file")


# ---- without matplotlib -------------------------------------------------------------------
def test_without_matplotlib_an_image_needs_the_extra_and_text_still_works(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = invoke(runs["lstm"], runs["gru"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert_one_error_line(result.stderr, "pip install 'minigrad-rnn[plot]'", "--text")

    result = invoke(runs["lstm"], runs["gru"], "--text")
    assert result.exit_code == 0, result.output + result.stderr
    assert table_row(result.output, "gru")[-2] == f"{best_val_loss(runs['gru']):.4f}"


# ---- the installed command ----------------------------------------------------------------
def test_the_console_script_compares_the_runs(runs):
    result = run_cli("plot", runs["lstm"], runs["gru"], "--text", check_exit=0)
    for cell, folder in runs.items():
        assert table_row(result.stdout, folder.name)[-2] == f"{best_val_loss(folder):.4f}"
