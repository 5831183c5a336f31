"""The model's choice lists: the dtypes and the engines a CharLM can be built with, and the
precisions its recurrent layers' products can train in.

Light on purpose (no numpy, no minigrad): the settings (rnn.training.config) and the CLI's
`--help` read these, and the model (rnn.model.layers, rnn.model.charlm) checks against them.
"""

DTYPE_NAMES = ("float32", "float64")  # rnn.model.charlm.DTYPES maps them to numpy's types
ENGINES = ("fused", "eager")  # rnn.model.layers: a compiled kernel per step, or a graph node per gate op
# rnn.model.layers.Recurrent.matmul_precision: the fused layers' products on float32 operands, or
# on operands rounded to bf16 with float32 sums (rnn.fused.packed_gemm_bf16; training only)
MATMUL_PRECISIONS = ("float32", "bf16")
