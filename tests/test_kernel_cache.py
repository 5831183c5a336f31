"""minigrad.kernel_cache: the one user of Numba's private API fails with one clear line if
Numba moved what it relies on (issue 26, item 2), and a kernel cache that cannot be written
(a full disk, no safe folder) means compiling in memory, said once (issue 25, items 20, 21).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import minigrad
from minigrad import kernel_cache

from cache_support import COMPUTE, RUN_CLI, RUN_CLI_ON_KERNELS

ROOT = Path(minigrad.__file__).resolve().parent.parent  # the code under test (PYTHONPATH)


def run_python(tmp_path, code, args=(), env_extra=None):
    script = tmp_path / "child.py"  # (a script file: the child's sys.path holds no working folder)
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MINIGRAD_CACHE_DIR", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


# ---- issue 26, item 2: Numba's private API, each use checked --------------------------------------

REMOVE_THEN = """
import numba.core.caching as caching
owner, _, name = {missing!r}.rpartition(".")
delattr(getattr(caching, owner) if owner else caching, name)
"""


@pytest.mark.parametrize("missing", ["_SourceFileBackedLocatorMixin", "_CacheLocator.get_suitable_cache_subpath"])
def test_a_numba_without_the_private_api_the_cache_uses_fails_with_one_line(tmp_path, missing):
    child = run_python(tmp_path, REMOVE_THEN.format(missing=missing) + RUN_CLI, ["gradcheck", "--op", "mul"])
    assert child.returncode == 1, child.stdout + child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert missing.rpartition(".")[2] in lines[0] and f"numba {numba.__version__}" in lines[0], lines[0]
    assert lines[0].startswith("error: ") and "this is a bug" not in lines[0]


def test_a_dispatcher_without_its_cache_attribute_fails_with_one_line():
    class MovedDispatcher:  # a Numba whose dispatcher keeps its cache elsewhere
        py_func = staticmethod(lambda: None)

    with pytest.raises(kernel_cache.NumbaInternalsError) as raised:
        kernel_cache.use_private_cache(MovedDispatcher())
    message = str(raised.value)
    assert "\n" not in message and "_cache" in message and f"numba {numba.__version__}" in message


# ---- issue 25, item 20: a kernel cache on a full disk ----------------------------------------------

# Run before the product: every file opened for writing inside the cache folder is /dev/full,
# so each write there fails with ENOSPC, as on a full disk (folders can still be made, files
# read). Deterministic, and no mount or root needed.
DISK_FULL = """
import builtins, os
CACHE = os.path.realpath(os.environ["MINIGRAD_CACHE_DIR"])
real_open, real_os_open = builtins.open, os.open

def in_cache(path):
    return isinstance(path, (str, bytes, os.PathLike)) and \\
        os.path.realpath(os.fsdecode(path)).startswith(CACHE + os.sep)

def full_open(file, mode="r", *args, **kwargs):
    if in_cache(file) and set(mode) & set("wax+"):
        return real_open("/dev/full", "wb" if "b" in mode else "w")
    return real_open(file, mode, *args, **kwargs)

def full_os_open(path, flags, *args, **kwargs):
    if in_cache(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        return real_os_open("/dev/full", os.O_RDWR | os.O_CLOEXEC)
    return real_os_open(path, flags, *args, **kwargs)

builtins.open, os.open = full_open, full_os_open
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to play a full disk")
@pytest.mark.parametrize("code", [COMPUTE, RUN_CLI_ON_KERNELS], ids=["library", "cli gradcheck --op mul"])
def test_a_full_kernel_cache_disk_means_compiling_in_memory_said_once(tmp_path, code):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    child = run_python(tmp_path, DISK_FULL + code, ["gradcheck", "--op", "mul"] if code is RUN_CLI_ON_KERNELS else [],
                       {"MINIGRAD_CACHE_DIR": str(cache)})
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("ok ") if code is COMPUTE else "mul" in child.stdout
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr  # said once, not once per kernel
    assert "in memory" in lines[0] and str(cache) in lines[0] and "No space left on device" in lines[0], lines[0]
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []  # (and the simulation held: nothing written)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to play a full disk")
def test_a_disk_that_fills_after_the_generated_sources_were_kept_is_said_once(tmp_path):
    """The generated modules are on disk already (no write needed); Numba's files cannot be saved."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    first = run_python(tmp_path, COMPUTE, env_extra={"MINIGRAD_CACHE_DIR": str(cache)})
    assert first.returncode == 0 and list((cache / "generated").glob("*.py")), first.stderr
    shutil.rmtree(cache / "numba")
    child = run_python(tmp_path, DISK_FULL + COMPUTE, env_extra={"MINIGRAD_CACHE_DIR": str(cache)})
    assert child.returncode == 0, child.stderr
    assert child.stdout == first.stdout
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1 and "in memory" in lines[0] and "No space left on device" in lines[0], child.stderr
    assert str(cache / "numba") in lines[0]


# ---- issue 25, item 21: no safe default folder, TMPDIR unsafe ---------------------------------------

CHOSEN = COMPUTE + """
from minigrad import kernel_cache
try:
    print("cache:", kernel_cache.user_cache_dir())
except OSError as error:
    print("cache: none")
"""


def unsafe_tmpdir(tmp_path) -> Path:
    """A TMPDIR anyone can write, without the sticky bit; the default cache folders under it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    return shared


@pytest.mark.parametrize("fallback", ["a safe folder", "none"])
def test_with_tmpdir_unsafe_the_fallback_folder_is_safe_or_kernels_compile_in_memory(tmp_path, fallback):
    shared = unsafe_tmpdir(tmp_path)
    safe = tmp_path / "shm"  # stands for /dev/shm (this test writes nothing outside tmp_path)
    safe.mkdir(mode=0o700)
    parents = [None, str(safe)] if fallback == "a safe folder" else [None]
    code = f"import minigrad.kernel_cache\nminigrad.kernel_cache.FRESH_FOLDER_PARENTS = {parents!r}\n" + CHOSEN
    child = run_python(tmp_path, code, env_extra={"TMPDIR": str(shared), "XDG_CACHE_HOME": str(shared / "xdg")})
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("ok ")
    chosen = child.stdout.strip().splitlines()[-1]
    lines = child.stderr.strip().splitlines()
    passed_over = [line for line in lines if "not using the cache folder" in line]
    assert len(passed_over) == 2 and all(str(shared) in line for line in passed_over), child.stderr  # xdg, TMPDIR
    others = [line for line in lines if line not in passed_over]
    if fallback == "a safe folder":
        assert chosen.startswith(f"cache: {safe}{os.sep}"), chosen
        assert others == [], child.stderr
    else:
        assert chosen == "cache: none"
        assert len(others) == 1 and "in memory" in others[0], child.stderr
    assert not [p for p in shared.rglob("*") if not p.is_dir()]  # nothing kept in the unsafe folder
