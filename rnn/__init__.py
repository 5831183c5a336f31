"""rnn: recurrent cells as gate expressions, and a character-level language model on minigrad.

Sub-packages, bottom to top (tests/test_layering.py holds the exact order):
- `cells`: the cell language: gate expressions (`expr`), @cell, the registry, the built-in cells (`registry`);
- `fused`: the fused engine: a cell compiled to Numba kernels (`compiler`), the recurrence
  that runs them (`recurrence`), the packed per-step GEMM, the loop templates (`loops`);
- `model`: the choice lists (`options`), the recurrent stack, eager or fused (`layers`), the
  char-LM (`charlm`), the checks that the engines agree (`checks`);
- `data`: text files (`text`), the vocabulary (`vocab`), a file's ids and their cache (`ids`),
  the corpus (`corpus`), the text a run names read into one (`reading`), batches (`batches`);
- `checkpoint`: untrusted-value checks (`values`), the header (`header`), the file format (`format`);
- `runs`: safe files in a run folder (`files`), reading runs back (`reader`), the folder a run
  writes, with its lock (`folder`);
- `training`: the settings (`config`), recipe, optimizers, state, resuming (`resume`), what a
  run trains with (`resume_policy`: settings merged on resume, the run's own text checked),
  Ctrl-C while training (`interrupt`), the step loop (`loop`).
Beside them: `errors` (UserError), `sample`, `evaluate`; the shipped text is in `corpora/`.

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
    "BatchStream": "data.batches", "Corpus": "data.corpus", "TextError": "data.text", "Vocab": "data.vocab",
    "FORMAT_VERSION": "checkpoint.format", "Checkpoint": "checkpoint.format", "CheckpointError": "checkpoint.format",
    "load_checkpoint": "checkpoint.format", "save_checkpoint": "checkpoint.format",
    "TrainConfig": "training.config", "plan_run": "training.resume_policy", "read_corpus": "data.reading",
    "UserError": "errors", "ArgumentError": "errors", "ConfigError": "errors", "TrainingDiverged": "errors", "RunLockedError": "runs.folder",
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
