"""--cell-file runs Python (the user's own file, like `python FILE`): its help says so, and a
cell file named inside a checkpoint is never run by any command (issue 15, item 3)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import minigrad
from cli.main import main
from rnn.cells.registry import cell, sigmoid, tanh
from rnn.checkpoint.format import save_checkpoint
from rnn.data.vocab import Vocab
from rnn.model.charlm import CharLM, ModelConfig

ROOT = Path(minigrad.__file__).resolve().parent.parent  # the code under test (PYTHONPATH)
TEXT = "abc cab bca " * 4


@cell(gates=("f", "n"), state=("h",), name="trust_test_cell")
def trust_test_cell(x, h):
    f = sigmoid(x.f + h.f)
    return (f * h + (1 - f) * tanh(x.n + h.n),)


@pytest.mark.parametrize("command", ["train", "sample", "eval", "info", "gradcheck"])
def test_the_help_of_cell_file_says_it_runs_python(command):
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    start = help_text.index("--cell-file FILE")  # its own entry (--cell's help names it too)
    assert "run as Python code" in help_text[start:start + 300] and "python FILE" in help_text[start:start + 300]


def checkpoint_naming(tmp_path, cell_name, evil: Path) -> Path:
    vocab = Vocab.from_text(TEXT)
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell=cell_name, embed=3, hidden=4, layers=1,
                               dtype="float64"))
    path = tmp_path / f"{cell_name}.safetensors"
    save_checkpoint(path, model, vocab=vocab, meta={"step": 0, "cell_file": str(evil),
                                                    "train_config": {"cell": cell_name, "cell_file": str(evil)}})
    return path


@pytest.mark.parametrize("cell_name", ["gru", "trust_test_cell"])
def test_no_command_runs_a_cell_file_named_inside_a_checkpoint(tmp_path, cell_name):
    """Each command in a fresh interpreter (where the custom cell is unknown unless a file
    declares it): a built-in cell's checkpoint works, a custom one's gives one line (info
    describes it all the same: it builds no model); the file
    the checkpoint names never runs. (train --resume: tests/test_hostile_input.py.)"""
    marker = tmp_path / "executed"
    evil = tmp_path / "evil_cells.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    path = checkpoint_naming(tmp_path, cell_name, evil)
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    script = tmp_path / "run_cli.py"
    script.write_text("import sys\nfrom cli.main import main\nsys.argv[0] = 'minigrad-rnn'\nmain()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for arguments in (["sample", path, "--length", "5"], ["eval", path, text], ["info", path]):
        result = subprocess.run([sys.executable, str(script), *map(str, arguments)], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert not marker.exists(), f"{arguments[0]} ran the cell file named inside the checkpoint"
        if cell_name == "gru" or arguments[0] == "info":  # info reads records only: it needs no cell
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert "trust_test_cell" in result.stderr
