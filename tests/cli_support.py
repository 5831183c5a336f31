"""What the CLI tests share: running the installed `minigrad-rnn`, making small texts.

The tests drive the console script that `pip install` put next to the Python running
them (the real entry point, in a fresh process), falling back to whatever
`minigrad-rnn` is on PATH, and to `python -m cli.main` only when neither exists.
"""

import random
import shutil
import subprocess
import sys
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


def run_cli(*args, cwd=None, timeout=300, check_exit=None) -> subprocess.CompletedProcess:
    """Run `minigrad-rnn *args`; with check_exit, assert the exit code (showing the output if not)."""
    result = subprocess.run(console_script() + [str(a) for a in args], cwd=cwd, capture_output=True,
                            text=True, encoding="utf-8", timeout=timeout)
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
