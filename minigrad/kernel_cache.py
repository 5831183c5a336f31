"""Where compiled kernels are kept, and why they can be trusted: the kernel cache.

minigrad/jit.py's decorators hand every kernel to `use_private_cache`; this module decides
the folder and keeps Numba's cache files there. It is the ONE module that uses Numba's
private API (its cache classes, a dispatcher's `_cache`): each use goes through
`_numba_internal`, which fails with one line naming the Numba version if Numba moved it.

Numba's cache files are pickles and machine code, and generated kernels are Python source:
whoever can write the folder they are read from can run code in this process. So every cache
folder (ours, `user_cache_dir()`, and the one Numba's files go to, `kernel_cache_dir()`) must
be owned by this user, writable by no one else, and lie in folders that only this user or
root can change (like ssh's StrictModes). Folders we create are made 0700. A folder the user
named (MINIGRAD_CACHE_DIR, NUMBA_CACHE_DIR) that fails the check is refused with one line
(UnsafeCacheDirError); a default one that fails it is passed over for the next, down to a
fresh private folder of this process (in TMPDIR, else /dev/shm or /tmp, checked the same
way: a TMPDIR anyone can write makes its folders unsafe). When there is no safe folder, or
the cache cannot be written (a full disk), kernels compile in memory for the rest of the
run, said once (`compile_in_memory`). minigrad's kernels keep their Numba cache only there
(never in a `__pycache__` beside the source), through a cache class of our own that also
discards a damaged entry (truncated, corrupt or foreign) and compiles it again instead of
failing. Numba's global configuration and the environment are left as they are.
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
    $TMPDIR/minigrad-rnn-<uid>, else a fresh folder of this process (deleted at exit) in the
    first of FRESH_FOLDER_PARENTS where it is private. OSError if there is none."""
    key = tuple(os.environ.get(n) for n in (CACHE_ENV, "XDG_CACHE_HOME", "HOME", "TMPDIR"))
    if key not in _chosen:
        try:
            _chosen[key] = _choose_user_cache_dir()
        except UnsafeCacheDirError:
            raise
        except OSError as error:  # remembered: asked again, the answer is the same
            _chosen[key] = error
    if isinstance(_chosen[key], OSError):
        raise _chosen[key]
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
    return _fresh_private_folder()


# Where a fresh folder of this process is made when no default folder will do, first to last:
# the temporary folder (None: tempfile.gettempdir()), then /dev/shm and /tmp. A fresh folder
# is 0700 and ours, but it is private only if its parents are: inside a TMPDIR anyone can
# write (no sticky bit) it is not, so each is checked like any cache folder.
FRESH_FOLDER_PARENTS = [None, "/dev/shm", "/tmp"]


def _fresh_private_folder() -> Path:
    tried = []
    for parent in FRESH_FOLDER_PARENTS:
        parent = parent or tempfile.gettempdir()
        if parent in tried:
            continue
        tried.append(parent)
        try:
            fresh = Path(tempfile.mkdtemp(prefix="minigrad-rnn-", dir=parent))
        except OSError:
            continue
        try:
            usable = private_problem(fresh) is None and _writable(fresh)
        except OSError:
            usable = False
        if usable:
            atexit.register(shutil.rmtree, fresh, ignore_errors=True)
            _private_folders.add(fresh)
            return fresh
        shutil.rmtree(fresh, ignore_errors=True)
    raise OSError(errno.EACCES, f"no folder private to this user can hold the kernel cache (the default folders "
                                f"and fresh ones in {', '.join(tried)} are unsafe or cannot be written)")


_in_memory_because = None  # why this process keeps no kernel on disk (said once), or None


def compile_in_memory(reason: str) -> None:
    """From now on this process writes no compiled kernel and no generated source to disk, and
    kernels not opened yet compile in memory (because the cache folder cannot be written, or
    no folder is safe: `reason`). Says so once, on stderr."""
    global _in_memory_because
    if _in_memory_because is None:
        _in_memory_because = reason
        _log.warning("minigrad: %s; compiling kernels in memory for this run", _one_line(reason))


def in_memory() -> bool:
    """True once compile_in_memory was called in this process."""
    return _in_memory_because is not None


