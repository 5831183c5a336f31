"""Code that is not the user's never runs: kernel caches someone else controls are not read,
generated modules run from their verified text (never a .pyc), a damaged cache heals itself,
and the compile helper imports only the installed package (issue 15, items 1, 2 and 9).

Every check runs the product in a fresh interpreter with caches of its own (MINIGRAD_CACHE_DIR,
XDG_CACHE_HOME, TMPDIR inside tmp_path), started from a script file so that the child's own
sys.path holds no working folder.
"""

import hashlib
import importlib._bootstrap_external
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import minigrad
from minigrad import codegen

from cache_support import COMPUTE, RUN_CLI_ON_KERNELS

ROOT = Path(minigrad.__file__).resolve().parent.parent  # the code under test (PYTHONPATH)
NOBODY = 65534

EXPECTED = f"ok {round(sum(math.tanh(v * v) for v in (1.0, 2.0, 3.0)), 4)} "  # the start of COMPUTE's output


def run_child(tmp_path, code, env_extra=None, cwd=None, drop=()):
    script = tmp_path / f"child_{hashlib.sha256(code.encode()).hexdigest()[:8]}.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "MINIGRAD_CACHE_DIR", "PYTHONSTARTUP", *drop)}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o700, exist_ok=True)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(script)], env=env, cwd=cwd or tmp_path, capture_output=True,
                          text=True, timeout=300)


