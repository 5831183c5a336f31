"""The thread count: chosen by measuring (minigrad.threads.ThreadChooser, with injected
timings: no timed assertions), the cores a process may use, and the user's override."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest

from minigrad import threads
from minigrad.threads import DEGRADED, PROBE_UNITS, RECHECK_SECONDS, ThreadChooser, available_cores, cgroup_cpu_quota


def run(chooser, seconds_of, units):
    """Show `chooser` `units` units whose time depends on the count it picks; the counts it ran."""
    counts = []
    for _ in range(units):
        counts.append(chooser.threads)
        chooser.observe(seconds_of(chooser.threads))
    return counts


def test_the_probe_takes_the_faster_count_and_ignores_the_first_unit_after_a_change():
    quiet = ThreadChooser(2)
    # first unit of each count untimed (a compile: 100 s), then PROBE_UNITS timed
    counts = run(quiet, lambda n: 100.0 if not quiet.reference and quiet._untimed else {2: 0.01, 1: 0.018}[n],
                 2 * (PROBE_UNITS + 1))
    assert counts == [1] * (PROBE_UNITS + 1) + [2] * (PROBE_UNITS + 1)
    assert quiet.decided and quiet.threads == 2 and quiet.record()["threads"] == 2
    loaded = ThreadChooser(2)
    counts = run(loaded, lambda n: {2: 0.08, 1: 0.02}[n], 2 * (PROBE_UNITS + 1))
    assert loaded.threads == 1


def test_a_count_far_slower_than_one_thread_is_dropped_after_one_unit():
    """Beside a busy process a unit on two threads took 0.8 s against 0.036 s on one (measured
    here, eval of a 2x256 model): the probe of two threads stops after its first unit."""
    loaded = ThreadChooser(2)
    counts = run(loaded, lambda n: {2: 0.8, 1: 0.036}[n], PROBE_UNITS + 1 + 5)
    assert counts == [1] * (PROBE_UNITS + 1) + [2] + [1] * 4
    assert loaded.decided and loaded.threads == 1


def test_more_threads_are_not_probed_while_the_machine_has_no_idle_core_for_them():
    """Measured here beside one busy process: a single 2-thread unit took 2.6 s against 0.04 s
    on one. With the machine's CPU times showing no idle core, two threads are not tried at
    all; once a core is idle again, the periodic check tries them."""
    ticks = {"idle": 0, "total": 0, "idle_share": 0.0}  # of a 2-CPU machine, per 1 s of work

    def cpu_clock():
        return ticks["idle"], ticks["total"]

    def seconds_of(count):
        ticks["total"] += 200
        ticks["idle"] += int(200 * ticks["idle_share"])
        return {2: 2.6, 1: 0.04}[count] if ticks["idle_share"] == 0 else {2: 0.01, 1: 0.02}[count]

    chooser = ThreadChooser(2, cpu_clock=cpu_clock)
    counts = run(chooser, seconds_of, 50)
    assert set(counts) == {1} and chooser.decided and chooser.threads == 1
    ticks["idle_share"] = 0.5  # the other process ended: one of the two CPUs idle
    run(chooser, seconds_of, int(RECHECK_SECONDS / 0.02) + 3 * PROBE_UNITS)
    assert chooser.threads == 2
    assert json.dumps(chooser.record(), allow_nan=False)  # a count never tried is written as null, not Infinity


def test_units_that_compile_are_not_timed_and_cannot_drop_their_count():
    """Measured here: on the second run after a cold cache the first units on two threads
    compiled the kernels only two threads call (2.0 s against 25 ms a step on one thread).
    Without the compile flag the probe dropped two threads for the next 10 s of work."""
    chooser = ThreadChooser(2)
    compiling = {"units": 2}  # the first two units at 2 threads compile

    def step():
        count = chooser.threads
        compiled = count == 2 and compiling["units"] > 0
        compiling["units"] -= compiled
        chooser.observe(2.0 if compiled else {2: 0.013, 1: 0.025}[count], compiled=compiled)
        return count

    counts = [step() for _ in range(PROBE_UNITS + 1 + 2 + PROBE_UNITS)]
    assert counts == [1] * (PROBE_UNITS + 1) + [2] * (2 + PROBE_UNITS)
    assert chooser.decided and chooser.threads == 2
    assert chooser.reference[2] == 0.013  # the compiling units are in no median
    # the same timings without the flag: two threads are dropped after their first unit
    unflagged = ThreadChooser(2)
    run(unflagged, lambda n: 2.0 if n == 2 else 0.025, PROBE_UNITS + 2)
    assert unflagged.decided and unflagged.threads == 1


def test_the_idle_cores_are_counted_from_the_last_compile():
    """On a cold cache the first step compiles here while a helper process compiles on the
    other core: the machine looks busy. What counts for probing two threads is whether a core
    was idle during the units after it."""
    ticks = {"idle": 0, "total": 0}

    def cpu_clock():
        return ticks["idle"], ticks["total"]

    chooser = ThreadChooser(2, cpu_clock=cpu_clock)
    ticks["total"] += 2000  # the compile: both cores busy for 10 s
    chooser.observe(10.0, compiled=True)
    counts = []
    for _ in range(PROBE_UNITS + 1 + PROBE_UNITS):
        counts.append(chooser.threads)
        ticks["total"] += 2
        ticks["idle"] += 1  # one of the two cores idle from then on
        chooser.observe({2: 0.013, 1: 0.025}[chooser.threads])
    assert counts == [1] * PROBE_UNITS + [2] * (PROBE_UNITS + 1)
    assert chooser.threads == 2


def test_unit_tells_whether_numba_compiled_during_it(monkeypatch):
    seen = []
    chooser = ThreadChooser(2, fixed=1)
    monkeypatch.setattr(chooser, "observe", lambda seconds, work=1.0, compiled=False: seen.append(compiled))

    @numba.njit
    def twice(x):
        return 2 * x

    with chooser.unit():
        twice(1.0)  # compiles for float64
    with chooser.unit():
        twice(2.0)  # already compiled
    assert seen == [True, False]


def test_a_slowdown_makes_it_measure_again_and_switch():
    chooser = ThreadChooser(2)
    run(chooser, lambda n: {2: 0.01, 1: 0.018}[n], 2 * (PROBE_UNITS + 1))
    assert chooser.threads == 2
    # another process takes a core: 2 threads now 8x slower, 1 thread a little slower
    counts = run(chooser, lambda n: {2: 0.08, 1: 0.025}[n], 3 * PROBE_UNITS)
    assert chooser.threads == 1 and chooser.record()["switches"] == 1
    assert counts.count(2) <= 2 * PROBE_UNITS  # the slow count ran no longer than it takes to notice and probe


def test_a_load_that_goes_away_is_found_by_the_periodic_check():
    chooser = ThreadChooser(2)
    run(chooser, lambda n: {2: 0.08, 1: 0.02}[n], 2 * (PROBE_UNITS + 1))
    assert chooser.threads == 1
    # the load goes away: nothing gets slower, so only the periodic check can find out
    run(chooser, lambda n: {2: 0.01, 1: 0.02}[n], int(RECHECK_SECONDS / 0.02) + 3 * PROBE_UNITS)
    assert chooser.threads == 2


def test_a_confirmed_choice_waits_longer_for_the_next_check():
    chooser = ThreadChooser(2)
    run(chooser, lambda n: {2: 0.01, 1: 0.02}[n], 2 * (PROBE_UNITS + 1))
    waits = [chooser.recheck_after]
    for _ in range(3):
        checks = len(chooser.history)
        while len(chooser.history) == checks:
            chooser.observe({2: 0.01, 1: 0.02}[chooser.threads])
        waits.append(chooser.recheck_after)
    assert waits == [RECHECK_SECONDS, 2 * RECHECK_SECONDS, 4 * RECHECK_SECONDS, 8 * RECHECK_SECONDS]
    assert chooser.threads == 2


def test_noise_below_the_threshold_does_not_trigger_a_check():
    chooser = ThreadChooser(2)
    run(chooser, lambda n: {2: 0.01, 1: 0.02}[n], 2 * (PROBE_UNITS + 1))
    checks = len(chooser.history)
    run(chooser, lambda n: 0.01 * (DEGRADED - 0.1), 50)  # 0.7 s of work: before the periodic check
    assert len(chooser.history) == checks and chooser.threads == 2


def test_one_core_or_a_fixed_count_never_probes():
    for chooser, count in ((ThreadChooser(1), 1), (ThreadChooser(2, fixed=2), 2), (ThreadChooser(2, fixed=1), 1)):
        assert run(chooser, lambda n: {2: 0.08, 1: 0.02}[n], 50) == [count] * 50
        assert chooser.decided


def test_work_is_timed_per_unit_of_work():
    chooser = ThreadChooser(2)
    # 2 threads: 10 s for 1000 characters; 1 thread: 1 s for 10 characters (slower per character)
    for _ in range(2 * (PROBE_UNITS + 1)):
        work = 1000 if chooser.threads == 2 else 10
        chooser.observe(10.0 if work == 1000 else 1.0, work)
    assert chooser.threads == 2


def test_unit_sets_the_count_for_its_body_and_puts_the_old_one_back():
    chooser = ThreadChooser(2, fixed=1)
    before = numba.get_num_threads()
    with chooser.unit():
        inside = numba.get_num_threads()
    assert inside == 1 and numba.get_num_threads() == before


def test_available_cores_is_the_lowest_limit(tmp_path):
    assert available_cores(numba_threads=8, affinity=4, quota=None) == 4
    assert available_cores(numba_threads=8, affinity=4, quota=1.5) == 2
    assert available_cores(numba_threads=2, affinity=4, quota=0.5) == 1
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 3.0


def test_numba_num_threads_fixes_the_count(monkeypatch):
    monkeypatch.setenv(threads.OVERRIDE_ENV, str(numba.config.NUMBA_NUM_THREADS))
    chooser = ThreadChooser.for_this_machine()
    assert chooser.fixed == numba.config.NUMBA_NUM_THREADS and chooser.decided
    monkeypatch.delenv(threads.OVERRIDE_ENV)
    assert ThreadChooser.for_this_machine().fixed is None


def test_train_respects_numba_num_threads_and_records_it(tmp_path):
    """The override end to end: a run under NUMBA_NUM_THREADS=1 runs and records 1 thread."""
    text = tmp_path / "text.txt"
    text.write_text("the cat sees the red ball.\n" * 400)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-m", "cli.main", "train", str(text), "--out", str(tmp_path / "run"),
                             "--steps", "12", "--layers", "1", "--hidden", "16", "--batch-size", "4",
                             "--seq-len", "8", "--eval-every", "0", "--sample-every", "0", "--json"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == {"threads": 1, "how": "fixed by NUMBA_NUM_THREADS"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["threads"] == {"threads": 1, "how": "fixed by NUMBA_NUM_THREADS"}
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(record["threads"] == 1 for record in metrics)
