"""The vocabulary: the characters a model knows, and what to do with those it does not.

- `Vocab`: a list of distinct characters (from a text: the sorted set of its code points,
  deterministic); a character's id is its index; encode / decode, JSON.
- `apply_unknown_policy`: refuse a text holding characters outside a vocabulary (naming
  them), or skip those characters (`UNKNOWN_POLICIES`).

What this module must not hold: reading files (rnn.data.text, rnn.data.ids), anything about
models or training.
"""

import collections
import json

import numpy as np

from rnn.data.text import TextError, _describe_chars
from rnn.errors import Setting

_CODE_POINTS = 0x110000
_SURROGATES = range(0xD800, 0xE000)
# The most characters a vocabulary can hold: every code point but the surrogates.
MAX_VOCAB = _CODE_POINTS - len(_SURROGATES)


def _code_points(text: str) -> np.ndarray:
    """The code points of `text` as a uint32 array (UTF-32 is one code point per 4 bytes)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


class Vocab:
    """A list of distinct characters; a character's id is its index in the list."""

    def __init__(self, chars):
        chars = list(chars)
        # Checked first: a vocabulary read from a file may be millions of entries long.
        if len(chars) > MAX_VOCAB:
            raise TextError(f"a vocabulary of {len(chars):,} entries is impossible: Unicode has "
                            f"{MAX_VOCAB:,} characters")
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TextError(f"a vocabulary entry must be one character, got {c!r}")
            if ord(c) in _SURROGATES:
                raise TextError(f"a vocabulary cannot hold the lone surrogate U+{ord(c):04X}")
        if len(set(chars)) != len(chars):  # counted in one pass: list.count per entry is quadratic
            repeated = [c for c, times in collections.Counter(chars).items() if times > 1]
            raise TextError(f"repeated characters in the vocabulary: {_describe_chars(repeated)}")
        if not chars:
            raise TextError("the vocabulary is empty")
        self.chars = chars
        # Sorted code points and where each one sits in `chars`: encoding is a binary search.
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(codes, kind="stable").astype(np.int32)
        self._sorted_codes = codes[self._order]

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted set of code points of `text`."""
        if not text:
            raise TextError("cannot build a vocabulary from an empty text")
        return cls(sorted(set(text)))

    @classmethod
    def from_code_points(cls, code_points) -> "Vocab":
        return cls([chr(int(c)) for c in sorted(code_points)])

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.chars == other.chars

    def __repr__(self):
        return f"Vocab({len(self)} characters)"

    def encode(self, text: str) -> np.ndarray:
        """The ids of `text` (int32); TextError naming any character not in the vocabulary."""
        return self.encode_code_points(_code_points(text))

    def encode_code_points(self, code_points: np.ndarray) -> np.ndarray:
        position = np.searchsorted(self._sorted_codes, code_points)
        np.minimum(position, len(self._sorted_codes) - 1, out=position)
        found = self._sorted_codes[position] == code_points
        if not found.all():
            unknown = {chr(int(c)) for c in np.unique(code_points[~found])}
            raise TextError(f"characters not in the vocabulary: {_describe_chars(unknown)}")
        return self._order[position]

    def unknown_chars(self, text: str) -> dict:
        """character -> how often it occurs in `text`, for the characters not in the vocabulary."""
        code_points = _code_points(text)
        position = np.minimum(np.searchsorted(self._sorted_codes, code_points), len(self._sorted_codes) - 1)
        missing, counts = np.unique(code_points[self._sorted_codes[position] != code_points], return_counts=True)
        return {chr(int(c)): int(n) for c, n in zip(missing, counts)}

    def without_unknown(self, text: str) -> str:
        """`text` without the characters that are not in the vocabulary."""
        unknown = self.unknown_chars(text)
        return "".join(c for c in text if c not in unknown) if unknown else text

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= len(self)):
            raise TextError(f"ids must be integers in [0, {len(self)}), got values outside that range")
        chars = self.chars
        return "".join([chars[i] for i in ids.tolist()])

    def to_json(self) -> str:
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        try:
            chars = json.loads(text)
        except (TypeError, ValueError, RecursionError) as error:  # RecursionError: hostile nesting
            raise TextError(f"the vocabulary is not valid JSON: {error}") from None
        if not isinstance(chars, list):
            raise TextError("the vocabulary JSON must be a list of characters")
        return cls(chars)


# What to do with the characters of a text that a model's vocabulary lacks (rnn.evaluate, rnn.sample):
# refuse the text, naming them, or skip them (neither predicted nor fed to the model).
UNKNOWN_POLICIES = ("refuse", "skip")


def apply_unknown_policy(vocab: Vocab, text: str, policy: str, what: str = "the text"):
    """(text to use, number of characters skipped): `text` itself under "refuse", where a
    character outside `vocab` is a TextError naming them and the option that skips them;
    under "skip", the text without those characters."""
    if policy not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {policy!r}")
    unknown = vocab.unknown_chars(text)
    if not unknown:
        return text, 0
    if policy == "refuse":
        count = sum(unknown.values())
        raise TextError(f"{what} has {count} character{'s' if count != 1 else ''} not in the model's vocabulary: "
                        f"{_describe_chars(unknown, limit=5)} (", Setting("unknown", "skip"),
                        " leaves them out: neither predicted nor fed)")
    return vocab.without_unknown(text), sum(unknown.values())
