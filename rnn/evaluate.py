"""Evaluation of a char-LM on a text: mean nats per predicted character, bits/char, perplexity.

The text is read as one stream, in chunks, with the hidden state carried from chunk to
chunk, so every character but the first is predicted from everything before it. A text
file is streamed the same way (`evaluate_file`): it is never held whole in memory. No
graph is recorded and the model runs in eval mode (no dropout). Nothing here trains.

`evaluate_windows` scores a text the way nanoGPT's estimate_loss scores its val split: the
mean loss over random windows, each read from a zero state (no context before its start),
so that a recurrent model's figure can stand beside a transformer's of the same block size.
It is usually higher than the stream's, which gives every prediction the whole text before it.

A chunk makes one row of logits per character, each as long as the vocabulary; how many
rows a call may make is bounded (`rows_per_call`), so that memory stays the same for a
checkpoint whose vocabulary is 100,000 characters (one from a file no one checked).
"""

import math
from contextlib import contextmanager

import numpy as np

import minigrad as mg
from minigrad.threads import ThreadChooser

from rnn.data.ids import encoded_array, encoded_chunks
from rnn.data.text import TextError
from rnn.data.vocab import apply_unknown_policy
from rnn.errors import ArgumentError, Setting

# Characters per forward call: long enough that Python overhead is small, short enough
# that the logits of one chunk stay small.
EVAL_CHUNK = 1024
# An array of ids is scored as one stream in pieces of this many (converted to int64 a piece
# at a time: a memory-mapped text of a billion characters is never copied whole).
STREAM_PIECE = 1 << 20
# The most logits (rows x vocabulary) one forward call may make. The loss holds about three
# arrays of that size (logits, softmax, the head's output), so 2**21 elements bounds them to
# ~25 MB in float32, ~50 MB in float64, whatever the vocabulary: 20 rows a call at 100,000
# characters (the uncut 1024 rows there took 1 GB). Below 2048 characters (any alphabet
# text) a call still predicts a whole EVAL_CHUNK, so nothing changes for them.
LOGITS_BUDGET = 2 ** 21
# Windows scored side by side in one forward call (evaluate_windows), as many as a training
# batch: the recurrent products get 32 rows, not one. Fewer when their logits would pass
# LOGITS_BUDGET; a window longer than the budget alone is read in pieces, its state carried.
WINDOWS_PER_CALL = 32


