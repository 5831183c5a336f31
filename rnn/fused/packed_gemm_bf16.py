"""The per-step product out = a @ W with bf16 operands and float32 sums (`vdpbf16ps`).

The float32 version (rnn.fused.packed_gemm) multiplies one float per lane per FMA. With
AVX512_BF16, `vdpbf16ps` multiplies PAIRS of bf16 (bfloat16: float32's sign and exponent,
7 bits of mantissa) and adds both products to a float32 lane: on Zen 4/5 at the rate of a
float32 FMA, so twice the multiplications per instruction. The operands lose 16 bits of
mantissa (relative rounding error 2**-9 each); the sums stay float32.

Layouts. W (K, N) float32 is rounded to bf16 and packed once per window into panels of
PANEL columns, pairs of rows interleaved: panel p, pair j, column c is one 32-bit word
holding W[2j, p*PANEL + c] (low half) and W[2j+1, p*PANEL + c] (high half)
(`pack_panels_bf16`, K padded to even with a zero row). The activations a (rows, K) are
rounded the same way into words of pairs a[r, 2j], a[r, 2j+1] (`round_pairs_into`),
once per step for all of W's panels. The microkernel broadcasts one word of a to 16 lanes
and `vdpbf16ps`es it with the two vectors of a panel's pair j: 2*rows accumulators of 16
float32, as in the float32 kernel: its loop, and the loops around it (rows, panels, depth),
are rnn.fused.panel_driver's, the float32 kernel's too; this module holds the rounding, the
packing and the `vdpbf16ps` (`_dot_pairs`).

Only on CPUs with AVX512_BF16, and with an llvmlite built on LLVM 16 or newer (LLVM 16 gave
the intrinsic its `bfloat` operands; older ones refuse them): `BF16_UNAVAILABLE` says why not,
or is None; the callers check.
"""

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from minigrad.jit import kernel, scalar
from rnn.fused.packed_gemm import packed_matmul_into
from rnn.fused.panel_driver import PANEL, per_step_product, row_block_dispatch  # (the loops of both precisions)


def _host_has_avx512_bf16() -> bool:
    try:
        return bool(llvmlite.binding.get_host_cpu_features().get("avx512bf16"))
    except RuntimeError:  # (LLVM cannot tell on some hosts)
        return False


HOST_HAS_AVX512_BF16 = _host_has_avx512_bf16()
# The first LLVM whose `vdpbf16ps` intrinsic takes `<32 x bfloat>` operands (the kernel's).
FIRST_LLVM_WITH_BFLOAT_DOT = 16


def _bf16_unavailable():
    if not HOST_HAS_AVX512_BF16:
        return "needs a CPU with AVX512_BF16, which this one lacks"
    llvm = llvmlite.binding.llvm_version_info[0]
    if llvm < FIRST_LLVM_WITH_BFLOAT_DOT:
        return (f"needs llvmlite built on LLVM {FIRST_LLVM_WITH_BFLOAT_DOT} or newer (this one: LLVM {llvm}; "
                "upgrade numba and llvmlite)")
    return None


# None where the bf16 kernels can run here, else why not (one phrase).
BF16_UNAVAILABLE = _bf16_unavailable()


