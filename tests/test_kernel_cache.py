"""minigrad.kernel_cache: the one user of Numba's private API fails with one clear line if
Numba moved what it relies on (issue 26, item 2), and a kernel cache that cannot be written
(a full disk, no safe folder) means compiling in memory, said once (issue 25, items 20, 21).
"""

import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import minigrad
from minigrad import kernel_cache

ROOT = Path(minigrad.__file__).resolve().parent.parent  # the code under test (PYTHONPATH)


def run_python(tmp_path, code, args=(), env_extra=None):
    script = tmp_path / "child.py"  # (a script file: the child's sys.path holds no working folder)
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MINIGRAD_CACHE_DIR", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"), **(env_extra or {}))
    return subprocess.run([sys.executable, str(script), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


# ---- issue 26, item 2: Numba's private API, each use checked --------------------------------------

REMOVE_THEN = """
import numba.core.caching as caching
owner, _, name = {missing!r}.rpartition(".")
delattr(getattr(caching, owner) if owner else caching, name)
"""
RUN_CLI = "import sys\nfrom cli.main import main\nsys.argv[0] = 'minigrad-rnn'\nmain()\n"


@pytest.mark.parametrize("missing", ["_SourceFileBackedLocatorMixin", "_CacheLocator.get_suitable_cache_subpath"])
def test_a_numba_without_the_private_api_the_cache_uses_fails_with_one_line(tmp_path, missing):
    child = run_python(tmp_path, REMOVE_THEN.format(missing=missing) + RUN_CLI, ["gradcheck", "--op", "mul"])
    assert child.returncode == 1, child.stdout + child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert missing.rpartition(".")[2] in lines[0] and f"numba {numba.__version__}" in lines[0], lines[0]


def test_a_dispatcher_without_its_cache_attribute_fails_with_one_line():
    class MovedDispatcher:  # a Numba whose dispatcher keeps its cache elsewhere
        py_func = staticmethod(lambda: None)

    with pytest.raises(kernel_cache.NumbaInternalsError) as raised:
        kernel_cache.use_private_cache(MovedDispatcher())
    message = str(raised.value)
    assert "\n" not in message and "_cache" in message and f"numba {numba.__version__}" in message
