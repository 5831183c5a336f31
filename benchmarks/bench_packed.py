"""The packed per-step product (rnn/fused/packed_gemm.py) against numpy's OpenBLAS, interleaved A/B.

    python benchmarks/bench_packed.py                       # GEMM shapes, then whole steps S, M, L
    python benchmarks/bench_packed.py --steps-only --cases M L --rounds 10
    python benchmarks/bench_packed.py --steps-only --switch window   # the window-wide products off / on
    NUMBA_NUM_THREADS=1 python benchmarks/bench_packed.py   # one core

1. The recurrent GEMMs one core does per step (forward, and backward with accumulation
   and the strided rows of d hp), in a compiled loop with W resident: OpenBLAS (the
   loops' matmul_into) against packed_matmul_into; GFLOP/s, the best of 5 samples each,
   the two alternating.
2. The window-wide products of a training step (an input projection, its d x, a weight
   gradient d^T x) on all the cores: blas.matmul against packed_gemm.window_product, best of
   15 each. The layers use the latter only where packed_gemm.window_products_packed() says so
   (printed), i.e. where numpy's OpenBLAS runs a kernel without AVX-512 on an AVX-512 host.
3. Whole training steps of the same model (Adam, clip 5) with a switch flipped between blocks
   of steps: rnn.fused.recurrence.USE_PANELS (--switch panels, the per-step products) or
   packed_gemm's choice for the window-wide products (--switch window); medians, and off/on
   (>1: the packed kernel wins).
"""

import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np

import minigrad as mg
from minigrad import blas
from minigrad.blas import matmul_into
from rnn import CharLM, ModelConfig
from rnn.fused import packed_gemm, recurrence

from machine import EMBED, SEQ, VOCAB, header_lines, minigrad_training_step

STEP_CASES = {"S": (1, 128, 32), "M": (2, 256, 32), "L": (2, 512, 64)}
# (name, rows, inner, columns, accumulate, row stride of a): one core's part of a step
GEMM_SHAPES = [("S fwd, rows/2", 16, 128, 512, False, 128), ("S bwd, rows/2", 16, 512, 128, True, SEQ * 512),
               ("M fwd, rows/2", 16, 256, 1024, False, 256), ("M bwd, rows/2", 16, 1024, 256, True, SEQ * 1024),
               ("M fwd, 1 core", 32, 256, 1024, False, 256), ("M bwd, 1 core", 32, 1024, 256, True, SEQ * 1024),
               ("L fwd, units/2", 64, 512, 1024, False, 512), ("L bwd, units/2", 64, 2048, 256, True, SEQ * 2048)]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(STEP_CASES), choices=list(STEP_CASES))
    parser.add_argument("--rounds", type=int, default=8, help="blocks of steps per variant")
    parser.add_argument("--gemm-only", action="store_true")
    parser.add_argument("--steps-only", action="store_true")
    parser.add_argument("--switch", choices=("panels", "window"), default="panels",
                        help="what the whole steps flip: the per-step products' panels or the window-wide products")
    return parser.parse_args()


@numba.njit
def _blas_loop(a, w, out, repeats, accumulate):
    for _ in range(repeats):
        matmul_into(a, w, out, False, False, accumulate)


@numba.njit
def _packed_loop(a, panels, out, repeats, accumulate):
    for _ in range(repeats):
        packed_gemm.packed_matmul_into(a, panels, 0, out, accumulate)


def _best_seconds(loop, a, w, out, repeats, accumulate):
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        loop(a, w, out, repeats, accumulate)
        samples.append((time.perf_counter() - start) / repeats)
    return min(samples)  # the least disturbed sample


def compare_gemms():
    rng = np.random.default_rng(0)
    print(f"{'one core, per step':<18} {'shape':<18} {'OpenBLAS GFLOP/s':>17} {'packed GFLOP/s':>15} {'ratio':>6}")
    for name, rows, inner, columns, accumulate, stride in GEMM_SHAPES:
        buffer = rng.standard_normal(rows * stride + inner).astype(np.float32)
        a = np.lib.stride_tricks.as_strided(buffer, (rows, inner), (4 * stride, 4))
        w = (rng.standard_normal((inner, columns)) * 0.01).astype(np.float32)
        panels = packed_gemm.pack_panels(w)
        out_blas, out_packed = np.zeros((rows, columns), np.float32), np.zeros((rows, columns), np.float32)
        repeats = max(20, int(3e8 / (2 * rows * inner * columns)))
        _blas_loop(a, w, out_blas, 1, accumulate)
        _packed_loop(a, panels, out_packed, 1, accumulate)
        blas, packed = [], []
        for _ in range(4):  # alternating
            blas.append(_best_seconds(_blas_loop, a, w, out_blas, repeats, accumulate))
            packed.append(_best_seconds(_packed_loop, a, panels, out_packed, repeats, accumulate))
        flops = 2.0 * rows * inner * columns
        shape = f"{rows}x{inner}x{columns}{' +=' if accumulate else ''}"
        print(f"{name:<18} {shape:<18} {flops / min(blas) / 1e9:17.1f} {flops / min(packed) / 1e9:15.1f} "
              f"{min(blas) / min(packed):5.2f}x", flush=True)


