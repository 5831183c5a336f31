"""rnn: recurrent cells as gate expressions, and a character-level language model on minigrad.

Modules: `expr` (the gate-expression vocabulary and tracing), `cells` (the @cell
declaration, the registry and the built-in cells), `compiler` (fused Numba kernels
generated from a cell), `layers` (the recurrent stack, eager or fused), `model`
(the char-LM), `data`, `train`, `checkpoint`, `runs` (reading run folders), `runfiles` (safe
file access inside a run folder), `sample`, `evaluate`.
"""

import os as _os

from minigrad import autograd as _autograd

from .cells import Cell, CellError, available_cells, cell, get_cell, load_cell_file, register
from .expr import exp, log, relu, sigmoid, tanh
from .layers import Recurrent
from .model import CharLM, ModelConfig, detach_state
# train / sample / evaluate are not re-exported: the functions would hide their modules
# (rnn.train would stop being the module); import them from rnn.train, rnn.sample, rnn.evaluate.
from .data import BatchStream, Corpus, TextError, Vocab
from .checkpoint import FORMAT_VERSION, Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .train import RunLockedError, TrainConfig, TrainingDiverged

# Anomaly mode names the user's line, not a line inside this package.
_autograd.internal_directories.append(_os.path.dirname(_os.path.abspath(__file__)))
