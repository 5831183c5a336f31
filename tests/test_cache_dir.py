"""A read-only install must still import and run: the kernel cache falls back to a user dir.

The real situation is recreated: a copy of the `minigrad` package, made read-only
(`chmod -R a-w`), imported in a fresh interpreter by a user who cannot write there.
Tests run as root in CI, and root ignores permission bits, so the subprocess gives that
up first: it becomes uid/gid 65534 (nobody) when that user can run this interpreter;
where it cannot (the interpreter lives under a private /root), it stays uid 0 but drops
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, the capabilities that let root ignore
permissions. Either way the child first checks that it really cannot write into the
package, so the test cannot pass vacuously.
"""

import ctypes
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import minigrad

SOURCE_PACKAGE = Path(minigrad.__file__).resolve().parent
NOBODY = 65534

CHILD = r"""
import json, os, sys, tempfile

package_dir = sys.argv[1]
try:
    with tempfile.TemporaryFile(dir=package_dir):
        package_writable = True
except OSError:
    package_writable = False

import numpy as np
import minigrad as mg
import minigrad.kernel_cache
import numba.core.config
mg.elementwise.NUMPY_BELOW = 0  # the kernels (and so their cache) are under test: no numpy path for small arrays

x = mg.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), requires_grad=True)
y = (x * x).sum()
y.backward()
print(json.dumps({
    "package_writable": package_writable,
    "minigrad_file": mg.__file__,
    "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
    "numba_config_cache_dir": numba.core.config.CACHE_DIR,
    "kernel_cache_dir": str(minigrad.kernel_cache.kernel_cache_dir()),
    "y": y.item(),
    "grad": x.grad.tolist(),
    "grad_dtype": str(x.grad.dtype),
    "uid": os.getuid(),
}))
"""


# ---- ways to run the child without root's permission override -----------------------------
def _become_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _drop_permission_override():
    # Dropped from the bounding set, they do not come back when root execs the interpreter.
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


UNPRIVILEGED_WAYS = {"uid 65534": _become_nobody, "root without CAP_DAC_OVERRIDE": _drop_permission_override}


@functools.lru_cache(maxsize=None)
def _unprivileged_way():
    """(name, preexec_fn) of the first way that can still run this interpreter with numba."""
    if os.geteuid() != 0:
        return "current user", None
    reasons = []
    for name, preexec in UNPRIVILEGED_WAYS.items():
        try:
            probe = subprocess.run([sys.executable, "-c", "import numpy, numba"], cwd="/", preexec_fn=preexec,
                                   capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as error:
            reasons.append(f"{name}: {error}")
            continue
        if probe.returncode == 0:
            return name, preexec
        reasons.append(f"{name}: {probe.stderr.strip().splitlines()[-1:]}")
    pytest.skip("cannot run this interpreter without root's permission override: " + "; ".join(reasons))


# ---- the read-only copy -------------------------------------------------------------------
def _chmod_tree(root: Path, remove_write: bool):
    for directory, _, files in os.walk(root):
        for path in [directory, *(os.path.join(directory, f) for f in files)]:
            mode = os.stat(path).st_mode
            os.chmod(path, mode & ~0o222 if remove_write else mode | 0o200)


def _file_listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox():
    root = Path(tempfile.mkdtemp(prefix="minigrad-readonly-"))
    os.chmod(root, 0o755)  # traversable by the unprivileged user (pytest's tmp_path is 0700)
    try:
        yield root
    finally:
        _chmod_tree(root, remove_write=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("pycache", ["no __pycache__", "read-only __pycache__"])
def test_import_from_read_only_package_uses_a_user_cache_dir(sandbox, pycache):
    site = sandbox / "site"
    package = site / "minigrad"
    shutil.copytree(SOURCE_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "*.tmp", "*.nbi", "*.nbc"))
    if pycache == "read-only __pycache__":
        (package / "__pycache__").mkdir()
    os.chmod(site, 0o755)
    home = sandbox / "home"
    home.mkdir()
    os.chmod(home, 0o755)  # (a home others can write would make its cache unsafe: see test_cache_safety.py)

    name, preexec = _unprivileged_way()
    if name == "uid 65534":
        os.chown(home, NOBODY, NOBODY)
    _chmod_tree(package, remove_write=True)
    if name == "current user" and os.access(package, os.W_OK):
        pytest.skip("the package copy is still writable after chmod -R a-w (not root): nothing to test")
    before = _file_listing(package)

    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "MINIGRAD_CACHE_DIR", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(site), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONNOUSERSITE="1")
    child = subprocess.run([sys.executable, "-c", CHILD, str(package)], cwd=home, env=env, preexec_fn=preexec,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, f"import as {name} failed:\n{child.stderr}"
    info = json.loads(child.stdout.strip().splitlines()[-1])

    assert info["package_writable"] is False, f"the child ({name}) could write into the package: test is void"
    if name == "uid 65534":
        assert info["uid"] == NOBODY
    # the tmp copy was imported, not the checkout
    imported = Path(info["minigrad_file"]).resolve()
    assert imported == (package / "__init__.py").resolve()
    assert SOURCE_PACKAGE not in imported.parents
    # an op ran, forward and backward, in float32
    assert info["y"] == pytest.approx(14.0)
    assert info["grad"] == [2.0, 4.0, 6.0] and info["grad_dtype"] == "float32"
    # the kernel cache went to the writable user directory, and numba really used it; neither
    # the environment nor numba's global configuration was changed for that
    assert info["numba_cache_dir"] is None and not info["numba_config_cache_dir"]
    cache = Path(info["kernel_cache_dir"]).resolve()
    assert (home / ".cache").resolve() in cache.parents
    assert list(cache.rglob("*.nbi")), "numba wrote no cache index into the user cache dir"
    assert list((home / ".cache").rglob("minigrad_generated_elementwise_*.py"))
    assert _file_listing(package) == before  # nothing was written into the install
