"""The documentation's code runs: every ```python block of every docs/*.md file is executed.

Blocks of one document run in order in one namespace (a later block may use what an
earlier one defined), the way a reader pastes them into one Python session. A failing
block is reported by its number and first line, with the error.
"""

import contextlib
import io
import re
import traceback
from pathlib import Path

import pytest

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
DOCUMENTS = sorted(DOCS_DIR.glob("*.md"))

# A fenced block that opens with exactly ```python (not ```pycon, not an indented example).
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list:
    """(line number of the block's first code line, code) for each ```python block."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in PYTHON_BLOCK.finditer(text)]


def test_block_extraction_finds_python_blocks_only():
    text = "intro\n```python\na = 1\n```\n\n```\nnot python\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n"), (10, "b = a + 1\n")]


def test_the_internals_walkthrough_exists_and_has_code():
    internals = DOCS_DIR / "internals.md"
    assert internals in DOCUMENTS
    assert len(python_blocks(internals.read_text(encoding="utf-8"))) >= 10


@pytest.mark.parametrize("document", DOCUMENTS, ids=[path.name for path in DOCUMENTS])
def test_every_python_block_runs(document):
    namespace = {"__name__": f"docs.{document.stem}"}
    for number, (line, code) in enumerate(python_blocks(document.read_text(encoding="utf-8")), start=1):
        compiled = compile(code, f"{document.name}, block {number} (line {line})", "exec")
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compiled, namespace)
        except Exception:  # report which block, then the traceback inside it
            first_line = code.strip().splitlines()[0] if code.strip() else ""
            pytest.fail(
                f"{document.name}: python block {number} (line {line}: {first_line!r}) failed:\n"
                + traceback.format_exc(limit=-3)
                + "\nits output before the error:\n" + printed.getvalue()[-2000:],
                pytrace=False,
            )
