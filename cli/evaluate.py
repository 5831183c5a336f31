"""`minigrad-rnn eval`: the loss of a checkpoint (or of a run's latest and best) on a text."""

import math

import click

from cli.app import LibraryCommand
from cli.options import (CHECKPOINT_OR_RUN, EXISTING_FILE, cell_file_option, load_checkpoint, run_checkpoints,
                         unknown_option)
from cli.output import strict_json, visible


@click.command("eval", cls=LibraryCommand, short_help="Loss of a checkpoint on a text: nats/char, bits/char.")
@click.argument("checkpoint", type=CHECKPOINT_OR_RUN, metavar="CHECKPOINT|RUN")
@click.argument("text", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (loss_nats, bpc, perplexity, chars, unknown_chars).")
@unknown_option
@cell_file_option
def evaluate_command(checkpoint, text, as_json, unknown, cell_file):
    """Loss of a CHECKPOINT on TEXT, read as one stream: nats/char, bits/char, perplexity.

    Given a RUN folder instead, both its latest and its best checkpoint are scored (the
    best was chosen on the run's validation text: on that text only the latest is a fair
    held-out number); --json then prints {"latest": {...}, "best": {...}} with their steps.
    """
    checkpoints = run_checkpoints(checkpoint)
    if "checkpoint" in checkpoints:
        result = _evaluate_checkpoint(checkpoint, text, cell_file, unknown)
        if as_json:
            # A loss that is not finite is null: JSON has no nan.
            click.echo(strict_json({key: result[key] for key in RESULT_KEYS}))
            return
        click.echo(_evaluation_lines(result))
        return
    # A run folder's entries are read by its rules: a planted link or FIFO is refused (one line).
    results = {name: _evaluate_checkpoint(path, text, cell_file, unknown, follow=False)
               for name, path in checkpoints.items()}
    if as_json:
        click.echo(strict_json({name: {key: result[key] for key in RESULT_KEYS + ("step",)}
                                for name, result in results.items()}))
        return
    click.echo("\n".join(f"{name:<12}{visible(checkpoints[name])} (step {result['step']})\n"
                         + _evaluation_lines(result) for name, result in results.items()))


RESULT_KEYS = ("loss_nats", "bpc", "perplexity", "chars", "unknown_chars")


def _evaluate_checkpoint(checkpoint, text, cell_file, unknown="refuse", follow=True) -> dict:
    """evaluate()'s metrics of one checkpoint on a text file, with its step (`follow`: see
    rnn.checkpoint.format.load_checkpoint)."""
    loaded = load_checkpoint(checkpoint, cell_file, follow=follow)
    from rnn.evaluate import evaluate_file

    result = evaluate_file(loaded.model, loaded.vocab, text, unknown)  # streamed: never the whole text in memory
    if not math.isfinite(result["loss_nats"]):
        click.echo(f"warning: the loss is not finite ({result['loss_nats']}): is {visible(checkpoint)} diverged?",
                   err=True)
    step = loaded.meta.get("step")
    return dict(result, step=step if isinstance(step, int) and not isinstance(step, bool) else None)


def _evaluation_lines(result: dict) -> str:
    return (f"loss        {result['loss_nats']:.4f} nats/char\n"
            f"bits/char   {result['bpc']:.4f}\n"
            f"perplexity  {result['perplexity']:.3f}\n"
            f"characters  {result['chars']:,}"
            + (f"\nskipped     {result['unknown_chars']:,} characters not in the vocabulary"
               if result["unknown_chars"] else ""))
