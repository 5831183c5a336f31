"""The char-LM's folded first projection (rnn.model.charlm.CharLM.folds_embedding), on and off.

    python benchmarks/bench_fold.py                          # S-lstm S-gru M-lstm M-gru L-lstm
    python benchmarks/bench_fold.py --cases M-lstm --rounds 40 --block 5 --threads 2

Folded, layer 0's input projection is a (V, E) @ (E, G*H) product whose rows each
(batch row, step) reads by id, and backward adds the window's gradients into those V
rows, then makes d W_ih and d embedding with two (V, ...) products. Unfolded, the same
three products have B*T rows. Two models of the same weights take training steps
(forward, backward, clip, Adam, as `minigrad-rnn train`), interleaved in blocks so that
machine noise hits both alike; printed: the GEMM FLOPs the fold saves per step
(6 (B*T - V) E G*H), and the median wall and CPU ms per step of each (CPU time, of
all the process's threads, is the steadier figure on a shared machine).
"""

import argparse
import os
import statistics
import time

from machine import CASES, EMBED, SEQ, VOCAB, flops_per_step, header_lines, minigrad_training_step


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cases = [c for c in CASES if c != "user"]  # (user: S-lstm's shapes and FLOPs)
    parser.add_argument("--cases", nargs="*", default=cases, choices=cases)
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per case and variant")
    parser.add_argument("--block", type=int, default=5, help="steps of one variant before switching")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


ARGS = parse_args()
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads its BLAS
    os.environ.setdefault(variable, str(ARGS.threads))

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from rnn import CharLM, ModelConfig  # noqa: E402


def stepper(case, fold):
    layers, hidden, batch, _ = CASES[case]
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=VOCAB, cell=case.split("-")[1], embed=EMBED, hidden=hidden,
                               layers=layers))
    if not fold:
        model.folds_embedding = lambda rows: False  # embedding rows of every (b, t), then one GEMM
    optimizer = mg.optim.Adam(model.parameters(), lr=2e-3)
    ids = np.random.default_rng(0).integers(0, VOCAB, (batch, SEQ + 1))
    state = model.initial_state(batch)

    def step():
        nonlocal state
        start, start_cpu = time.perf_counter(), time.process_time()
        state = minigrad_training_step(model, optimizer, ids, state)
        return (time.perf_counter() - start) * 1000.0, (time.process_time() - start_cpu) * 1000.0

    return step


def main():
    print("\n".join(header_lines(ARGS.threads)))
    print(f"rounds {ARGS.rounds} per variant, blocks of {ARGS.block}, interleaved; medians")
    for case in ARGS.cases:
        layers, hidden, batch, gates = CASES[case]
        saved = 6 * (batch * SEQ - VOCAB) * EMBED * gates * hidden
        total = flops_per_step(layers, hidden, batch, SEQ, VOCAB, EMBED, gates)
        with mg.runtime.configured_for_training():
            steps = {"folded": stepper(case, True), "unfolded": stepper(case, False)}
            times = {name: [] for name in steps}
            for step in steps.values():  # warm-up: compilation, cache loading, allocator
                for _ in range(3):
                    step()
            for _ in range(max(1, ARGS.rounds // ARGS.block)):
                for name, step in steps.items():
                    times[name] += [step() for _ in range(ARGS.block)]
        (folded, folded_cpu), (unfolded, unfolded_cpu) = (
            [statistics.median(column) for column in zip(*times[name])] for name in ("folded", "unfolded"))
        print(f"{case:<7} {layers}x{hidden:<4} B{batch:<3} saves {saved / 1e6:7.1f} MFLOP/step "
              f"({100 * saved / total:4.1f}% of the step's GEMM FLOPs)\n"
              f"        wall ms: folded {folded:7.1f}  unfolded {unfolded:7.1f}  unfolded/folded {unfolded / folded:4.2f}x"
              f"   CPU ms (all threads): folded {folded_cpu:7.1f}  unfolded {unfolded_cpu:7.1f}  "
              f"unfolded/folded {unfolded_cpu / folded_cpu:4.2f}x", flush=True)


if __name__ == "__main__":
    main()
