"""The compiled loops that call a cell's generated kernels: templates, one file each.

- `window.py`: a layer over a window of time steps, forward and backward (rnn.fused.recurrence);
- `elementwise.py`: the same for a cell that reads no h.<gate>, with no product (rnn.fused.elementwise_recurrence);
- `sampling.py`: drawing characters at batch 1 (rnn.sample).

Each is a plain Python module that linters and editors read, but it is never run from
here: the kernels it calls exist only once a cell is compiled. It imports them, and the
loop decorator, from `cell_kernels`, whose stand-ins document what they are.
`rnn.fused.compiler.compile_loops` replaces that one import with the real ones (the decorator
for this machine, the cell's generated module) and loads the result as a generated
module of its own, per cell: Numba keeps a kernel's machine code on disk only if the
kernels it calls are globals of its module.
"""