def plant_generated_module_with_pyc(cache: Path, marker: Path) -> Path:
    """The elementwise kernels' generated file, with its true text, and beside it a .pyc that
    Python's import system would accept for that file (its header matches the file's time and
    size) but which first writes `marker`."""
    source = codegen.elementwise_source()
    name = f"minigrad_generated_elementwise_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    generated = cache / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    path = generated / f"{name}.py"
    path.write_text(source)
    planted = compile(f"open({str(marker)!r}, 'w').write('ran')\n" + source, str(path), "exec")
    status = path.stat()
    pyc = Path(importlib.util.cache_from_source(str(path)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(importlib._bootstrap_external._code_to_timestamp_pyc(planted, status.st_mtime, status.st_size))
    return path


def chmod_tree(root: Path, mode: int, owner=None):
    for folder, folders, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chmod(path, mode if os.path.isdir(path) else 0o666)
            if owner is not None:
                os.chown(path, owner, owner)


# ---- item 1: a cache folder someone else controls -----------------------------------------------

CONTROLLERS = ["writable by everyone (0777)", "owned by another user"]


def make_foreign(folder: Path, controller: str):
    if controller == "owned by another user":
        if os.geteuid() != 0:
            pytest.skip("only root can give a folder to another user")
        chmod_tree(folder, 0o755, owner=NOBODY)
    else:
        chmod_tree(folder, 0o777)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_default_cache_folder_someone_else_controls_is_not_used(tmp_path, controller):
    """The issue's attack: another user made the cache folder first and planted a generated
    module with a .pyc. It is passed over (one warning line), and nothing from it runs."""
    marker = tmp_path / "planted code ran"
    foreign = tmp_path / "xdg" / "minigrad-rnn"
    plant_generated_module_with_pyc(foreign, marker)
    make_foreign(foreign, controller)

    child = run_child(tmp_path, COMPUTE + "import minigrad.kernel_cache; print(minigrad.kernel_cache.user_cache_dir())\n")
    assert child.returncode == 0, child.stderr
    assert not marker.exists(), "code planted in a foreign cache folder ran"
    assert child.stdout.startswith(EXPECTED)
    used = Path(child.stdout.strip().splitlines()[-1])
    assert used != foreign and foreign not in used.parents
    assert "not using the cache folder" in child.stderr and str(foreign) in child.stderr


@pytest.mark.parametrize("variable", ["MINIGRAD_CACHE_DIR", "NUMBA_CACHE_DIR"])
@pytest.mark.parametrize("controller", CONTROLLERS)
def test_a_cache_folder_the_user_named_is_refused_with_one_line_if_unsafe(tmp_path, variable, controller):
    named = tmp_path / "shared-cache"
    named.mkdir()
    make_foreign(named, controller)
    script = tmp_path / "run_cli.py"  # (not cli.py: the script's folder comes first on sys.path)
    script.write_text(RUN_CLI_ON_KERNELS)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MINIGRAD_CACHE_DIR")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"), **{variable: str(named)})
    result = subprocess.run([sys.executable, str(script), "gradcheck", "--op", "mul"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and variable in lines[0] and str(named) in lines[0]
    assert not list(named.rglob("*.nb*")) and not list(named.rglob("*.py"))


def test_generated_modules_never_run_from_a_pyc(tmp_path):
    """Even in a private cache, the generated module runs from its text, not from a .pyc the
    text check did not cover."""
    marker = tmp_path / "planted code ran"
    cache = tmp_path / "cache"
    plant_generated_module_with_pyc(cache, marker)
    chmod_tree(cache, 0o700)
    child = run_child(tmp_path, COMPUTE, {"MINIGRAD_CACHE_DIR": str(cache)})
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(EXPECTED)
    assert not marker.exists(), "a .pyc beside a generated module ran"


def test_cache_folders_are_made_private(tmp_path):
    child = run_child(tmp_path, COMPUTE, {"XDG_CACHE_HOME": str(tmp_path / "a" / "b")})
    assert child.returncode == 0, child.stderr
    made = [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "minigrad-rnn"]
    made += [p for p in made[-1].rglob("*") if p.is_dir()]
    assert len(made) > 4 and all(p.stat().st_mode & 0o077 == 0 for p in made), \
        {str(p): oct(p.stat().st_mode) for p in made}
    assert list(made[2].rglob("*.nbi")), "no kernel was cached there"


# ---- item 9: a damaged cache heals itself -----------------------------------------------------

# Each case compiles from a cold cache three times in child processes: the README's command
# runs two kinds of damage, the tests marked slow (CI runs them too) the third.
@pytest.mark.parametrize("damage", [pytest.param("truncated", marks=pytest.mark.slow), "garbage",
                                    "data files truncated"])
def test_a_damaged_kernel_cache_is_discarded_and_compiled_again(tmp_path, damage):
    """Index (.nbi) and data (.nbc) files of Numba's cache and the generated sources, damaged;
    or only the data files, behind sound indexes."""
    cache = tmp_path / "cache"
    numba_cache = tmp_path / "numba-cache"
    numba_cache.mkdir(mode=0o700)
    env = {"MINIGRAD_CACHE_DIR": str(cache), "NUMBA_CACHE_DIR": str(numba_cache)}
    first = run_child(tmp_path, COMPUTE, env)
    assert first.returncode == 0, first.stderr
    files = [p for p in [*cache.rglob("*"), *numba_cache.rglob("*")]
             if p.suffix in (".nbi", ".nbc") or p.name.startswith("minigrad_generated_")]
    assert any(p.suffix == ".nbi" for p in files) and any(p.suffix == ".nbc" for p in files)
    assert any(p.suffix == ".py" for p in files)
    if damage == "data files truncated":
        files = [p for p in files if p.suffix == ".nbc"]
    for path in files:
        data = path.read_bytes()
        path.write_bytes(b"\x80\x04\xff\xfe not a pickle" if damage == "garbage" else data[: len(data) // 2])

    for attempt in range(2):  # healed for good: the second run finds a sound cache
        again = run_child(tmp_path, COMPUTE, env)
        assert again.returncode == 0, again.stderr
        assert again.stdout == first.stdout
        warnings = [line for line in again.stderr.splitlines() if line.strip()]
        assert len(warnings) <= 1, again.stderr
        if attempt == 1:
            assert warnings == []


# ---- item 2: the compile helper imports only the installed package -----------------------------

HELPER = """
import contextlib, sys, textwrap
from pathlib import Path
import numpy as np
import minigrad
from minigrad.precompile import compile_elsewhere

kernels = Path(sys.argv[1])
kernels.write_text(textwrap.dedent('''
    from minigrad.jit import kernel

    @kernel
    def total(x):
        s = 0.0
        for i in range(x.size):
            s += x[i]
        return s
'''))
sys.path.insert(0, str(kernels.parent))
import helper_test_kernels
runtime = getattr(minigrad, "runtime", None)  # (absent before minigrad.runtime existed)
with runtime.configured_for_training() if runtime else contextlib.nullcontext():
    job = compile_elsewhere(helper_test_kernels.total, [np.ones(3)])
print("helper compiled:", job is not None and job.wait())
print(helper_test_kernels.total(np.ones(3)), "cache hits:", sum(helper_test_kernels.total.stats.cache_hits.values()))
"""


def test_the_compile_helper_never_imports_from_the_working_folder(tmp_path):
    marker = tmp_path / "planted package ran"
    workdir = tmp_path / "work"
    (workdir / "minigrad").mkdir(parents=True)
    (workdir / "minigrad" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "kernels").mkdir()
    cache = tmp_path / "cache"  # cold
    code = HELPER.replace("sys.argv[1]", repr(str(tmp_path / "kernels" / "helper_test_kernels.py")))
    child = run_child(tmp_path, code, {"MINIGRAD_CACHE_DIR": str(cache)}, cwd=workdir)
    assert child.returncode == 0, child.stderr
    assert not marker.exists(), "the compile helper imported a minigrad package planted in the working folder"
    assert "helper compiled: True" in child.stdout  # (the helper really ran, with the real package)
    assert "3.0 cache hits: 1" in child.stdout