def rows_per_call(vocab_size: int, wanted: int) -> int:
    """`wanted` rows of logits, or fewer (at least one) so that rows x vocab_size <= LOGITS_BUDGET."""
    return max(1, min(wanted, LOGITS_BUDGET // max(1, vocab_size)))


def metrics_from_nats(loss_nats: float, chars: int) -> dict:
    """The dict evaluate() returns, from a mean loss in nats per character."""
    try:
        perplexity = math.exp(loss_nats)
    except OverflowError:
        perplexity = math.inf
    return {"loss_nats": loss_nats, "bpc": loss_nats / math.log(2), "perplexity": perplexity, "chars": chars}


@contextmanager
def inference(model):
    """The body runs `model` in eval mode (no dropout) with no graph recorded; its mode is
    restored after, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        with mg.no_grad():
            yield
    finally:
        model.train(was_training)


def evaluate_ids(model, ids, chunk_size: int = EVAL_CHUNK, streams: int = 1, threads=None, on_progress=None) -> dict:
    """Metrics of predicting ids[1:] from ids[:-1] (any 1-D int array, a memmap too).

    With `streams` > 1 the text is cut into that many contiguous parts read side by side
    as one batch, each carrying its own state (the tail left over joins the last part).
    Every character is still predicted once; only the first characters of parts 2.. lose
    the context before their cut, so the loss is a hair higher than with one stream, and
    the evaluation is up to `streams` times faster (the training loop uses this).

    A call predicts about `chunk_size` positions, fewer when the vocabulary is so large that
    their logits would pass LOGITS_BUDGET; the result does not depend on it (up to rounding).

    Each call runs on the thread count `threads` (a minigrad.threads.ThreadChooser; a new one
    for this machine if None) measures and chooses. `on_progress(done, of)`, if given, is
    called after each call with the characters predicted so far and in all.
    """
    count = len(ids)
    if count < 2:
        raise TextError(f"evaluation needs at least 2 characters (one to predict), got {count}")
    if streams == 1:  # one stream: the streaming evaluation (the same windows, the same loss)
        return evaluate_chunks(model, (ids[start:start + STREAM_PIECE] for start in range(0, count, STREAM_PIECE)),
                               chunk_size, threads=threads, on_progress=on_progress, total=count)
    per_call = rows_per_call(model.config.vocab_size, chunk_size)
    # `streams` rows at least per call: with a vast vocabulary, fewer parts (a hair lower loss).
    streams = max(1, min(streams, (count - 1) // chunk_size, per_call))
    part = (count - 1) // streams  # predictions per part; parts start at 0, part, 2 * part, ...
    window = max(1, per_call // streams)  # per part and call: about `per_call` positions in all
    threads = threads or ThreadChooser.for_this_machine()
    report = on_progress or (lambda done, of: None)
    total_nats = 0.0  # accumulated in float64 whatever the model's dtype
    state = None
    with inference(model):
        for start in range(0, part, window):
            stop = min(start + window, part)
            rows = np.stack([np.asarray(ids[s * part + start:s * part + stop + 1]) for s in range(streams)])
            with threads.unit((stop - start) * streams):
                loss, state = model.loss(rows[:, :-1].astype(np.int64), rows[:, 1:].astype(np.int64), state)
            total_nats += float(loss.data) * (stop - start) * streams
            report(stop * streams, count - 1)
        # The tail (fewer than `streams` predictions): the last part reads on, alone.
        last = [tuple(s[streams - 1:] for s in layer) for layer in state] if state else None
        for start in range(streams * part, count - 1, per_call):
            stop = min(start + per_call, count - 1)
            window = np.asarray(ids[start:stop + 1], dtype=np.int64)[None, :]
            with threads.unit(stop - start):
                loss, last = model.loss(window[:, :-1], window[:, 1:], last)
            total_nats += float(loss.data) * (stop - start)
            report(stop, count - 1)
    return metrics_from_nats(total_nats / (count - 1), count - 1)


def evaluate_chunks(model, chunks, chunk_size: int = EVAL_CHUNK, threads=None, on_progress=None,
                    total: int = None) -> dict:
    """evaluate_ids(model, ids) of the ids that `chunks` (1-D int arrays) give one after the
    other, read as one stream: only the ids of one chunk and one window are held at a time, so
    a text of any length is scored in bounded memory. The windows do not depend on how the
    ids are cut into chunks: the loss is exactly the one of the whole array. `threads` and
    `on_progress` as for evaluate_ids; `total`, the number of ids, if known, for the progress."""
    per_call = rows_per_call(model.config.vocab_size, chunk_size)
    threads = threads or ThreadChooser.for_this_machine()
    report = on_progress or (lambda done, of: None)
    of = total - 1 if total else None
    pending = np.empty(0, np.int64)  # ids not yet predicted from, and the last one predicted
    total_nats, count, state = 0.0, 0, None  # total accumulated in float64 whatever the model's dtype
    with inference(model):
        for chunk in chunks:
            pending = np.concatenate([pending, np.asarray(chunk, dtype=np.int64)])
            count += len(chunk)
            while len(pending) > per_call:  # a whole window: per_call predictions
                window = pending[None, :per_call + 1]
                with threads.unit(per_call):
                    loss, state = model.loss(window[:, :-1], window[:, 1:], state)
                total_nats += float(loss.data) * per_call
                pending = pending[per_call:]
                report(count - len(pending), of)
        if len(pending) > 1:  # the last window, shorter
            window = pending[None, :]
            with threads.unit(len(pending) - 1):
                loss, state = model.loss(window[:, :-1], window[:, 1:], state)
            total_nats += float(loss.data) * (len(pending) - 1)
            report(count - 1, of)
    if count < 2:
        raise TextError(f"evaluation needs at least 2 characters (one to predict), got {count}")
    return metrics_from_nats(total_nats / (count - 1), count - 1)


def window_starts(count: int, windows: int, window_len: int, seed: int) -> np.ndarray:
    """Where `windows` windows of `window_len` predictions start in a text of `count` ids: uniform
    in [0, count - window_len - 1] (the last window's last target is the text's last id), as
    nanoGPT's get_batch draws them, from numpy's Generator seeded with `seed`. ArgumentError for
    no windows or an empty one, TextError for a text shorter than window_len + 1."""
    for name, value in (("windows", windows), ("window_len", window_len)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ArgumentError(Setting(name), f" must be a positive integer, got {value!r}")
    if count < window_len + 1:
        raise TextError(f"windows of {window_len} predictions need a text of at least {window_len + 1} characters, "
                        f"got {count} (", Setting("window_len"), " sets their length)")
    return np.random.default_rng(seed).integers(0, count - window_len, size=windows)


def evaluate_windows(model, ids, windows: int, window_len: int = 256, seed: int = 0, threads=None,
                     on_progress=None) -> dict:
    """Metrics of `windows` windows of `ids` (any 1-D int array, a memmap too) drawn by
    window_starts, each read from a zero state: the mean cross-entropy of predicting
    ids[i + 1:i + window_len + 1] from ids[i:i + window_len] over all windows x window_len
    predictions (nanoGPT's estimate_loss on its val split), with "windows", "window_len" and
    "seed" beside the metrics. The same seed draws the same windows.

    WINDOWS_PER_CALL windows are read side by side in one forward call, fewer when their
    logits would pass LOGITS_BUDGET; `threads` and `on_progress(done, of)` (windows) as for
    evaluate_ids.
    """
    starts = window_starts(len(ids), windows, window_len, seed)
    per_call = rows_per_call(model.config.vocab_size, WINDOWS_PER_CALL * window_len)
    batch = max(1, min(windows, per_call // window_len))
    piece = max(1, per_call // batch)  # positions of each window per call: all of it, unless it alone passes the budget
    offsets = np.arange(window_len + 1)
    threads = threads or ThreadChooser.for_this_machine()
    report = on_progress or (lambda done, of: None)
    total_nats = 0.0  # accumulated in float64 whatever the model's dtype
    with inference(model):
        for first in range(0, windows, batch):
            rows = np.asarray(ids[starts[first:first + batch, None] + offsets], dtype=np.int64)
            state = None  # a zero state: no context before the window
            for start in range(0, window_len, piece):
                stop = min(start + piece, window_len)
                with threads.unit(len(rows) * (stop - start)):
                    loss, state = model.loss(rows[:, start:stop], rows[:, start + 1:stop + 1], state)
                total_nats += float(loss.data) * len(rows) * (stop - start)
            report(first + len(rows), windows)
    result = metrics_from_nats(total_nats / (windows * window_len), windows * window_len)
    return dict(result, windows=windows, window_len=window_len, seed=seed)


@contextmanager
def _named_by(path):
    """A TextError raised in the body names the file `path`, as the message about unknown
    characters does (and one from evaluate() of a string, which has no file, does not)."""
    try:
        yield
    except TextError as error:
        if str(path) in str(error):
            raise
        raise type(error)(f"{path}: ", *error.parts) from None


def _check_vocab(model, vocab):
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} characters, the model {model.config.vocab_size}")


def evaluate_file(model, vocab, path, unknown: str = "refuse") -> dict:
    """evaluate(model, vocab, text, unknown) of the text of the UTF-8 file `path`, streamed from
    the file in chunks (never held whole). TextError, naming the file, for a file that cannot be
    read as text, or (under unknown="refuse") characters not in `vocab`."""
    _check_vocab(model, vocab)
    with _named_by(path):
        count, chunks = encoded_chunks(path, vocab, unknown)
        if count < 2:
            raise TextError(f"evaluation needs a text of at least 2 characters, got {count}")
        result = evaluate_chunks(model, chunks, total=count)  # TextError if fewer than 2 are left
    return dict(result, unknown_chars=count - (result["chars"] + 1))


def evaluate_file_windows(model, vocab, path, windows: int, window_len: int = 256, seed: int = 0,
                          unknown: str = "refuse", on_progress=None) -> dict:
    """evaluate_windows of the text of the UTF-8 file `path` in `vocab` (as evaluate_file reads
    it, `unknown` included), with "unknown_chars". The windows are drawn over the whole text,
    so its ids are read once into one array (rnn.data.ids.encoded_array: 2 bytes a character
    for a vocabulary of up to 65,536, the text itself never held as a string): 200 MB for a
    100-million-character text. TextError, naming the file, as evaluate_file."""
    _check_vocab(model, vocab)
    with _named_by(path):
        count, ids = encoded_array(path, vocab, unknown)
        result = evaluate_windows(model, ids, windows, window_len, seed, on_progress=on_progress)
    return dict(result, unknown_chars=count - len(ids))


def evaluate(model, vocab, text: str, unknown: str = "refuse") -> dict:
    """{"loss_nats", "bpc", "perplexity", "chars", "unknown_chars"} of `model` on `text`, read
    as one stream.

    `chars` is the number of predicted characters. A character of `text` that is not in
    `vocab` is a TextError naming it (`unknown="refuse"`), or, with `unknown="skip"`, left
    out of the stream (neither predicted nor fed): `unknown_chars` counts them.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    _check_vocab(model, vocab)
    text, skipped = apply_unknown_policy(vocab, text, unknown)
    if len(text) < 2:
        left = f" once {skipped} unknown characters are left out" if skipped else ""
        raise TextError(f"evaluation needs a text of at least 2 characters, got {len(text)}{left}")
    return dict(evaluate_ids(model, vocab.encode(text)), unknown_chars=skipped)
