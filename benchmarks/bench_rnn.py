"""Training-step speed of minigrad's fused recurrent layers against PyTorch on this CPU.

Both frameworks run the same configuration in one process, interleaved round by round,
with the same thread count; each prints the median ms per step (forward + backward +
clip + Adam) and the ratio. Usage:

    python benchmarks/bench_rnn.py                 # all cases
    python benchmarks/bench_rnn.py --cases S-lstm M-lstm --rounds 20 --threads 2 --block 5

Cases: S = 1x128 (batch 32), M = 2x256 (batch 32), L = 2x512 (batch 64); seq 64, vocab 65,
embedding 64, Adam, grad clip 5. On the CPU, PyTorch trains nn.LSTM with oneDNN's fused
LSTM primitive (nn.GRU has none and runs step by step); --torch-without-onednn shows
its LSTM without it. "user" is a user-declared LSTM-like cell (a cell this
script declares with @cell, not a built-in) against the same cell written as PyTorch
tensor expressions and run step by step, eagerly.
"""

import argparse
import os
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["S-lstm", "S-gru", "M-lstm", "M-gru", "L-lstm", "user"])
    parser.add_argument("--rounds", type=int, default=20, help="timed steps per case and framework")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--block", type=int, default=5, help="steps of one framework before switching")
    parser.add_argument("--torch-without-onednn", action="store_true",
                        help="switch off PyTorch's oneDNN (torch.backends.mkldnn): its nn.LSTM then runs the "
                             "generic per-step path that its GRU always takes")
    return parser.parse_args()


ARGS = parse_args()
# BLAS thread counts must be fixed before numpy loads its BLAS. OpenBLAS's idle threads
# must sleep soon, not spin: in an interleaved run they would steal the cores PyTorch is
# timed on. PyTorch's OpenMP pool is left as it is: made passive (OMP_WAIT_POLICY) it
# runs 3x slower here, which would flatter minigrad.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, str(ARGS.threads))
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from rnn import CharLM, ModelConfig, cell, detach_state, sigmoid, tanh  # noqa: E402

SIZES = {"S": (1, 128, 32), "M": (2, 256, 32), "L": (2, 512, 64)}
SEQ, VOCAB, EMBED = 64, 65, 64


@cell(gates=("i", "f", "g", "o"), state=("h", "c"))
def user_lstm(x, h, c):
    """An LSTM with peephole-free, standard gates, declared as a user would."""
    i = sigmoid(x.i + h.i)
    f = sigmoid(x.f + h.f)
    g = tanh(x.g + h.g)
    o = sigmoid(x.o + h.o)
    c = f * c + i * g
    return o * tanh(c), c


def minigrad_stepper(cell_name, layers, hidden, batch):
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=VOCAB, cell=cell_name, embed=EMBED, hidden=hidden, layers=layers))
    optimizer = mg.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (batch, SEQ + 1))
    state = model.initial_state(batch)

    def step():
        nonlocal state
        loss, state = model.loss(ids[:, :-1], ids[:, 1:], state)
        state = detach_state(state)
        optimizer.zero_grad()
        loss.backward()
        mg.optim.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step


def torch_stepper(cell_name, layers, hidden, batch):
    import torch

    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, EMBED)
            if cell_name == "user":
                self.rnn = None
                self.cells = torch.nn.ModuleList(
                    [torch.nn.Linear(EMBED if k == 0 else hidden, 4 * hidden) for k in range(layers)])
                self.recurrent = torch.nn.ModuleList([torch.nn.Linear(hidden, 4 * hidden) for _ in range(layers)])
            else:
                kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name]
                self.rnn = kind(EMBED, hidden, layers, batch_first=True)
            self.head = torch.nn.Linear(hidden, VOCAB)

        def forward(self, ids, state):
            x = self.embedding(ids)
            if self.rnn is not None:
                out, state = self.rnn(x, state)
                return self.head(out), state
            new_state = []
            for k in range(layers):
                h, c = state[k] if state is not None else (x.new_zeros(batch, hidden),) * 2
                projected = self.cells[k](x)
                outputs = []
                for t in range(x.shape[1]):  # the cell as plain tensor expressions, eagerly
                    gates = projected[:, t] + self.recurrent[k](h)
                    i, f, g, o = gates.chunk(4, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                    outputs.append(h)
                x = torch.stack(outputs, dim=1)
                new_state.append((h, c))
            return self.head(x), new_state

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    ids = torch.randint(0, VOCAB, (batch, SEQ + 1))
    state = None

    def detach(s):
        if s is None:
            return None
        if isinstance(s, torch.Tensor):
            return s.detach()
        return type(s)(detach(v) for v in s) if not isinstance(s, list) else [detach(v) for v in s]

    def step():
        nonlocal state
        logits, state = model(ids[:, :-1], state)
        state = detach(state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step


def timed(step):
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1000.0


def run_case(name, torch_available):
    size, _, cell_name = name.partition("-")
    if name == "user":
        size, cell_name = "S", "user"
    layers, hidden, batch = SIZES[size]
    ours = minigrad_stepper("user_lstm" if cell_name == "user" else cell_name, layers, hidden, batch)
    theirs = torch_stepper(cell_name, layers, hidden, batch) if torch_available else None
    for _ in range(3):  # warm-up: kernel compilation / cache loading, allocator
        ours()
        if theirs:
            theirs()
    ours_ms, theirs_ms = [], []
    # Interleaved in blocks, so machine noise hits both alike. Blocks, not single steps:
    # right after one framework's step its thread pool still spins for a while (PyTorch's
    # OpenMP pool by design), taking the cores from the other's next step.
    for _ in range(max(1, ARGS.rounds // ARGS.block)):
        ours_ms += [timed(ours) for _ in range(ARGS.block)]
        if theirs:
            theirs_ms += [timed(theirs) for _ in range(ARGS.block)]
    mine = statistics.median(ours_ms)
    if theirs:
        reference = statistics.median(theirs_ms)
        print(f"{name:<8} {layers}x{hidden:<4} B{batch:<3} minigrad {mine:8.1f} ms   torch {reference:8.1f} ms"
              f"   torch/minigrad = {reference / mine:5.2f}x", flush=True)
    else:
        print(f"{name:<8} {layers}x{hidden:<4} B{batch:<3} minigrad {mine:8.1f} ms   (torch not installed)", flush=True)


def main():
    try:
        import torch

        torch.set_num_threads(ARGS.threads)
        torch_available = True
        version = torch.__version__
        if ARGS.torch_without_onednn:
            torch.backends.mkldnn.enabled = False
            version += " without oneDNN"
    except ImportError:
        torch_available, version = False, "not installed"
    print(f"threads={ARGS.threads} rounds={ARGS.rounds} numpy={np.__version__} torch={version}; "
          f"median ms per training step (fwd+bwd+clip+Adam), seq {SEQ}, vocab {VOCAB}", flush=True)
    for name in ARGS.cases:
        run_case(name, torch_available)


if __name__ == "__main__":
    with mg.runtime.configured_for_training():  # as rnn.train.train and the CLI train (OpenBLAS threads, malloc)
        sys.exit(main())
