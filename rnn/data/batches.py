"""Batches for truncated backpropagation through time.

- `BatchStream`: B contiguous streams over the training ids, cut into windows of
  `seq_len`; the trainer carries the hidden state from one window to the next.

What this module must not hold: reading text (rnn.data.text, rnn.data.corpus), anything
about models or training.
"""

import numpy as np

from rnn.data.text import TextError
from rnn.errors import Setting


class BatchStream:
    """B contiguous streams over `ids`, read window after window of `seq_len` characters.

    Stream b is the b-th of B equal slices of the ids, so row b of one batch continues
    row b of the previous batch: the hidden state carried across windows is meaningful.
    Targets are the inputs shifted by one character. After the last full window the
    streams wrap around to their start; the batch returned then has `wrapped` True,
    and the carried state must be reset (it belongs to the end of the streams).
    """

    def __init__(self, ids, batch_size: int, seq_len: int):
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.total_chars = len(ids)
        stream_length = self.total_chars // self.batch_size
        if stream_length < self.seq_len + 1:
            fitting = self.total_chars // (self.seq_len + 1)  # the most streams of one window each
            fix = (("try ", Setting("batch_size", fitting), " or less, or a longer text") if fitting
                   else ("try ", Setting("seq_len", self.total_chars - 1), " or less, or a longer text"))
            raise TextError(f"the training text is too short: {self.total_chars} characters cannot make "
                            f"{self.batch_size} streams of seq_len + 1 = {self.seq_len + 1} characters (", *fix, ")")
        self._streams = ids[:self.batch_size * stream_length].reshape(self.batch_size, stream_length)
        # The remainder (< seq_len characters per stream) is skipped: every window has the same shape.
        self.windows_per_pass = (stream_length - 1) // self.seq_len
        self._pass = 0  # completed passes over the streams
        self._window = 0  # index of the next window in this pass
        self.wrapped = False

    def next_batch(self):
        """(inputs, targets), each (batch_size, seq_len) int64."""
        self.wrapped = False
        if self._window == self.windows_per_pass:
            self._pass, self._window, self.wrapped = self._pass + 1, 0, True
        start = self._window * self.seq_len
        block = np.asarray(self._streams[:, start:start + self.seq_len + 1], dtype=np.int64)
        self._window += 1
        return np.ascontiguousarray(block[:, :-1]), np.ascontiguousarray(block[:, 1:])

    @property
    def epoch(self) -> float:
        """Passes over the training data so far (a fraction: 1.5 = one and a half)."""
        return self._pass + self._window / self.windows_per_pass

    @property
    def position(self) -> dict:
        """Where the next batch comes from, as JSON-able numbers (for checkpoints)."""
        return {"pass": self._pass, "window": self._window, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "train_chars": self.total_chars}

    def set_position(self, position: dict) -> None:
        """Continue from `position` (from `.position` of a stream over the same data and shape)."""
        if not isinstance(position, dict):
            raise ValueError(f"a data position must be a dict, got {type(position).__name__}")
        shape = {"batch_size": self.batch_size, "seq_len": self.seq_len, "train_chars": self.total_chars}
        for key, expected in shape.items():
            if position.get(key) != expected:
                raise ValueError(f"the data position is for {key}={position.get(key)!r}, this stream has {expected}")
        done, window = position.get("pass"), position.get("window")
        if not (isinstance(done, int) and isinstance(window, int) and done >= 0
                and 0 <= window <= self.windows_per_pass):
            raise ValueError(f"invalid data position: pass={done!r}, window={window!r}")
        self._pass, self._window, self.wrapped = done, window, False
