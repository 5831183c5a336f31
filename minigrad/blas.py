"""The number of threads of numpy's BLAS, changeable while the program runs.

Why: a small matrix product, like the per-step W_hh @ h of a recurrent layer at batch
32, is slower with several BLAS threads than with one (waking and joining the threads
costs more than the arithmetic, and far more when other processes share the cores),
while a large one, like a whole window's input projection, gains from them. numpy
offers no way to change the count after start-up, so this module finds the OpenBLAS
that numpy loaded and calls its own setter through ctypes. With another BLAS (MKL,
Accelerate) or on a system without /proc, `limit` quietly does nothing.
"""

import contextlib
import ctypes

import numpy as np  # noqa: F401  (loads numpy's BLAS, which we look for below)

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS in this process, or (None, None)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None, None
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(library, n) for n in _SETTERS if hasattr(library, n)), None)
        getter = next((getattr(library, n) for n in _GETTERS if hasattr(library, n)), None)
        if setter is not None and getter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            return setter, getter
    return None, None


_set_threads, _get_threads = _find_openblas()


def threads() -> int:
    """Current BLAS thread count (0 if unknown)."""
    return _get_threads() if _get_threads else 0


@contextlib.contextmanager
def limit(count):
    """Run the block with at most `count` BLAS threads (None: no limit), then restore the count."""
    previous = threads()
    if count is None or _set_threads is None or previous <= count:
        yield
        return
    _set_threads(count)
    try:
        yield
    finally:
        _set_threads(previous)
