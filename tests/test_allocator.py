"""minigrad.allocator: freed buffers are reused instead of being faulted in again.

The setting changes malloc for the rest of the process and cannot be undone, so each test
applies it in a child process of its own: the test run's own malloc is left as it was.
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEGABYTE = 1024 * 1024

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc")

# Applies the setting (minigrad.runtime does it for training; importing minigrad does not:
# tests/test_runtime.py), then counts the minor page faults while `steps` times buffers of
# `sizes_mb` are allocated, written everywhere and freed (after one first step, which may
# fault its pages in). Prints {"took_effect": ..., "faults": ...}.
CHILD = """
import json, resource, sys
import numpy as np
from minigrad import allocator

took_effect = allocator.keep_freed_memory()
sizes_mb, steps = json.loads(sys.argv[1]), 20

def one_step():
    buffers = [np.ones(n * 1024 * 1024 // 8) for n in sizes_mb]
    del buffers

one_step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(steps):
    one_step()
print(json.dumps({"took_effect": took_effect,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def in_a_child(sizes_mb) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(list(sizes_mb))], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@glibc_only
def test_the_setting_takes_effect_on_glibc():
    assert in_a_child(())["took_effect"] is True


@glibc_only
def test_buffers_allocated_again_every_step_are_not_faulted_in_again():
    sizes = (3, 5, 9, 17)  # a training step's workspaces: several sizes of a few megabytes
    report = in_a_child(sizes)
    # With glibc's default settings these 20 steps fault about 40,000 pages in again
    # (measured: 40,600); reused memory needs none.
    pages_per_step = sum(sizes) * MEGABYTE // 4096
    assert report["faults"] < pages_per_step, report


@glibc_only
def test_buffers_larger_than_any_mmap_threshold_are_reused_too():
    # glibc's mmap threshold stops at 32 MB; a 2x512 LSTM at batch 64 has 32-40 MB buffers
    report = in_a_child((40,))
    # mmap'd afresh each time it faults at least 20 times per buffer (2 MB huge pages), and
    # 10,240 times with 4 KB pages
    assert report["faults"] < 20, report
