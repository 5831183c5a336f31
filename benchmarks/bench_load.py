"""Speed on a shared machine (issue 24): each figure quiet and beside one busy process.

    python benchmarks/bench_load.py                       # the whole table (about 25 minutes)
    python benchmarks/bench_load.py --seconds 10 --only eval sample   # a quicker look

Programs, each in a fresh process: minigrad with one thread (NUMBA_NUM_THREADS=1),
minigrad with its default (the thread count it measures and re-measures,
minigrad.threads), and PyTorch with its default threads. Conditions: quiet, and with one
`python -c "while True: pass"` running beside it (pinned to the last CPU). Figures:

- train chars/s at S (1x128 B32), M (2x256 B32) and the README default (`train
  --time-budget`, the size the recipe chooses; for PyTorch the 2x256 default), each trained
  for --seconds (the README's own 120 s gives the same per-second rate, later);
- eval: seconds to score the last 10% of tiny-shakespeare as one stream (2x256 model);
- sample: chars/s drawing 5000 characters at batch 1 (2x256 model).
Weights are random (speed does not depend on them). Start-up (imports, cache loading) is
not counted: each worker times its own work. The last columns check the issue's bar: the
default under load no slower than one thread, and within 1.3x of the quiet default
times the share of the machine left to it ((cores - 1) / cores beside one busy process).

The text is /work/shared/data/tinyshakespeare.txt if present, else the copy shipped in
rnn/corpora. Run on a machine where nothing else runs: the "quiet" figures are only quiet then.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
SHARED_TEXT = "/work/shared/data/tinyshakespeare.txt"
SIZES = {"S": (1, 128), "M": (2, 256), "default": None}
PROGRAMS = ("minigrad 1 thread", "minigrad default", "torch default")
TASKS = ("train S", "train M", "train default", "eval", "sample")


def text_path():
    return SHARED_TEXT if os.path.exists(SHARED_TEXT) else os.path.join(ROOT, "rnn", "corpora", "tinyshakespeare.txt")


# ---- workers: one figure each, run in a fresh process ----------------------------------------

def minigrad_worker(task, seconds):
    from minigrad.runtime import configured_for_training
    from rnn.data.corpus import Corpus
    from rnn.evaluate import evaluate_ids
    from rnn.model.charlm import CharLM
    from rnn.sample import sample
    from rnn.training.loop import TrainConfig, train
    from rnn.training.resume import model_config

    corpus = Corpus.from_files([text_path()], val_frac=0.1)
    if task.startswith("train"):
        import tempfile

        size = SIZES[task.split()[1]]
        shape = dict(layers=size[0], hidden=size[1]) if size else {}
        config = TrainConfig(time_budget=seconds, eval_every=0, sample_every=0, **shape)
        with tempfile.TemporaryDirectory() as folder:
            summary = train(config, corpus, folder)
        return {"value": summary["chars_per_sec"], "threads": summary["threads"]}
    config = model_config(TrainConfig().with_size(2, 256), len(corpus.vocab))
    model = CharLM(config)
    with configured_for_training():
        started = time.perf_counter()
        if task == "eval":
            evaluate_ids(model, corpus.val_ids)
            return {"value": time.perf_counter() - started}
        length = 5000
        "".join(sample(model, corpus.vocab, length=length, seed=0))
        return {"value": length / (time.perf_counter() - started)}


def torch_worker(task, seconds):
    import torch

    text = open(text_path(), encoding="utf-8").read()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    if task.startswith("train"):
        layers, hidden = SIZES[task.split()[1]] or (2, 256)
        result = subprocess.run([sys.executable, os.path.join(HERE, "torch_charlm.py"), text_path(), "--time-budget",
                                 str(seconds), "--layers", str(layers), "--hidden", str(hidden)],
                                capture_output=True, text=True, check=True)
        record = json.loads(result.stdout.strip().splitlines()[-1])
        return {"value": record["steps"] * 32 * 64 / record["seconds"]}
    embed, lstm = torch.nn.Embedding(len(vocab), 64), torch.nn.LSTM(64, 256, 2, batch_first=True)
    head = torch.nn.Linear(256, len(vocab))
    with torch.no_grad():
        if task == "eval":
            ids = torch.tensor([index[c] for c in text[int(0.9 * len(text)):]])
            started, state = time.perf_counter(), None
            for start in range(0, len(ids) - 1, 1024):
                chunk = ids[start:start + 1025]
                output, state = lstm(embed(chunk[None, :-1]), state)
                torch.nn.functional.cross_entropy(head(output)[0], chunk[1:])
            return {"value": time.perf_counter() - started}
        generator = torch.Generator().manual_seed(0)
        token, state, length = torch.tensor([[index["\n"]]]), None, 5000
        started = time.perf_counter()
        for _ in range(length):
            output, state = lstm(embed(token), state)
            token = torch.multinomial(torch.softmax(head(output[0, -1]), -1), 1, generator=generator)[None]
        return {"value": length / (time.perf_counter() - started)}


# ---- the driver ------------------------------------------------------------------------------

def measure(program, task, seconds, repeats):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_NUM_THREADS", None)
    if program == "minigrad 1 thread":
        env["NUMBA_NUM_THREADS"] = "1"
    kind = "torch" if program.startswith("torch") else "minigrad"
    values, extra = [], None
    for _ in range(repeats):
        result = subprocess.run([sys.executable, __file__, "--worker", kind, task, "--seconds", str(seconds)],
                                env=env, capture_output=True, text=True)
        if result.returncode != 0:
            return None, result.stderr.strip().splitlines()[-1:]
        record = json.loads(result.stdout.strip().splitlines()[-1])
        values.append(record["value"])
        extra = record.get("threads", extra)
    return statistics.median(values), extra


def busy_process():
    """One process that keeps a core busy, pinned to the last CPU."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    if cpus:
        os.sched_setaffinity(process.pid, {cpus[-1]})
    time.sleep(0.5)
    return process


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="training time per train figure")
    parser.add_argument("--repeats", type=int, default=1, help="runs per figure (the median is shown)")
    parser.add_argument("--only", nargs="*", choices=("train", "eval", "sample"), help="only these figures")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, task = args.worker
        print(json.dumps((torch_worker if kind == "torch" else minigrad_worker)(task, args.seconds)))
        return

    from machine import header_lines
    try:
        import torch
    except ImportError:
        torch = None
    print("\n".join(header_lines("see the table", torch)))
    print(f"text: {text_path()}; train figures after {args.seconds:g} s of training; medians of {args.repeats}")
    tasks = [t for t in TASKS if not args.only or t.split()[0] in args.only]
    programs = [p for p in PROGRAMS if not (args.no_torch or torch is None) or not p.startswith("torch")]
    results = {}
    for condition in ("quiet", "1 busy process"):
        busy = busy_process() if condition != "quiet" else None
        try:
            for task in tasks:
                for program in programs:
                    value, extra = measure(program, task, args.seconds, args.repeats)
                    results[condition, task, program] = value
                    print(f"  {condition:15s} {task:14s} {program:18s} {value if value is not None else extra}"
                          + (f"  threads {extra}" if isinstance(extra, dict) else ""), flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    share = (os.cpu_count() - 1) / os.cpu_count()
    print(f"\n{'figure':16s}" + "".join(f"{p + ' ' + c[:5]:>26s}" for c in ("quiet", "1 busy process")
                                        for p in programs) + "   default>=1 thread   within 1.3x of share")
    for task in tasks:
        row = f"{task + (' s' if task == 'eval' else ' chars/s'):16s}"
        for condition in ("quiet", "1 busy process"):
            for program in programs:
                value = results.get((condition, task, program))
                row += f"{value:>26.1f}" if value is not None else f"{'failed':>26s}"
        one, default = results.get(("1 busy process", task, "minigrad 1 thread")), results.get(
            ("1 busy process", task, "minigrad default"))
        quiet = results.get(("quiet", task, "minigrad default"))
        if None not in (one, default, quiet):
            faster = default <= one * 1.0 if task == "eval" else default >= one
            # speed: the share of the quiet speed; eval time: the quiet time over the share
            target = quiet / share if task == "eval" else quiet * share
            within = default <= 1.3 * target if task == "eval" else default >= target / 1.3
            row += f"   {'yes' if faster else 'NO':>17s}   {'yes' if within else 'NO':>19s}"
        print(row)


if __name__ == "__main__":
    main()
