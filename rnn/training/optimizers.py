"""The optimizer of a training run and its learning-rate schedule.

    optimizer = make_optimizer("adamw", model.parameters(), lr=6e-3, beta2=0.99)
    optimizer.lr = learning_rate(config, step, progress)    # before each step

The schedule: a linear warmup over `config.warmup` steps, then either constant or a cosine
decaying to LR_FLOOR * lr as the run progresses (by whichever limit is nearest). The peak lr is
the config's, or the recipe's for the model's width (`peak_lr`).
What this module must not hold: the step loop (rnn.training.loop) or the settings' defaults (rnn.training.config).
"""

import math

import minigrad as mg

from rnn.training import recipe
from rnn.training.config import DEFAULT_SIZE, DEFAULT_WEIGHT_DECAY, LR_FLOOR, OPTIMIZERS, TrainConfig
from rnn.errors import ConfigError, Setting


def make_optimizer(name: str, parameters, lr: float, beta2: float = 0.999, weight_decay: float = None):
    """The optimizer called `name`, with PyTorch's defaults but for beta2 (Adam, AdamW), SGD's
    momentum (0.9) and the weight decay (None: DEFAULT_WEIGHT_DECAY for AdamW, 0 otherwise;
    decoupled in AdamW, an L2 penalty in the others)."""
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY if name == "adamw" else 0.0
    if name == "adam":
        return mg.optim.Adam(parameters, lr=lr, betas=(0.9, beta2), weight_decay=weight_decay)
    if name == "adamw":
        return mg.optim.AdamW(parameters, lr=lr, betas=(0.9, beta2), weight_decay=weight_decay)
    if name == "sgd":
        return mg.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "rmsprop":
        return mg.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adagrad":
        return mg.optim.Adagrad(parameters, lr=lr, weight_decay=weight_decay)
    raise ConfigError(Setting("optimizer"), f" must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def peak_lr(config: TrainConfig) -> float:
    """The config's learning rate, or when it gives none the recipe's for its optimizer and
    width (rnn.training.recipe.lr_for; a width left to the recipe is DEFAULT_SIZE's)."""
    if config.lr is not None:
        return config.lr
    return recipe.lr_for(config.optimizer, config.hidden if config.hidden is not None else DEFAULT_SIZE[1])


def optimizer_for(config: TrainConfig, parameters):
    """The optimizer `config` asks for, over `parameters`."""
    return make_optimizer(config.optimizer, parameters, peak_lr(config), config.beta2, config.weight_decay)


def learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    """The learning rate of step `step` (0-based) when a fraction `progress` of the run is done."""
    peak = peak_lr(config)
    warmup = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
    if config.schedule == "constant":
        return peak * warmup
    floor = LR_FLOOR * peak
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return (floor + (peak - floor) * cosine) * warmup
