"""The recurrent layers' per-step product, out = a @ W, with W packed once per window (and the
window-wide products on the same kernel where the BLAS runs narrower vectors).

A recurrent layer multiplies by the same W_hh at every step of a window. A BLAS call
packs its operands again at every call, and at 16-64 rows the packing and the call cost
as much as the arithmetic. Here W is packed once per window into panels of PANEL columns,
each panel (K, PANEL) contiguous (`pack_panels`); at every step a compiled loop runs a
register-blocked microkernel over them: `rows` rows of a times one panel, accumulated in
2*rows vector registers of 16 float32 (written as LLVM vector FMAs, so that LLVM emits
full-width AVX-512 FMAs on a CPU that has them, two AVX2 FMAs per vector on one without).
This module holds the packing and the FMA at the microkernel's heart; the microkernel's
loop and the loops that drive it over rows, panels and depth are rnn.fused.panel_driver's,
shared with the bf16 kernel.

The same microkernel runs the products over a whole window (`window_product`: the input
projections of layers 1.. and their gradients, the weight gradients summed over the window),
blocked for the caches and with the columns split over the cores; but only where numpy's
OpenBLAS runs a kernel without AVX-512 on an AVX-512 host (`window_products_packed`), where it
is about twice as fast. Against an AVX-512 BLAS kernel it gains nothing (measured on Zen 5:
docs/speed-measurement.md), so the BLAS keeps them there.

float32 only, and only on CPUs with AVX-512: with 16 vector registers (AVX2) the 16
accumulators of 16 floats would spill. The callers fall back to BLAS there, for float64,
and for layouts whose column blocks do not fall on panel boundaries (see `panels_fit`).
"""

import llvmlite.binding
import numpy as np
from llvmlite import ir

from minigrad.blas import PARALLEL_FLOPS
from minigrad.jit import cores, kernel, parallel_kernel, prange
from rnn.fused.panel_driver import PANEL, per_step_product, row_block_dispatch


def _host_has_avx512() -> bool:
    try:
        return bool(llvmlite.binding.get_host_cpu_features().get("avx512f"))
    except RuntimeError:  # (LLVM cannot tell on some hosts)
        return False


HOST_HAS_AVX512 = _host_has_avx512()


