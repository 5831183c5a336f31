"""Matrix products: numpy's BLAS called from kernels, and shared out over the cores by us.

One pool of threads. numpy's OpenBLAS has its own threads, and after a product they
spin for a while waiting for the next one; Numba's parallel kernels have theirs. Two
pools on the same cores fight: measured here, a 1x128 LSTM training step went from 19
to 45 ms when OpenBLAS's threads spun beside the recurrent kernels. So while it trains,
minigrad keeps OpenBLAS at ONE thread (`use_one_openblas_thread`, through threadpoolctl,
which finds the loaded OpenBLAS libraries and calls their own setter; called by
minigrad.runtime.configured_for_training, which puts the old count back afterwards) and shares out the large products itself: `matmul` cuts
the rows of the result into one block per core and runs the blocks as a parallel Numba
kernel. Importing minigrad leaves OpenBLAS's thread count alone.

Products inside kernels. A Numba kernel cannot call numpy's matmul, but it can call a C
function by symbol name. `matmul_into` is a plain function for Python callers and, for
kernels, a Numba overload that calls the same OpenBLAS's cblas_?gemm (its address looked up
with ctypes in the library threadpoolctl found): the loop over the
time steps of a recurrent layer runs compiled, with one GEMM per step, and never comes
back to Python. Without OpenBLAS (numpy built on MKL or Accelerate) the overload falls
back to compiled loops (correct, slower) and `matmul` to numpy's own product.
"""

import ctypes
import os

import numpy as np  # (also loads numpy's BLAS, which we look for below)

# Importing threadpoolctl sets KMP_DUPLICATE_LIB_OK=True in the environment (it lets two
# Intel OpenMP runtimes load in one process): a choice for the application, and importing
# minigrad changes no process-wide setting, so the environment is put back as it was.
_KMP_VARIABLE = "KMP_DUPLICATE_LIB_OK"
_kmp_before = os.environ.get(_KMP_VARIABLE)
from threadpoolctl import ThreadpoolController  # noqa: E402

if _kmp_before is None:
    os.environ.pop(_KMP_VARIABLE, None)

from .jit import cores, parallel_kernel, prange


def _openblas_controllers() -> list:
    """threadpoolctl's handles of the OpenBLAS libraries loaded in this process (looked for
    anew at each call, which reads them and changes nothing)."""
    return ThreadpoolController().select(internal_api="openblas").lib_controllers


def _openblas_libraries() -> list:
    """The same libraries as ctypes handles, for what threadpoolctl does not give: the
    address of cblas_?gemm."""
    libraries = []
    for controller in _openblas_controllers():
        try:
            libraries.append(ctypes.CDLL(controller.filepath))
        except OSError:
            continue
    return libraries


def openblas_threads() -> list:
    """The thread count of every OpenBLAS loaded in this process (in a fixed order)."""
    return [controller.get_num_threads() for controller in _openblas_controllers()]


def set_openblas_threads(counts) -> None:
    """Give the OpenBLAS libraries the counts of `openblas_threads()` (a list), or all one count (an int)."""
    controllers = _openblas_controllers()
    counts = [counts] * len(controllers) if isinstance(counts, int) else counts
    for controller, count in zip(controllers, counts):
        controller.set_num_threads(int(count))


def use_one_openblas_thread() -> list:
    """Set every loaded OpenBLAS to one thread (see the module docstring); returns the counts
    before, for set_openblas_threads."""
    before = openblas_threads()
    set_openblas_threads(1)
    return before


# ---- matrix products callable from kernels ----------------------------------------------------

