"""How the CLI writes what it did not make itself: names from files, generated text, JSON.

Three rules, each held in one function here so that no command does it its own way:

- `visible(value)`: a string taken from a file (a checkpoint's metadata, a run folder's
  config.json, a corpus file name, a path, a library message quoting any of them) is
  printed with its control characters written as escapes. A terminal obeys control
  characters: ESC starts sequences that move the cursor, rewrite the screen, set the
  window title or (OSC 52) fill the clipboard; CR and BS overwrite what was shown; the
  bidi controls (U+202E...) reorder it. None of those files is trusted.
- `TextWriter`: the generated text itself is the model's output over a vocabulary that
  came from an untrusted checkpoint. To a terminal it goes with the same escapes, except
  for what ordinary text needs (see TEXT_KEEPS); to a pipe or a file it goes exactly as
  made, because there it is data (`sample > out.txt`, `sample | wc`) and no terminal
  interprets it. `sample --out FILE` writes exact UTF-8 whatever stdout is.
- `strict_json(value)`: the --json outputs are RFC 8259 JSON, which has no NaN or
  Infinity: a number that is not finite is written as null.

`GuardedOutput(sys.stdout)`: stdout may be closed (`>&-`, then sys.stdout is None) or a pipe
whose reader has gone (`| head -c 100`). Printing then stops, the work goes on (a training run
trains and saves), and the command says so in one line at the end. The stdout descriptor is
then pointed at /dev/null, so that Python's flush at exit has nowhere to fail.

`use_replacement_for_unencodable_output()` is the other process-wide change: stdout whose
encoding cannot hold every character (PYTHONIOENCODING=latin-1, output redirected on
Windows in its ANSI code page, a pipe under a latin-1 locale) gets a `?` for such a
character instead of a UnicodeEncodeError.

Standard library only: the CLI imports this at start-up.
"""

import json
import math
import numbers
import os
import unicodedata

# Unicode categories written as escapes: Cc (C0 controls, DEL, and the C1 controls, among
# them CSI U+009B and OSC U+009D, which some terminals obey like ESC [ and ESC ]), Cf
# (format: bidi overrides and isolates, zero-width characters, the BOM), Zl and Zp (line
# and paragraph separators: a line break no one sees coming) and Cs (lone surrogates: the
# undecodable bytes of a file name, which no encoding can write). Unassigned and private
# use characters are shown as they are: a terminal draws them as glyphs.
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# What generated text keeps on a terminal: line breaks and tabs, and the zero-width
# (non-)joiners that emoji sequences and Indic scripts are written with (they join glyphs,
# and cannot move the cursor or reorder a line). A CR is kept only as part of a CRLF line
# end (a model trained on a Windows text writes them); a lone CR is escaped.
TEXT_KEEPS = frozenset("\n\t\u200c\u200d")


def _escape(character: str) -> str:
    if character in SHORT_ESCAPES:
        return SHORT_ESCAPES[character]
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value, keep=frozenset()) -> str:
    """str(value) with every control character (ESCAPED_CATEGORIES) written as a Python-style
    escape (\\x1b, \\r, \\u202e), except the characters in `keep`; the rest is unchanged."""
    text = str(value)
    if text.isprintable():  # no character of an escaped category: the common case, and fast
        return text
    return "".join(_escape(c) if c not in keep and unicodedata.category(c) in ESCAPED_CATEGORIES else c
                   for c in text)


def visible_text(text: str) -> str:
    """Generated text made safe for a terminal: visible(), keeping TEXT_KEEPS and CRLF line ends."""
    return "\r\n".join(visible(line, TEXT_KEEPS) for line in text.split("\r\n"))


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):  # no isatty, or a closed stream
        return False


class GuardedOutput:
    """A text stream (stdout) whose writes stop, silently, once it is closed or its pipe broken:
    `lost` then says that something written was not shown (see the module docstring). Has
    write, flush and isatty."""

    def __init__(self, stream):
        self.stream = stream
        self.closed = stream is None  # started with stdout closed (`>&-`)
        self.lost = False

    def write(self, text: str):
        self._guarded(lambda: self.stream.write(text))

    def flush(self):
        if not self.closed:
            self._guarded(lambda: self.stream.flush())

    def isatty(self) -> bool:
        return not self.closed and is_terminal(self.stream)

    def _guarded(self, action):
        if self.closed:
            self.lost = True
            return
        try:
            action()
        except (OSError, ValueError):  # EPIPE, EBADF; ValueError: a closed file object
            self.closed = self.lost = True
            self._silence()

    def _silence(self):
        # What is still buffered is flushed again at exit: let that go to /dev/null, not fail.
        try:
            descriptor = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
            return
        try:
            os.dup2(devnull, descriptor)
        except OSError:
            pass
        finally:
            os.close(devnull)


class TextWriter:
    """Writes generated text to `stream` as it is made: exactly, or, when `terminal`, made
    safe with visible_text(). Streamed in pieces, so a CR that ends a piece is held back
    until the next piece shows whether it starts a CRLF. Flushes each piece if `flush`."""

    def __init__(self, stream, terminal: bool, flush: bool = True):
        self.stream, self.terminal, self.flush = stream, terminal, flush
        self.held_cr = False

    def write(self, text: str):
        if self.terminal:
            if self.held_cr:
                text, self.held_cr = "\r" + text, False
            if text.endswith("\r"):
                text, self.held_cr = text[:-1], True
            text = visible_text(text)
        self.stream.write(text)
        if self.flush:
            self.stream.flush()

    def close(self):
        """Write what is held back (a final lone CR, escaped)."""
        if self.held_cr:
            self.held_cr = False
            self.stream.write(visible("\r"))
        self.stream.flush()


def _finite_scalar(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _finite(value):
    """A copy of `value` with every non-finite number replaced by None, numpy scalars as Python
    numbers. A loop, not recursion: a checkpoint's metadata may nest as deep as its JSON allows."""
    root = [value]
    pending = [(root, 0)]
    while pending:
        container, key = pending.pop()
        item = container[key]
        if isinstance(item, dict):
            container[key] = copy = dict(item)
            pending.extend((copy, name) for name in copy)
        elif isinstance(item, (list, tuple)):
            container[key] = copy = list(item)
            pending.extend((copy, index) for index in range(len(copy)))
        else:
            container[key] = _finite_scalar(item)
    return root[0]


def strict_json(value) -> str:
    """One line of strict JSON: null for nan and infinities; anything else not JSON-able as str."""
    return json.dumps(_finite(value), default=str, allow_nan=False)


# Error handlers that never raise on an unencodable character (strict and surrogateescape do).
NON_RAISING_ERRORS = frozenset({"replace", "backslashreplace", "xmlcharrefreplace", "namereplace", "ignore"})


def use_replacement_for_unencodable_output(stream):
    """Make `stream` (sys.stdout) write `?` for a character its encoding cannot hold, instead of
    raising: the CLI's one change to process-wide state here, made in App.main."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None or getattr(stream, "errors", None) in NON_RAISING_ERRORS:
        return  # not a TextIOWrapper, or one that already never raises (PYTHONIOENCODING=enc:errors)
    try:
        reconfigure(errors="replace")
    except (OSError, ValueError):  # a closed or detached stream: nothing will be written anyway
        pass
