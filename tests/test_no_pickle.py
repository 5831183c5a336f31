"""Nothing in the product can unpickle: a checkpoint or a text is data, never code.

Two checks:
- statically, every .py file of minigrad/, rnn/ and cli/ is parsed (ast) and may not import
  pickle or its relatives (dill, cloudpickle, shelve, marshal, joblib), pass allow_pickle=True
  to anything (np.load), call torch.load, or import one of those modules by name at run time;
- dynamically, a subprocess imports the whole product, trains, samples, saves and loads a
  checkpoint, then looks at every product module's globals for a reference to those modules
  or to anything defined in them.

Why the dynamic check does not simply assert `"pickle" not in sys.modules`: numpy imports
pickle itself (`import numpy` alone puts it in sys.modules: numpy.random and ndarray
pickling support), and numba imports its vendored cloudpickle and reads its own on-disk
kernel-cache index with pickle (a file numba wrote into the user's cache dir, never a file
the user gives). Neither is reachable from a checkpoint or a text; what the product itself
must never do is hold or call these modules, which is what is asserted.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("minigrad", "rnn", "cli")
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib",
                     "copyreg"}


def product_files():
    files = sorted(path for package in PRODUCT_PACKAGES for path in (ROOT / package).rglob("*.py"))
    assert len(files) >= 10, "the product's sources were not found"
    return files


def forbidden_uses(source: str) -> list:
    """(line, what) for each way `source` could unpickle something."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    problems.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            if node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append((node.lineno, f"from {node.module} import ..."))
            # from numba import cloudpickle / from x import pickle
            for alias in node.names:
                if alias.name in FORBIDDEN_MODULES:
                    problems.append((node.lineno, f"from {node.module} import {alias.name}"))
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                problems.append((node.value.lineno, "allow_pickle not False"))
        elif isinstance(node, ast.Call):
            function = node.func
            if (isinstance(function, ast.Attribute) and function.attr == "load"
                    and isinstance(function.value, ast.Name) and function.value.id == "torch"):
                problems.append((node.lineno, "torch.load"))
            # importlib.import_module("pickle") / __import__("pickle")
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and str(first.value).split(".")[0] in FORBIDDEN_MODULES:
                    problems.append((node.lineno, f"{name}({first.value!r})"))
    return problems


def test_the_checker_finds_what_it_looks_for():
    """The AST check itself: each forbidden form is reported, harmless look-alikes are not."""
    bad = """
import pickle
import dill as d
from cloudpickle import loads
from numba import cloudpickle
import shelve, marshal
np.load(path, allow_pickle=True)
torch.load(path)
importlib.import_module("pickle")
__import__("_pickle")
"""
    assert len(forbidden_uses(bad)) == 10
    harmless = """
import json
np.load(path)
np.load(path, allow_pickle=False)
json.load(file)
safetensors.torch.load_file(path)
"""
    assert forbidden_uses(harmless) == []


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_source_can_unpickle(path):
    problems = forbidden_uses(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(f"line {n}: {what}" for n, what in problems)


# Runs in a fresh interpreter: import everything, use everything, then inspect the globals.
EXERCISE_THE_PRODUCT = r"""
import importlib, json, pkgutil, sys, tempfile, types
from pathlib import Path

import minigrad, rnn, cli.main
from rnn.checkpoint.format import load_checkpoint
from rnn.data.corpus import Corpus
from rnn.evaluate import evaluate
from rnn.sample import sample
from rnn.training.loop import TrainConfig, train

# Import every product module, so that none escapes the inspection below.
for package in (minigrad, rnn, importlib.import_module("cli")):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass  # optional extras (e.g. matplotlib for cli.plot)

text = "the cat sat on the mat. the dog sat on the log.\n" * 20
with tempfile.TemporaryDirectory() as folder:
    config = TrainConfig(layers=1, hidden=8, embed=4, seq_len=8, batch_size=2, steps=3, eval_every=2,
                         sample_every=0, dtype="float64", warmup=0)
    summary = train(config, Corpus.from_text(text), folder)
    checkpoint = load_checkpoint(summary["checkpoint"])
    generated = "".join(sample(checkpoint.model, checkpoint.vocab, prime="the", length=20, seed=1))
    loss = evaluate(checkpoint.model, checkpoint.vocab, text[:200])["loss_nats"]

FORBIDDEN = set(json.loads(sys.argv[1]))
def forbidden(value):
    if isinstance(value, types.ModuleType):
        return value.__name__.split(".")[-1] in FORBIDDEN or value.__name__.split(".")[0] in FORBIDDEN
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and (module.split(".")[0] in FORBIDDEN or module.split(".")[-1] in FORBIDDEN)

product = sorted(name for name in sys.modules if name.split(".")[0] in ("minigrad", "rnn", "cli"))
references = [f"{name}.{attribute}" for name in product for attribute, value in vars(sys.modules[name]).items()
              if forbidden(value)]
print(json.dumps({"modules": product, "references": references, "sample": generated, "loss": loss}))
"""


def test_a_full_run_holds_no_reference_to_pickle():
    result = subprocess.run([sys.executable, "-c", EXERCISE_THE_PRODUCT, json.dumps(sorted(FORBIDDEN_MODULES))],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The run really happened and really covered the product.
    assert len(report["sample"]) == 20 and report["loss"] > 0
    for expected in ("minigrad.tensor", "minigrad.optim", "rnn.checkpoint.format", "rnn.data.corpus", "rnn.training.loop", "cli.main"):
        assert expected in report["modules"]
    assert report["references"] == []
