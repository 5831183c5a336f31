"""Side-by-side timing of the minigrad engine and PyTorch on CPU (a script, not a test).

    python benchmarks/bench_engine.py [--threads 2] [--repeats 15]

In one process, with the same thread count for both (numpy's BLAS and numba through the
environment, set before they are imported; torch through torch.set_num_threads), and
with the two frameworks' runs interleaved so that drift (turbo, other load) hits both:
  (a) a float32 MLP training step: batch 64, 512-512-512-65, tanh, cross-entropy, Adam;
  (b) elementwise ops on (32, 512) float32, forward + backward, per op;
  (c) per-op overhead: a 4x4 add, forward + backward;
  (d) the eager engine's cost per graph, torch on 1 thread (torch.set_num_threads(1) for
      this part), best of 5 repeats of 3000 calls (100 calls for 512x512): the graphs
      `(a + b).sum().backward()`, `a + b` under no_grad and
      `((a * b).tanh() + a).sum().backward()`, on 4x4 and on 512x512 float32.
The numbers are medians over the repeats (the best repeat is shown beside them). If
`mg.optim.Adam` does not exist, (a) uses a plain SGD update for BOTH and says so.
"""

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2, help="threads for BLAS, numba and torch (default 2)")
parser.add_argument("--repeats", type=int, default=15, help="timed repeats per measurement (default 15)")
parser.add_argument("--only", default="abcd", help="which parts to run, e.g. 'a' or 'bd' (default abcd)")
args = parser.parse_args()

# Must happen before numpy / numba / torch are imported: their thread pools read these once.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[variable] = str(args.threads)
# Two thread pools share these cores (numpy's OpenBLAS, torch's OpenMP). OpenBLAS's idle
# threads are made to sleep soon, so that they do not steal the cores torch is timed on.
# torch's OpenMP pool keeps its default: made passive it runs several times slower here.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import gc  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import minigrad as mg  # noqa: E402

try:
    import torch
except ImportError:
    sys.exit("bench_engine: PyTorch is not installed; this benchmark compares against it (pip install torch)")

torch.set_num_threads(args.threads)
REPEATS = args.repeats


def timed(fn, iterations) -> float:
    """Seconds per call of `fn`, over `iterations` calls, garbage collector paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        return (time.perf_counter() - start) / iterations
    finally:
        gc.enable()


class Timing:
    """Seconds per call over the repeats: the median is the number; the best shows the noise floor."""

    def __init__(self, samples):
        self.median, self.best = statistics.median(samples), min(samples)


def interleaved(minigrad_fn, torch_fn, iterations, repeats=REPEATS):
    """Timing of each, measured in alternating blocks (which one goes first alternates too)."""
    results = {"minigrad": [], "torch": []}
    for repeat in range(repeats):
        order = [("minigrad", minigrad_fn), ("torch", torch_fn)]
        for name, fn in (order if repeat % 2 == 0 else order[::-1]):
            results[name].append(timed(fn, iterations))
    return Timing(results["minigrad"]), Timing(results["torch"])


WIDTH = 84


def rule():
    print("-" * WIDTH)


def header(first_column):
    print(f"    {first_column:<22}{'minigrad':>11}{'torch':>11}{'mg/torch':>10}   {'best: minigrad / torch':>24}")


def row(label, mg_timing, torch_timing, scale, unit_format):
    m, t = mg_timing.median * scale, torch_timing.median * scale
    bm, bt = mg_timing.best * scale, torch_timing.best * scale
    print(f"    {label:<22}{m:>11{unit_format}}{t:>11{unit_format}}{m / t:>9.2f}x   "
          f"{bm:>9{unit_format}} / {bt:<9{unit_format}}{bm / bt:>5.2f}x")


# ---------------------------------------------------------------------------------------------
# (a) MLP training step
# ---------------------------------------------------------------------------------------------
BATCH, SIZES = 64, (512, 512, 512, 65)


class MinigradMLP(mg.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = mg.nn.Linear(SIZES[0], SIZES[1])
        self.fc2 = mg.nn.Linear(SIZES[1], SIZES[2])
        self.fc3 = mg.nn.Linear(SIZES[2], SIZES[3])

    def forward(self, x):
        return self.fc3(self.fc2(self.fc1(x).tanh()).tanh())


def torch_mlp_like(model):
    """The PyTorch MLP with exactly the minigrad model's initial weights."""
    layers = []
    for name in ("fc1", "fc2", "fc3"):
        source = getattr(model, name)
        linear = torch.nn.Linear(source.in_features, source.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(source.weight.data))
            linear.bias.copy_(torch.from_numpy(source.bias.data))
        layers += [linear, torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1])


