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
decides that. Helpers start only while the process is set up for training
(minigrad.runtime.configured_for_training): a plain `import minigrad` and the layers it
builds start no process.

The helper must run this package, the one this process imported, and nothing from the
folder the user happens to be in (`python -m` would put it first on sys.path, where a
planted `minigrad/` would be imported). So it starts with -P (Python 3.11+: no unsafe
path first) running a two-line bootstrap (-c) that drops the current folder from
sys.path on any version, puts the folder holding this package first, and calls `_main`;
its working folder is that folder too, and it is told the kernel cache folder chosen
here (MINIGRAD_CACHE_DIR), so that both processes use the same one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from .codegen import GeneratedModuleFinder, import_file
from .kernel_cache import CACHE_ENV, in_memory, user_cache_dir

import numpy as np

# A helper that has not finished by then is given up on (and the kernel compiles here).
WAIT_SECONDS = 120.0

# The folder that holds the `minigrad` package this process runs.
PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)

# Run by the helper: argv[1] is PACKAGE_PARENT. ('' is the current folder: -c puts it first
# on Python < 3.11, where -P does not exist.)
BOOTSTRAP = ("import sys\n"
             "sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p not in ('', '.')]\n"
             "from minigrad.precompile import _main\n"
             "_main(*sys.argv[2:5])\n")

_enabled = False  # set by minigrad.runtime for the duration of training


def helpers_enabled() -> bool:
    """True while compile helpers may be started (see minigrad.runtime)."""
    return _enabled


def set_helpers_enabled(enabled: bool) -> bool:
    """Allow or forbid starting compile helpers; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def _describe(value):
    """A JSON description of an argument's Numba type: arrays, scalars and None."""
    if value is None:
        return ["none"]
    if isinstance(value, np.ndarray):
        layout = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "A"
        return ["array", value.dtype.str, value.ndim, layout]
    return ["scalar", np.asarray(value).dtype.str]


def _numba_type(description):
    from numba import from_dtype, types

    if description[0] == "none":
        return types.none
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
    could not be started or helpers are not enabled (see minigrad.runtime)."""
    if not _enabled or in_memory():  # (in memory: the helper's work could not be kept for us)
        return None
    function = dispatcher.py_func
    descriptions = json.dumps([_describe(argument) for argument in arguments])
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    command = [sys.executable, *safe_path, "-c", BOOTSTRAP, PACKAGE_PARENT,
               os.path.abspath(function.__code__.co_filename), function.__name__, descriptions]
    try:
        environment = dict(os.environ, **{CACHE_ENV: str(user_cache_dir())})
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=PACKAGE_PARENT, env=environment)
    except OSError:
        return None
    return CompileJob(process)


def _main(path, name, descriptions):
    path = Path(path)
    # A generated module imports its sibling modules (a cell's kernels) by name: found in its
    # folder, run from their text (no .pyc), like the module itself.
    sys.meta_path.insert(0, GeneratedModuleFinder(path.parent))
    dispatcher = getattr(import_file(path), name)
    dispatcher.compile(tuple(_numba_type(d) for d in json.loads(descriptions)))  # compiles, saves to the cache