def pack_panels(w: np.ndarray, transpose=False) -> np.ndarray:
    """op(w) (K, N) float32 with N a multiple of PANEL -> (N // PANEL, K, PANEL): panel p holds
    columns p*PANEL .. (p+1)*PANEL of every row, contiguous. op(w) = w.T if transpose else w
    (either way one copy: the reshape below is a view of the transposed view too)."""
    w = w.T if transpose else w
    inner, columns = w.shape
    return np.ascontiguousarray(w.reshape(inner, columns // PANEL, PANEL).transpose(1, 0, 2), dtype=np.float32)


def panels_possible(dtype) -> bool:
    """True if the packed kernel can run for `dtype` on this CPU at all (float32, AVX-512)."""
    return HOST_HAS_AVX512 and np.dtype(dtype) == np.float32


def no_panels(dtype):
    """The stand-in the loops take when they must use BLAS instead. None where panels are never
    possible (float64, a CPU without AVX-512): Numba then prunes the packed path (a branch on
    `panels is not None`) from the loops it compiles, which halves the compile time of a
    float64 layer's loops. Else an empty array of the layer's dtype, so that the loops keep one
    signature whether or not a given layout's columns fall on panels."""
    return np.empty((0, 1, PANEL), dtype) if panels_possible(dtype) else None


def panels_fit(dtype, column_bounds) -> bool:
    """True if a product with W's columns cut at `column_bounds` can run on panels here."""
    return panels_possible(dtype) and all(int(bound) % PANEL == 0 for bound in column_bounds)


def _fma(builder, total, a_splat, panel_half):
    """total + a_splat * panel_half on 16 float32 lanes: one vector FMA (LLVM's fma intrinsic)."""
    vector = ir.VectorType(ir.FloatType(), 16)
    name = "llvm.fma.v16f32"
    fma = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(vector, [vector] * 3), name)
    return builder.call(fma, [a_splat, panel_half, total])


_tile = row_block_dispatch(ir.FloatType(), _fma)
_product_into = per_step_product(_tile)


@kernel
def packed_matmul_into(a, panels, first_panel, out, accumulate):
    """out (+)= a @ W[:, first_panel*PANEL : first_panel*PANEL + out.shape[1]] for W packed by
    pack_panels; a, out float32 with contiguous rows, out.shape[1] a multiple of PANEL."""
    _product_into(a, panels, first_panel, out, accumulate)


# ---- window-wide products ----------------------------------------------------------------------
#
# The products over a whole window (an input projection of every step, a weight gradient summed
# over every step, thousands of rows) use the same microkernel, blocked for caches: WINDOW_ROWS
# rows of a at a time (their WINDOW_DEPTH-deep slice, 64 KB, stays in L2 while every panel
# of the core passes over it), each panel slice (32 KB) in L1 while those rows use it, the
# result's block in L2 across the depth slices; the cores split the panels (columns).
WINDOW_ROWS = 64
WINDOW_DEPTH = 256
# BLAS kernels (threadpoolctl's 'architecture' of OpenBLAS, lower case) that use AVX-512: with
# any other, OpenBLAS runs half-width vectors on an AVX-512 host and the packed kernel is faster.
AVX512_BLAS_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")


@kernel
def _window_part(a, transpose_a, rows, inner, panels, first_panel, last_panel, out):
    # out[:, first_panel*PANEL : last_panel*PANEL] = op(a) @ those panels of W
    out_stride = out.strides[0] // 4
    # a^T's rows are a's columns: reading them in place, every k of a tile is another row of a
    # (another page); so each block of them is first copied into tiles of 8 rows, (depth, 8)
    # contiguous, once for all the panels of the core (measured on one Zen 5 core, d W of the
    # 2x512 LSTM: about 225 GFLOP/s against 205-210)
    tiles = np.empty((WINDOW_ROWS // 8, WINDOW_DEPTH, 8), np.float32)
    for first_row in range(0, rows, WINDOW_ROWS):
        last_row = min(first_row + WINDOW_ROWS, rows)
        for first_k in range(0, inner, WINDOW_DEPTH):
            depth = min(WINDOW_DEPTH, inner - first_k)
            if transpose_a:
                for t in range((last_row - first_row + 7) // 8):
                    tile_row = first_row + 8 * t
                    if tile_row + 8 <= rows:  # (eight at a time: one vector move)
                        for k in range(depth):
                            for j in range(8):
                                tiles[t, k, j] = a[first_k + k, tile_row + j]
                    else:
                        for k in range(depth):
                            for j in range(rows - tile_row):
                                tiles[t, k, j] = a[first_k + k, tile_row + j]
            for p in range(first_panel, last_panel):
                panel = panels[p].ctypes.data + 4 * first_k * PANEL
                row = first_row
                while row < last_row:
                    if transpose_a:
                        t, j = (row - first_row) // 8, (row - first_row) % 8
                        a_at, a_stride, a_step = tiles[t].ctypes.data + 4 * j, 1, 8
                    else:
                        a_at, a_stride, a_step = a.ctypes.data + 4 * (row * inner + first_k), inner, 1
                    row += _tile(a_at, panel, out.ctypes.data + 4 * (row * out_stride + p * PANEL), a_stride,
                                 a_step, out_stride, depth, last_row - row, first_k > 0)


@parallel_kernel
def _window_parts(a, transpose_a, rows, inner, panels, out, parts):
    # part j of the cores takes panels j*P/parts .. (j+1)*P/parts
    count = panels.shape[0]
    for part in prange(parts):
        _window_part(a, transpose_a, rows, inner, panels, part * count // parts, (part + 1) * count // parts, out)


def _blas_architectures() -> list:
    """threadpoolctl's name of the kernel every loaded OpenBLAS runs (reads, changes nothing)."""
    from threadpoolctl import ThreadpoolController  # (minigrad.blas imported it first, minding its side effect)

    return [str(c.architecture).lower() for c in ThreadpoolController().select(internal_api="openblas").lib_controllers]


def window_products_packed() -> bool:
    """True if the window-wide float32 products should run here rather than in numpy's BLAS:
    the host has AVX-512 and numpy's OpenBLAS runs a kernel without it (pinned to Haswell, or
    a build that does not know the CPU), at half the host's vector width. With an AVX-512 BLAS
    kernel, or a BLAS other than OpenBLAS (MKL, Accelerate), the BLAS keeps them."""
    global _WINDOW_PACKED
    if _WINDOW_PACKED is None:
        architectures = _blas_architectures()
        _WINDOW_PACKED = HOST_HAS_AVX512 and bool(architectures) and not any(
            name in AVX512_BLAS_KERNELS for name in architectures)
    return _WINDOW_PACKED


_WINDOW_PACKED = None


def window_product_fits(dtype, columns: int) -> bool:
    """True if a window-wide product with `columns` result columns runs on panels here."""
    return window_products_packed() and np.dtype(dtype) == np.float32 and columns % PANEL == 0


def window_product(a, b_panels, transpose_a=False):
    """op(a) @ W for W packed by pack_panels (float32; op transposes a if asked), the panels
    split over the cores; a new (rows, columns) array."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    rows, inner = (a.shape[1], a.shape[0]) if transpose_a else a.shape
    out = (np.empty if inner > 0 else np.zeros)((rows, b_panels.shape[0] * PANEL), np.float32)  # (no k: no sums)
    parts = max(1, min(cores(), b_panels.shape[0])) if 2.0 * rows * inner * out.shape[1] >= PARALLEL_FLOPS else 1
    if parts > 1:
        _window_parts(a, transpose_a, rows, inner, b_panels, out, parts)
    else:  # (no parallel kernel on one core: in a forked child, starting one would end the process)
        _window_part(a, transpose_a, rows, inner, b_panels, 0, b_panels.shape[0], out)
    return out
