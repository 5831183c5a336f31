"""The cell and model size of a run that leaves them to the recipe: the cell family from the
measured runs of rnn.training.recipe (`choose_cell`), then this machine's speed at the default
size of that cell, measured on a throwaway model (`seconds_per_step_of_default_size`), given
to rnn.training.recipe, which picks the size that fits the time budget (`choose_size`).
"""

import time

from minigrad.threads import ThreadChooser

from rnn.cells.registry import get_cell
from rnn.data.batches import BatchStream
from rnn.data.corpus import Corpus
from rnn.model.charlm import CharLM
from rnn.training import recipe
from rnn.training.config import TrainConfig
from rnn.training.optimizers import optimizer_for
from rnn.training.resume import model_config, set_matmul_precision


def choose_cell(config: TrainConfig):
    """(config with its cell, what rnn.training.recipe chose, or None when the cell was given)."""
    if config.cell is not None:
        return config, None
    # A weight drop needs W_hh to drop: only the families that have one are candidates.
    choice = (recipe.choose_cell(config.limits(), _has_recurrent_weights) if config.weight_drop
              else recipe.choose_cell(config.limits()))
    return config.with_cell(choice["cell"]), choice


def _has_recurrent_weights(cell: str) -> bool:
    return get_cell(cell).recurrent_projection


def choose_size(config: TrainConfig, corpus: Corpus):
    """(config with its model size, what rnn.training.recipe chose, or None), for the config's cell
    (choose_cell first): the size is the recipe's when the run has a time budget and neither layers
    nor hidden is set; without a time budget, the default, or a smaller one that a short text can
    feed (recipe.size_for_text)."""
    limits = config.limits()
    if config.layers is not None or config.hidden is not None:
        return config.with_size(*recipe.DEFAULT_SIZE), None
    gates = len(get_cell(config.cell).gates)
    if not recipe.needs_speed(limits):
        size = recipe.size_for_text(len(corpus.train_ids), config.embed, gates, len(corpus.vocab))
        if size == recipe.DEFAULT_SIZE:
            return config.with_size(*size), None
        # Said and recorded like a choice from the speed: a short text gets a smaller model.
        return config.with_size(*size), {"cell": config.cell, "layers": size[0], "hidden": size[1],
                                         "short_text": True, "parameters": recipe.parameter_count(
                                             *size, config.embed, gates, len(corpus.vocab))}
    seconds_per_step = seconds_per_step_of_default_size(config, corpus)
    choice = recipe.choose_size(limits, seconds_per_step, config.batch_size * config.seq_len, len(corpus.train_ids),
                                config.embed, gates, len(corpus.vocab))
    choice["default_seconds_per_step"] = round(seconds_per_step, 5)
    choice["cell"] = config.cell  # the size is for this cell (chosen first, or given)
    return config.with_size(choice["layers"], choice["hidden"]), choice


def seconds_per_step_of_default_size(config: TrainConfig, corpus: Corpus) -> float:
    """This machine's seconds per training step of the default size (in the run's matmul
    precision), timed on a throwaway model and optimizer over the first batch (recipe.CALIBRATION_STEPS; the first steps load
    the kernels and are not timed). The run's own model is seeded afterwards: the timing
    leaves the run as it would be without it."""
    probe = config.with_size(*recipe.DEFAULT_SIZE)
    # In the run's matmul precision: a bf16 run's steps are the ones the budget will hold.
    model = set_matmul_precision(CharLM(model_config(probe, len(corpus.vocab))), probe)
    model.train()
    optimizer = optimizer_for(probe, model.parameters())
    inputs, targets = BatchStream(corpus.train_ids, config.batch_size, config.seq_len).next_batch()
    untimed, steps = recipe.CALIBRATION_STEPS
    # On the thread count that wins on this machine now (minigrad.threads): its own probe
    # takes the steps it needs, and the time of a step is that of the count it chose.
    threads = ThreadChooser.for_this_machine()
    step = 0
    while step < steps or not threads.decided:
        if step == untimed:
            started = time.perf_counter()
        with threads.unit():
            loss, _ = model.loss(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        step += 1
    if threads.reference:
        return threads.reference[threads.chosen]
    return (time.perf_counter() - started) / (steps - untimed)
