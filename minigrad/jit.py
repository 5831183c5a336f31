"""The JIT decorators every kernel of minigrad (and of rnn) is compiled with, and the one
place that sets Numba's options. Nothing here knows about tensors or gradients.

    from minigrad.jit import kernel, prange

Why the options are what they are:
- cached: compiled machine code is kept on disk, so the second start is fast (like
  cache=True, but in a private folder checked for safety: see minigrad/kernel_cache.py).
- error_model="numpy": x / 0 gives inf or nan like numpy, instead of raising
  ZeroDivisionError from inside a loop.
- no fastmath: fastmath lets LLVM assume there are no NaNs, which would make the
  NaN checks of anomaly mode and of the trainer lie.
"""

import os

import numba

from .kernel_cache import use_private_cache


def _njit(**options):
    """numba.njit(**options), with the private, self-healing kernel cache (opened when the
    kernel first compiles)."""
    compile_with = numba.njit(**options)

    def decorate(function):
        return use_private_cache(compile_with(function))

    return decorate


JIT_OPTIONS = dict(nogil=True, error_model="numpy")

kernel = _njit(**JIT_OPTIONS)
"""Decorator for an array kernel: loops over preallocated arrays, no autograd logic."""

scalar = _njit(inline="always", **JIT_OPTIONS)
"""Decorator for a scalar helper that kernels call (inlined into them by Numba). Left to
LLVM instead, the helpers stayed calls inside the parallel window loops of rnn.fused.recurrence,
which then did not vectorize: a 1x128 LSTM training step took 25 ms instead of 15."""

summing_kernel = _njit(fastmath={"reassoc", "contract"}, **JIT_OPTIONS)
"""Decorator for a kernel whose loops sum (dot products): it lets LLVM reorder the
additions, so a sum runs in vector lanes. Unlike full fastmath it keeps NaN and inf."""

# Only explicit prange loops run in parallel: Numba's other automatic parallel rewrites
# (array expressions, reductions, fusion...) are switched off, which also makes a
# parallel kernel compile faster.
_ONLY_PRANGE = dict(prange=True, comprehension=False, setitem=False, numpy=False, reduction=False, stencil=False,
                    fusion=False, inplace_binop=False)
parallel_kernel = _njit(parallel=_ONLY_PRANGE, **JIT_OPTIONS)
"""Decorator for a kernel whose `prange` loops are split over the cores."""

prange = numba.prange
"""`range` whose iterations a parallel_kernel may run on different cores."""

_forked = False


def _note_fork():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_note_fork)


def most_cores() -> int:
    """The most cores a parallel kernel may ever share its work over in this process: Numba's
    NUMBA_NUM_THREADS, but 1 in a forked child (see cores). minigrad.threads may run fewer."""
    return 1 if _forked else numba.config.NUMBA_NUM_THREADS


def parallel_available() -> bool:
    """Whether to compile the parallel version of a kernel: more than one thread may run it
    (most_cores). The count in use may still be 1 (minigrad.threads chooses it per unit of
    work): a parallel kernel runs its prange loops on the calling thread then, and no second
    version has to be compiled."""
    return most_cores() > 1


def cores() -> int:
    """How many cores minigrad's parallel kernels share their work over: Numba's thread
    count (NUMBA_NUM_THREADS), but 1 in a child process made by fork(). Numba's OpenMP
    layer ends a forked child that starts a parallel kernel ("fork() called from a process
    already using GNU OpenMP"), so there minigrad runs the one-core version of every kernel."""
    return 1 if _forked else numba.get_num_threads()
