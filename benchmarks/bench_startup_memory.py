"""Start-up time to the first training step (cold and warm kernel cache), sampling speed,
and peak memory of training, minigrad against PyTorch. Usage:

    python benchmarks/bench_startup_memory.py            # all three
    python benchmarks/bench_startup_memory.py --only startup

Each measurement runs in a fresh subprocess so that imports, compilation and peak RSS
(resource.getrusage of the child) are the child's own.
- startup: `python -c` that imports, builds the 2x256 LSTM char-LM and runs one training
  step; "cold" gets an empty kernel cache directory (MINIGRAD_CACHE_DIR, NUMBA_CACHE_DIR),
  "warm" runs again with the same directory.
- sampling: 2x256 LSTM, batch 1, characters per second: minigrad's `rnn.sample.sample`
  over 30000 characters (the public streaming API, compiled loop included), against
  PyTorch's nn.LSTM stepped one character at a time under no_grad over 3000.
- memory: peak RSS of 20 training steps of the M configuration (2x256, batch 32, seq 64).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

COMMON = """
import numpy as np
VOCAB, EMBED, HIDDEN, LAYERS, BATCH, SEQ = 65, 64, 256, 2, 32, 64
ids = np.random.default_rng(0).integers(0, VOCAB, (BATCH, SEQ + 1))
"""

# minigrad's children run set up as the CLI runs its commands (minigrad.runtime): OpenBLAS
# at one thread, malloc keeping freed memory, the compile helper on a cold cache.
MINIGRAD_SETUP = """
import minigrad as mg
mg.runtime.configured_for_training().__enter__()  # (for the rest of the child)
"""

MINIGRAD_TRAIN = COMMON + MINIGRAD_SETUP + """
from rnn import CharLM, ModelConfig, detach_state
model = CharLM(ModelConfig(vocab_size=VOCAB, embed=EMBED, hidden=HIDDEN, layers=LAYERS))
optimizer = mg.optim.Adam(model.parameters(), lr=2e-3)
state = None
for _ in range(STEPS):
    loss, state = model.loss(ids[:, :-1], ids[:, 1:], state)
    state = detach_state(state)
    optimizer.zero_grad()
    loss.backward()
    mg.optim.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
"""

TORCH_TRAIN = COMMON + """
import torch
torch.set_num_threads(2)
embedding, lstm, head = torch.nn.Embedding(VOCAB, EMBED), torch.nn.LSTM(EMBED, HIDDEN, LAYERS, batch_first=True), torch.nn.Linear(HIDDEN, VOCAB)
parameters = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
optimizer = torch.optim.Adam(parameters, lr=2e-3)
x, y, state = torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:]), None
for _ in range(STEPS):
    out, state = lstm(embedding(x), state)
    state = tuple(s.detach() for s in state)
    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, VOCAB), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 5.0)
    optimizer.step()
"""

MINIGRAD_SAMPLE = COMMON + MINIGRAD_SETUP + """
import time
from rnn import CharLM, ModelConfig
from rnn.data.vocab import Vocab
from rnn.sample import sample
model = CharLM(ModelConfig(vocab_size=VOCAB, embed=EMBED, hidden=HIDDEN, layers=LAYERS)).eval()
vocab = Vocab.from_text("".join(chr(33 + i) for i in range(VOCAB)))
"".join(sample(model, vocab, length=300, seed=0))  # compile (or load) the sampling loop
start = time.perf_counter(); "".join(sample(model, vocab, length=30000, seed=1))
print(30000 / (time.perf_counter() - start))
"""

TORCH_SAMPLE = COMMON + """
import time, torch
torch.set_num_threads(2)
embedding, lstm, head = torch.nn.Embedding(VOCAB, EMBED), torch.nn.LSTM(EMBED, HIDDEN, LAYERS, batch_first=True), torch.nn.Linear(HIDDEN, VOCAB)
char, state = torch.zeros(1, 1, dtype=torch.long), None
def run(n):
    global char, state
    with torch.no_grad():
        for _ in range(n):
            out, state = lstm(embedding(char), state)
            char = torch.multinomial(torch.softmax(head(out[0, -1]), -1), 1).reshape(1, 1)
run(50)
start = time.perf_counter(); run(3000)
print(3000 / (time.perf_counter() - start))
"""


def run_child(code, env=None):
    """Run `code` in a fresh interpreter; return (wall seconds, what it printed)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    return seconds, done.stdout.strip()


def startup():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, MINIGRAD_CACHE_DIR=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
        code = MINIGRAD_TRAIN.replace("STEPS", "1")
        cold, _ = run_child(code, env)
        warm, _ = run_child(code, env)
    torch_seconds, _ = run_child(TORCH_TRAIN.replace("STEPS", "1"))
    print(f"start-up to the end of the first training step (2x256 lstm, B32, T64): "
          f"minigrad cold cache {cold:.1f} s, warm cache {warm:.1f} s; torch {torch_seconds:.1f} s")


def sampling():
    _, ours = run_child(MINIGRAD_SAMPLE)
    _, theirs = run_child(TORCH_SAMPLE)
    print(f"sampling 2x256 lstm, batch 1: minigrad {float(ours):,.0f} chars/s, torch {float(theirs):,.0f} chars/s "
          f"({float(ours) / float(theirs):.1f}x)")


_PRINT_PEAK = """
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def memory():
    # Each child reports its own peak (getrusage(RUSAGE_SELF)), so one cannot hide the other's.
    code_ours = MINIGRAD_TRAIN.replace("STEPS", "20") + _PRINT_PEAK
    code_theirs = TORCH_TRAIN.replace("STEPS", "20") + _PRINT_PEAK
    _, ours = run_child(code_ours)
    _, theirs = run_child(code_theirs)
    print(f"peak RSS, 20 training steps of 2x256 lstm (B32, T64): minigrad {float(ours):.0f} MB, "
          f"torch {float(theirs):.0f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("startup", "sampling", "memory"))
    only = parser.parse_args().only
    for name, measure in (("startup", startup), ("sampling", sampling), ("memory", memory)):
        if only in (None, name):
            measure()


if __name__ == "__main__":
    main()
