"""What the CLI tests share: running `minigrad-rnn`, making small texts.

Two ways to run a command:
- `run_cli` starts the console script that `pip install` put next to the Python running
  them (the real entry point, in a fresh process), falling back to whatever `minigrad-rnn`
  is on PATH, and to `python -m cli.main` only when neither exists. For tests of what only a
  process shows (the entry point, exit codes set by signals, environment variables read at
  start-up, a --cell-file whose cells must not outlive the command, a hang guard);
- `run_in_process` runs the same command group in the test's own process (click's test
  runner): the same arguments, exit code, stdout and stderr, without a new interpreter
  importing Numba and loading every kernel again (a second or more each). For tests where
  the command's work, not the process, is the point.
"""

import contextlib
import random
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

# A tiny model: every subprocess trains in a second or two.
TINY_MODEL = ["--cell", "lstm", "--hidden", "16", "--embed", "8", "--layers", "1",
              "--seq-len", "16", "--batch-size", "4"]
TINY_RUN = TINY_MODEL + ["--steps", "5", "--eval-every", "5", "--sample-every", "0", "--val-frac", "0.1"]

_WORDS = ("the cat sat on a mat and the dog ran to see big red sun over hill "
          "where small birds sing all day long").split()


def console_script() -> list:
    """The command that starts the installed CLI, as an argv prefix."""
    beside_python = Path(sys.executable).with_name("minigrad-rnn")
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("minigrad-rnn")
    if on_path:
        return [on_path]
    return [sys.executable, "-m", "cli.main"]


@contextlib.contextmanager
def sigint_heard_by_children():
    """Processes started in this block get SIGINT's default action, as a command typed at a
    terminal does. A shell that runs the suite in the background (`pytest ... &` in a script)
    makes it ignore SIGINT, and an ignored signal stays ignored across exec: Python then installs
    no KeyboardInterrupt handler, so a command that relies on it (sample) would not hear the
    test's signal (as any program started that way would not). `train` installs its own handler."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # only while the child is forked and exec'd
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_cli(*args, cwd=None, timeout=300, check_exit=None) -> subprocess.CompletedProcess:
    """Run `minigrad-rnn *args`; with check_exit, assert the exit code (showing the output if not)."""
    result = subprocess.run(console_script() + [str(a) for a in args], cwd=cwd, capture_output=True,
                            text=True, encoding="utf-8", timeout=timeout)
    return _checked(result, check_exit)


def run_in_process(*args, cwd=None, check_exit=None) -> subprocess.CompletedProcess:
    """`minigrad-rnn *args` run here, in this process, with the console script's error handling
    (cli.app.App.main); the result is shaped as `run_cli`'s. An exception that escapes the
    command group (which the console script would show as a traceback) fails the test."""
    from cli.main import main

    with warnings.catch_warnings(), contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        _warnings_as_in_a_fresh_process()  # (and App.main's filters are put back after)
        result = _runner().invoke(main, [str(a) for a in args], prog_name="minigrad-rnn")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _checked(subprocess.CompletedProcess(["minigrad-rnn", *map(str, args)], result.exit_code,
                                                result.stdout, result.stderr), check_exit)


def _runner():
    """click's test runner with stderr kept apart from stdout (the default from click 8.2, which
    dropped the argument; pyproject.toml allows click 8.1)."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def _warnings_as_in_a_fresh_process():
    """Python's default warning filters, warnings printed to stderr (the runner's): a stray
    warning then shows in the command's stderr as it would from the console script, instead of
    going to pytest's warning summary."""
    warnings.resetwarnings()
    for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                             ("ignore", ImportWarning), ("ignore", ResourceWarning)):
        warnings.simplefilter(action, category)
    warnings.showwarning = _print_warning


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _checked(result: subprocess.CompletedProcess, check_exit) -> subprocess.CompletedProcess:
    """`result`, after asserting its exit code is `check_exit` (showing the output if not); None: any."""
    if check_exit is not None:
        assert result.returncode == check_exit, (
            f"exit code {result.returncode}, expected {check_exit}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def make_text(chars: int, seed: int = 0) -> str:
    """Lines of random words from a small list: a text a tiny model can start to learn."""
    rng = random.Random(seed)
    lines, length = [], 0
    while length < chars:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."
        lines.append(line)
        length += len(line) + 1
    return "\n".join(lines)[:chars]


def assert_one_error_line(stderr: str, *fragments):
    """stderr is exactly one line "error: ..." (no traceback) containing every fragment."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in: {lines[0]}"
