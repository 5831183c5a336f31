"""What a benchmark ran on: CPU and vector extensions, numpy's OpenBLAS kernel, thread
counts, library versions, and the work per training step (FLOPs) of the benchmark models.

Shared by the scripts of this folder (bench_rnn, bench_cli, bench_peak, core_model); it
only reads settings, never changes them. Timings mean little without this header: the
same OpenBLAS picks AVX2 (Haswell) or AVX-512 (SkylakeX) kernels depending on the CPU and
on OPENBLAS_CORETYPE, and PyTorch's nn.LSTM runs oneDNN's fused primitive or not.
"""

import ctypes
import os
import platform

# Environment variables that pin numpy's OpenBLAS (some machines set them for older
# OpenBLAS builds); --both-envs runs a child without them.
PINNING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# The benchmark cases: name -> (layers, hidden, batch, gates); every case has seq 64,
# vocab 65, embedding 64. "user" is a user-declared LSTM-like cell at S's size.
CASES = {"S-lstm": (1, 128, 32, 4), "S-gru": (1, 128, 32, 3), "M-lstm": (2, 256, 32, 4),
         "M-gru": (2, 256, 32, 3), "L-lstm": (2, 512, 64, 4), "user": (1, 128, 32, 4)}
SEQ, VOCAB, EMBED = 64, 65, 64
# Flags of /proc/cpuinfo worth naming for GEMM speed (in this order).
VECTOR_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def environment_named(name):
    """This process's environment for one child run: "as-set" (unchanged), "native" (without
    PINNING_VARIABLES: numpy's OpenBLAS picks this CPU's own kernels, as a user's numpy
    does) or "haswell" (OPENBLAS_CORETYPE=Haswell, as pinned on some machines)."""
    environment = dict(os.environ)
    if name == "native":
        for variable in PINNING_VARIABLES:
            environment.pop(variable, None)
    elif name == "haswell":
        environment["OPENBLAS_CORETYPE"] = "Haswell"
    return environment


def cpu_model_and_flags():
    """(model name, [vector extensions]) from /proc/cpuinfo, or platform's guess elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [flag for flag in VECTOR_FLAGS if flag in flags]


def _openblas_function(name_stem, restype):
    """A function of numpy's loaded OpenBLAS by its stem (e.g. "get_corename"), or None."""
    from minigrad import blas  # read-only use of its library lookup

    for library in blas._openblas_libraries():
        for name in (f"scipy_openblas_{name_stem}64_", f"scipy_openblas_{name_stem}",
                     f"openblas_{name_stem}64_", f"openblas_{name_stem}"):
            function = getattr(library, name, None)
            if function is not None:
                function.restype = restype
                return function
    return None


def openblas_corename():
    function = _openblas_function("get_corename", ctypes.c_char_p)
    return function().decode() if function else "no OpenBLAS loaded"


def openblas_threads():
    function = _openblas_function("get_num_threads", ctypes.c_int)
    return function() if function else None


def set_openblas_threads(count):
    """Set numpy's OpenBLAS thread count (for measuring GEMM rates only); False without OpenBLAS."""
    function = _openblas_function("set_num_threads", None)
    if function is None:
        return False
    function.argtypes = [ctypes.c_int]
    function(count)
    return True


def torch_lstm_path():
    """(oneDNN available, CPU capability, True/False whether nn.LSTM's training step runs
    oneDNN's fused primitive (aten::mkldnn_rnn_layer), found by profiling one tiny step)."""
    import torch

    available = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    capability = torch.backends.cpu.get_cpu_capability()
    lstm = torch.nn.LSTM(8, 8, 1, batch_first=True)
    x = torch.randn(2, 3, 8, requires_grad=True)
    with torch.autograd.profiler.profile() as profile:
        output, _ = lstm(x)
        output.sum().backward()
    fused = any("mkldnn_rnn" in event.name for event in profile.function_events)
    return available, capability, fused


def header_lines(threads, torch_module=None):
    """The benchmark header: the machine, the BLAS kernel, the thread counts, the versions."""
    import numba
    import numpy

    model, flags = cpu_model_and_flags()
    lines = [f"cpu: {model}, {os.cpu_count()} logical cores; vector extensions: {' '.join(flags) or 'none found'}"]
    pinned = ", ".join(f"{name}={os.environ[name]!r}" if name in os.environ else f"{name} unset"
                       for name in PINNING_VARIABLES)
    lines.append(f"numpy's OpenBLAS kernel: {openblas_corename()} ({pinned})")
    thread_env = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES)
    lines.append(f"threads: benchmark {threads}; OpenBLAS now {openblas_threads()}; numba {numba.get_num_threads()}; "
                 f"{thread_env}")
    versions = f"numpy {numpy.__version__}, numba {numba.__version__}"
    if torch_module is None:
        lines.append(versions + ", torch not installed")
    else:
        available, capability, fused = torch_lstm_path()
        lines.append(f"{versions}, torch {torch_module.__version__} ({torch_module.get_num_threads()} threads, "
                     f"CPU capability {capability}); oneDNN {'available' if available else 'off'}, nn.LSTM "
                     f"{'runs the fused oneDNN primitive' if fused else 'runs step by step (no oneDNN)'}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load:
        lines.append(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return lines


def flops_per_step(layers, hidden, batch, seq, vocab, embed, gates=4):
    """Floating-point operations of one training step (forward + backward, GEMMs only):
    about 6 * (sum over layers of G*H*(H + I)) * B*T for the recurrent stack and
    6 * H*V * B*T for the output layer (forward 2 per multiply-add, backward twice that)."""
    stack = sum(gates * hidden * (hidden + (embed if k == 0 else hidden)) for k in range(layers))
    return 6.0 * (stack + hidden * vocab) * batch * seq


def minigrad_training_step(model, optimizer, ids, state):
    """One training step of a minigrad CharLM on `ids` (B, T+1) as `minigrad-rnn train` takes
    it (loss, backward, clipping to 5, optimizer step); returns the carried state, detached.
    minigrad is imported here, not at the top: the scripts import this module before they
    fix the thread counts that importing numpy reads."""
    import minigrad as mg
    from rnn import detach_state

    loss, state = model.loss(ids[:, :-1], ids[:, 1:], state)
    state = detach_state(state)
    optimizer.zero_grad()
    loss.backward()
    mg.optim.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return state
