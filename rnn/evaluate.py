"""Evaluation of a char-LM on a text: mean nats per predicted character, bits/char, perplexity.

The text is read as one stream, in chunks, with the hidden state carried from chunk to
chunk, so every character but the first is predicted from everything before it. A text
file is streamed the same way (`evaluate_file`): it is never held whole in memory. No
graph is recorded and the model runs in eval mode (no dropout). Nothing here trains.

A chunk makes one row of logits per character, each as long as the vocabulary; how many
rows a call may make is bounded (`rows_per_call`), so that memory stays the same for a
checkpoint whose vocabulary is 100,000 characters (one from a file no one checked).
"""

import math

import numpy as np

import minigrad as mg
from minigrad.threads import ThreadChooser

from rnn.data.ids import encoded_chunks
from rnn.data.text import TextError
from rnn.data.vocab import apply_unknown_policy

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
    was_training = model.training
    model.eval()
    total_nats = 0.0  # accumulated in float64 whatever the model's dtype
    state = None
    try:
        with mg.no_grad():
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
    finally:
        model.train(was_training)
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
    was_training = model.training
    model.eval()
    try:
        with mg.no_grad():
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
    finally:
        model.train(was_training)
    if count < 2:
        raise TextError(f"evaluation needs at least 2 characters (one to predict), got {count}")
    return metrics_from_nats(total_nats / (count - 1), count - 1)


def evaluate_file(model, vocab, path, unknown: str = "refuse") -> dict:
    """evaluate(model, vocab, text, unknown) of the text of the UTF-8 file `path`, streamed from
    the file in chunks (never held whole). TextError, naming the file, for a file that cannot be
    read as text, or (under unknown="refuse") characters not in `vocab`."""
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} characters, the model {model.config.vocab_size}")
    try:
        count, chunks = encoded_chunks(path, vocab, unknown)
        if count < 2:
            raise TextError(f"evaluation needs a text of at least 2 characters, got {count}")
        result = evaluate_chunks(model, chunks, total=count)  # TextError if fewer than 2 are left
    except TextError as error:  # named by the file, as the message about unknown characters is not
        if str(path) in str(error):
            raise
        raise type(error)(f"{path}: ", *error.parts) from None
    return dict(result, unknown_chars=count - (result["chars"] + 1))


def evaluate(model, vocab, text: str, unknown: str = "refuse") -> dict:
    """{"loss_nats", "bpc", "perplexity", "chars", "unknown_chars"} of `model` on `text`, read
    as one stream.

    `chars` is the number of predicted characters. A character of `text` that is not in
    `vocab` is a TextError naming it (`unknown="refuse"`), or, with `unknown="skip"`, left
    out of the stream (neither predicted nor fed): `unknown_chars` counts them.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} characters, the model {model.config.vocab_size}")
    text, skipped = apply_unknown_policy(vocab, text, unknown)
    if len(text) < 2:
        left = f" once {skipped} unknown characters are left out" if skipped else ""
        raise TextError(f"evaluation needs a text of at least 2 characters, got {len(text)}{left}")
    return dict(evaluate_ids(model, vocab.encode(text)), unknown_chars=skipped)
