"""The tiny training settings the training tests start from: `tiny_configs(**file_settings)`
gives a file its `tiny_config(**changes)`, a TrainConfig of the shared tiny defaults, then the
file's settings, then the call's changes."""

from rnn.training.config import TrainConfig

# A model that trains in milliseconds, every periodic action off, float64 (exact comparisons).
TINY_DEFAULTS = dict(layers=1, hidden=8, embed=4, seq_len=8, batch_size=4, warmup=0, eval_every=0, sample_every=0,
                     dtype="float64")


def tiny_configs(**file_settings):
    """A `tiny_config(**changes) -> TrainConfig` for one test file."""

    def tiny_config(**changes) -> TrainConfig:
        return TrainConfig(**{**TINY_DEFAULTS, **file_settings, **changes})

    return tiny_config
