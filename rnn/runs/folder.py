"""The run folder a training run writes: its lock, config.json, metrics.jsonl, and which run it holds.

    folder = RunFolder.prepare("runs/one")      # created if needed; planted links refused
    with folder.lock():                          # RunLockedError if another run writes there
        folder.check_new_run()                   # RunExistsError: never overwrite a run's checkpoints
        folder.write_config({...})
        with folder.open_metrics() as metrics: ...

Files: latest.safetensors, best.safetensors (written by rnn.checkpoint.format), metrics.jsonl,
config.json, train.lock, all opened through rnn.runs.files (no links followed, regular files
only). A run has a random `run_id`, recorded in config.json and in every checkpoint:
resuming into a folder that holds another run is refused.
What this module must not hold: the training itself (rnn.training.loop), or reading runs for plots (rnn.runs.reader).
"""

import datetime
import json
import os
import secrets
from pathlib import Path

from rnn.checkpoint.header import read_meta
from rnn.errors import ArgumentError, Setting, UserError
from rnn.runs.files import (check_entries, create_new, exists, open_for_appending, open_for_update, prepare_folder,
                       read_bytes, remove_temporaries, write_atomically)
from rnn.runs.reader import CONFIG_FILE, MAX_METRICS_BYTES, METRICS_FILE, parse_record, read_config

LATEST, BEST = "latest.safetensors", "best.safetensors"
LOCK_FILE = "train.lock"
PID_CHARS = 20  # the most a lock holder's PID can take (a 64-bit number)
RUN_FILES = (LATEST, BEST, METRICS_FILE, CONFIG_FILE, LOCK_FILE)


class RunLockedError(UserError, RuntimeError):
    """Another training run is writing to the same output directory."""


class RunExistsError(UserError, RuntimeError):
    """The output directory holds the checkpoints of an earlier run and this run does not resume it."""


class RunRewindError(UserError, RuntimeError):
    """Resuming an earlier checkpoint of the folder's run would discard its later work."""


def new_run_id() -> str:
    # From the operating system's randomness: minigrad's generator (the training's) is untouched.
    return secrets.token_hex(8)


def dated_run_folder(parent="runs") -> Path:
    """A run folder that does not exist yet: parent/<date_time>, with -2, -3, ... if taken."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    candidate = Path(parent) / stamp
    suffix = 2
    while candidate.exists():
        candidate = Path(parent) / f"{stamp}-{suffix}"
        suffix += 1
    return candidate


def run_checkpoints(path) -> dict:
    """{"latest": file, "best": file} of run folder `path`, those it holds (ArgumentError if
    neither); a checkpoint file given as such is {"checkpoint": path}. A run folder's entries
    are read by its rules (rnn.runs.files): load them with follow=False."""
    path = Path(path)
    if not path.is_dir():
        return {"checkpoint": path}
    found = {name: path / file_name for name, file_name in (("latest", LATEST), ("best", BEST))
             if exists(path / file_name)}
    if not found:
        raise ArgumentError(f"{path} holds neither {LATEST} nor {BEST}")
    return found


def checkpoint_to_sample(found: dict) -> tuple:
    """(file, follow) of the checkpoint to sample from, of run_checkpoints()'s `found`: a file
    given as such (links followed: the caller named it), else the run's best, else its latest
    (no link followed)."""
    if "checkpoint" in found:
        return found["checkpoint"], True
    return found.get("best") or found["latest"], False


class RunLock:
    """An exclusive lock on out_dir/train.lock for the duration of a run.

    With fcntl (POSIX) the operating system releases the lock when the process dies, even
    by SIGKILL, so a crashed run never blocks the next one. Elsewhere the file itself is
    the lock and is removed at the end.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_FILE
        self.file = None
        self.owns_file = False  # True where the file itself is the lock (no fcntl)

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            fcntl = None
        if fcntl is None:
            try:
                self.file = os.fdopen(create_new(self.path), "w")
            except FileExistsError:
                raise RunLockedError(f"{self.path.parent} is in use by another training run "
                                     f"(remove {self.path} if that run is gone)") from None
        else:
            self.file = open_for_update(self.path)  # never through a link: truncate() below
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # A bounded prefix, as bytes: the file is the folder's, and anyone may have filled it.
                owner = os.pread(self.file.fileno(), PID_CHARS + 1, 0).strip()
                owner = owner.decode() if owner.isdigit() and len(owner) <= PID_CHARS else "unknown"
                self.file.close()
                raise RunLockedError(f"{self.path.parent} is in use by another training run (pid {owner}); "
                                     f"wait for it or choose another output directory") from None
            self.file.seek(0)
            self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        self.owns_file = fcntl is None
        return self

    def __exit__(self, *exc):
        self.file.close()  # releases the flock
        if self.owns_file:
            self.path.unlink(missing_ok=True)
        return False