def cannot_write(folder, error: OSError) -> str:
    """The reason for compile_in_memory when writing into `folder` failed with `error`."""
    return f"cannot write the kernel cache in {folder} ({error.strerror or error})"


def describe(error: OSError) -> str:
    """An OSError in one line: its reason, and the file it names."""
    what = error.strerror or str(error)
    return f"{what}: {error.filename}" if error.filename else what


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
        raise OSError(errno.EACCES, "cannot make a private, writable kernel cache folder", str(user_cache_dir() / "numba"))
    return chosen


# ---- Numba's private API: every use is here, each looked up through _numba_internal -------------

class NumbaInternalsError(ImportError):
    """This Numba no longer has an internal the kernel cache is built on."""


def _numba_moved(name: str) -> NumbaInternalsError:
    return NumbaInternalsError(f"minigrad's kernel cache needs Numba's private {name}, which numba "
                               f"{numba.__version__} does not have: install a numba version minigrad-rnn "
                               f"supports (see its pyproject.toml)")


def _numba_internal(owner, name: str):
    """`owner.name`, part of Numba's private API; if this Numba moved it, one clear line."""
    try:
        return getattr(owner, name)
    except AttributeError:
        raise _numba_moved(f"{getattr(owner, '__name__', type(owner).__name__)}.{name}") from None


try:
    from numba.core import caching
except ImportError:
    raise _numba_moved("numba.core.caching") from None

_LocatorMixin = _numba_internal(caching, "_SourceFileBackedLocatorMixin")
_Locator = _numba_internal(caching, "_CacheLocator")
_CacheImpl = _numba_internal(caching, "CompileResultCacheImpl")
_FunctionCache = _numba_internal(caching, "FunctionCache")
_NullCache = _numba_internal(caching, "NullCache")
# The hooks overridden below: if Numba renamed them, the overrides would silently do nothing.
for _owner, _name in ((_Locator, "get_suitable_cache_subpath"), (_CacheImpl, "_locator_classes"),
                      (_FunctionCache, "_impl_class"), (_FunctionCache, "load_overload"),
                      (_FunctionCache, "save_overload"), (_FunctionCache, "cache_path")):
    _numba_internal(_owner, _name)


class _PrivateCacheLocator(_LocatorMixin, _Locator):
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
            raise OSError(errno.EACCES, "not a private, writable folder", self._cache_path)

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.exists(py_file):
            return None
        locator = cls(py_func, py_file)  # an unsafe folder the user named raises here, and is reported
        try:
            locator.ensure_cache_path()
        except OSError as error:
            compile_in_memory(cannot_write(locator.get_cache_path(), error))
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


class _PrivateCacheImpl(_CacheImpl):
    _locator_classes = [_PrivateCacheLocator]


_damage_reported = False


class _SelfHealingCache(_FunctionCache):
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
        if in_memory():
            return
        try:
            super().save_overload(sig, data)
        except OSError as error:  # a full disk, a folder made read-only: it will not get better in this run
            compile_in_memory(cannot_write(self.cache_path, error))
        except Exception as error:  # noqa: BLE001
            _log.warning("minigrad: could not save a compiled kernel to the cache (%s)", _one_line(error))

    def _discard(self, error):
        global _damage_reported
        index = _numba_internal(_numba_internal(self, "_cache_file"), "_index_path")
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
            if in_memory():
                self._cache = _NullCache()
                return self._cache
            try:
                self._cache = _SelfHealingCache(self._function)
            except UnsafeCacheDirError:
                raise
            except OSError as error:  # no usable cache folder
                compile_in_memory(describe(error))
                self._cache = _NullCache()
            except RuntimeError:  # not in a file (e.g. defined in `python -c`): compiles every time, as in Numba
                self._cache = _NullCache()
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


def use_private_cache(dispatcher):
    """Give a Numba dispatcher (a function `numba.njit` made) the self-healing cache in the
    private folder, opened when it first compiles; returns the dispatcher."""
    _numba_internal(dispatcher, "_cache")  # where Numba's dispatcher keeps its cache object
    dispatcher._cache = _CacheOnFirstUse(dispatcher.py_func)
    return dispatcher
