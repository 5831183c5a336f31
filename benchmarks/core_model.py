"""A model of a training step's time against the number of cores, from part costs measured here.

    python benchmarks/core_model.py                    # M-lstm and L-lstm, model for 1..16 cores
    python benchmarks/core_model.py --cases S-lstm M-lstm L-lstm --cores 1 2 4 8 16 --steps 8

Measured on this machine:
- the whole training step and the time inside the fused window loops (forward and
  backward), on one core and on two (numba's thread count);
- on one core, the per-step recurrent GEMMs a core does for every way of cutting the work
  over p cores, with the product the loops use (rnn/fused/packed_gemm.py where its panels fit,
  else BLAS): by rows, (B/p x H) @ (H x G*H) forward and (B/p x G*H) @ (G*H x H) backward;
  by units, (B x H) @ (H x G*H/p) and (B x G*H) @ (G*H x H/p) -- in a compiled loop, W resident;
- on two cores, the cost of one meeting of the cores (a parallel loop of empty parts).
Derived: elementwise work per step = one-core loop time / steps - the one-core recurrent
GEMM; the rest of the step (step - loops: input projections, weight gradients, output
layer, loss, optimizer) as serial + parallel / p, through its one- and two-core times.

Modelled, for p cores: step(p) = serial + parallel / p + sum over layers and directions
of T * (the recurrent GEMM of one core's part + elementwise / parts + a meeting per step
when the units are cut). A meeting on p > 2 cores is modelled as the two-core cost times
log2(p) (a tree of meetings). Not modelled: contention for L3 and memory when every core
reads all of W_hh (rows), frequency changes, OpenBLAS's own threads.
The model's value for 2 cores is printed beside the measured two-core step as a check
(it uses the two-core rest, so the check is of the loops' part).
Also printed: rnn.fused.recurrence.split_of_work's choice for each core count.
"""

import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad.blas import matmul_into  # noqa: E402
from rnn import CharLM, ModelConfig  # noqa: E402
from rnn.fused import packed_gemm, recurrence  # noqa: E402

from machine import CASES, EMBED, SEQ, VOCAB, header_lines, minigrad_training_step  # noqa: E402

MIN_ROWS, MIN_UNITS = recurrence.MIN_ROWS_PER_PART, recurrence.MIN_UNITS_PER_BLOCK


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["M-lstm", "L-lstm"], choices=[c for c in CASES if c != "user"])
    parser.add_argument("--cores", nargs="*", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per measurement")
    return parser.parse_args()


@numba.njit
def _gemm_loop(a, w, out, repeats):
    for _ in range(repeats):
        matmul_into(a, w, out)


@numba.njit
def _packed_loop(a, panels, out, repeats):
    for _ in range(repeats):
        packed_gemm.packed_matmul_into(a, panels, 0, out, False)


def gemm_us(rows, inner, columns, row_stride_columns=None, repeats=200):
    """Median microseconds of (rows x inner) @ (inner x columns) on one core, with the product the
    window loops use for it (the packed kernel where its panels fit, else BLAS on a column slice
    of a (inner x row_stride_columns) matrix, as in the loops), W resident in cache."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner)).astype(np.float32)
    w = rng.standard_normal((inner, row_stride_columns or columns)).astype(np.float32)
    out = np.empty((rows, columns), np.float32)
    if recurrence.USE_PANELS and packed_gemm.panels_fit(np.float32, [0, columns]):
        loop, weights = _packed_loop, packed_gemm.pack_panels(w[:, :columns])
    else:
        loop, weights = _gemm_loop, w[:, :columns]
    loop(a, weights, out, 2)
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        loop(a, weights, out, repeats)
        samples.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(samples)


@numba.njit(parallel=True)
def _meetings(count, sink):
    for _ in range(count):
        for part in numba.prange(sink.size):
            sink[part] += 1.0


def meeting_us(threads=2, count=2000):
    """Median microseconds per meeting of `threads` cores (a parallel loop over empty parts)."""
    numba.set_num_threads(threads)
    sink = np.zeros(threads)
    _meetings(10, sink)
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        _meetings(count, sink)
        samples.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(samples)


class LoopTimer:
    """Adds up the time spent in FusedRecurrence's forward and backward (the window loops)."""

    def __init__(self):
        self.forward = self.backward = 0.0
        cls = recurrence.FusedRecurrence
        self._originals = cls.forward, cls.backward
        cls.forward, cls.backward = self._timed(cls.forward, "forward"), self._timed(cls.backward, "backward")

    def _timed(self, method, total):
        """`method`, adding the seconds each call takes to this timer's attribute `total`."""
        timer = self

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                setattr(timer, total, getattr(timer, total) + time.perf_counter() - start)

        return timed

    def restore(self):
        recurrence.FusedRecurrence.forward, recurrence.FusedRecurrence.backward = self._originals


def step_costs(case, threads, steps):
    """(median step ms, loop forward ms per step, loop backward ms per step) with numba at `threads`."""
    layers, hidden, batch, _ = CASES[case]
    numba.set_num_threads(threads)
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=VOCAB, cell=case.split("-")[1], embed=EMBED, hidden=hidden, layers=layers))
    optimizer = mg.optim.AdamW(model.parameters(), lr=1e-3)
    ids = np.random.default_rng(0).integers(0, VOCAB, (batch, SEQ + 1))
    state = model.initial_state(batch)
    timer = LoopTimer()
    try:
        totals, forwards, backwards = [], [], []
        for k in range(steps + 2):
            timer.forward = timer.backward = 0.0
            start = time.perf_counter()
            state = minigrad_training_step(model, optimizer, ids, state)
            if k >= 2:  # (two warm-up steps)
                totals.append(time.perf_counter() - start)
                forwards.append(timer.forward)
                backwards.append(timer.backward)
    finally:
        timer.restore()
    return tuple(1000 * statistics.median(v) for v in (totals, forwards, backwards))


