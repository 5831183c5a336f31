"""The smoke subset (`pytest -m smoke`): the few tests that .ci/run also runs with the lowest
versions pyproject.toml declares (numba, numpy, click, safetensors), so that the declared
range is tested and not only the newest versions: training, sampling, the kernel cache layer
(which uses Numba's private API) and a gradient check of the fused engine.

They run in the full suite too; each one is small (a 1x8 model, a few steps). The kernel
cache tests run in fresh interpreters with a cache folder of their own.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from cli_support import make_text, run_cli
from rnn import checks

pytestmark = pytest.mark.smoke

ROOT = Path(mg.__file__).resolve().parent.parent  # the code under test
TINY = ["--cell", "lstm", "--hidden", "8", "--embed", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "2"]


def test_train_then_sample_through_the_console_script(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    run_cli("train", text, "--out", tmp_path / "run", *TINY, "--steps", "6", "--eval-every", "3",
            "--sample-every", "3", "--sample-length", "20", check_exit=0)
    latest = tmp_path / "run" / "latest.safetensors"
    first = run_cli("sample", latest, "-n", "40", "--seed", "7", check_exit=0).stdout
    again = run_cli("sample", latest, "-n", "40", "--seed", "7", "--top-k", "5", check_exit=0).stdout
    assert len(first.rstrip("\n")) == 40 and len(again.rstrip("\n")) == 40
    assert first == run_cli("sample", latest, "-n", "40", "--seed", "7", check_exit=0).stdout  # the seed decides
    resumed = run_cli("train", text, "--resume", latest, "--out", tmp_path / "run", "--steps", "8", check_exit=0)
    assert "8 steps" in resumed.stdout


# One child computes with the cache folder empty (compiles, writes the cache), a second one
# with the same folder must load every kernel it uses from it.
KERNELS_USED = """
import json, numpy as np, minigrad as mg
from minigrad import kernels
x = mg.tensor(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32), requires_grad=True)
loss = (x * x).tanh().sum(axis=1).sum()  # a generated elementwise kernel and a package kernel (sum_rows)
loss.backward()
stats = kernels.sum_rows.stats
print(json.dumps({"loss": float(loss.data), "grad": float(np.abs(x.grad).sum()),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def run_child(tmp_path, cache: Path) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(ROOT), MINIGRAD_CACHE_DIR=str(cache))
    result = subprocess.run([sys.executable, "-c", KERNELS_USED], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_kernel_cache_is_written_then_loaded(tmp_path):
    cache = tmp_path / "cache"
    cold = run_child(tmp_path, cache)
    assert any(cache.rglob("*.nbi")), "no kernel cache index was written"
    warm = run_child(tmp_path, cache)
    assert (warm["loss"], warm["grad"]) == (cold["loss"], cold["grad"])
    assert cold["misses"] >= 1 and warm["hits"] >= 1 and warm["misses"] == 0


def test_the_fused_engine_passes_gradcheck():
    case = next(case for case in checks.cell_cases(["lstm"]) if "fused" in case.name)
    result = checks.run_case(case)
    assert result.ok, (result.max_abs_error, result.max_rel_error)
    assert np.isfinite(result.max_abs_error)


def test_ci_pins_the_floors_that_pyproject_declares():
    import re

    text = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    floors = dict(re.findall(r'"([a-z]+)>=([0-9.]+)', dependencies))
    pinned = dict(re.findall(r"'([a-z]+)==([0-9.]+)'", re.search(r"^LOWEST=\((.*)\)", (ROOT / ".ci" / "run").read_text(),
                                                                  re.M).group(1)))
    assert pinned == floors and set(floors) == {"numpy", "numba", "threadpoolctl", "click", "safetensors"}
