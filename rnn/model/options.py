"""The model's choice lists: the dtypes and the engines a CharLM can be built with.

Light on purpose (no numpy, no minigrad): the settings (rnn.training.config) and the CLI's
`--help` read these, and the model (rnn.model.layers, rnn.model.charlm) checks against them.
"""

DTYPE_NAMES = ("float32", "float64")  # rnn.model.charlm.DTYPES maps them to numpy's types
ENGINES = ("fused", "eager")  # rnn.model.layers: a compiled kernel per step, or a graph node per gate op
