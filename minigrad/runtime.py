"""Process-wide settings that make training fast, switched on only while training runs.

Importing minigrad changes nothing outside it. Training (rnn.training.loop.train, and every
command of the `minigrad-rnn` CLI) runs inside `configured_for_training()`, which for its
duration:

- keeps numpy's OpenBLAS at one thread, so that its spinning threads do not fight
  minigrad's own (Numba's) threads for the cores (see minigrad.blas); the counts from
  before are put back at the end;
- tells glibc's malloc to keep freed memory for reuse (see minigrad.allocator). This one
  stays: glibc cannot report its settings, so there is nothing to put back (the cost is
  that freed memory stays counted in the process's resident size);
- lets a layer built on a cold kernel cache start a helper process that compiles its
  backward loop on another core (see minigrad.precompile); off again at the end.

    with minigrad.runtime.configured_for_training():
        ...  # build the model, train

Contexts may nest; each puts back what it found.
"""

from contextlib import contextmanager

from . import allocator, blas, precompile


@contextmanager
def configured_for_training():
    """Set the process up for training for the duration of the `with` block (see above)."""
    threads_before = blas.use_one_openblas_thread()
    allocator.keep_freed_memory()
    helpers_before = precompile.set_helpers_enabled(True)
    try:
        yield
    finally:
        precompile.set_helpers_enabled(helpers_before)
        blas.set_openblas_threads(threads_before)
