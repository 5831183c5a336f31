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
float32, as in the float32 kernel.

Only on CPUs with AVX512_BF16 (`HOST_HAS_AVX512_BF16`); the callers check.
"""

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from minigrad.jit import kernel, scalar
from rnn.fused.packed_gemm import PANEL, packed_matmul_into  # (the same panel width in both precisions)

DEPTH = 128  # pairs of rows of a panel per pass: 16 KB, which stay in L1 while every block of rows uses them


def _host_has_avx512_bf16() -> bool:
    try:
        return bool(llvmlite.binding.get_host_cpu_features().get("avx512bf16"))
    except RuntimeError:  # (LLVM cannot tell on some hosts)
        return False


HOST_HAS_AVX512_BF16 = _host_has_avx512_bf16()


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


def _microkernel(rows: int, accumulate: bool):
    """An intrinsic c[0:rows, 0:PANEL] (+)= a[0:rows] @ panel, on raw addresses: a is rows of
    pair words (stride in words), panel (pairs, PANEL) words, c float32 (stride in floats).
    Lowered to one loop over the pairs of 2*rows `vdpbf16ps`."""

    @intrinsic
    def tile(typingctx, a, panel, c, a_stride, c_stride, pairs):
        signature = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            a, panel, c, a_stride, c_stride, pairs = args
            i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
            vector, words = ir.VectorType(f32, 16), ir.VectorType(i32, 16)
            bf16_pairs = ir.VectorType(_BFloat(), 32)
            name = "llvm.x86.avx512bf16.dpbf16ps.512"
            dot = builder.module.globals.get(name) or ir.Function(
                builder.module, ir.FunctionType(vector, [vector, bf16_pairs, bf16_pairs]), name)
            a_ptr, panel_ptr = (builder.inttoptr(x, i32.as_pointer()) for x in (a, panel))
            c_ptr = builder.inttoptr(c, f32.as_pointer())

            def constant(value):
                return ir.Constant(i64, value)

            zero = ir.Constant(vector, [0.0] * 16)
            undefined = ir.Constant(words, ir.Undefined)
            broadcast = ir.Constant(words, [0] * 16)
            entry = builder.block
            loop, done = builder.append_basic_block("tile_loop"), builder.append_basic_block("tile_done")
            builder.cbranch(builder.icmp_signed(">", pairs, constant(0)), loop, done)
            builder.position_at_end(loop)
            j = builder.phi(i64)
            j.add_incoming(constant(0), entry)
            sums = [builder.phi(vector) for _ in range(2 * rows)]
            for s in sums:
                s.add_incoming(zero, entry)
            pair_of_panel = builder.mul(j, constant(PANEL))
            halves = []
            for h in range(2):
                at = builder.bitcast(builder.gep(panel_ptr, [builder.add(pair_of_panel, constant(16 * h))]),
                                     words.as_pointer())
                halves.append(builder.bitcast(builder.load(at, align=4), bf16_pairs))
            updated = []
            for r in range(rows):
                word = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(constant(r), a_stride), j)]), align=4)
                splat = builder.shuffle_vector(builder.insert_element(undefined, word, ir.Constant(i32, 0)),
                                               undefined, broadcast)
                splat = builder.bitcast(splat, bf16_pairs)
                updated += [builder.call(dot, [sums[2 * r + h], splat, halves[h]]) for h in range(2)]
            next_j = builder.add(j, constant(1))
            j.add_incoming(next_j, loop)
            for s, u in zip(sums, updated):
                s.add_incoming(u, loop)
            builder.cbranch(builder.icmp_signed("<", next_j, pairs), loop, done)
            builder.position_at_end(done)
            totals = []
            for u in updated:  # (all the phis first: LLVM wants them at the top of the block)
                totals.append(builder.phi(vector))
                totals[-1].add_incoming(zero, entry)
                totals[-1].add_incoming(u, loop)
            for r in range(rows):
                for h in range(2):
                    total = totals[2 * r + h]
                    offset = builder.add(builder.mul(constant(r), c_stride), constant(16 * h))
                    target = builder.bitcast(builder.gep(c_ptr, [offset]), vector.as_pointer())
                    if accumulate:
                        total = builder.fadd(builder.load(target, align=4), total)
                    builder.store(total, target, align=4)
            return context.get_dummy_value()

        return signature, codegen

    return tile


_SET, _ADD = {r: _microkernel(r, False) for r in (8, 4, 2, 1)}, {r: _microkernel(r, True) for r in (8, 4, 2, 1)}
_set8, _set4, _set2, _set1 = _SET[8], _SET[4], _SET[2], _SET[1]
_add8, _add4, _add2, _add1 = _ADD[8], _ADD[4], _ADD[2], _ADD[1]


@kernel
def packed_matmul_bf16_into(a_pairs, panels, first_panel, out, accumulate):
    """out (+)= a @ W[:, first_panel*PANEL : first_panel*PANEL + out.shape[1]] in bf16 with
    float32 sums, for a rounded by round_pairs_into and W packed by pack_panels_bf16;
    out float32 with contiguous rows, out.shape[1] a multiple of PANEL."""
    pairs = panels.shape[1]
    a_stride, out_stride = a_pairs.strides[0] // 4, out.strides[0] // 4
    for p in range(out.shape[1] // PANEL):
        # the panel in slices of DEPTH pairs, each in L1 while every row block uses it
        for first_j in range(0, pairs, DEPTH):
            depth = min(DEPTH, pairs - first_j)
            panel = panels[first_panel + p].ctypes.data + 4 * first_j * PANEL
            add = accumulate or first_j > 0
            row = 0
            while row < out.shape[0]:
                left = out.shape[0] - row
                a_at = a_pairs.ctypes.data + 4 * (row * a_stride + first_j)
                out_at = out.ctypes.data + 4 * (row * out_stride + p * PANEL)
                if left >= 8:
                    if add:
                        _add8(a_at, panel, out_at, a_stride, out_stride, depth)
                    else:
                        _set8(a_at, panel, out_at, a_stride, out_stride, depth)
                    row += 8
                elif left >= 4:
                    if add:
                        _add4(a_at, panel, out_at, a_stride, out_stride, depth)
                    else:
                        _set4(a_at, panel, out_at, a_stride, out_stride, depth)
                    row += 4
                elif left >= 2:
                    if add:
                        _add2(a_at, panel, out_at, a_stride, out_stride, depth)
                    else:
                        _set2(a_at, panel, out_at, a_stride, out_stride, depth)
                    row += 2
                else:
                    if add:
                        _add1(a_at, panel, out_at, a_stride, out_stride, depth)
                    else:
                        _set1(a_at, panel, out_at, a_stride, out_stride, depth)
                    row += 1


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
