"""rnn: recurrent cells as gate expressions, and a character-level language model on minigrad.

Modules: `expr` (the gate-expression vocabulary and tracing), `cells` (the @cell
declaration, the registry and the built-in cells), `compiler` (fused Numba kernels
generated from a cell; `loops` holds the time loops they run in), `layers` (the recurrent stack, eager or fused), `model`
(the char-LM), `data`, `config` (TrainConfig and the settings' choices), `optimizers`, `resume`,
`train` (the step loop), `training_state` and `checkpoint` (what resuming reads),
`runfolder` (what a run writes), `runs` (reading run folders), `runfiles` (safe file
access inside a run folder), `errors` (UserError), `sample`, `evaluate`.

The names below are loaded when first used (PEP 562), so that `import rnn.training.config` (what
`minigrad-rnn --help` reads) does not load the engine. train / sample / evaluate are not
among them: the functions would hide their modules; import them from rnn.training.loop, rnn.sample,
rnn.evaluate.
"""

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "Cell": "cells.registry", "CellError": "cells.registry", "available_cells": "cells.registry", "cell": "cells.registry", "get_cell": "cells.registry",
    "load_cell_file": "cells.registry", "register": "cells.registry",
    "exp": "cells.expr", "log": "cells.expr", "relu": "cells.expr", "sigmoid": "cells.expr", "tanh": "cells.expr",
    "Recurrent": "model.layers",
    "CharLM": "model.charlm", "ModelConfig": "model.charlm", "detach_state": "model.charlm",
    "BatchStream": "data.corpus", "Corpus": "data.corpus", "TextError": "data.corpus", "Vocab": "data.corpus",
    "FORMAT_VERSION": "checkpoint.format", "Checkpoint": "checkpoint.format", "CheckpointError": "checkpoint.format",
    "load_checkpoint": "checkpoint.format", "save_checkpoint": "checkpoint.format",
    "TrainConfig": "training.config", "UserError": "errors", "TrainingDiverged": "errors", "RunLockedError": "runs.folder",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
