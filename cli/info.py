"""`minigrad-rnn info`: what a checkpoint holds (model, vocabulary, step, val loss, text)."""

import click

from cli.app import LibraryCommand
from cli.options import CHECKPOINT, cell_file_option, load_checkpoint
from cli.output import strict_json, visible
from cli.progress import bits_per_char, format_duration, format_loss


@click.command(cls=LibraryCommand, short_help="Show what a checkpoint holds.")
@click.argument("checkpoint", type=CHECKPOINT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@cell_file_option
def info(checkpoint, as_json, cell_file):
    """What a CHECKPOINT holds: model config, vocab size, parameters, step, val loss."""
    from rnn.cells import pytorch_module

    loaded = load_checkpoint(checkpoint, cell_file)
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
        "pytorch_module": pytorch_module(loaded.config.cell),  # None: no torch.nn module loads the weights
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
        ("PyTorch", _pytorch_line(details["pytorch_module"], config.cell)),
    ]
    # visible(): every value but the counts came from the checkpoint (or is a path).
    click.echo("\n".join(f"{label:<12}{visible(value)}" for label, value in rows))


def _pytorch_line(module, cell) -> str:
    if module:
        return f"loads into Embedding -> {module} (batch_first=True) -> Linear"
    return f"no torch.nn module computes the {cell} cell: write its step in PyTorch to use the weights"


def _at_step(step) -> str:
    return f" at step {step}" if isinstance(step, int) and not isinstance(step, bool) else ""


def _files_line(text) -> str:
    if isinstance(text, list) and text:
        return f"{len(text)} files: {text[0]}" + (f" ... {text[-1]}" if len(text) > 1 else "")
    return str(text) if text else "-"
