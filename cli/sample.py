"""`minigrad-rnn sample`: generate text from a checkpoint, printed as it is made or written to a file."""

import io
import math
import sys
from pathlib import Path

import click

from cli.app import LibraryCommand, flag
from cli.options import (CHECKPOINT_OR_RUN, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, cell_file_option,
                         load_checkpoint, run_checkpoints, unknown_option)
from cli.output import GuardedOutput, TextWriter, is_terminal
from cli.output_file import checked_output_file, replacing


@click.command(cls=LibraryCommand, short_help="Generate text from a checkpoint.")
@click.argument("checkpoint", type=CHECKPOINT_OR_RUN, metavar="CHECKPOINT|RUN")
@click.option("--length", "-n", type=POSITIVE_INT, default=500, help="Characters to generate.")
@click.option("--temperature", "-t", type=float, default=1.0, callback=lambda ctx, param, t: _check_temperature(t),
              help="Above 0. Below 1: safer, more repetitive text; above 1: more surprising "
                   "(--argmax is the limit at 0).")
@click.option("--top-k", type=POSITIVE_INT, default=None, help="Sample only among the k likeliest characters.")
@click.option("--top-p", type=float, default=None, metavar="P", callback=lambda ctx, param, p: _check_top_p(p),
              help="Nucleus sampling: only among the likeliest characters whose probabilities first add up "
                   "to P (after --top-k if both are given).")
@click.option("--prime", "-p", default="", help="Text to start from (printed first).")
@click.option("--seed", type=NON_NEGATIVE_INT, default=None, help="Seed for a reproducible sample.")
@click.option("--argmax", is_flag=True, help="Always take the likeliest character (no randomness).")
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the text (the prime, then the sample) to this file, exactly, in UTF-8, "
                   "instead of printing it. The file changes only once the whole text is made; a file "
                   "that is not plain text (a checkpoint...) is replaced only with --overwrite.")
@click.option("--overwrite", is_flag=True, help="Let --out replace a file that is not plain text.")
@unknown_option
@cell_file_option
def sample(checkpoint, length, temperature, top_k, top_p, prime, seed, argmax, out_file, overwrite, unknown,
           cell_file):
    """Generate text from a CHECKPOINT, printing characters as they are made.

    Given a RUN folder, its best checkpoint is used (its latest if it has no best).

    On a terminal, control characters in the text (other than line breaks and tabs) are
    shown as escapes such as \\x1b: the checkpoint chose the characters. Piped or written
    with --out, the text is exactly what the model made.
    """
    if out_file is not None:  # before any work: a refusal costs nothing
        out_file = checked_output_file(out_file, overwrite)
    from rnn.runs.folder import checkpoint_to_sample

    path, follow = checkpoint_to_sample(run_checkpoints(checkpoint))  # a run folder's best, else its latest
    loaded = load_checkpoint(path, cell_file, follow=follow)
    from rnn.data.text import TextError
    from rnn.data.vocab import apply_unknown_policy
    from rnn.sample import sample as generate

    try:  # the prime is printed as given; under --unknown skip, what the model lacks is not fed to it
        fed, _ = apply_unknown_policy(loaded.vocab, prime, unknown, what="the prime")
    except TextError as error:
        raise click.BadParameter(error.render(flag), param_hint="'--prime'") from None
    characters = generate(loaded.model, loaded.vocab, prime=fed, length=length, temperature=temperature,
                          top_k=top_k, top_p=top_p, seed=seed, argmax=argmax)
    if out_file is not None:
        with replacing(out_file) as binary:
            file = io.TextIOWrapper(binary, encoding="utf-8", newline="")  # newline="": no \n -> \r\n
            _write_text(TextWriter(file, terminal=False, flush=False), prime, characters)
            file.detach()  # flushed; `replacing` closes and renames the file itself
        return
    stdout = GuardedOutput(sys.stdout)  # closed, or a pipe whose reader is gone: stop, in one line
    writer = TextWriter(stdout, terminal=is_terminal(sys.stdout))
    try:
        _write_text(writer, prime, characters, stop=lambda: stdout.lost)
    finally:  # also before an error message: the shell's prompt or the message starts a line of its own
        writer.write("\n")
        writer.close()
    if stdout.lost:
        raise click.ClickException("standard output was closed: sampling stopped")


def _write_text(writer, prime, characters, stop=lambda: False):
    writer.write(prime)
    for character in characters:
        if stop():
            return
        writer.write(character)


def _check_temperature(value):
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a finite number above 0 (to take the likeliest character every "
                                 f"time, the limit at temperature 0, use --argmax)")
    return value


def _check_top_p(value):
    # A range type would let "nan" through (every comparison with NaN is False).
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"{value} is not in the range 0 < P <= 1")
    return value
