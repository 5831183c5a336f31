"""Peak memory of `minigrad-rnn train` on a big text file, beside the file's size (issue 7:
"a 200 MB text file trains with memory well under its size times 4").

The script writes a text of random words from a small vocabulary (so it has structure a
model can learn) into a temporary directory, then runs the installed console script

    minigrad-rnn train BIGFILE --steps 20 --hidden 64 --layers 1 --eval-every 0 \\
        --sample-every 0 --val-frac 0.001 --out TMP/run --quiet --json

with the encoded-ids cache (MINIGRAD_CACHE_DIR) in the same temporary directory, so the
run is the cold one that reads and encodes the whole file. It prints the child's peak
resident set size (os.wait4's ru_maxrss of exactly that process) beside the file size,
and, for scale, the peak RSS of the same command on a 1 MB file (the interpreter, numpy,
numba and the kernels alone). A run on a small text first compiles the kernels into the
fresh cache directory, so that compiling is in neither measurement.

Files over 64 MB are encoded into a memory-mapped cache file; its written pages count in
the RSS while mapped (file-backed pages the kernel can write back, not anonymous memory).

--val-frac defaults to 0.001: with the default 0.1 the final evaluation reads 20 MB of
validation text one character stream at a time, which takes minutes and measures the
evaluation's speed, not the training's memory (pass --val-frac 0.1 to see it).

Usage:
    python benchmarks/big_corpus_memory.py                 # 200 MB
    python benchmarks/big_corpus_memory.py --mb 30 --json  # one JSON line (tests/test_reliability.py)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("the cat sat on a mat and the dog ran to see big red sun over hill where small birds sing all "
         "day long while old men walk by the river with bread for ducks that swim in cold water").split()
MB = 1 << 20


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200, help="size of the generated text in MiB")
    parser.add_argument("--val-frac", default="0.001", help="passed to train --val-frac")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--no-baseline", action="store_true", help="skip the 1 MB run")
    return parser.parse_args()


# Runs this checkout's CLI with neither the working folder nor '' on sys.path (as `-m` would
# put them first, where a planted module would be imported).
_RUN_THIS_CHECKOUT = ("import sys; sys.path[:] = [{root!r}] + [p for p in sys.path if p not in ('', '.')]; "
                      "from cli.main import main; main()")


def console_script() -> list:
    """The installed `minigrad-rnn` (beside this Python, or on PATH), else this checkout's CLI."""
    beside_python = Path(sys.executable).with_name("minigrad-rnn")
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("minigrad-rnn")
    root = str(Path(__file__).resolve().parents[1])
    return [on_path] if on_path else [sys.executable, "-c", _RUN_THIS_CHECKOUT.format(root=root)]


def write_text(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Random words separated by spaces, one separator in 8 a newline, written a block at a
    time until `size_bytes` (ASCII, so bytes = characters)."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    written = 0
    with open(path, "wb") as file:
        while written < size_bytes:
            block = " ".join(words[rng.integers(len(words), size=200_000)].tolist()).encode("ascii") + b" "
            raw = np.frombuffer(block, dtype=np.uint8).copy()
            spaces = np.flatnonzero(raw == ord(" "))
            raw[spaces[rng.random(len(spaces)) < 1 / 8]] = ord("\n")
            raw = raw[:size_bytes - written]
            file.write(raw.tobytes())
            written += len(raw)
    return written


def peak_rss_of(command: list, env: dict) -> dict:
    """Run `command`; its exit code, wall time, peak RSS in bytes (of that one process) and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as stdout, tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        return {"exit_code": process.returncode, "wall_seconds": round(time.perf_counter() - started, 2),
                "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports kilobytes
                "stdout": stdout.read(), "stderr": stderr.read()}


def train_command(text: Path, out: Path, args) -> list:
    return console_script() + ["train", str(text), "--steps", str(args.steps), "--hidden", "64", "--layers", "1",
                               "--eval-every", "0", "--sample-every", "0", "--val-frac", str(args.val_frac),
                               "--out", str(out), "--quiet", "--json"]


def measure(folder: Path, size_bytes: int, args, name: str) -> dict:
    text = folder / f"{name}.txt"
    generated = time.perf_counter()
    file_size = write_text(text, size_bytes)
    generate_seconds = time.perf_counter() - generated
    env = dict(os.environ, MINIGRAD_CACHE_DIR=str(folder / "cache"))
    result = peak_rss_of(train_command(text, folder / f"run-{name}", args), env)
    if result["exit_code"] != 0:
        raise SystemExit(f"train failed on {text} (exit {result['exit_code']}): {result['stderr'].strip()}")
    summary = json.loads(result["stdout"].strip().splitlines()[-1])
    text.unlink()  # free the disk before the next measurement
    return {"file_bytes": file_size, "peak_rss_bytes": result["peak_rss_bytes"],
            "ratio": round(result["peak_rss_bytes"] / file_size, 3), "wall_seconds": result["wall_seconds"],
            "train_seconds": round(summary["seconds"], 2), "steps": summary["steps"],
            "generate_seconds": round(generate_seconds, 2)}


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="big-corpus-") as folder:
        folder = Path(folder)
        report = {"command": " ".join(train_command(Path("BIGFILE"), Path("TMP/run"), args))}
        # A first run on a small text compiles the generated kernels into the fresh cache dir,
        # so that the measured peaks are the runs' cost, not the compiler's.
        measure(folder, 256 * 1024, args, "warm-up")
        if not args.no_baseline:
            report["baseline_1mb"] = measure(folder, MB, args, "small")
        report["big"] = measure(folder, int(args.mb * MB), args, "big")
    if args.json:
        print(json.dumps(report))
        return
    print(f"command: {report['command']}")
    rows = ([("1 MB baseline", report["baseline_1mb"])] if "baseline_1mb" in report else []) + [("big", report["big"])]
    for label, row in rows:
        print(f"{label:>14}: file {row['file_bytes'] / MB:8.1f} MiB   peak RSS {row['peak_rss_bytes'] / MB:8.1f} MiB "
              f"({row['ratio']:.2f} x the file)   wall {row['wall_seconds']:.1f} s "
              f"(training {row['train_seconds']:.1f} s, {row['steps']} steps)")


if __name__ == "__main__":
    main()
