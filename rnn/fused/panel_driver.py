"""The packed-panel microkernel's loop and the loops around it, shared by the float32
per-step product (rnn.fused.packed_gemm) and the bf16 one (rnn.fused.packed_gemm_bf16).

Both products pack W once per window into panels of PANEL columns and multiply with a
register-blocked microkernel: an LLVM intrinsic c[0:rows, 0:PANEL] (+)= a[0:rows] @ panel on
raw addresses (`microkernel`), generated for 8, 4, 2 and 1 rows, in a variant that sets c and
one that adds to it. The two differ only in the vector instruction at its heart (a float32
FMA on float32 words, or `vdpbf16ps` on words that hold two bf16) and in how W is packed.
Every operand is a 4-byte word either way, so the rest serves both as it is: a module hands
its word type and that instruction (`multiply_add`) to `row_block_dispatch`, the result to
`per_step_product`, and calls what it gets from a kernel of its own.

What is built here is inlined into the caller (`scalar`): a module-level kernel that calls it
is cached as usual, while a closure compiled on its own would miss Numba's cache in every
process (the cache key hashes a closure's contents, which name per-process ids). Numba does
not see a change to this file in the kernels that inline it: with an old cache, clear it
(MINIGRAD_CACHE_DIR) after editing here.

Holds no packing, and knows of a word's contents only what `multiply_add` does with them.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from minigrad.jit import scalar

PANEL = 32  # columns per panel: two vectors of 16 float32 sums
DEPTH = 128  # words of a panel's column per pass (rows of W, or pairs of rows in bf16): 16 KB, which stay in L1


def microkernel(rows: int, accumulate: bool, word, multiply_add):
    """An intrinsic c[0:rows, 0:PANEL] (+)= a[0:rows] @ panel with arguments (a, panel, c,
    a_stride, a_step, c_stride, depth): raw addresses, and in 4-byte words a's word (r, k) at
    r * a_stride + k * a_step (a_step 1 for rows of a, the row stride of a^T for a transposed
    operand), c's rows c_stride apart; a and the panel hold words of LLVM type `word`, c float32.

    Lowered to one loop over the depth that loads a panel row as two vectors of 16 words,
    broadcasts each row's word of a to 16 lanes and updates that row's two accumulators (16
    float32 each) with `multiply_add(builder, total, a_splat, panel_half)`, the family's
    arithmetic; then stores (or adds) the accumulators into c."""

    @intrinsic
    def tile(typingctx, a, panel, c, a_stride, a_step, c_stride, depth):
        signature = types.void(*[types.intp] * 7)

        def codegen(context, builder, sig, args):
            a, panel, c, a_stride, a_step, c_stride, depth = args
            i64, i32, f32 = ir.IntType(64), ir.IntType(32), ir.FloatType()
            vector, words = ir.VectorType(f32, 16), ir.VectorType(word, 16)
            a_ptr, panel_ptr = (builder.inttoptr(x, word.as_pointer()) for x in (a, panel))
            c_ptr = builder.inttoptr(c, f32.as_pointer())

            def vector_at(pointer, offset, of):
                return builder.bitcast(builder.gep(pointer, [offset]), of.as_pointer())

            def constant(value):
                return ir.Constant(i64, value)

            zero = ir.Constant(vector, [0.0] * 16)
            undefined = ir.Constant(words, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(i32, 16), [0] * 16)
            entry = builder.block
            loop, done = builder.append_basic_block("tile_loop"), builder.append_basic_block("tile_done")
            builder.cbranch(builder.icmp_signed(">", depth, constant(0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(constant(0), entry)
            sums = [builder.phi(vector) for _ in range(2 * rows)]
            for s in sums:
                s.add_incoming(zero, entry)
            row_of_panel = builder.mul(k, constant(PANEL))
            halves = [builder.load(vector_at(panel_ptr, builder.add(row_of_panel, constant(16 * h)), words), align=4)
                      for h in range(2)]
            updated = []
            a_column = builder.mul(k, a_step)
            for r in range(rows):
                value = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(constant(r), a_stride), a_column)]),
                                     align=4)
                splat = builder.shuffle_vector(builder.insert_element(undefined, value, ir.Constant(i32, 0)),
                                               undefined, broadcast)
                updated += [multiply_add(builder, sums[2 * r + h], splat, halves[h]) for h in range(2)]
            next_k = builder.add(k, constant(1))
            k.add_incoming(next_k, loop)
            for s, u in zip(sums, updated):
                s.add_incoming(u, loop)
            builder.cbranch(builder.icmp_signed("<", next_k, depth), loop, done)
            builder.position_at_end(done)
            totals = []
            for u in updated:  # (all the phis first: LLVM wants them at the top of the block)
                totals.append(builder.phi(vector))
                totals[-1].add_incoming(zero, entry)
                totals[-1].add_incoming(u, loop)
            for r in range(rows):
                for h in range(2):
                    total = totals[2 * r + h]
                    target = vector_at(c_ptr, builder.add(builder.mul(constant(r), c_stride), constant(16 * h)), vector)
                    if accumulate:
                        total = builder.fadd(builder.load(target, align=4), total)
                    builder.store(total, target, align=4)
            return context.get_dummy_value()

        return signature, codegen

    return tile


def _set_or_add(word, multiply_add, rows: int):
    """run(add, ...): the family's `rows`-row microkernel, the variant that adds to c if `add`."""
    set_c, add_to_c = (microkernel(rows, accumulate, word, multiply_add) for accumulate in (False, True))

    @scalar
    def run(add, a_at, panel, out_at, a_stride, a_step, out_stride, depth):
        if add:
            add_to_c(a_at, panel, out_at, a_stride, a_step, out_stride, depth)
        else:
            set_c(a_at, panel, out_at, a_stride, a_step, out_stride, depth)

    return run


