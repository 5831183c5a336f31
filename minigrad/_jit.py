"""The one place that imports Numba and sets the JIT options.

Every kernel in minigrad is compiled with `kernel` (or `scalar` for helpers that
kernels call). Nothing here knows about tensors or gradients.

Why the options are what they are:
- cache=True: compiled machine code is kept on disk, so the second start is fast.
- error_model="numpy": x / 0 gives inf or nan like numpy, instead of raising
  ZeroDivisionError from inside a loop.
- no fastmath: fastmath lets LLVM assume there are no NaNs, which would make the
  NaN checks of anomaly mode and of the trainer lie.
"""

import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _writable(directory: Path) -> bool:
    """True if we can really create a file in `directory` (os.access lies for root)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def user_cache_dir() -> Path:
    """A writable per-user directory for compiled kernels and generated sources."""
    candidates = []
    if os.environ.get("MINIGRAD_CACHE_DIR"):
        candidates.append(Path(os.environ["MINIGRAD_CACHE_DIR"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(base) / "minigrad-rnn")
    candidates.append(Path(tempfile.gettempdir()) / f"minigrad-rnn-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    for candidate in candidates:
        if _writable(candidate):
            return candidate
    raise OSError("minigrad: no writable cache directory found (set MINIGRAD_CACHE_DIR)")


def _configure_numba_cache() -> None:
    # Numba keeps its cache in __pycache__ beside the source. When the install is
    # read-only (a system site-packages, a container image), point it at a user
    # directory instead; this must happen before numba is imported.
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    if not _writable(PACKAGE_DIR / "__pycache__"):
        os.environ["NUMBA_CACHE_DIR"] = str(user_cache_dir() / "numba")


_configure_numba_cache()

import numba  # noqa: E402  (must follow the cache configuration above)

JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")

kernel = numba.njit(**JIT_OPTIONS)
"""Decorator for an array kernel: loops over preallocated arrays, no autograd logic."""

scalar = numba.njit(inline="always", **JIT_OPTIONS)
"""Decorator for a scalar helper that kernels call (inlined into them by Numba). Left to
LLVM instead, the helpers stayed calls inside the parallel window loops of rnn.recurrence,
which then did not vectorize: a 1x128 LSTM training step took 25 ms instead of 15."""

summing_kernel = numba.njit(fastmath={"reassoc", "contract"}, **JIT_OPTIONS)
"""Decorator for a kernel whose loops sum (dot products): it lets LLVM reorder the
additions, so a sum runs in vector lanes. Unlike full fastmath it keeps NaN and inf."""

# Only explicit prange loops run in parallel: Numba's other automatic parallel rewrites
# (array expressions, reductions, fusion...) are switched off, which also makes a
# parallel kernel compile faster.
_ONLY_PRANGE = dict(prange=True, comprehension=False, setitem=False, numpy=False, reduction=False, stencil=False,
                    fusion=False, inplace_binop=False)
parallel_kernel = numba.njit(parallel=_ONLY_PRANGE, **JIT_OPTIONS)
"""Decorator for a kernel whose `prange` loops are split over the cores."""

prange = numba.prange
"""`range` whose iterations a parallel_kernel may run on different cores."""

_forked = False


def _note_fork():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_note_fork)


def cores() -> int:
    """How many cores minigrad's parallel kernels share their work over: Numba's thread
    count (NUMBA_NUM_THREADS), but 1 in a child process made by fork(). Numba's OpenMP
    layer ends a forked child that starts a parallel kernel ("fork() called from a process
    already using GNU OpenMP"), so there minigrad runs the one-core version of every kernel."""
    return 1 if _forked else numba.get_num_threads()
