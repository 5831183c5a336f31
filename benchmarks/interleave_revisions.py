"""Is a benchmark slower at one git revision than at another? Runs it from both, interleaved.

Each revision is checked out into a temporary worktree (git worktree add --detach); the
benchmark command then runs alternately from the old tree and the new one, `--runs` times
each, in the order old-new, new-old, old-new, ... (so that a drift of the machine's load
hits both alike), each run in a process of its own whose working folder is that tree and
whose PYTHONPATH starts with it (so the package installed in the environment does not
shadow the revision: checked once per tree, `minigrad.__file__` must lie in it). Each
revision has a private kernel cache of its own, kept across its runs (the first run
compiles, as a user's first run does; the benchmarks time after their warm-up).

Every run's per-case timings are parsed from its output, and the medians per case are
printed with the ratio new/old (> 1: the new revision is slower). Usage:

    python benchmarks/interleave_revisions.py 003702f main --runs 5 -- \\
        python benchmarks/bench_rnn.py --cases S-lstm S-gru M-lstm user --rounds 10
    python benchmarks/interleave_revisions.py 003702f main --runs 5 -- \\
        python benchmarks/bench_engine.py --only abc --repeats 7

A leading `python` in the command is this interpreter. The parsers of bench_rnn.py (the
"minigrad ... ms" of each case line) and bench_engine.py (the minigrad column of every table
row, named by its section letter and label) are built in; any other command needs
--pattern, a regular expression with the named groups `case` and `value`. Wrap the command
in `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to run it with numpy's own BLAS kernels.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# bench_rnn.py: "S-lstm   1x128  B32  minigrad     12.3 ms   torch ..."
RNN_LINE = re.compile(r"^(?P<case>\S+)\s+\d+x\d+\s+B\d+\s+minigrad\s+(?P<value>[0-9.]+) ms")
# bench_engine.py: a section "(b) elementwise ops ..." then rows "    add   12.3   10.1   1.22x ..."
ENGINE_SECTION = re.compile(r"^\((?P<part>[a-z])\) ")
ENGINE_ROW = re.compile(r"^    (?P<label>\S.*?)\s+(?P<value>[0-9.]+)\s+[0-9.]+\s+[0-9.]+x\s")


def parse_bench_rnn(output: str) -> dict:
    return {m["case"]: float(m["value"]) for m in map(RNN_LINE.match, output.splitlines()) if m}


def parse_bench_engine(output: str) -> dict:
    timings, part = {}, "?"
    for line in output.splitlines():
        section = ENGINE_SECTION.match(line)
        if section:
            part = section["part"]
        row = ENGINE_ROW.match(line)
        if row:
            timings[f"({part}) {row['label'].strip()}"] = float(row["value"])
    return timings


def pattern_parser(pattern: str):
    regex = re.compile(pattern)
    if not {"case", "value"} <= set(regex.groupindex):
        raise SystemExit("interleave_revisions: --pattern needs the named groups (?P<case>...) and (?P<value>...)")
    return lambda output: {m["case"]: float(m["value"]) for m in map(regex.search, output.splitlines()) if m}


def parser_for(command: list, pattern):
    if pattern:
        return pattern_parser(pattern)
    scripts = {Path(word).name for word in command}
    if "bench_rnn.py" in scripts:
        return parse_bench_rnn
    if "bench_engine.py" in scripts:
        return parse_bench_engine
    raise SystemExit("interleave_revisions: no built-in parser for this command; give --pattern")


def git(*args) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


class Revision:
    """A revision checked out into a temporary worktree, with a private kernel cache."""

    def __init__(self, label: str, revision: str, scratch: Path):
        self.label, self.revision = label, revision
        self.commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
        self.tree = scratch / label
        git("worktree", "add", "--detach", str(self.tree), self.commit)
        self.cache = scratch / f"{label}-kernel-cache"
        self.cache.mkdir(mode=0o700)

    def environment(self) -> dict:
        path = [str(self.tree)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        return dict(os.environ, PYTHONPATH=os.pathsep.join(path), MINIGRAD_CACHE_DIR=str(self.cache))

    def check_imports(self) -> None:
        """minigrad and rnn must come from this tree, not from the installed package."""
        probe = "import minigrad, rnn; print(minigrad.__file__); print(rnn.__file__)"
        found = subprocess.run([sys.executable, "-c", probe], cwd=self.tree, env=self.environment(),
                               capture_output=True, text=True, check=True).stdout.split()
        for path in found:
            if not Path(path).resolve().is_relative_to(self.tree.resolve()):
                raise SystemExit(f"interleave_revisions: {self.label} imports {path}, not its tree {self.tree}")
        print(f"{self.label}: {self.revision} = {self.commit[:10]}, imports {found[0]}", flush=True)

    def run(self, command: list, parse) -> dict:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=self.tree, env=self.environment(), capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"interleave_revisions: the command failed at {self.label} (exit {result.returncode})")
        timings = parse(result.stdout)
        if not timings:
            sys.stderr.write(result.stdout)
            raise SystemExit(f"interleave_revisions: no timings found in the output at {self.label}")
        print(f"  {self.label}: {len(timings)} cases in {time.perf_counter() - started:.0f} s", flush=True)
        return timings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the revision to compare against (e.g. a commit id)")
    parser.add_argument("new", help="the revision under test (e.g. main)")
    parser.add_argument("--runs", type=int, default=5, help="runs of the command per revision (default 5)")
    parser.add_argument("--pattern", help="regex with named groups case and value, for other commands")
    parser.usage = "%(prog)s [-h] [--runs RUNS] [--pattern PATTERN] old new -- command ..."
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the benchmark command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if command[0] in ("python", "python3"):
        command = [sys.executable] + command[1:]
    parse = parser_for(command, args.pattern)

    scratch = Path(tempfile.mkdtemp(prefix="interleave-"))
    revisions = []
    try:
        revisions = [Revision("old", args.old, scratch), Revision("new", args.new, scratch)]
        for revision in revisions:
            revision.check_imports()
        print(f"command: {' '.join(command)}\nload average before: {os.getloadavg()[0]:.2f}", flush=True)
        timings = {"old": [], "new": []}
        for run in range(args.runs):
            print(f"run {run + 1} of {args.runs}", flush=True)
            for revision in (revisions if run % 2 == 0 else revisions[::-1]):
                timings[revision.label].append(revision.run(command, parse))
        report(timings)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for revision in revisions:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(revision.tree)],
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def report(timings: dict) -> None:
    """Medians per case over the runs (each run's own number is already a median), and new/old."""
    cases = list(dict.fromkeys(case for run in timings["old"] + timings["new"] for case in run))
    width = max(len(case) for case in cases) + 2
    print(f"\n{'case':<{width}}{'old':>12}{'new':>12}{'new/old':>10}   (medians over runs; > 1: new is slower)")
    for case in cases:
        old = [run[case] for run in timings["old"] if case in run]
        new = [run[case] for run in timings["new"] if case in run]
        if not old or not new:
            print(f"{case:<{width}}{'-' if not old else statistics.median(old):>12}"
                  f"{'-' if not new else statistics.median(new):>12}   (only in one revision)")
            continue
        old_median, new_median = statistics.median(old), statistics.median(new)
        print(f"{case:<{width}}{old_median:>12.3f}{new_median:>12.3f}{new_median / old_median:>9.2f}x")


if __name__ == "__main__":
    main()
