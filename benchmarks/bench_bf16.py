"""bf16 products with float32 sums (rnn/fused/packed_gemm_bf16.py) against the float32 ones, one core.

    python benchmarks/bench_bf16.py                 # as the environment is set
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_bf16.py
    python benchmarks/bench_bf16.py --steps M L     # whole training steps, float32 / bf16

At the recurrent layers' per-step shapes (one core does the whole step) and at the
window-wide shapes (input projection, weight gradient), GFLOP/s of:
  OpenBLAS sgemm     numpy's OpenBLAS (minigrad.blas.matmul_into, in a compiled loop)
  f32 packed         rnn.fused.packed_gemm (W packed once, outside the timing)
  bf16 packed        rnn.fused.packed_gemm_bf16, operands already rounded and packed
  bf16 + rounding    the same plus rounding a to bf16 pairs at every call (what a step pays;
                     at window shapes also packing W, once per window)
  torch f32/bf16     torch.matmul on one thread (oneDNN/MKL), for reference
All variants alternate, rounds x (a compiled loop of calls); medians of the rounds.
Also says whether numpy's OpenBLAS exports an sbgemm.

With --steps: whole training steps of the char-LM (Adam, clip 5, as bench_packed), on all
cores, the recurrent layers' matmul_precision switched between float32 and bf16 between
blocks of steps; medians, and float32/bf16 (>1: bf16 wins).
"""

import argparse
import os
import statistics
import time

import numba
import numpy as np

from minigrad import blas
from minigrad.blas import matmul_into
from rnn.fused import packed_gemm, packed_gemm_bf16 as bf16

# (name, rows, inner, columns, accumulate)
SHAPES = [("M step fwd", 32, 256, 1024, False), ("M step bwd", 32, 1024, 256, True),
          ("L step fwd", 64, 512, 2048, False), ("L step bwd", 64, 2048, 512, True),
          ("M window xp", 2048, 256, 1024, False), ("M window dW", 1024, 2048, 256, False),
          ("L window xp", 4096, 512, 2048, False), ("L window dW", 2048, 4096, 512, False)]


@numba.njit
def _blas_loop(a, w, out, repeats, accumulate):
    for _ in range(repeats):
        matmul_into(a, w, out, False, False, accumulate)


@numba.njit
def _packed_loop(a, panels, out, repeats, accumulate):
    for _ in range(repeats):
        packed_gemm.packed_matmul_into(a, panels, 0, out, accumulate)


@numba.njit
def _bf16_loop(pairs, panels, out, repeats, accumulate):
    for _ in range(repeats):
        bf16.packed_matmul_bf16_into(pairs, panels, 0, out, accumulate)


@numba.njit
def _bf16_rounding_loop(a, pairs, panels, out, repeats, accumulate):
    for _ in range(repeats):
        bf16.round_pairs_into(a, False, pairs)
        bf16.packed_matmul_bf16_into(pairs, panels, 0, out, accumulate)


def _sbgemm_symbols():
    names = ("scipy_cblas_sbgemm64_", "cblas_sbgemm64_", "scipy_cblas_sbgemm", "cblas_sbgemm")
    return [(library._name, name) for library in blas._openblas_libraries() for name in names
            if hasattr(library, name)]


STEP_CASES = {"S": (1, 128, 32), "M": (2, 256, 32), "L": (2, 512, 64)}


