"""`minigrad-rnn info`: what a checkpoint holds (model, vocabulary, step, val loss, text)."""

import click

from cli.app import LibraryCommand
from cli.options import CHECKPOINT_OR_RUN, cell_file_option, load_cell_file, run_checkpoints
from cli.output import strict_json, visible
from cli.progress import bits_per_char, format_duration, format_loss


@click.command(cls=LibraryCommand, short_help="Show what a checkpoint (or a run's checkpoints) holds.")
@click.argument("checkpoint", type=CHECKPOINT_OR_RUN, metavar="CHECKPOINT|RUN")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@cell_file_option
def info(checkpoint, as_json, cell_file):
    """What a CHECKPOINT holds: model config, vocab size, parameters, step, val loss.

    It reads the checkpoint's records only: no model is built, and a checkpoint of a
    custom cell is described without its --cell-file. Given a RUN folder, its latest and
    best checkpoints are described (--json: {"latest": {...}, "best": {...}}).
    """
    load_cell_file(cell_file)  # given or not, the description is the same: it names the cell
    checkpoints = run_checkpoints(checkpoint)
    # A run folder's entries are read by its rules: no link followed (a file named as such is the user's).
    described = {name: _details(path, follow=name == "checkpoint") for name, path in checkpoints.items()}
    if as_json:
        click.echo(strict_json(described.get("checkpoint") or described))
        return
    if "checkpoint" in described:
        click.echo(_rows(described["checkpoint"]))
        return
    click.echo("\n".join(f"{name}\n" + _rows(details, indent="  ") for name, details in described.items()))


def _details(checkpoint, follow=True) -> dict:
    from rnn.cells.registry import pytorch_module
    from rnn.checkpoint.format import describe_checkpoint

    summary = describe_checkpoint(checkpoint, follow=follow)
    meta = summary.meta
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    return {
        "checkpoint": str(checkpoint),
        "model_config": summary.config.to_dict(),
        "custom_cell": not summary.cell_registered,  # its --cell-file was not given: no code was run
        "vocab_size": len(summary.vocab),
        "parameters": summary.parameters,
        "step": meta.get("step"),
        "train_seconds": meta.get("train_seconds"),
        "val_loss_nats": meta.get("last_val_loss"),
        "best_val_loss_nats": meta.get("best_val_loss"),
        "val_step": meta.get("last_val_step"),  # the step val_loss_nats was measured at
        "best_step": meta.get("best_step"),
        "optimizer": summary.optimizer_name,
        "text": corpus.get("path") or corpus.get("files"),  # one file, or the list of a several-file text
        "train_config": meta.get("train_config"),
        "pytorch_module": pytorch_module(summary.config.cell),  # None: no torch.nn module loads the weights
    }


def _rows(details: dict, indent="") -> str:
    config = details["model_config"]
    val_loss, best = details["val_loss_nats"], details["best_val_loss_nats"]
    cell = config["cell"] + (" (from a --cell-file, not loaded: none is needed here)" if details["custom_cell"] else "")
    rows = [
        ("checkpoint", details["checkpoint"]),
        ("model", f"{cell}, {config['layers']} layer(s), hidden {config['hidden']}, embed {config['embed']}, "
                  f"dropout {config['dropout']}{_regularisers(config)}, {config['dtype']}, {config['engine']} engine"),
        ("vocab", f"{details['vocab_size']} characters"),
        ("parameters", f"{details['parameters']:,}"),
        ("step", f"{details['step']} ({format_duration(details['train_seconds'])} of training)"),
        ("val loss", f"{format_loss(val_loss)} nats/char ({format_loss(bits_per_char(val_loss))} bits/char)"
                     f"{_at_step(details['val_step'])}, best {format_loss(best)}{_at_step(details['best_step'])}"),
        ("optimizer", details["optimizer"] or "-"),
        ("trained on", _files_line(details["text"])),
        ("PyTorch", _pytorch_line(details["pytorch_module"], config["cell"])),
    ]
    # visible(): every value but the counts came from the checkpoint (or is a path).
    return "\n".join(f"{indent}{label:<12}{visible(value)}" for label, value in rows)


def _regularisers(config: dict) -> str:
    """The model's regularisers besides the dropout, those that are on (", weight drop 0.2, ...")."""
    parts = [" (locked)" if config.get("locked_dropout") else ""]
    parts += [f", {label} {config[name]}" for name, label in (("weight_drop", "weight drop"),
                                                              ("embed_dropout", "embedding dropout"))
              if config.get(name)]
    return "".join(parts)


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