def split_choice(batch, hidden, gates, core_count):
    """rnn.fused.recurrence.split_of_work's (row parts, unit parts) on a machine of `core_count` cores."""
    rows, units = recurrence.split_of_work(batch, hidden, gates, core_count=core_count)
    return len(rows) - 1, len(units) - 1


def model_case(case, args, meeting_2):
    layers, hidden, batch, gates = CASES[case]
    step_1, loop_f_1, loop_b_1 = step_costs(case, 1, args.steps)
    two_cores = numba.config.NUMBA_NUM_THREADS >= 2
    step_2, loop_f_2, loop_b_2 = step_costs(case, 2, args.steps) if two_cores else (None, None, None)
    numba.set_num_threads(1)
    gh = gates * hidden
    gemm_f_1, gemm_b_1 = gemm_us(batch, hidden, gh), gemm_us(batch, gh, hidden)
    elem_f = max(0.0, 1000 * loop_f_1 / (layers * SEQ) - gemm_f_1)  # us per step and layer, whole batch
    elem_b = max(0.0, 1000 * loop_b_1 / (layers * SEQ) - gemm_b_1)  # (incl. the loop's own overheads)
    # The rest of the step (outside the window loops) as serial + parallel / p, from its
    # measured time on one and on two cores (Amdahl through two points)
    rest_ms = step_1 - loop_f_1 - loop_b_1
    if two_cores:
        rest_2 = step_2 - loop_f_2 - loop_b_2
        large_ms = min(rest_ms, max(0.0, 2.0 * (rest_ms - rest_2)))
    else:
        large_ms = rest_ms
    serial_ms = rest_ms - large_ms
    print(f"\n{case}: {layers}x{hidden} B{batch}, {gates} gates, T={SEQ}")
    print(f"  measured, 1 core: step {step_1:.1f} ms = window loops {loop_f_1:.1f} fwd + {loop_b_1:.1f} bwd "
          f"+ rest {rest_ms:.1f} ms")
    if two_cores:
        print(f"  measured, 2 cores: step {step_2:.1f} ms = window loops {loop_f_2:.1f} fwd + {loop_b_2:.1f} bwd "
              f"+ rest {rest_2:.1f} ms")
        if step_2 >= step_1 or rest_2 >= rest_ms:
            print("  WARNING: two cores were not faster than one: the machine is busy; the model below then takes "
                  "the rest as serial and its figures are not to be quoted")
    print(f"  measured, 1 core: recurrent GEMM per step {gemm_f_1:.1f} us fwd, {gemm_b_1:.1f} us bwd")
    print(f"  derived: elementwise + loop overhead per step and layer {elem_f:.1f} us fwd, {elem_b:.1f} us bwd; "
          f"rest = {large_ms:.1f} ms parallel + {serial_ms:.1f} ms serial (from the rest on 1 and 2 cores)")
    print(f"  {'cores':>5} {'rule':>12} | {'rows: modelled ms':>18} | {'units: modelled ms':>19} | measured ms")
    for p in args.cores:
        estimates = {}
        for way in ("rows", "units"):
            parts = min(p, batch // MIN_ROWS) if way == "rows" else min(p, hidden // MIN_UNITS)
            parts = max(parts, 1)
            if way == "rows":
                f, b = gemm_us(math.ceil(batch / parts), hidden, gh), gemm_us(math.ceil(batch / parts), gh, hidden)
                meet = meeting_2 * math.log2(parts) / SEQ if parts > 1 else 0.0  # one meeting per window
            else:
                cols = math.ceil(gh / parts)
                f, b = gemm_us(batch, hidden, cols, gh), gemm_us(batch, gh, math.ceil(hidden / parts), hidden)
                meet = meeting_2 * math.log2(parts) if parts > 1 else 0.0
            per_step = f + b + (elem_f + elem_b) / parts + 2 * meet
            large_parts = max(1, min(p, batch * SEQ // 16))
            estimates[way] = serial_ms + large_ms / large_parts + layers * SEQ * per_step / 1000
        row_parts, unit_parts = split_choice(batch, hidden, gates, p)
        rule = f"rows x{row_parts}" if row_parts > 1 else (f"units x{unit_parts}" if unit_parts > 1 else "one part")
        measured = {1: f"{step_1:.1f}", 2: f"{step_2:.1f}" if two_cores else "-"}.get(p, "-")
        print(f"  {p:>5} {rule:>12} | {estimates['rows']:18.1f} | {estimates['units']:19.1f} | {measured}")


def main():
    args = parse_args()
    print("\n".join(header_lines(2)), flush=True)
    meeting_2 = meeting_us(2) if numba.config.NUMBA_NUM_THREADS >= 2 else 5.0
    print(f"measured: one meeting of 2 cores (numba parallel loop, {numba.threading_layer()} layer) "
          f"{meeting_2:.1f} us; modelled for p cores: that x log2(p)")
    for case in args.cases:
        model_case(case, args, meeting_2)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
