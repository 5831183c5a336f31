"""Importing minigrad and rnn changes no process-wide setting and writes no file;
minigrad.runtime's training setup does, for its duration (restoring OpenBLAS's thread
count), and only there do layers start compile helpers.

Each check runs in a fresh interpreter, so that nothing this test process imported earlier
can hide a change made at import.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad import blas
from minigrad.jit import cores

ROOT = Path(blas.__file__).resolve().parent.parent  # the code under test (PYTHONPATH), not always this checkout

CHILD = r"""
import ctypes, json, os, resource, subprocess, sys
import numpy as np

def openblas_threads():
    # OpenBLAS's own getter, found in the libraries loaded in this process
    names = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
             "openblas_get_num_threads64_", "openblas_get_num_threads")
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    counts = []
    for path in paths:
        library = ctypes.CDLL(path)
        getter = next((getattr(library, n) for n in names if hasattr(library, n)), None)
        if getter is not None:
            counts.append(getter())
    return counts

def faults_of_big_buffers():
    # glibc's default: a 40 MB buffer (above any mmap threshold) is mmap'd afresh, and faulted
    # in again, every time; with minigrad.allocator's setting it is reused from the heap
    def step():
        buffer = np.ones(40 * 1024 * 1024 // 8)
        del buffer
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

started = []
real_popen = subprocess.Popen
class RecordingPopen(real_popen):
    def __init__(self, args, *rest, **options):
        started.append([str(a) for a in args])
        super().__init__(args, *rest, **options)
subprocess.Popen = RecordingPopen

environment_before = dict(os.environ)
threads_before = openblas_threads()
cache = os.environ["MINIGRAD_CACHE_DIR"]
import minigrad, rnn
cache_after_import = sorted(os.listdir(cache)) if os.path.exists(cache) else None
from rnn.cells.registry import cell, sigmoid, tanh
from rnn.model.layers import Recurrent
report = {"threads_before": threads_before, "threads_after_import": openblas_threads(),
          "environment_changed": sorted(k for k in set(environment_before) | set(os.environ)
                                        if environment_before.get(k) != os.environ.get(k)),
          "faults_after_import": faults_of_big_buffers(), "cache_after_import": cache_after_import}

@cell(gates=("f", "n"), state=("h",), name="runtime_test_cell_a")
def cell_a(x, h):
    f = sigmoid(x.f + h.f)
    return (f * h + (1 - f) * tanh(x.n + h.n),)

@cell(gates=("f", "n"), state=("h",), name="runtime_test_cell_b")
def cell_b(x, h):
    f = sigmoid(x.f + h.f)
    return (f * h + (1 - f) * tanh(x.n - h.n),)

Recurrent("runtime_test_cell_a", 5, 64, engine="fused")  # a cold cache: see MINIGRAD_CACHE_DIR
report["processes_outside"] = len(started)
import contextlib
runtime = getattr(minigrad, "runtime", None)  # (absent before minigrad.runtime existed)
with runtime.configured_for_training() if runtime else contextlib.nullcontext():
    report["threads_inside"] = openblas_threads()
    Recurrent("runtime_test_cell_b", 5, 64, engine="fused")
    report["processes_inside"] = started[report["processes_outside"]:]
report["threads_after"] = openblas_threads()
report["faults_after_training_setup"] = faults_of_big_buffers()
print(json.dumps(report))
"""


@pytest.mark.skipif(not blas.HAVE_OPENBLAS or platform.libc_ver()[0] != "glibc",
                    reason="checks OpenBLAS's thread count and glibc's malloc")
def test_importing_changes_nothing_global_and_training_setup_does(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "OMP_", "NUMBA_CACHE"))}
    env.update(OPENBLAS_NUM_THREADS="2", MINIGRAD_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    script = tmp_path / "child.py"  # a script, not -c: its folder, not the cwd, goes on sys.path
    script.write_text(CHILD)
    child = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=400)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])

    assert report["threads_before"] and set(report["threads_before"]) == {2}
    assert report["threads_after_import"] == report["threads_before"], "import changed OpenBLAS's thread count"
    assert report["environment_changed"] == [], "import changed os.environ"
    # glibc's default malloc faults every 4 KB page of the 10 buffers in again (10,240 faults
    # with 4 KB pages, >= 200 with 2 MB pages); kept memory needs none (see test_allocator.py)
    assert report["faults_after_import"] >= 100, "import changed malloc's settings"
    assert report["cache_after_import"] is None, "import made the cache folder or wrote files in it"
    assert report["processes_outside"] == 0, "building a layer outside training started a process"

    assert set(report["threads_inside"]) == {1}
    assert report["threads_after"] == report["threads_before"], "the thread count was not put back"
    assert report["faults_after_training_setup"] < 20  # the malloc setting stays (it cannot be read back)
    if cores() >= 2:  # the helper is only worth it with a second core
        assert len(report["processes_inside"]) == 1, report["processes_inside"]