class RunFolder:
    """The output directory of one training run (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.latest, self.best = self.path / LATEST, self.path / BEST
        self.metrics, self.config = self.path / METRICS_FILE, self.path / CONFIG_FILE

    @classmethod
    def prepare(cls, path) -> "RunFolder":
        """Create the folder if needed, check it is writable, and refuse (one line) a planted
        link or FIFO among its files before anything is written."""
        path = prepare_folder(path)
        check_entries(path, RUN_FILES)
        return cls(path)

    def lock(self) -> RunLock:
        return RunLock(self.path)

    def remove_temporaries(self) -> None:
        """Remove what a killed write left (the checkpoints', config.json's, metrics.jsonl's)."""
        remove_temporaries(self.path, (LATEST, BEST, CONFIG_FILE, METRICS_FILE))

    def check_new_run(self) -> None:
        """Refuse a fresh run in a folder holding checkpoints: never overwrite a run by repeating a command."""
        if exists(self.latest) or exists(self.best):
            raise RunExistsError(f"{self.path} already holds a run's checkpoints: continue it with ",
                                 Setting("resume", self.latest), ", or choose another ", Setting("out"))

    def holds_run(self, resume, run_id) -> bool:
        """Whether this folder holds the run of checkpoint `resume` (with `run_id`); False for a new
        or empty folder. Raises RunExistsError if it holds another run."""
        if not any(exists(path) for path in (self.latest, self.best, self.config)):
            return False  # a new or empty folder: the resumed run continues there
        try:
            if os.path.samefile(Path(resume).parent, self.path):
                return True  # the folder's own checkpoint (a run from before run ids included)
        except OSError:
            pass
        folder_run_id = self.run_id()
        if run_id is not None and folder_run_id == run_id:
            return True  # e.g. a copy of the run's checkpoint kept elsewhere
        raise RunExistsError(
            f"{self.path} holds another run (run id {folder_run_id or 'unknown'}, {resume} is from "
            f"{run_id or 'a run without an id'}): resuming there would replace its checkpoints and metrics; "
            f"choose another ", Setting("out"), f", or resume that folder's own {LATEST}")

    def check_rewind(self, resume, step: int, rewind: bool):
        """Resuming checkpoint `resume` (at `step`) of this folder's own run: the step of the folder's
        latest checkpoint if it is later (its work would be replaced: RunRewindError unless `rewind`),
        else None."""
        if not exists(self.latest):
            return None
        latest_step = read_meta(self.latest, follow=False).get("step")
        if not isinstance(latest_step, int) or isinstance(latest_step, bool) or latest_step <= step:
            return None
        if not rewind:
            raise RunRewindError(
                f"{resume} is at step {step} but {self.latest} is at step {latest_step}: resuming from it would "
                f"replace {LATEST} and drop the metrics after step {step}; give ", Setting("rewind"),
                " to do that, or ", Setting("out"), " to continue it in another folder")
        return latest_step

    def run_id(self):
        """The run id recorded here (config.json, else the latest or best checkpoint), or None."""
        run_id = read_config(self.config).get("run_id")
        if run_id is None:
            for path in (self.latest, self.best):
                if exists(path):
                    run_id = read_meta(path, follow=False).get("run_id")
                    break
        # Only a plausible id (it is printed): what a hostile file holds is not.
        return run_id if isinstance(run_id, str) and 0 < len(run_id) <= 64 and run_id.isalnum() else None

    def write_config(self, record: dict) -> None:
        """config.json: what this run is (its settings, model, text, and the recipe's choice)."""
        write_atomically(self.config, (json.dumps(record, indent=2) + "\n").encode("utf-8"))

    def start_metrics(self, resumed_step) -> None:
        """A fresh run (`resumed_step` None) starts a fresh curve; a resumed one drops the lines
        after its step (and lines that are not records)."""
        if resumed_step is None:
            if exists(self.metrics):
                self.metrics.unlink()
            return
        if not exists(self.metrics):
            return
        text = read_bytes(self.metrics, MAX_METRICS_BYTES, what="metrics file").decode("utf-8", errors="replace")
        kept = [line for line in text.splitlines()
                if (parse_record(line)[0] or {}).get("step", resumed_step + 1) <= resumed_step]
        write_atomically(self.metrics, "".join(line + "\n" for line in kept).encode("utf-8"))

    def open_metrics(self):
        """metrics.jsonl, for appending (one JSON record a line)."""
        return open_for_appending(self.metrics)
