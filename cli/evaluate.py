"""`minigrad-rnn eval`: the loss of a checkpoint (or of a run's latest and best) on a text."""

import math

import click

from cli.app import LibraryCommand
from cli.options import (CHECKPOINT_OR_RUN, EXISTING_FILE, NON_NEGATIVE_INT, POSITIVE_INT, cell_file_option,
                         load_checkpoint, run_checkpoints, unknown_option)
from cli.output import strict_json, visible


@click.command("eval", cls=LibraryCommand, short_help="Loss of a checkpoint on a text: nats/char, bits/char.")
@click.argument("checkpoint", type=CHECKPOINT_OR_RUN, metavar="CHECKPOINT|RUN")
@click.argument("text", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (loss_nats, bpc, perplexity, chars, unknown_chars; "
                   "with --windows, a \"windows\" object too).")
@click.option("--windows", type=POSITIVE_INT, default=None, metavar="N",
              help="Also score N random windows of TEXT, each read from a zero state, as nanoGPT scores its "
                   "val split (mean loss over all their predictions; windows may overlap).")
@click.option("--window-len", type=POSITIVE_INT, default=256, show_default=True,
              help="Predictions per window of --windows (nanoGPT's block size).")
@click.option("--seed", type=NON_NEGATIVE_INT, default=0, show_default=True,
              help="Seed of the --windows' starts: the same seed, the same windows.")
@unknown_option
@cell_file_option
def evaluate_command(checkpoint, text, as_json, windows, window_len, seed, unknown, cell_file):
    """Loss of a CHECKPOINT on TEXT, read as one stream: nats/char, bits/char, perplexity.

    With --windows N, also the mean loss over N windows of --window-len characters at
    random places of TEXT, each read from a zero state (no context before it): the figure
    nanoGPT reports for shakespeare_char, usually higher than the stream's.

    Given a RUN folder instead, both its latest and its best checkpoint are scored (the
    best was chosen on the run's validation text: on that text only the latest is a fair
    held-out number); --json then prints {"latest": {...}, "best": {...}} with their steps.
    """
    context = click.get_current_context()
    if windows is None:
        for name in ("window_len", "seed"):
            if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"--{name.replace('_', '-')} sets the windows of --windows, which is not given")
    sampling = {"windows": windows, "window_len": window_len, "seed": seed} if windows else None
    checkpoints = run_checkpoints(checkpoint)
    if "checkpoint" in checkpoints:
        result = _evaluate_checkpoint(checkpoint, text, cell_file, unknown, sampling=sampling)
        if as_json:
            # A loss that is not finite is null: JSON has no nan.
            click.echo(strict_json(_json_record(result, RESULT_KEYS)))
            return
        click.echo(_evaluation_lines(result))
        return
    # A run folder's entries are read by its rules: a planted link or FIFO is refused (one line).
    results = {name: _evaluate_checkpoint(path, text, cell_file, unknown, follow=False, sampling=sampling)
               for name, path in checkpoints.items()}
    if as_json:
        click.echo(strict_json({name: _json_record(result, RESULT_KEYS + ("step",))
                                for name, result in results.items()}))
        return
    click.echo("\n".join(f"{name:<12}{visible(checkpoints[name])} (step {result['step']})\n"
                         + _evaluation_lines(result) for name, result in results.items()))


RESULT_KEYS = ("loss_nats", "bpc", "perplexity", "chars", "unknown_chars")
WINDOWS_KEYS = ("loss_nats", "bpc", "windows", "window_len", "seed")


def _json_record(result: dict, keys) -> dict:
    record = {key: result[key] for key in keys}
    if "windows" in result:
        record["windows"] = {key: result["windows"][key] for key in WINDOWS_KEYS}
    return record


def _evaluate_checkpoint(checkpoint, text, cell_file, unknown="refuse", follow=True, sampling=None) -> dict:
    """evaluate()'s metrics of one checkpoint on a text file, with its step (`follow`: see
    rnn.checkpoint.format.load_checkpoint) and, given `sampling` (windows, window_len, seed),
    evaluate_windows()'s metrics under "windows"."""
    loaded = load_checkpoint(checkpoint, cell_file, follow=follow)
    from rnn.evaluate import evaluate_file, evaluate_file_windows

    result = evaluate_file(loaded.model, loaded.vocab, text, unknown)  # streamed: never the whole text in memory
    if sampling:
        result["windows"] = evaluate_file_windows(loaded.model, loaded.vocab, text, unknown=unknown, **sampling)
    losses = [result["loss_nats"]] + ([result["windows"]["loss_nats"]] if sampling else [])
    if not all(math.isfinite(loss) for loss in losses):
        click.echo(f"warning: the loss is not finite ({', '.join(map(str, losses))}): is {visible(checkpoint)} "
                   f"diverged?", err=True)
    step = loaded.meta.get("step")
    return dict(result, step=step if isinstance(step, int) and not isinstance(step, bool) else None)


def _evaluation_lines(result: dict) -> str:
    lines = (f"loss        {result['loss_nats']:.4f} nats/char\n"
             f"bits/char   {result['bpc']:.4f}\n"
             f"perplexity  {result['perplexity']:.3f}\n"
             f"characters  {result['chars']:,}"
             + (f"\nskipped     {result['unknown_chars']:,} characters not in the vocabulary"
                if result["unknown_chars"] else ""))
    windows = result.get("windows")
    if windows:
        lines += (f"\nwindows     {windows['windows']:,} x {windows['window_len']:,} characters at random places "
                  f"(seed {windows['seed']}), each read from a zero state\n"
                  f"  loss      {windows['loss_nats']:.4f} nats/char\n"
                  f"  bits/char {windows['bpc']:.4f}")
    return lines
