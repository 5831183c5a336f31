"""How many threads minigrad's parallel kernels use: chosen by measuring, and chosen again
when the machine's load changes.

Why measure. A parallel kernel splits its work over the threads and they meet when it is
done (the fused recurrence, split by hidden units, meets after every time step). On a
quiet machine two threads beat one. When another process wants a core, one of ours is
descheduled now and then and the other waits for it at every meeting: two threads then
run several times slower than one (measured on 2 cores beside one busy process: an eval
took 128 s with 2 threads, 17 s with 1). Which count wins depends on the load at the
moment, which no reading of /proc predicts as well as timing the work itself.

So a long job (training steps, the calls of an evaluation, the chunks of sampling) runs
its repeated unit of work through a ThreadChooser:

- probe: it runs a few units with every candidate count (one thread, then the most
  available), the first unit after a change untimed (it may compile or wake threads), and
  takes the count whose median time per unit of work is lowest; a count whose unit takes
  ABORT times the best measured one is dropped at once (under load, two threads' units can
  take 20x one thread's: finishing their probe would cost more than it tells);
- a unit during which Numba compiled a kernel is not timed, and cannot drop its count:
  some kernels are only called with more than one thread (a split of a product into row
  blocks), so the first units on two threads after a run that never tried them compile for
  seconds (measured: 2.0 s against 25 ms for a step of a 1x256 model), which would
  otherwise count as two threads losing to one for the next RECHECK_SECONDS of work;
- re-check: it then tries the other count again, a few units, when the median of the
  last units is DEGRADED times the one it chose on (the load changed), or when
  RECHECK_SECONDS of work have passed since the last check (a load that went away shows
  no slowdown); each re-check that confirms the choice doubles the wait before the next,
  up to MAX_RECHECK_SECONDS, so that a steady machine pays almost nothing for it.

Its clock is the time of the units it is shown (`observe`), never the wall clock: the
decision logic is a pure function of the timings, which tests inject.

The user decides instead by setting NUMBA_NUM_THREADS: the count is then fixed
(`ThreadChooser.for_this_machine` says so). `available_cores` is the most a process may
use: Numba's thread count, the CPUs this process may run on (sched_getaffinity) and the
cgroup's CPU quota (containers), whichever is lowest.

    chooser = ThreadChooser.for_this_machine()
    for batch in batches:
        with chooser.unit(len(batch)):  # sets the thread count, times the unit
            step(batch)
"""

import math
import os
import statistics
import time
from contextlib import contextmanager

import numba
from numba.core import event as numba_event

# Timed units per candidate in a probe (after one untimed unit).
PROBE_UNITS = 3
# Re-check when the recent median time per unit of work passes this many times the one chosen on.
DEGRADED = 1.5
# A count whose unit (even its first, untimed one) takes this many times the best measured
# count's time per unit of work is dropped from its probe at once.
ABORT = 3.0
# More threads than one are probed only while the machine has this much of an idle core per extra thread.
IDLE_PER_THREAD = 0.5
# Seconds of work (as observed) before the first periodic re-check, and the most between two.
RECHECK_SECONDS = 10.0
MAX_RECHECK_SECONDS = 80.0
OVERRIDE_ENV = "NUMBA_NUM_THREADS"


