"""Checks of untrusted numbers, read from a checkpoint's JSON or a run folder's files: the one
home of these validators (rnn.checkpoint.format, rnn.training.state and rnn.runs.reader use them).

Each answers a question about a value parsed from JSON, never trusts its type, and never
prints the whole of a hostile value.
"""

import math

# Steps and step counts above this are not from a real run (2**53: still exact as a float).
MAX_COUNT = 2 ** 53


def is_count(value, minimum: int = 0) -> bool:
    """Whether `value` is a plausible step, size or count: an int (not a bool) in [minimum, MAX_COUNT]."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_COUNT


def finite_number(value):
    """`value` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return value if math.isfinite(value) else None


def shown(value) -> str:
    """A short description of a bad value for an error line (never the whole of a hostile value)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 18:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, (list, dict)):
        return f"a JSON {'list' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
