"""rnn: recurrent cells as gate expressions, and a character-level language model on minigrad.

Modules: `expr` (the gate-expression vocabulary and tracing), `cells` (the @cell
declaration, the registry and the built-in cells), `compiler` (fused Numba kernels
generated from a cell; `loops` holds the time loops they run in), `layers` (the recurrent stack, eager or fused), `model`
(the char-LM), `data`, `config` (TrainConfig and the settings' choices), `optimizers`, `resume`,
`train` (the step loop), `training_state` and `checkpoint` (what resuming reads),
`runfolder` (what a run writes), `runs` (reading run folders), `runfiles` (safe file
access inside a run folder), `errors` (UserError), `sample`, `evaluate`.

The names below are loaded when first used (PEP 562), so that `import rnn.config` (what
`minigrad-rnn --help` reads) does not load the engine. train / sample / evaluate are not
among them: the functions would hide their modules; import them from rnn.train, rnn.sample,
rnn.evaluate.
"""

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "Cell": "cells", "CellError": "cells", "available_cells": "cells", "cell": "cells", "get_cell": "cells",
    "load_cell_file": "cells", "register": "cells",
    "exp": "expr", "log": "expr", "relu": "expr", "sigmoid": "expr", "tanh": "expr",
    "Recurrent": "layers",
    "CharLM": "model", "ModelConfig": "model", "detach_state": "model",
    "BatchStream": "data", "Corpus": "data", "TextError": "data", "Vocab": "data",
    "FORMAT_VERSION": "checkpoint", "Checkpoint": "checkpoint", "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config", "UserError": "errors", "TrainingDiverged": "errors", "RunLockedError": "runfolder",
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