def cgroup_cpu_quota(root="/sys/fs/cgroup"):
    """The CPUs this process's cgroup may use (a float: quota / period), or None when unlimited
    or unknown. Reads cgroup v2's cpu.max, else v1's cpu.cfs_quota_us and cpu.cfs_period_us."""
    try:
        with open(os.path.join(root, "cpu.max")) as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as file:
            quota = int(file.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as file:
            period = int(file.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def cpu_times(path="/proc/stat"):
    """(idle, total) CPU time of all the machine's CPUs since boot, in clock ticks (idle counts
    iowait too), or None where it cannot be read (not Linux)."""
    try:
        with open(path) as file:
            fields = [int(value) for value in file.readline().split()[1:9]]
        return fields[3] + fields[4], sum(fields)
    except (OSError, ValueError, IndexError):
        return None


def available_cores(numba_threads=None, affinity=None, quota=None) -> int:
    """The most threads worth running: the lowest of Numba's thread count, the CPUs this
    process may run on and the cgroup quota (rounded up: 1.5 CPUs can keep 2 threads
    busy part of the time). Arguments, when given, replace what this machine says (tests)."""
    numba_threads = numba.config.NUMBA_NUM_THREADS if numba_threads is None else numba_threads
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota() if quota is None else quota
    limits = [numba_threads, affinity] + ([math.ceil(quota)] if quota else [])
    return max(1, min(limits))


class ThreadChooser:
    """Chooses, unit of work by unit of work, between 1 thread and `most` (see the module's
    docstring). `threads` is the count for the next unit; `observe` takes the time of the
    unit just run. `fixed` (a count the user set) turns the choosing off."""

    def __init__(self, most: int, fixed: int = None, cpu_clock=None):
        self.most = max(1, int(most))
        self.fixed = fixed
        # cpu_clock() -> (idle, total) CPU time of the machine (cpu_times), or None: with it, more
        # threads than one are probed only while the machine has idle cores for them.
        self._cpu_clock = cpu_clock
        self._cpu_mark = cpu_clock() if cpu_clock else None
        # One thread first: it is never the disaster more threads can be on a loaded machine, and
        # its first (untimed) unit takes any compile, so the other count's probe starts clean.
        candidates = [fixed] if fixed else ([1, self.most] if self.most > 1 else [1])
        self.candidates = candidates
        self.chosen = None  # the count chosen by the last probe (None before the first)
        self.reference = {}  # count -> median seconds per unit of work when last measured
        self.history = []  # (work seconds so far, count chosen, {count: median}) of every decision
        self.work_seconds = 0.0  # sum of the observed units' seconds
        self.recent = []  # seconds per unit of work of the last units at the chosen count
        self.recheck_after = RECHECK_SECONDS
        self.last_check = 0.0
        self._probe = list(candidates) if len(candidates) > 1 else []  # counts still to measure
        self._probe_times = []  # timings of the count being probed
        self._untimed = True  # the next unit is the first at a new count: not timed
        self._threads = candidates[0]
        if not self._probe:
            self.chosen = candidates[0]

    @classmethod
    def for_this_machine(cls):
        """A chooser over this machine's available cores, or fixed at NUMBA_NUM_THREADS if the user set it."""
        given = os.environ.get(OVERRIDE_ENV, "").strip()
        fixed = numba.config.NUMBA_NUM_THREADS if given else None
        return cls(available_cores(), fixed=fixed, cpu_clock=cpu_times)

    @property
    def threads(self) -> int:
        """How many threads the next unit of work should run on."""
        return self._threads

    @property
    def decided(self) -> bool:
        """Whether the first probe is over (or there is nothing to choose)."""
        return self.chosen is not None

    def observe(self, seconds: float, work: float = 1.0, compiled: bool = False) -> None:
        """The unit just run at `threads` took `seconds` for `work` (characters, rows...);
        `compiled`: Numba compiled a kernel during it (its time says nothing of the count)."""
        self.work_seconds += seconds
        if compiled:  # it stands for the untimed unit of a new count, or is skipped
            self._untimed = False
            if self._cpu_clock is not None:  # nor do the idle cores count while it compiled
                self._cpu_mark = self._cpu_clock()  # (a compile helper process used the other core)
            return
        per_work = seconds / max(work, 1e-12)
        if self._probe and self._hopeless(per_work):  # its probe would only cost: it lost already
            self._untimed = False
            self._probe_times = [per_work]
            self._end_probe_of(self._probe.pop(0))
            return
        if self._untimed:
            self._untimed = False
            return
        if self._probe:
            self._probe_times.append(per_work)
            if len(self._probe_times) >= PROBE_UNITS:
                self._end_probe_of(self._probe.pop(0))
            return
        self.recent = (self.recent + [per_work])[-PROBE_UNITS:]
        if len(self.recent) < PROBE_UNITS or len(self.candidates) == 1:
            return
        slower = statistics.median(self.recent) > DEGRADED * self.reference[self.chosen]
        if slower or self.work_seconds - self.last_check >= self.recheck_after:
            if slower:
                self.recheck_after = RECHECK_SECONDS
            self.reference[self.chosen] = statistics.median(self.recent)  # what the current count does now
            self._probe = [count for count in self.candidates if count != self.chosen]
            self._probe_next()

    def _hopeless(self, per_work: float) -> bool:
        """Whether a unit of the count being probed took ABORT times the best time per unit of work
        of a count already measured (beside a busy process two threads can be 20x slower than
        one: three more such units would cost seconds for nothing)."""
        others = [seconds for count, seconds in self.reference.items() if count != self._threads]
        return bool(others) and per_work > ABORT * min(others)

    def _end_probe_of(self, count: int) -> None:
        self.reference[count] = statistics.median(self._probe_times)
        self._probe_times = []
        self._probe_next()

    def _probe_next(self) -> None:
        """Switch to the next count to probe, or decide when none is left. A count of more than
        one thread is probed only if the machine had the idle cores for it since the last check:
        beside a busy process one unit on two threads took 2.6 s against 0.04 s on one (measured
        here), so even one such unit would cost more than it tells. It counts as lost until the
        next check."""
        while self._probe:
            count = self._probe[0]
            idle = self._idle_cores()
            if count > 1 and idle is not None and idle < IDLE_PER_THREAD * (count - 1):
                self._probe.pop(0)
                self.reference[count] = math.inf
                continue
            self._switch_to(count)
            return
        self._decide()

    def _idle_cores(self):
        """Cores the machine left idle since the last look (None where that cannot be read)."""
        if self._cpu_clock is None:
            return None
        before, self._cpu_mark = self._cpu_mark, self._cpu_clock()
        if before is None or self._cpu_mark is None or self._cpu_mark[1] <= before[1]:
            return None
        return (self._cpu_mark[0] - before[0]) / (self._cpu_mark[1] - before[1]) * (os.cpu_count() or 1)

    def _decide(self) -> None:
        before = self.chosen
        self.chosen = min(self.candidates, key=lambda c: self.reference[c])
        if before is not None:  # a re-check: a confirmed choice waits longer for the next
            self.recheck_after = (min(2 * self.recheck_after, MAX_RECHECK_SECONDS) if self.chosen == before
                                  else RECHECK_SECONDS)
        self.last_check = self.work_seconds
        self.recent = []
        self.history.append((round(self.work_seconds, 3), self.chosen, dict(self.reference)))
        self._switch_to(self.chosen)

    def _switch_to(self, count: int) -> None:
        if count != self._threads:
            self._untimed = True
        self._threads = count

    @contextmanager
    def unit(self, work: float = 1.0):
        """Run the body as one unit of work on `threads` threads, timed (not when it raises)."""
        before = numba.get_num_threads()
        numba.set_num_threads(self._threads)
        started = time.perf_counter()
        try:
            # Numba's compile events (a kernel loaded from the on-disk cache raises none)
            with numba_event.install_recorder("numba:compile") as compiles:
                yield
        finally:
            numba.set_num_threads(before)
        self.observe(time.perf_counter() - started, work, compiled=bool(compiles.buffer))

    def record(self) -> dict:
        """What was chosen and why, for config.json and the start lines."""
        if self.fixed:
            return {"threads": self.fixed, "how": f"fixed by {OVERRIDE_ENV}"}
        if len(self.candidates) == 1:
            return {"threads": 1, "how": "one core available"}
        switches = sum(1 for before, after in zip(self.history, self.history[1:]) if before[1] != after[1])
        record = {"threads": self.chosen, "how": "measured", "available": self.most, "checks": len(self.history),
                  "switches": switches}
        if self.history:
            first = self.history[0][2]
            record["first_probe_ms_per_unit"] = {str(count): round(1000 * seconds, 4) if math.isfinite(seconds) else None
                                                 for count, seconds in
                                                 first.items()}
        return record