def bench_mlp():
    mg.random.manual_seed(0)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y_np = rng.integers(0, SIZES[-1], BATCH)

    model = MinigradMLP()
    reference = torch_mlp_like(model)
    x_mg, x_t, y_t = mg.tensor(x_np), torch.from_numpy(x_np), torch.from_numpy(y_np)

    adam = getattr(mg.optim, "Adam", None)
    if adam is not None:
        optimizer_name = "Adam(lr=1e-3)"
        mg_optimizer = adam(model.parameters(), lr=1e-3)
        mg_update = mg_optimizer.step
        torch_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
        torch_update = torch_optimizer.step
    else:
        optimizer_name = "plain SGD(lr=1e-2) -- mg.optim.Adam is missing, SGD used for BOTH"

        def mg_update():
            with mg.no_grad():
                for p in model.parameters():
                    p.data -= 1e-2 * p.grad

        def torch_update():
            with torch.no_grad():
                for p in reference.parameters():
                    p -= 1e-2 * p.grad

    losses = {"minigrad": [], "torch": []}

    def mg_step():
        model.zero_grad()
        loss = mg.cross_entropy(model(x_mg), y_np)
        loss.backward()
        mg_update()
        losses["minigrad"].append(loss.item())

    def torch_step():
        reference.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(reference(x_t), y_t)
        loss.backward()
        torch_update()
        losses["torch"].append(loss.item())

    # Same weights, same data, same optimizer: the first losses must agree (a sanity check).
    for _ in range(3):
        mg_step()
        torch_step()
    first = (losses["minigrad"][0], losses["torch"][0])
    third = (losses["minigrad"][2], losses["torch"][2])
    for _ in range(10):  # warm-up (kernels compiled or loaded from the disk cache, BLAS pools up)
        mg_step()
        torch_step()
    t_mg, t_torch = interleaved(mg_step, torch_step, iterations=5)
    dtypes = {str(p.dtype) for p in model.parameters()} | {str(p.grad.dtype) for p in model.parameters()}

    print(f"(a) MLP training step: batch {BATCH}, {'-'.join(map(str, SIZES))}, tanh, cross-entropy, {optimizer_name}")
    print(f"    float32 check: minigrad parameter/gradient dtypes {sorted(dtypes)}")
    print(f"    same weights and data -> loss at step 1: minigrad {first[0]:.6f}, torch {first[1]:.6f}; "
          f"step 3: {third[0]:.6f}, {third[1]:.6f}")
    rule()
    header("")
    row("ms / step", t_mg, t_torch, 1e3, ".2f")
    rule()


# ---------------------------------------------------------------------------------------------
# (b) elementwise ops, (c) per-op overhead
# ---------------------------------------------------------------------------------------------
ELEMENTWISE = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "tanh": (lambda a, b: a.tanh(), lambda a, b: a.tanh()),
    "sigmoid": (lambda a, b: a.sigmoid(), lambda a, b: a.sigmoid()),
    "exp": (lambda a, b: a.exp(), lambda a, b: a.exp()),
}


