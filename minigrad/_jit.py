"""The one place that imports Numba, sets the JIT options and decides where compiled code is kept.

Every kernel in minigrad is compiled with `kernel` (or `scalar` for helpers that
kernels call). Nothing here knows about tensors or gradients.

Why the options are what they are:
- cached: compiled machine code is kept on disk, so the second start is fast (like
  cache=True, but in a private folder, see below).
- error_model="numpy": x / 0 gives inf or nan like numpy, instead of raising
  ZeroDivisionError from inside a loop.
- no fastmath: fastmath lets LLVM assume there are no NaNs, which would make the
  NaN checks of anomaly mode and of the trainer lie.

Where the cache lives, and why it is trusted. Numba's cache files are pickles and machine
code, and generated kernels are Python source: whoever can write the folder they are read
from can run code in this process. So every cache folder (ours, `user_cache_dir()`, and the
one Numba's files go to, `kernel_cache_dir()`) must be owned by this user, writable by no
one else, and lie in folders that only this user or root can change (like ssh's StrictModes).
Folders we create are made 0700. A folder the user named (MINIGRAD_CACHE_DIR,
NUMBA_CACHE_DIR) that fails the check is refused with one line (UnsafeCacheDirError); a
default one that fails it is passed over for the next, down to a fresh private folder of
this process. minigrad's kernels keep their Numba cache only there (never in a
`__pycache__` beside the source), through a cache class of our own that also discards a
damaged entry (truncated, corrupt or foreign) and compiles it again instead of failing.
Numba's global configuration and the environment are left as they are.
"""

import atexit
import errno
import glob
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numba
from numba.core import caching

CACHE_ENV = "MINIGRAD_CACHE_DIR"
_log = logging.getLogger("minigrad")


class UnsafeCacheDirError(OSError):
    """A cache folder the user named is not private to this user: using it could run someone else's code."""


def private_problem(directory: Path):
    """Why `directory` may not hold code this process will run, or None if it may: it must be a
    folder owned by this user that no one else can write, and every folder above it must be owned
    by this user or root and, if others can write it, sticky (like /tmp). (No check off POSIX.)"""
    if not hasattr(os, "getuid"):
        return None
    uid = os.getuid()
    real = Path(os.path.realpath(directory))
    status = os.stat(real)
    if not stat.S_ISDIR(status.st_mode):
        return "is not a folder"
    if status.st_uid != uid:
        return f"is owned by uid {status.st_uid}, not by this user (uid {uid})"
    if status.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(status.st_mode):04o})"
    for parent in real.parents:
        status = os.stat(parent)
        if status.st_uid not in (uid, 0):
            return f"lies inside {parent}, which belongs to uid {status.st_uid}"
        if status.st_mode & 0o022 and not status.st_mode & stat.S_ISVTX:
            return f"lies inside {parent}, which other users can write to"
    return None


def _make_private(directory: Path) -> None:
    """Create `directory` and the missing folders above it, each 0700 (makedirs gives the
    folders above the mode of its umask only)."""
    missing = []
    while not os.path.lexists(directory) and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # made meanwhile by someone: the check decides
            pass


