"""Where a training run starts: a new model and optimizer, or those a checkpoint holds.

    start = fresh_start(config, corpus, stream)                       # seeded from config.seed
    start = resumed_start(config, corpus, stream, "runs/a/latest.safetensors", folder)

Resuming takes the model, the optimizer's per-parameter state, minigrad's RNG, the data
position and the carried hidden state from the checkpoint (checked by rnn.training.state),
and every setting from the config: the model options (MODEL_OPTIONS) must match the
checkpoint's model (ConfigError if not); the optimizer's hyperparameters, the regularisers, engine, matmul precision,
seed, batch size and window may change (a new batch size or window restarts the streams).
What this module must not hold: the step loop (rnn.training.loop) or the run folder's files (rnn.runs.folder).
"""

from dataclasses import dataclass
from pathlib import Path

import minigrad as mg

from rnn.checkpoint.format import CheckpointError, load_checkpoint
from rnn.training.config import DEFAULT_SIZE, MODEL_OPTIONS, TrainConfig
from rnn.data.batches import BatchStream
from rnn.data.corpus import Corpus
from rnn.errors import ArgumentError, ConfigError, Setting
from rnn.fused.packed_gemm_bf16 import BF16_UNAVAILABLE
from rnn.model.charlm import CharLM, ModelConfig
from rnn.training import recipe
from rnn.training.optimizers import optimizer_for
from rnn.runs.folder import RunFolder, new_run_id
from rnn.training.state import TrainingState, carried_state_from_arrays


@dataclass
class Start:
    """Where a run starts: a new model, or the one a checkpoint holds, and what comes with it."""

    model: CharLM
    optimizer: object
    progress: TrainingState
    stream: BatchStream
    carried_state: list = None  # the hidden state carried into the first window
    saved_step: int = None  # the step of the latest checkpoint already in the run folder


def model_config(config: TrainConfig, vocab_size: int) -> ModelConfig:
    """The ModelConfig of the run `config` describes, for a vocabulary of `vocab_size` (a size
    left to the recipe is DEFAULT_SIZE's, a cell the one recipe.choose_cell takes for its limits)."""
    sized = config.with_size(*DEFAULT_SIZE).with_cell(recipe.choose_cell(config.limits())["cell"])
    return ModelConfig(vocab_size=vocab_size, cell=sized.cell, embed=config.embed, hidden=sized.hidden,
                       layers=sized.layers, dropout=0.0 if config.dropout is None else config.dropout,
                       dtype=config.dtype, engine=config.engine, weight_drop=config.weight_drop,
                       locked_dropout=config.locked_dropout, embed_dropout=config.embed_dropout)


def set_matmul_precision(model: CharLM, config: TrainConfig) -> CharLM:
    """The model with its recurrent layers' products in the config's matmul precision (not a part
    of the model: a checkpoint evaluates and samples in float32); ArgumentError if this CPU cannot."""
    if config.matmul_precision == "bf16" and BF16_UNAVAILABLE:
        raise ArgumentError(Setting("matmul_precision"), f" bf16 {BF16_UNAVAILABLE}: train in float32")
    model.rnn.matmul_precision = config.matmul_precision
    return model


def fresh_start(config: TrainConfig, corpus: Corpus, stream: BatchStream) -> Start:
    mg.random.manual_seed(config.seed)
    model = set_matmul_precision(CharLM(model_config(config, len(corpus.vocab))), config)
    model.train()
    return Start(model, optimizer_for(config, model.parameters()), TrainingState(run_id=new_run_id()), stream)


def resumed_start(config: TrainConfig, corpus: Corpus, stream: BatchStream, path, folder: RunFolder) -> Start:
    """Continue the run saved in checkpoint `path`, with this run's config: the model options
    must be the checkpoint's, every other setting (optimizer hyperparameters included) is
    the config's."""
    checkpoint = load_checkpoint(path, cell_file=config.cell_file)
    if checkpoint.vocab != corpus.vocab:
        raise CheckpointError(f"{path} was trained on a text with a different vocabulary "
                              f"({len(checkpoint.vocab)} characters, this text has {len(corpus.vocab)})")
    progress = TrainingState.from_meta(path, checkpoint.meta)
    saved = checkpoint.config
    config = config.with_size(saved.layers, saved.hidden).with_cell(saved.cell)  # left to the recipe: the run's own
    different = [name for name in MODEL_OPTIONS if getattr(config, name) != getattr(saved, name)]
    if different:
        raise ConfigError(f"{path} holds a model with " + ", ".join(f"{n}={getattr(saved, n)}" for n in different)
                          + "; the settings say " + ", ".join(f"{n}={getattr(config, n)}" for n in different)
                          + ": a resumed run keeps its model (start a new run to change it)")
    wanted = model_config(config, len(corpus.vocab))
    if wanted == saved:
        model = checkpoint.model
    else:  # another regulariser or engine: the same tensors in a model built with the new settings
        model = CharLM(wanted)
        model.load_state_dict(checkpoint.model.state_dict())
    set_matmul_precision(model, config).train()
    optimizer = optimizer_for(config, model.parameters())
    if checkpoint.optimizer_state is not None and checkpoint.optimizer_name == type(optimizer).__name__:
        # The per-parameter state is the checkpoint's; the hyperparameters (betas, weight
        # decay, ...) are this config's, so that options given on resume take effect.
        hyperparameters = {key: value for key, value in optimizer.state_dict().items()
                           if not key.startswith("state.")}
        try:
            optimizer.load_state_dict({**checkpoint.optimizer_state, **hyperparameters})
        except (ValueError, TypeError, OverflowError) as error:
            raise CheckpointError(f"{path}: cannot restore the optimizer state: {error}") from None
    try:
        mg.random.set_state(progress.rng_state)
    except (ValueError, TypeError, KeyError, OverflowError) as error:
        raise CheckpointError(f"{path}: invalid RNG state ({error})") from None
    saved_seed = (progress.train_config or {}).get("seed")
    if isinstance(saved_seed, int) and saved_seed != config.seed:
        mg.random.manual_seed(config.seed)  # a new seed given on resume: a new random stream
    # Resuming from this folder's own latest checkpoint: it is already on disk.
    saved_step = progress.step if Path(path).resolve() == folder.latest.resolve() else None
    try:
        if progress.data_position is None:
            raise ValueError("no usable data position")
        stream.set_position(progress.data_position)
        carried_state = carried_state_from_arrays(model, config.batch_size, checkpoint.train_state)
    except ValueError:
        # A different batch size or sequence length: start the streams afresh.
        stream = BatchStream(corpus.train_ids, config.batch_size, config.seq_len)
        carried_state = None
    return Start(model, optimizer, progress, stream, carried_state, saved_step)
