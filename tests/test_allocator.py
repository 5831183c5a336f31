"""minigrad.allocator: freed buffers are reused instead of being faulted in again."""

import platform
import resource

import numpy as np
import pytest

from minigrad import allocator

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists only in glibc")


@pytest.fixture(autouse=True)
def keep_freed_memory():
    # (minigrad.runtime applies it for training; importing minigrad does not: tests/test_runtime.py)
    allocator.keep_freed_memory()


@glibc_only
def test_the_setting_takes_effect_on_glibc():
    assert allocator.keep_freed_memory() is True


MEGABYTE = 1024 * 1024


def page_faults_of_repeated_steps(sizes_mb, steps=20):
    """Minor page faults while `steps` times buffers of `sizes_mb` are allocated, written
    everywhere and freed (after one first step, which may fault its pages in)."""

    def one_step():
        buffers = [np.ones(n * MEGABYTE // 8) for n in sizes_mb]
        del buffers

    one_step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        one_step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc_only
def test_buffers_allocated_again_every_step_are_not_faulted_in_again():
    sizes = (3, 5, 9, 17)  # a training step's workspaces: several sizes of a few megabytes
    faults = page_faults_of_repeated_steps(sizes)
    # With glibc's default settings these 20 steps fault about 40,000 pages in again
    # (measured: 40,600); reused memory needs none.
    pages_per_step = sum(sizes) * MEGABYTE // 4096
    assert faults < pages_per_step, faults


@glibc_only
def test_buffers_larger_than_any_mmap_threshold_are_reused_too():
    # glibc's mmap threshold stops at 32 MB; a 2x512 LSTM at batch 64 has 32-40 MB buffers
    faults = page_faults_of_repeated_steps((40,))
    # mmap'd afresh each time it faults at least 20 times per buffer (2 MB huge pages), and
    # 10,240 times with 4 KB pages
    assert faults < 20, faults
