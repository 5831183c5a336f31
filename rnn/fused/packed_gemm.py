"""The recurrent layers' per-step product, out = a @ W, with W packed once per window.

A recurrent layer multiplies by the same W_hh at every step of a window. A BLAS call
packs its operands again at every call, and at 16-64 rows the packing and the call cost
as much as the arithmetic. Here W is packed once per window into panels of PANEL columns,
each panel (K, PANEL) contiguous (`pack_panels`); at every step a compiled loop runs a
register-blocked microkernel over them: `rows` rows of a times one panel, accumulated in
2*rows vector registers of 16 float32 (written as LLVM vector FMAs, so that LLVM emits
full-width AVX-512 FMAs on a CPU that has them, two AVX2 FMAs per vector on one without).

float32 only, and only on CPUs with AVX-512: with 16 vector registers (AVX2) the 16
accumulators of 16 floats would spill. The callers fall back to BLAS there, for float64,
and for layouts whose column blocks do not fall on panel boundaries (see `panels_fit`).
"""

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from minigrad.jit import kernel

PANEL = 32  # columns per panel: two vectors of 16 float32
DEPTH = 128  # rows of a panel per pass: 16 KB, which stay in L1 while every block of rows uses them
ROWS = 8  # rows per microkernel call: 16 accumulators + 2 panel vectors + a broadcast fit in 32 registers


def _host_has_avx512() -> bool:
    try:
        return bool(llvmlite.binding.get_host_cpu_features().get("avx512f"))
    except RuntimeError:  # (LLVM cannot tell on some hosts)
        return False


HOST_HAS_AVX512 = _host_has_avx512()


def pack_panels(w: np.ndarray) -> np.ndarray:
    """(K, N) float32 with N a multiple of PANEL -> (N // PANEL, K, PANEL): panel p holds columns
    p*PANEL .. (p+1)*PANEL of every row, contiguous."""
    inner, columns = w.shape
    return np.ascontiguousarray(w.reshape(inner, columns // PANEL, PANEL).transpose(1, 0, 2), dtype=np.float32)


def no_panels(dtype) -> np.ndarray:
    """The empty stand-in the loops take when they must use BLAS instead (of the layer's
    dtype, so that the loops compile for one signature per dtype)."""
    return np.empty((0, 1, PANEL), dtype)


def panels_fit(dtype, column_bounds) -> bool:
    """True if a product with W's columns cut at `column_bounds` can run on panels here."""
    return HOST_HAS_AVX512 and np.dtype(dtype) == np.float32 and all(int(bound) % PANEL == 0 for bound in column_bounds)


def _microkernel(rows: int, accumulate: bool):
    """An intrinsic c[0:rows, 0:PANEL] (+)= a[0:rows, 0:K] @ panel, on raw addresses; the
    strides of a and c are in elements. Lowered to one loop over K of 2*rows vector FMAs."""

    @intrinsic
    def tile(typingctx, a, panel, c, a_stride, c_stride, inner):
        signature = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            a, panel, c, a_stride, c_stride, inner = args
            i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
            vector = ir.VectorType(f32, 16)
            name = "llvm.fma.v16f32"
            fma = builder.module.globals.get(name) or ir.Function(
                builder.module, ir.FunctionType(vector, [vector] * 3), name)
            a_ptr, panel_ptr, c_ptr = (builder.inttoptr(x, f32.as_pointer()) for x in (a, panel, c))

            def vector_at(pointer, offset):
                return builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())

            def constant(value):
                return ir.Constant(i64, value)

            zero = ir.Constant(vector, [0.0] * 16)
            undefined = ir.Constant(vector, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(i32, 16), [0] * 16)
            entry = builder.block
            loop, done = builder.append_basic_block("tile_loop"), builder.append_basic_block("tile_done")
            builder.cbranch(builder.icmp_signed(">", inner, constant(0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(constant(0), entry)
            sums = [builder.phi(vector) for _ in range(2 * rows)]
            for s in sums:
                s.add_incoming(zero, entry)
            row_of_panel = builder.mul(k, constant(PANEL))
            halves = [builder.load(vector_at(panel_ptr, builder.add(row_of_panel, constant(16 * h))), align=4)
                      for h in range(2)]
            updated = []
            for r in range(rows):
                value = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(constant(r), a_stride), k)]), align=4)
                splat = builder.shuffle_vector(builder.insert_element(undefined, value, ir.Constant(i32, 0)),
                                               undefined, broadcast)
                updated += [builder.call(fma, [splat, halves[h], sums[2 * r + h]]) for h in range(2)]
            next_k = builder.add(k, constant(1))
            k.add_incoming(next_k, loop)
            for s, u in zip(sums, updated):
                s.add_incoming(u, loop)
            builder.cbranch(builder.icmp_signed("<", next_k, inner), loop, done)
            builder.position_at_end(done)
            totals = []
            for u in updated:  # (all the phis first: LLVM wants them at the top of the block)
                totals.append(builder.phi(vector))
                totals[-1].add_incoming(zero, entry)
                totals[-1].add_incoming(u, loop)
            for r in range(rows):
                for h in range(2):
                    total = totals[2 * r + h]
                    target = vector_at(c_ptr, builder.add(builder.mul(constant(r), c_stride), constant(16 * h)))
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
def packed_matmul_into(a, panels, first_panel, out, accumulate):
    """out (+)= a @ W[:, first_panel*PANEL : first_panel*PANEL + out.shape[1]] for W packed by
    pack_panels; a, out float32 with contiguous rows, out.shape[1] a multiple of PANEL."""
    inner = a.shape[1]
    a_stride, out_stride = a.strides[0] // 4, out.strides[0] // 4
    for p in range(out.shape[1] // PANEL):
        # the panel in slices of DEPTH rows, each in L1 while every row block uses it
        for first_k in range(0, inner, DEPTH):
            depth = min(DEPTH, inner - first_k)
            panel = panels[first_panel + p].ctypes.data + 4 * first_k * PANEL
            add = accumulate or first_k > 0
            row = 0
            while row < a.shape[0]:
                left = a.shape[0] - row
                a_at = a.ctypes.data + 4 * (row * a_stride + first_k)
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