def _writable(directory: Path) -> bool:
    """True if we can really create a file in `directory` (os.access lies for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def private_folder(directory: Path, named_by=None):
    """`directory` made (0700) and checked: returned if it is private and writable. If it is not
    private: UnsafeCacheDirError when the user named it (`named_by`: the variable), else None
    (with one warning line). None if it cannot be made or written."""
    directory = Path(os.path.abspath(directory))
    if directory in _private_folders:  # checked before: only this user can have changed it since
        return directory
    try:
        _make_private(directory)
        problem = private_problem(directory)
    except OSError:
        return None
    if problem is not None:
        message = f"{directory} {problem}; cached code is only read from a folder private to this user"
        if named_by:
            raise UnsafeCacheDirError(errno.EPERM, f"{named_by}: {message} (fix its owner and mode, e.g. chmod 700, "
                                                   f"or name another folder)")
        _log.warning("minigrad: not using the cache folder %s", message)
        return None
    if not _writable(directory):
        return None
    _private_folders.add(directory)
    return directory


_private_folders = set()  # folders that passed private_folder's checks in this process
_chosen = {}  # the environment that decides -> the cache folder chosen for it


def user_cache_dir() -> Path:
    """A private, writable per-user folder for compiled kernels and generated sources:
    MINIGRAD_CACHE_DIR, else $XDG_CACHE_HOME/minigrad-rnn (~/.cache/minigrad-rnn), else
    $TMPDIR/minigrad-rnn-<uid>, else a fresh folder of this process (deleted at exit)."""
    key = tuple(os.environ.get(n) for n in (CACHE_ENV, "XDG_CACHE_HOME", "HOME", "TMPDIR"))
    if key not in _chosen:
        _chosen[key] = _choose_user_cache_dir()
    return _chosen[key]


def _choose_user_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        named = private_folder(Path(os.environ[CACHE_ENV]), named_by=CACHE_ENV)
        if named is not None:
            return named
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for candidate in (Path(base) / "minigrad-rnn", Path(tempfile.gettempdir()) / f"minigrad-rnn-{uid}"):
        chosen = private_folder(candidate)
        if chosen is not None:
            return chosen
    fresh = Path(tempfile.mkdtemp(prefix="minigrad-rnn-"))  # 0700, ours: private by construction
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh


def kernel_cache_dir() -> Path:
    """The private folder of Numba's cache files for minigrad's kernels: NUMBA_CACHE_DIR if the
    user set it (checked like MINIGRAD_CACHE_DIR), else `user_cache_dir()/numba`."""
    named = numba.config.CACHE_DIR  # numba read NUMBA_CACHE_DIR at its import
    if named:
        chosen = private_folder(Path(named), named_by="NUMBA_CACHE_DIR")
        if chosen is not None:
            return chosen
    chosen = private_folder(user_cache_dir() / "numba")
    if chosen is None:
        raise OSError(errno.EACCES, "minigrad: cannot make a private kernel cache folder", str(user_cache_dir()))
    return chosen



class _PrivateCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba's cache files of a kernel in file F: in kernel_cache_dir(), in a subfolder named
    after F's folder (as Numba names them), never beside F."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(kernel_cache_dir() / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    def ensure_cache_path(self):
        if private_folder(Path(self._cache_path)) is None:
            raise OSError(errno.EACCES, "not a private, writable cache folder", self._cache_path)

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.exists(py_file):
            return None
        locator = cls(py_func, py_file)  # an unsafe folder the user named raises here, and is reported
        try:
            locator.ensure_cache_path()
        except OSError:
            return None
        return locator


def kernels_are_cached(py_file) -> bool:
    """Whether Numba's cache holds compiled kernels of the module file `py_file` (an index file
    of one of them): if not, they compile on their first calls, seconds each (a cold start)."""
    try:
        folder = kernel_cache_dir() / _PrivateCacheLocator.get_suitable_cache_subpath(str(py_file))
    except OSError:
        return False
    return any(folder.glob(f"{glob.escape(Path(py_file).stem)}.*.nbi"))


class _PrivateCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_PrivateCacheLocator]


_damage_reported = False


class _SelfHealingCache(caching.FunctionCache):
    """Numba's function cache in a private folder, which deletes an entry it cannot load (a
    truncated, corrupt or foreign index or data file) and lets the kernel compile again.
    Saving that fails only costs the next process a compilation."""

    _impl_class = _PrivateCacheImpl

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as error:  # noqa: BLE001  (whatever a damaged file raises, the cure is the same)
            self._discard(error)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as error:  # noqa: BLE001
            _log.warning("minigrad: could not save a compiled kernel to the cache (%s)", _one_line(error))

    def _discard(self, error):
        global _damage_reported
        index = self._cache_file._index_path
        data_files = glob.glob(glob.escape(index[:-len(".nbi")]) + ".*.nbc")
        for path in (index, *data_files):
            try:
                os.unlink(path)
            except OSError:
                pass
        if not _damage_reported:
            _damage_reported = True
            _log.warning("minigrad: discarded a damaged kernel cache entry %s (%s); compiling it again",
                         index, _one_line(f"{type(error).__name__}: {error}"))


def _one_line(text) -> str:
    return " ".join(str(text).split())[:200]


class _CacheOnFirstUse:
    """Stands in for a kernel's `_SelfHealingCache` until the kernel first compiles: the
    cache folder is chosen, checked and made then, so that importing minigrad makes no
    folder and writes no file."""

    def __init__(self, function):
        self._function = function
        self._cache = None

    def _opened(self):
        if self._cache is None:
            try:
                self._cache = _SelfHealingCache(self._function)
            except UnsafeCacheDirError:
                raise
            except (OSError, RuntimeError):  # no usable cache folder, or not a file: compile every time
                self._cache = caching.NullCache()
        return self._cache

    def load_overload(self, sig, target_context):
        return self._opened().load_overload(sig, target_context)

    def save_overload(self, sig, data):
        self._opened().save_overload(sig, data)

    def flush(self):
        self._opened().flush()

    @property
    def cache_path(self):
        return self._opened().cache_path


def _njit(**options):
    """numba.njit(**options, cache=True), with the cache of `_SelfHealingCache` (opened when
    the kernel first compiles)."""
    compile_with = numba.njit(**options)

    def decorate(function):
        dispatcher = compile_with(function)
        dispatcher._cache = _CacheOnFirstUse(function)
        return dispatcher

    return decorate


JIT_OPTIONS = dict(nogil=True, error_model="numpy")

kernel = _njit(**JIT_OPTIONS)

"""Decorator for an array kernel: loops over preallocated arrays, no autograd logic."""

scalar = _njit(inline="always", **JIT_OPTIONS)
"""Decorator for a scalar helper that kernels call (inlined into them by Numba). Left to
LLVM instead, the helpers stayed calls inside the parallel window loops of rnn.recurrence,
which then did not vectorize: a 1x128 LSTM training step took 25 ms instead of 15."""

summing_kernel = _njit(fastmath={"reassoc", "contract"}, **JIT_OPTIONS)
"""Decorator for a kernel whose loops sum (dot products): it lets LLVM reorder the
additions, so a sum runs in vector lanes. Unlike full fastmath it keeps NaN and inf."""

# Only explicit prange loops run in parallel: Numba's other automatic parallel rewrites
# (array expressions, reductions, fusion...) are switched off, which also makes a
# parallel kernel compile faster.
_ONLY_PRANGE = dict(prange=True, comprehension=False, setitem=False, numpy=False, reduction=False, stencil=False,
                    fusion=False, inplace_binop=False)
parallel_kernel = _njit(parallel=_ONLY_PRANGE, **JIT_OPTIONS)
"""Decorator for a kernel whose `prange` loops are split over the cores."""

prange = numba.prange
"""`range` whose iterations a parallel_kernel may run on different cores."""

_forked = False


def _note_fork():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_note_fork)


def cores() -> int:
    """How many cores minigrad's parallel kernels share their work over: Numba's thread
    count (NUMBA_NUM_THREADS), but 1 in a child process made by fork(). Numba's OpenMP
    layer ends a forked child that starts a parallel kernel ("fork() called from a process
    already using GNU OpenMP"), so there minigrad runs the one-core version of every kernel."""
    return 1 if _forked else numba.get_num_threads()
