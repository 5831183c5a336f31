"""Issue 25, items 1-11: a planted .pyc, lost work and files outside the run, each reproduced
as the issue describes it (in process where the process itself is not what is tested)."""

import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from rnn.cells import load_cell_file
from tests.cli_support import TINY_RUN, assert_one_error_line, console_script, make_text

ROOT = Path(__file__).resolve().parent.parent


# ---- 1. --cell-file is compiled from its source text, like `python FILE` ----------------------

CELL_SOURCE = '''
import dataclasses
from rnn.cells import cell, sigmoid, tanh

@dataclasses.dataclass
class Sizes:  # dataclasses look the module up in sys.modules: the file runs as a registered module
    gates: tuple = ("f", "n")

@cell(gates=Sizes().gates, state=("h",), name="{name}")
def step(x, h):
    f = sigmoid(x.f + h.f)
    return (f * h + (1 - f) * tanh(x.n + h.n),)
'''


def test_cell_file_never_runs_a_planted_pyc(tmp_path):
    source = tmp_path / "my_cells.py"
    source.write_text(CELL_SOURCE.format(name="round2_reviewed_cell"))
    marker = tmp_path / "pyc-ran"
    planted = tmp_path / "planted.py"
    planted.write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                       + CELL_SOURCE.format(name="round2_planted_cell"))
    # An unchecked-hash pyc is used by the import system whatever the source says.
    py_compile.compile(str(planted), cfile=importlib.util.cache_from_source(str(source)),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH, doraise=True)
    assert load_cell_file(source) == ["round2_reviewed_cell"]
    assert not marker.exists()


def test_cell_file_writes_nothing_beside_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as a user without PYTHONDONTWRITEBYTECODE
    source = tmp_path / "fresh_cells.py"
    source.write_text(CELL_SOURCE.format(name="round2_fresh_cell"))
    assert load_cell_file(source) == ["round2_fresh_cell"]
    assert sorted(os.listdir(tmp_path)) == ["fresh_cells.py"]


def test_cell_file_error_names_the_file_and_line(tmp_path):
    source = tmp_path / "broken_cells.py"
    source.write_text("x = 1\nraise RuntimeError('boom')\n")
    from rnn.cells import CellError
    with pytest.raises(CellError, match="broken_cells.py.*RuntimeError: boom"):
        load_cell_file(source)