# (name, rows, inner, columns, a transposed): the window-wide products of M and L
WINDOW_SHAPES = [("M projection", 2048, 256, 1024, False), ("M d x", 2048, 1024, 256, False),
                 ("M d W", 1024, 2048, 256, True), ("L projection", 4096, 512, 2048, False),
                 ("L d x", 4096, 2048, 512, False), ("L d W", 2048, 4096, 512, True)]


def compare_window_products():
    rng = np.random.default_rng(0)
    print(f"window-wide, {numba.get_num_threads()} threads (layers use packed here: "
          f"{packed_gemm.window_products_packed()})")
    print(f"{'product':<14} {'shape':<16} {'OpenBLAS GFLOP/s':>17} {'packed GFLOP/s':>15} {'ratio':>6}")
    for name, rows, inner, columns, transposed in WINDOW_SHAPES:
        a = rng.standard_normal((inner, rows) if transposed else (rows, inner)).astype(np.float32)
        w = rng.standard_normal((inner, columns)).astype(np.float32)
        panels, out = packed_gemm.pack_panels(w), np.empty((rows, columns), np.float32)
        samples = {"blas": [], "packed": []}
        with mg.runtime.configured_for_training():  # (OpenBLAS at one thread, as the layers run it)
            _alternate(samples, a, w, panels, out, transposed)
        flops = 2.0 * rows * inner * columns
        blas_s, packed_s = min(samples["blas"]), min(samples["packed"])
        print(f"{name:<14} {rows}x{inner}x{columns:<6} {flops / blas_s / 1e9:17.1f} {flops / packed_s / 1e9:15.1f} "
              f"{blas_s / packed_s:5.2f}x", flush=True)


def _alternate(samples, a, w, panels, out, transposed):
    for _ in range(15):
        for variant in samples:
            start = time.perf_counter()
            if variant == "blas":
                blas.matmul(a, w, transpose_a=transposed, out=out)
            else:
                packed_gemm.window_product(a, panels, transpose_a=transposed)
            samples[variant].append(time.perf_counter() - start)


def set_switch(switch, on):
    if switch == "panels":
        recurrence.USE_PANELS = on
    else:
        packed_gemm._WINDOW_PACKED = on if packed_gemm.HOST_HAS_AVX512 else False


def compare_steps(cases, rounds, switch):
    for case in cases:
        layers, hidden, batch = STEP_CASES[case]
        mg.random.manual_seed(0)
        model = CharLM(ModelConfig(vocab_size=VOCAB, cell="lstm", embed=EMBED, hidden=hidden, layers=layers))
        optimizer = mg.optim.Adam(model.parameters(), lr=1e-3)
        ids = np.random.default_rng(0).integers(0, VOCAB, (batch, SEQ + 1))
        state = model.initial_state(batch)

        def step():
            nonlocal state
            start = time.perf_counter()
            state = minigrad_training_step(model, optimizer, ids, state)
            return 1000 * (time.perf_counter() - start)

        timings = {False: [], True: []}
        block = 2 if case == "L" else 3
        chosen = recurrence.USE_PANELS, packed_gemm.window_products_packed()
        try:
            with mg.runtime.configured_for_training():  # (OpenBLAS at one thread, as `train` runs)
                for use in (False, True, False, True):  # warm-up (compilation, allocator)
                    set_switch(switch, use)
                    step()
                for r in range(rounds):
                    for use in ((False, True) if r % 2 == 0 else (True, False)):
                        set_switch(switch, use)
                        timings[use] += [step() for _ in range(block)]
        finally:
            recurrence.USE_PANELS, packed_gemm._WINDOW_PACKED = chosen
        blas, panels = statistics.median(timings[False]), statistics.median(timings[True])
        print(f"{case}-lstm {layers}x{hidden} B{batch}, {switch}: BLAS {blas:8.1f} ms   packed {panels:8.1f} ms   "
              f"blas/packed {blas / panels:5.2f}x (best {min(timings[False]):.1f} / {min(timings[True]):.1f} ms)   "
              f"({len(timings[True])} steps each, {numba.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})",
              flush=True)


def main():
    args = parse_args()
    print("\n".join(header_lines(numba.get_num_threads())), flush=True)
    if not packed_gemm.HOST_HAS_AVX512:
        print("this CPU has no AVX-512: the layers do not use the packed kernel here (the figures show why)")
    if not args.steps_only:
        compare_gemms()
        compare_window_products()
    if not args.gemm_only:
        compare_steps(args.cases, args.rounds, args.switch)


if __name__ == "__main__":
    sys.exit(main())