def compare_steps(cases, rounds):
    import minigrad as mg
    from minigrad.runtime import configured_for_training
    from rnn import CharLM, ModelConfig

    from machine import EMBED, SEQ, VOCAB, minigrad_training_step

    for case in cases:
        layers, hidden, batch = STEP_CASES[case]
        mg.random.manual_seed(0)
        model = CharLM(ModelConfig(vocab_size=VOCAB, cell="lstm", embed=EMBED, hidden=hidden, layers=layers))
        optimizer = mg.optim.Adam(model.parameters(), lr=1e-3)
        ids = np.random.default_rng(0).integers(0, VOCAB, (batch, SEQ + 1))
        state = model.initial_state(batch)

        cpu = {"float32": [], "bf16": []}  # CPU ms of the process per step: less disturbed by a busy machine

        def step():
            nonlocal state
            start, start_cpu = time.perf_counter(), time.process_time()
            state = minigrad_training_step(model, optimizer, ids, state)
            cpu[model.rnn.matmul_precision].append(1000 * (time.process_time() - start_cpu))
            return 1000 * (time.perf_counter() - start)

        timings = {"float32": [], "bf16": []}
        block = 2 if case == "L" else 4
        with configured_for_training():
            for precision in ("float32", "bf16", "float32", "bf16"):  # warm-up (compilation, allocator)
                model.rnn.matmul_precision = precision
                step()
            for r in range(rounds):
                for precision in (("float32", "bf16") if r % 2 == 0 else ("bf16", "float32")):
                    model.rnn.matmul_precision = precision
                    timings[precision] += [step() for _ in range(block)]
        f32, b16 = statistics.median(timings["float32"]), statistics.median(timings["bf16"])
        f32_cpu, b16_cpu = (statistics.median(cpu[p][2:]) for p in ("float32", "bf16"))  # (after the warm-up)
        print(f"{case}-lstm {layers}x{hidden} B{batch} T{SEQ}: float32 {f32:8.1f} ms   bf16 {b16:8.1f} ms   "
              f"float32/bf16 {f32 / b16:5.2f}x   CPU ms {f32_cpu:8.1f} / {b16_cpu:8.1f} = {f32_cpu / b16_cpu:5.2f}x   "
              f"({len(timings['bf16'])} steps each, {numba.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--steps", nargs="+", choices=list(STEP_CASES), help="time whole training steps instead")
    args = parser.parse_args()
    if args.steps:
        return compare_steps(args.steps, args.rounds)
    blas.use_one_openblas_thread()
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(1)
        except ImportError:
            torch = None
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}  OpenBLAS kernel "
          f"{[c.architecture for c in blas._openblas_controllers()]}  bf16 kernels {bf16.BF16_UNAVAILABLE or 'run here'}  "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"numpy's OpenBLAS sbgemm: {_sbgemm_symbols() or 'not exported'}")
    columns = ["OpenBLAS sgemm", "f32 packed", "bf16 packed", "bf16 + rounding"] + (
        ["torch f32", "torch bf16"] if torch else [])
    print(f"{'GFLOP/s, 1 core':<13} {'shape':<17}" + "".join(f"{c:>16}" for c in columns) + f"{'bf16/f32 pk':>12}")
    rng = np.random.default_rng(0)
    for name, rows, inner, columns_, accumulate in SHAPES:
        a = rng.standard_normal((rows, inner)).astype(np.float32)
        w = (rng.standard_normal((inner, columns_)) * 0.05).astype(np.float32)
        panels = packed_gemm.pack_panels(w)
        panels_bf16 = bf16.pack_panels_bf16(w)
        pairs = bf16.pairs_of(a)
        out = np.zeros((rows, columns_), np.float32)
        flops = 2.0 * rows * inner * columns_
        repeats = max(3, int(2e8 / flops))
        window = rows > 256

        def bf16_rounding(n):
            for _ in range(n):
                if window:  # a window-wide product rounds both operands once
                    bf16.packed_matmul_bf16_into(bf16.pairs_of(a), bf16.pack_panels_bf16(w), 0, out, accumulate)
            if not window:
                _bf16_rounding_loop(a, pairs, panels_bf16, out, n, accumulate)

        variants = {"OpenBLAS sgemm": lambda n: _blas_loop(a, w, out, n, accumulate),
                    "f32 packed": lambda n: _packed_loop(a, panels, out, n, accumulate),
                    "bf16 packed": lambda n: _bf16_loop(pairs, panels_bf16, out, n, accumulate),
                    "bf16 + rounding": bf16_rounding}
        if torch:
            ta, tw = torch.from_numpy(a), torch.from_numpy(w)
            ta16, tw16 = ta.bfloat16(), tw.bfloat16()

            def torch_loop(x, y):
                def run(n):
                    for _ in range(n):
                        torch.matmul(x, y)
                return run

            variants["torch f32"], variants["torch bf16"] = torch_loop(ta, tw), torch_loop(ta16, tw16)
        for run in variants.values():
            run(1)  # compile, warm
        seconds = {key: [] for key in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for key in order:
                start = time.perf_counter()
                variants[key](repeats)
                seconds[key].append((time.perf_counter() - start) / repeats)
        rate = {key: flops / statistics.median(s) / 1e9 for key, s in seconds.items()}
        shape = f"{rows}x{inner}x{columns_}{' +=' if accumulate else ''}"
        print(f"{name:<13} {shape:<17}" + "".join(f"{rate[c]:16.1f}" for c in columns)
              + f"{rate['bf16 packed'] / rate['f32 packed']:11.2f}x", flush=True)
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
