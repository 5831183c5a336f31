"""Compiling a kernel in a second process, so that a cold start uses two cores.

Numba compiles one function at a time in a process (it holds a global lock), and the
first training step on an empty kernel cache compiles several seconds of kernels, one
after the other, on one core. Some of them are not needed at once: the backward loop of
a recurrent layer runs only after the whole forward pass. So the layer asks another
Python process to compile that loop while this one compiles the forward pass; the helper
leaves the machine code in the shared on-disk cache, and when this process first calls
the loop it waits for the helper and loads the code from there (Numba looks in its cache
before compiling). If the helper fails, the call compiles here, as it would have anyway.

    job = compile_elsewhere(loops.window_backward, arrays_like_its_arguments)
    ...
    job.wait()                     # before the first call

Only for kernels in files (generated modules included) whose cache is cold: the caller
decides that. The helper is `python -m minigrad.precompile FILE FUNCTION TYPES`.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# A helper that has not finished by then is given up on (and the kernel compiles here).
WAIT_SECONDS = 120.0


def _describe(value):
    """A JSON description of an argument's Numba type: arrays and scalars only."""
    if isinstance(value, np.ndarray):
        layout = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "A"
        return ["array", value.dtype.str, value.ndim, layout]
    return ["scalar", np.asarray(value).dtype.str]


def _numba_type(description):
    from numba import from_dtype, types

    if description[0] == "array":
        _, dtype, ndim, layout = description
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)
    return from_dtype(np.dtype(description[1]))


class CompileJob:
    """A helper process compiling one kernel."""

    def __init__(self, process):
        self.process = process

    def wait(self) -> bool:
        """Wait for the helper to finish; True if it compiled the kernel."""
        try:
            return self.process.wait(timeout=WAIT_SECONDS) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False


def compile_elsewhere(dispatcher, arguments):
    """Start compiling `dispatcher` (a cache=True kernel defined in a file) for arguments of
    the types of `arguments` in a helper process; returns a CompileJob, or None if it
    could not be started."""
    function = dispatcher.py_func
    descriptions = json.dumps([_describe(argument) for argument in arguments])
    command = [sys.executable, "-m", "minigrad.precompile", function.__code__.co_filename, function.__name__,
               descriptions]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return CompileJob(process)


def _main(path, name, descriptions):
    from .codegen import import_file

    path = Path(path)
    # A generated module imports its sibling modules (a cell's kernels) by name.
    sys.path.insert(0, str(path.parent))
    dispatcher = getattr(import_file(path), name)
    dispatcher.compile(tuple(_numba_type(d) for d in json.loads(descriptions)))  # compiles, saves to the cache


if __name__ == "__main__":
    _main(*sys.argv[1:4])
