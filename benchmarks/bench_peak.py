"""This machine's float32 GEMM rate: the physical limit that training-step times are compared with.

    python benchmarks/bench_peak.py                  # numpy, torch.mm and oneDNN, 1 and 2 threads
    python benchmarks/bench_peak.py --repeats 50 --threads 1 2

Times C = A @ B (float32, medians of --repeats) with numpy's BLAS, torch.mm (MKL in PyTorch's
x86 wheels) and oneDNN's inner product (the GEMM behind PyTorch's CPU LSTM), for a large
square product and for the shapes a char-LM training step is made of: the per-step
recurrent GEMM of M and L, split by rows over 2 cores and whole, and the whole-window GEMMs
(input projection, weight gradients, output layer). Prints GFLOP/s per shape, library and
thread count, then the peak (the best rate of any library on the large shapes) and, per
benchmark case, the FLOPs of one training step and the time it would take at that peak.
Why three libraries: on an AMD CPU, MKL takes a code path without AVX-512 and a pinned
OpenBLAS uses its Haswell (AVX2) kernels, so either alone can put the "peak" at half of what
the cores do (a quiet Zen 5, one core, square 2048: torch.mm 98 GFLOP/s, oneDNN 206).
bench_rnn.py --peak uses the same functions and adds minigrad's and PyTorch's share.
"""

import argparse
import os
import statistics
import sys
import time

# (M, K, N): C(MxN) = A(MxK) @ B(KxN)
SQUARE = (2048, 2048, 2048)
SHAPES = {
    "square 2048": SQUARE,
    "M window 2048x256x1024": (2048, 256, 1024),     # B*T rows: W_ih / weight gradients at M
    "L window 4096x512x2048": (4096, 512, 2048),     # the same at L
    "M step 32x256x1024": (32, 256, 1024),           # recurrent GEMM of one step at M, whole batch
    "M step 16x256x1024": (16, 256, 1024),           # ... one core's rows when split by rows over 2
    "L step 64x512x2048": (64, 512, 2048),           # recurrent GEMM of one step at L
    "L step 64x512x1024": (64, 512, 1024),           # ... one core's units when split by units over 2
}
LARGE = ("square 2048", "M window 2048x256x1024", "L window 4096x512x2048")


def _numpy_product(shape):
    import numpy as np

    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    out = np.empty((m, n), np.float32)
    return lambda: np.matmul(a, b, out=out)


def _torch_product(shape):
    import torch

    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    return lambda: torch.mm(a, b, out=out)


def _onednn_product(shape):
    import torch

    m, k, n = shape
    a, weight = torch.randn(m, k).to_mkldnn(), torch.randn(n, k).to_mkldnn()
    return lambda: torch._C._nn.mkldnn_linear(a, weight, None)


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN and its inner product runs here."""
    try:
        import torch

        if not torch.backends.mkldnn.is_available():
            return False
        _onednn_product((8, 8, 8))()  # built with oneDNN, but it must also run on this CPU
        return True
    except (ImportError, AttributeError, RuntimeError):
        return False


def gflops(product, shape, repeats):
    """Median GFLOP/s of `product` (a no-argument callable) of the given (M, K, N) shape."""
    m, k, n = shape
    inner = max(1, int(2e8 // (2 * m * k * n)))  # a timed sample of ~0.1-1 ms at least
    for _ in range(3):
        product()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            product()
        samples.append((time.perf_counter() - start) / inner)
    return 2.0 * m * k * n / statistics.median(samples) / 1e9


def gemm_rates(thread_counts, repeats=20, libraries=("numpy", "torch", "onednn"), shapes=SHAPES):
    """{(library, threads, shape name): GFLOP/s}. Sets the libraries' thread counts for the
    measurement and puts numpy's OpenBLAS back to its count before."""
    import machine

    rates = {}
    before = machine.openblas_threads()
    try:
        for threads in thread_counts:
            for library in libraries:
                if library == "numpy":
                    if not machine.set_openblas_threads(threads):
                        continue
                    make = _numpy_product
                elif library == "onednn" and not onednn_available():
                    continue
                else:
                    try:
                        import torch
                    except ImportError:
                        continue
                    torch.set_num_threads(threads)
                    make = _torch_product if library == "torch" else _onednn_product
                for name, shape in shapes.items():
                    rates[(library, threads, name)] = gflops(make(shape), shape, repeats)
    finally:
        if before:
            machine.set_openblas_threads(before)
    return rates


def peak_of(rates, threads):
    """The machine's peak at `threads`: the best rate of any library on the large shapes."""
    return max(rate for (_, count, name), rate in rates.items() if count == threads and name in LARGE)


def print_rates(rates):
    libraries = sorted({library for library, _, _ in rates})
    counts = sorted({count for _, count, _ in rates})
    columns = [(library, count) for count in counts for library in libraries]
    print(f"{'GFLOP/s (float32, median)':<28}" + "".join(f"{library + ' ' + str(count) + 't':>12}"
                                                         for library, count in columns))
    for name in SHAPES:
        cells = [rates.get((library, count, name)) for library, count in columns]
        print(f"{name:<28}" + "".join(f"{cell:12.1f}" if cell else f"{'-':>12}" for cell in cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import machine

    try:
        import torch
    except ImportError:
        torch = None
    print("\n".join(machine.header_lines(max(args.threads), torch)), flush=True)
    rates = gemm_rates(args.threads, args.repeats)
    print_rates(rates)
    for count in args.threads:
        peak = peak_of(rates, count)
        print(f"\npeak at {count} thread(s): {peak:.1f} GFLOP/s (best of any library on the large shapes)")
        for case, (layers, hidden, batch, gates) in machine.CASES.items():
            flops = machine.flops_per_step(layers, hidden, batch, machine.SEQ, machine.VOCAB, machine.EMBED, gates)
            print(f"  {case:<8} {flops / 1e9:6.2f} GFLOP per training step -> {flops / peak / 1e6:7.2f} ms at peak")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
