"""Option types and helpers that several commands share (argument parsing only, no maths)."""

import math
from pathlib import Path

import click

POSITIVE_INT = click.IntRange(min=1)
NON_NEGATIVE_INT = click.IntRange(min=0)


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses nan and inf: a range check alone lets nan through (every
    comparison with it is False), and no setting here means anything at infinity."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


POSITIVE_FLOAT = FiniteFloatRange(min=0, min_open=True)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
CHECKPOINT = click.Path(exists=True, dir_okay=False, path_type=Path)
CHECKPOINT_OR_RUN = click.Path(exists=True, path_type=Path)


def run_checkpoints(path: Path) -> dict:
    """rnn.runs.folder.run_checkpoints(path), a folder with no checkpoint a usage error of CHECKPOINT|RUN."""
    from rnn.errors import ArgumentError
    from rnn.runs.folder import run_checkpoints as checkpoints_of

    try:
        return checkpoints_of(path)
    except ArgumentError as error:
        raise click.BadParameter(str(error), param_hint="'CHECKPOINT|RUN'") from None


def cell_file_option(function):
    return click.option(
        "--cell-file", type=EXISTING_FILE, default=None,
        help="Python file that declares cells with @rnn.cell. It is run as Python code, like `python FILE`: "
             "use only files you trust. Needed again to load its checkpoints.",
    )(function)


def load_cell_file(path):
    """Run the user's --cell-file, if one was given (its cells get registered)."""
    if path is not None:
        from rnn.cells.registry import load_cell_file as load

        load(path)


def load_checkpoint(path, cell_file=None, follow=True):
    from rnn.checkpoint.format import load_checkpoint as load

    return load(path, cell_file=cell_file, follow=follow)


def unknown_option(function):
    return click.option(
        # rnn.data.vocab.UNKNOWN_POLICIES, spelt out: importing rnn.data.vocab (numpy) would slow down --help.
        "--unknown", type=click.Choice(("refuse", "skip")), default="refuse",
        help="Characters the model's vocabulary lacks: refuse the text (naming them), or skip them "
             "(neither predicted nor fed; the count is reported).",
    )(function)
