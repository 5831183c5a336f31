"""End-to-end training speed: `minigrad-rnn train` (the real console script) against the
same model in PyTorch (torch_charlm.py), each run as a user runs it, in a subprocess.

    python benchmarks/bench_cli.py                         # S, M, L on a generated text
    python benchmarks/bench_cli.py --sizes M L --text input.txt --repeats 3
    python benchmarks/bench_cli.py --env native            # OPENBLAS_CORETYPE/_L2_SIZE removed

Each program trains twice per size, for a short and a long step count (--steps), and the
steady-state time per step is the difference of the two wall-clock times divided by the
difference of the step counts: start-up, imports, kernel compilation or cache loading,
the final evaluation and checkpoint writing are the same in both runs and cancel. (The
programs' own training-loop seconds give a second estimate, printed beside it.) Runs of
the two programs alternate; with --repeats the median of each is used.

Sizes (seq 64, embed 64, vocab of the text): S = 1x128 B32, M = 2x256 B32, L = 2x512 B64,
all lstm, the CLI's default optimizer (AdamW), schedule and clipping. bench_rnn.py times
the same models in one process; the two must tell the same story (ratios within noise).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from machine import environment_named, header_lines

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"S": (1, 128, 32), "M": (2, 256, 32), "L": (2, 512, 64)}
STEPS = {"S": (30, 230), "M": (20, 120), "L": (10, 50)}
# The two estimates of ms/step (wall-clock difference, loop-time difference) should agree within this.
DISAGREEMENT = 0.25


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--text", help="a UTF-8 text to train on (default: a generated one, 400k characters)")
    parser.add_argument("--steps", nargs=2, type=int, metavar=("SHORT", "LONG"),
                        help="the two step counts (default per size: S 30 230, M 20 120, L 10 50)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch's threads (minigrad uses every core)")
    parser.add_argument("--env", choices=("as-set", "native", "haswell"), default="as-set",
                        help="native: run both programs without OPENBLAS_CORETYPE/_L2_SIZE; haswell: with "
                             "OPENBLAS_CORETYPE=Haswell (only their environment changes)")
    return parser.parse_args()


def generated_text(path, characters=400_000):
    """A deterministic text of words and punctuation (about 60 distinct characters)."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    pieces, length = [], 0
    while length < characters:
        word = rng.choice(words)
        word = word.capitalize() if rng.random() < 0.15 else word
        piece = word + rng.choice(" " * 12 + ",.;:!?\n'-")
        pieces.append(piece)
        length += len(piece)
    with open(path, "w", encoding="utf-8") as file:
        file.write("".join(pieces)[:characters])


def minigrad_command(text, size, steps, out_dir):
    layers, hidden, batch = SIZES[size]
    executable = shutil.which("minigrad-rnn")
    if executable is None:
        sys.exit("bench_cli: the minigrad-rnn console script is not on PATH (pip install -e .)")
    return [executable, "train", text, "--layers", str(layers), "--hidden", str(hidden), "--batch-size", str(batch),
            "--seq-len", "64", "--embed", "64", "--steps", str(steps), "--dropout", "0",  # as torch_charlm.py
            "--eval-every", "0", "--sample-every", "0",
            "--out", out_dir, "--quiet", "--json"]


def torch_command(text, size, steps, threads):
    layers, hidden, batch = SIZES[size]
    return [sys.executable, os.path.join(HERE, "torch_charlm.py"), text, "--layers", str(layers), "--hidden",
            str(hidden), "--batch-size", str(batch), "--seq-len", "64", "--embed", "64", "--steps", str(steps),
            "--threads", str(threads)]


def run(command, environment):
    """(wall seconds, the program's own training seconds) of one run."""
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"bench_cli: {' '.join(command[:3])} ... failed:\n{finished.stderr[-2000:]}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    return wall, float(result["seconds"])


def time_size(size, text, args, environment, scratch):
    """{program: (ms/step from wall clock, ms/step from the program's own loop time)}."""
    short, long = args.steps or STEPS[size]
    samples = {"minigrad": {short: [], long: []}, "torch": {short: [], long: []}}
    for repeat in range(args.repeats):
        for steps in (short, long):
            out_dir = os.path.join(scratch, f"{size}-{repeat}-{steps}")
            samples["minigrad"][steps].append(run(minigrad_command(text, size, steps, out_dir), environment))
            samples["torch"][steps].append(run(torch_command(text, size, steps, args.threads), environment))
    per_step = {}
    for program, by_steps in samples.items():
        wall = [statistics.median(s[0] for s in by_steps[n]) for n in (short, long)]
        loop = [statistics.median(s[1] for s in by_steps[n]) for n in (short, long)]
        per_step[program] = tuple(1000.0 * (b - a) / (long - short) for a, b in (wall, loop))
    return per_step


def main():
    args = parse_args()
    environment = environment_named(args.env)
    os.environ.clear()
    os.environ.update(environment)  # this process only reads; its children get the same environment
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        sys.exit("bench_cli: torch is not installed (it is the reference)")
    print("\n".join(header_lines(args.threads, torch)), flush=True)
    print("note: the header's OpenBLAS thread count is this process's; the CLI sets its own for training")
    with tempfile.TemporaryDirectory(prefix="bench_cli-") as scratch:
        text = args.text
        if text is None:
            text = os.path.join(scratch, "text.txt")
            generated_text(text)
        print(f"text: {args.text or 'generated, 400k characters'}; environment: {args.env}; repeats {args.repeats}")
        print(f"{'size':<5}{'steps':>10} | {'minigrad ms/step':>17} {'(loop)':>8} | {'torch ms/step':>14} "
              f"{'(loop)':>8} | {'torch/minigrad':>14} {'(loop)':>8}", flush=True)
        for size in args.sizes:
            short, long = args.steps or STEPS[size]
            timing = time_size(size, text, args, environment, scratch)
            ours, theirs = timing["minigrad"], timing["torch"]
            print(f"{size:<5}{f'{short}->{long}':>10} | {ours[0]:17.1f} {ours[1]:8.1f} | {theirs[0]:14.1f} "
                  f"{theirs[1]:8.1f} | {theirs[0] / ours[0]:13.2f}x {theirs[1] / ours[1]:7.2f}x", flush=True)
            for program, (wall, loop) in timing.items():
                if wall <= 0 or abs(wall - loop) > DISAGREEMENT * loop:
                    print(f"      {program}: the wall-clock and loop estimates disagree by more than "
                          f"{DISAGREEMENT:.0%}: the machine was busy (use --repeats), or the program does work per "
                          f"step outside its training loop", flush=True)
    load = os.getloadavg()
    print(f"ms/step from the difference of wall-clock times of the two step counts (loop: of the programs' own "
          f"training-loop seconds); load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