def row_block_dispatch(word, multiply_add):
    """The compiled choice among a family's microkernels (see `microkernel`: words of LLVM type
    `word`, arithmetic `multiply_add`), for 8, 4, 2 and 1 rows, setting or adding to c.

    Returns tile(a_at, panel, out_at, a_stride, a_step, out_stride, depth, rows_left, add),
    which runs the largest microkernel that fits `rows_left` (8, 4, 2 or 1 rows), adding to
    out if `add`, and returns the rows it took."""
    # (8 rows at most: 16 accumulators + 2 panel vectors + a broadcast fit in AVX-512's 32 registers)
    run8, run4, run2, run1 = (_set_or_add(word, multiply_add, rows) for rows in (8, 4, 2, 1))

    @scalar
    def tile(a_at, panel, out_at, a_stride, a_step, out_stride, depth, rows_left, add):
        if rows_left >= 8:
            run8(add, a_at, panel, out_at, a_stride, a_step, out_stride, depth)
            return 8
        if rows_left >= 4:
            run4(add, a_at, panel, out_at, a_stride, a_step, out_stride, depth)
            return 4
        if rows_left >= 2:
            run2(add, a_at, panel, out_at, a_stride, a_step, out_stride, depth)
            return 2
        run1(add, a_at, panel, out_at, a_stride, a_step, out_stride, depth)
        return 1

    return tile


def per_step_product(tile):
    """The per-step product on a family's `tile` (row_block_dispatch): returns
    product_into(a, panels, first_panel, out, accumulate), which does
    out (+)= a @ W[:, first_panel*PANEL : first_panel*PANEL + out.shape[1]] for a (rows, K)
    words with contiguous rows, W packed as panels (N // PANEL, K, PANEL) words, out float32
    with contiguous rows and out.shape[1] a multiple of PANEL."""

    @scalar
    def product_into(a, panels, first_panel, out, accumulate):
        inner = a.shape[1]
        a_stride, out_stride = a.strides[0] // 4, out.strides[0] // 4
        for p in range(out.shape[1] // PANEL):
            # the panel in slices of DEPTH words, each in L1 while every block of rows uses it
            for first_k in range(0, inner, DEPTH):
                depth = min(DEPTH, inner - first_k)
                panel = panels[first_panel + p].ctypes.data + 4 * first_k * PANEL
                row = 0
                while row < a.shape[0]:
                    row += tile(a.ctypes.data + 4 * (row * a_stride + first_k), panel,
                                out.ctypes.data + 4 * (row * out_stride + p * PANEL), a_stride, 1, out_stride, depth,
                                a.shape[0] - row, accumulate or first_k > 0)

    return product_into
