"""Ctrl-C and SIGTERM while training: `_GracefulInterrupt`, the signal handlers that
rnn.training.loop.train installs around its loop, so that a first signal stops the run after
the current step (and saves it) and a second one interrupts at once.

What this module must not hold: the loop itself or what it saves (rnn.training.loop).
"""

import signal
import threading


class _GracefulInterrupt:
    """While training: the first Ctrl-C (or SIGTERM) asks the loop to stop after the current step
    (and save), or stops an evaluation or a sample at once (_Run.interruptible); a second one
    interrupts at once. Only in the main thread, where signals are delivered."""

    def __init__(self, run):  # rnn.training.loop._Run
        self.run, self.previous = run, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (kill, a container stopping) saves like Ctrl-C does.
            self.previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        if self.run.stop_requested or self.run.phase == "interruptible":
            raise KeyboardInterrupt
        self.run.stop_requested = True

    def __exit__(self, *exc):
        for number, handler in (self.previous or {}).items():
            signal.signal(number, handler)
        return False