@intrinsic
def _bits(typingctx, x):
    """The 32 bits of a float32, as a uint32 (a bitcast: no conversion)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@scalar
def rounded_bits(x):
    """bf16 bits (as uint32) of float32 x by round-to-nearest-even (NaN stays a quiet NaN).
    Without branches, so that the loops calling it run in vector lanes."""
    bits = _bits(x)
    # add 0x7FFF plus the lowest kept bit: exact halves round to the even neighbour
    nearest = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (bits >> np.uint32(16)) | np.uint32(0x40)
    return quiet_nan if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000) else nearest


@kernel
def round_to_bf16(x):
    """float32 array (C-contiguous) -> uint16 array of the same shape: bf16 bits, rounded to nearest even."""
    flat = x.ravel()
    out = np.empty(flat.size, np.uint16)
    for i in range(flat.size):
        out[i] = np.uint16(rounded_bits(flat[i]))
    return out.reshape(x.shape)


@kernel
def bf16_to_float32(bf16):
    """uint16 bf16 bits -> the float32 values they stand for (exact)."""
    return (bf16.astype(np.uint32) << np.uint32(16)).view(np.float32)


WORDS_PER_LINE = 16  # words of out per cache line: the transposed rounding writes whole lines


@kernel
def round_pairs_into(a, transpose, out):
    """out[r, j] = the word of bf16(op(a)[r, 2j]) (low half) and bf16(op(a)[r, 2j+1]) (high
    half), op(a) = a.T if transpose else a, (rows, K) float32; out (rows, ceil(K/2)) uint32
    (an odd K's last word has a zero high half)."""
    rows, inner = out.shape[0], (a.shape[0] if transpose else a.shape[1])
    pairs = inner // 2
    if transpose:
        # a line of out's row r at a time (16 words from 32 rows of a, each read along r):
        # writing a column of out instead, rows apart by a multiple of 4 KB, thrashed L1's sets
        for first in range(0, pairs, WORDS_PER_LINE):
            last = min(first + WORDS_PER_LINE, pairs)
            for r in range(rows):
                for j in range(first, last):
                    out[r, j] = rounded_bits(a[2 * j, r]) | (rounded_bits(a[2 * j + 1, r]) << np.uint32(16))
        if inner % 2:
            for r in range(rows):
                out[r, pairs] = rounded_bits(a[inner - 1, r])
    else:
        for r in range(rows):
            for j in range(pairs):
                out[r, j] = rounded_bits(a[r, 2 * j]) | (rounded_bits(a[r, 2 * j + 1]) << np.uint32(16))
            if inner % 2:
                out[r, pairs] = rounded_bits(a[r, inner - 1])


@kernel
def pack_into(w, transpose, out):
    """out[p, j, c] = the word of bf16(op(w)[2j, p*PANEL + c]) (low) and bf16(op(w)[2j+1, ...])
    (high), op(w) = w.T if transpose else w, (K, N) float32; out (N // PANEL, ceil(K/2), PANEL)."""
    inner = w.shape[1] if transpose else w.shape[0]
    for p in range(out.shape[0]):
        for j in range(out.shape[1]):
            for c in range(PANEL):
                column = p * PANEL + c
                if transpose:
                    high = rounded_bits(w[column, 2 * j + 1]) if 2 * j + 1 < inner else np.uint32(0)
                    out[p, j, c] = rounded_bits(w[column, 2 * j]) | (high << np.uint32(16))
                else:
                    high = rounded_bits(w[2 * j + 1, column]) if 2 * j + 1 < inner else np.uint32(0)
                    out[p, j, c] = rounded_bits(w[2 * j, column]) | (high << np.uint32(16))


def pairs_of(a: np.ndarray, transpose=False) -> np.ndarray:
    """op(a) (rows, K) float32 as bf16 pair words (rows, ceil(K/2)) uint32 (see round_pairs_into)."""
    rows, inner = (a.shape[1], a.shape[0]) if transpose else a.shape
    out = np.empty((rows, (inner + 1) // 2), np.uint32)
    round_pairs_into(a, transpose, out)
    return out


def pack_panels_bf16(w: np.ndarray, transpose=False) -> np.ndarray:
    """op(w) (K, N) float32 with N a multiple of PANEL -> (N // PANEL, ceil(K/2), PANEL) uint32 words
    of bf16 pairs: [p, j, c] holds op(w)[2j, p*PANEL + c] low and op(w)[2j+1, p*PANEL + c] high."""
    inner, columns = (w.shape[1], w.shape[0]) if transpose else w.shape
    out = np.empty((columns // PANEL, (inner + 1) // 2, PANEL), np.uint32)
    pack_into(w, transpose, out)
    return out


class _BFloat(ir.Type):
    """LLVM's bfloat type (llvmlite's IR builder has no class for it)."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


def _dot_pairs(builder, total, a_splat, panel_half):
    """total + in each of 16 float32 lanes the two products of that lane's bf16 pairs of
    a_splat and panel_half (words of two bf16): one `vdpbf16ps`."""
    vector, pairs = ir.VectorType(ir.FloatType(), 16), ir.VectorType(_BFloat(), 32)
    name = "llvm.x86.avx512bf16.dpbf16ps.512"
    dot = builder.module.globals.get(name) or ir.Function(
        builder.module, ir.FunctionType(vector, [vector, pairs, pairs]), name)
    return builder.call(dot, [total, builder.bitcast(a_splat, pairs), builder.bitcast(panel_half, pairs)])


_product_into = per_step_product(row_block_dispatch(ir.IntType(32), _dot_pairs))


@kernel
def packed_matmul_bf16_into(a_pairs, panels, first_panel, out, accumulate):
    """out (+)= a @ W[:, first_panel*PANEL : first_panel*PANEL + out.shape[1]] in bf16 with
    float32 sums, for a rounded by round_pairs_into and W packed by pack_panels_bf16;
    out float32 with contiguous rows, out.shape[1] a multiple of PANEL."""
    _product_into(a_pairs, panels, first_panel, out, accumulate)


def panel_product_into(a, panels, first_panel, out, accumulate):
    """out (+)= a @ W[:, first_panel*PANEL : ...] on W's panels, in the precision they were packed
    in: float32 panels (pack_panels) run rnn.fused.packed_gemm's kernel; bf16 ones
    (pack_panels_bf16, uint32 words) round a to bf16 pairs first, then run this module's.
    For the compiled loops (which then serve both precisions); a has contiguous rows or not."""
    raise NotImplementedError("panel_product_into runs inside compiled kernels only")


@overload(panel_product_into)
def _panel_product_into(a, panels, first_panel, out, accumulate):
    if panels.dtype == types.uint32:
        def bf16_product(a, panels, first_panel, out, accumulate):
            pairs = np.empty((a.shape[0], panels.shape[1]), np.uint32)  # (a few KB, once per step)
            round_pairs_into(a, False, pairs)
            packed_matmul_bf16_into(pairs, panels, first_panel, out, accumulate)
        return bf16_product

    def float32_product(a, panels, first_panel, out, accumulate):
        packed_matmul_into(a, panels, first_panel, out, accumulate)
    return float32_product