def op_pair(mg_op, torch_op, shape):
    """Two closures doing forward + backward of one op (with a fixed upstream gradient) per call."""
    rng = np.random.default_rng(1)
    a_np, b_np = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    g_np = rng.standard_normal(shape).astype(np.float32)
    a_mg, b_mg = mg.tensor(a_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)
    a_t, b_t = torch.tensor(a_np, requires_grad=True), torch.tensor(b_np, requires_grad=True)
    g_t = torch.from_numpy(g_np)

    def run_minigrad():
        a_mg.grad = b_mg.grad = None
        mg_op(a_mg, b_mg).backward(g_np)

    def run_torch():
        a_t.grad = b_t.grad = None
        torch_op(a_t, b_t).backward(g_t)

    # Sanity: the two agree, and minigrad stayed in float32.
    run_minigrad()
    run_torch()
    np.testing.assert_allclose(a_mg.grad, a_t.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert a_mg.grad.dtype == np.float32
    return run_minigrad, run_torch


def bench_elementwise():
    shape = (32, 512)
    print(f"(b) elementwise ops on {shape} float32, forward + backward, microseconds per op")
    rule()
    header("op")
    for name, (mg_op, torch_op) in ELEMENTWISE.items():
        run_mg, run_t = op_pair(mg_op, torch_op, shape)
        for _ in range(50):  # warm-up
            run_mg()
            run_t()
        t_mg, t_torch = interleaved(run_mg, run_t, iterations=200)
        row(name, t_mg, t_torch, 1e6, ".1f")
    rule()


def bench_overhead():
    print("(c) per-op overhead: 4x4 float32 add, forward + backward, microseconds per op")
    rule()
    header("op")
    run_mg, run_t = op_pair(lambda a, b: a + b, lambda a, b: a + b, (4, 4))
    for _ in range(200):
        run_mg()
        run_t()
    t_mg, t_torch = interleaved(run_mg, run_t, iterations=1000)
    row("add 4x4", t_mg, t_torch, 1e6, ".1f")
    rule()


def graph_pair(graph, shape):
    """Two closures running `graph` once in minigrad and once in torch, on the same float32 data."""
    rng = np.random.default_rng(2)
    a_np, b_np = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    a_mg, b_mg = mg.tensor(a_np, requires_grad=True), mg.tensor(b_np, requires_grad=True)
    a_t, b_t = torch.tensor(a_np, requires_grad=True), torch.tensor(b_np, requires_grad=True)

    def run_minigrad():
        a_mg.grad = b_mg.grad = None
        graph(a_mg, b_mg, mg.no_grad)

    def run_torch():
        a_t.grad = b_t.grad = None
        graph(a_t, b_t, torch.no_grad)

    run_minigrad()
    run_torch()
    if a_t.grad is not None:  # sanity: the same gradients
        np.testing.assert_allclose(a_mg.grad, a_t.grad.numpy(), rtol=1e-4, atol=1e-4)
    return run_minigrad, run_torch


def _sum_backward(a, b, no_grad):
    (a + b).sum().backward()


def _add_no_grad(a, b, no_grad):
    with no_grad():
        a + b


def _tanh_graph(a, b, no_grad):
    ((a * b).tanh() + a).sum().backward()


GRAPHS = {
    "(a + b).sum().backward()": _sum_backward,
    "a + b under no_grad": _add_no_grad,
    "((a*b).tanh() + a).sum().backward()": _tanh_graph,
}


def bench_graphs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for shape, calls in (((4, 4), 3000), ((512, 512), 100)):
            print(f"(d) eager graphs on {shape[0]}x{shape[1]} float32, torch on 1 thread, "
                  f"microseconds per graph, best of 5 x {calls} calls")
            rule()
            print(f"    {'graph':<38}{'minigrad':>10}{'torch':>10}{'mg/torch':>10}")
            for label, graph in GRAPHS.items():
                run_mg, run_t = graph_pair(graph, shape)
                for _ in range(calls // 10):  # warm-up
                    run_mg()
                    run_t()
                t_mg, t_torch = interleaved(run_mg, run_t, iterations=calls, repeats=5)
                print(f"    {label:<38}{t_mg.best * 1e6:>10.1f}{t_torch.best * 1e6:>10.1f}"
                      f"{t_mg.best / t_torch.best:>9.2f}x")
            rule()
    finally:
        torch.set_num_threads(threads)


def main():
    gc.collect()
    gc.freeze()  # the imported modules' objects need no scanning: keeps each block's gc.collect() cheap
    load_before = os.getloadavg()[0]
    print(f"minigrad {mg.__version__} vs torch {torch.__version__} | numpy {np.__version__} | "
          f"python {sys.version.split()[0]} | {os.cpu_count()} CPUs")
    print(f"threads: {args.threads} (BLAS/OpenMP/numba via environment, torch.set_num_threads -> "
          f"{torch.get_num_threads()}); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}")
    try:
        import threadpoolctl
        pools = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in threadpoolctl.threadpool_info())
        print(f"thread pools in this process: {pools}")
    except ImportError:
        pass
    print(f"numbers: medians of {REPEATS} interleaved repeats (best of them on the right)")
    rule()
    for part, bench in (("a", bench_mlp), ("b", bench_elementwise), ("c", bench_overhead), ("d", bench_graphs)):
        if part in args.only:
            bench()
    load_after = os.getloadavg()[0]
    print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after")
    if load_before > 0.5 or load_after > args.threads + 0.5:
        print("WARNING: other processes were using the CPU during this run; the timings are noisy "
              "(compare the 'best' columns, or rerun on a quiet machine)")


if __name__ == "__main__":
    with mg.runtime.configured_for_training():  # as rnn.train.train and the CLI train (OpenBLAS threads, malloc)
        main()
