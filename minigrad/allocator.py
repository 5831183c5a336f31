"""Keep freed memory in the process for reuse (glibc only; elsewhere nothing changes).

Why: every op allocates its output and gradient arrays anew, and a training step of a
recurrent layer allocates and frees the same few large buffers every step. glibc's
malloc serves large sizes with fresh mmap'd pages and gives them back to the system on
free, so every step pays a page fault (and the zeroing of a page) for every 4 KB it
touches again: measured here, about 4,000 faults per step of a 1x128 LSTM at batch 32,
which made the step 1.6-2x slower (35-47 ms against 21-22 ms without them).

`keep_freed_memory()` tells malloc to serve blocks of every size from its heap (no
mmap: glibc cannot raise its mmap threshold above 32 MB, and a 2x512 LSTM at batch 64
has 32-40 MB buffers, which faulted 5,000 times and spent 65-115 ms of system time per
step) and not to trim the heap below 512 MB: freed buffers are reused by the next step,
as PyTorch's caching allocator does for its tensors. The peak memory is unchanged;
memory that was freed stays counted in the resident size instead of going back to the
system. (Where the heap cannot grow, glibc still falls back to mmap.)

Importing minigrad does not call it: minigrad.runtime.configured_for_training does, for
training. It cannot be undone: glibc cannot report these settings, so the values from
before are unknown and the process keeps the new ones.
"""

import ctypes
import platform

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
TRIM_THRESHOLD = 512 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Apply the malloc settings above; True if they took effect (glibc), else False."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        # the symbols already loaded in this process, glibc's among them (ctypes.util.find_library
        # would start ldconfig or gcc to find libc)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
