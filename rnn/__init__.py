"""rnn: recurrent cells as gate expressions, and a character-level language model on minigrad.

Modules: `expr` (the gate-expression vocabulary and tracing), `cells` (the @cell
declaration, the registry and the built-in cells), `compiler` (fused Numba kernels
generated from a cell), `layers` (the recurrent stack, eager or fused), `model`
(the char-LM), `data`, `train`, `checkpoint`, `sample`, `evaluate`.
"""

from .cells import Cell, CellError, available_cells, cell, get_cell, load_cell_file, register
from .expr import exp, log, relu, sigmoid, tanh
from .layers import Recurrent
from .model import CharLM, ModelConfig, detach_state