def matmul_into(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """out = op(a) @ op(b), or out += that if accumulate; op transposes if asked.

    All three are 2-D arrays of one float dtype whose rows are contiguous (views such as
    `x[:, 3:7]` are fine). Works from Python and from inside Numba kernels (see below).
    """
    product = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    if accumulate:
        out += product
    else:
        out[...] = product


_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112
# Symbol names of cblas_?gemm: numpy's wheels ship OpenBLAS with 64-bit integers and a
# prefix and suffix on every symbol; other builds use the plain names and 32-bit integers.
_GEMM_SYMBOLS = (("scipy_cblas_{}gemm64_", 64), ("cblas_{}gemm64_", 64), ("scipy_cblas_{}gemm", 32),
                 ("cblas_{}gemm", 32))


def _declare_cblas_gemm(libraries):
    """{dtype: Numba external function calling that dtype's cblas gemm in one of the OpenBLAS
    `libraries`}, empty without OpenBLAS.

    The function's address is registered with LLVM under a name of our own, and kernels
    call it by that name: so cached machine code stays valid in the next process (a
    pointer baked into the code would not be).
    """
    import llvmlite.binding
    from numba import types

    for library in libraries:
        for pattern, bits in _GEMM_SYMBOLS:
            if not all(hasattr(library, pattern.format(p)) for p in "sd"):
                continue
            integer = types.int64 if bits == 64 else types.int32
            declared = {}
            for prefix, dtype, scalar_type in (("s", np.float32, types.float32), ("d", np.float64, types.float64)):
                name = f"minigrad_cblas_{prefix}gemm_i{bits}"
                address = ctypes.cast(getattr(library, pattern.format(prefix)), ctypes.c_void_p).value
                llvmlite.binding.add_symbol(name, address)
                pointer = types.intp  # passed as the address (array.ctypes.data)
                signature = types.void(types.int32, types.int32, types.int32, integer, integer, integer,
                                       scalar_type, pointer, integer, pointer, integer, scalar_type, pointer, integer)
                declared[np.dtype(dtype)] = types.ExternalFunction(name, signature)
            return declared
    return {}


def _loop_matmul_into(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    # The fallback without OpenBLAS: the textbook triple loop, compiled.
    inner = a.shape[0] if transpose_a else a.shape[1]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            total = out[i, j] if accumulate else out.dtype.type(0.0)
            for k in range(inner):
                total += (a[k, i] if transpose_a else a[i, k]) * (b[j, k] if transpose_b else b[k, j])
            out[i, j] = total


def _register_kernel_matmul(libraries):
    from numba.extending import overload

    gemm_of = _declare_cblas_gemm(libraries)

    @overload(matmul_into)
    def kernel_matmul_into(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
        dtype = np.dtype(out.dtype.name)
        gemm = gemm_of.get(dtype)
        if gemm is None:
            return _loop_matmul_into
        one, zero, itemsize = dtype.type(1.0), dtype.type(0.0), dtype.itemsize

        def call_gemm(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
            # cblas, row-major: a matrix's leading dimension is its row stride in elements.
            gemm(_CBLAS_ROW_MAJOR, _CBLAS_TRANS if transpose_a else _CBLAS_NO_TRANS,
                 _CBLAS_TRANS if transpose_b else _CBLAS_NO_TRANS,
                 out.shape[0], out.shape[1], a.shape[0] if transpose_a else a.shape[1],
                 one, a.ctypes.data, a.strides[0] // itemsize, b.ctypes.data, b.strides[0] // itemsize,
                 one if accumulate else zero, out.ctypes.data, out.strides[0] // itemsize)

        return call_gemm

    return bool(gemm_of)


HAVE_OPENBLAS = _register_kernel_matmul(_openblas_libraries())


# ---- the parallel product -------------------------------------------------------------------

@parallel_kernel
def _matmul_in_blocks(a, b, out, transpose_a, transpose_b, accumulate, blocks):
    rows = out.shape[0]
    for block in prange(blocks):
        first, last = block * rows // blocks, (block + 1) * rows // blocks
        a_rows = a[:, first:last] if transpose_a else a[first:last]
        matmul_into(a_rows, b, out[first:last], transpose_a, transpose_b, accumulate)


# Below this many floating-point operations a product runs on one core: waking the other
# cores and waiting for them costs a few microseconds, more than a small product saves.
PARALLEL_FLOPS = 2e6
# ... and every block gets at least this many rows of the result (thin blocks run slowly).
MIN_ROWS_PER_BLOCK = 16


def _rows_contiguous(x):
    return x if x.strides[-1] == x.itemsize and x.strides[0] >= x.shape[-1] * x.itemsize else np.ascontiguousarray(x)


def matmul(a, b, transpose_a=False, transpose_b=False, out=None, accumulate=False):
    """op(a) @ op(b) for 2-D float arrays, the rows of the result shared out over the cores.

    With `out`, writes there (adds to it if accumulate) and returns it.
    """
    rows = a.shape[1] if transpose_a else a.shape[0]
    inner = a.shape[0] if transpose_a else a.shape[1]
    columns = b.shape[0] if transpose_b else b.shape[1]
    if out is None:
        out = np.zeros((rows, columns), np.result_type(a, b)) if accumulate else np.empty(
            (rows, columns), np.result_type(a, b))
    blocks = min(cores(), rows // MIN_ROWS_PER_BLOCK)
    usable = (HAVE_OPENBLAS and a.dtype == b.dtype == out.dtype and out.dtype in (np.float32, np.float64)
              and out.flags.c_contiguous)
    if not usable or blocks < 2 or 2.0 * rows * inner * columns < PARALLEL_FLOPS:
        matmul_into(a, b, out, transpose_a, transpose_b, accumulate)
        return out
    _matmul_in_blocks(_rows_contiguous(a), _rows_contiguous(b), out, transpose_a, transpose_b, accumulate, blocks)
    return out

