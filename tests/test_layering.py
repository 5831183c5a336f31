"""The project's modules form one-way layers: each imports only modules before it.

minigrad, then rnn, then cli; inside each, the order of LAYERS, RNN_LAYERS and CLI_LAYERS.
Checked three ways: every module of the three packages has a place (a module another
change adds fails here until it is given one); the imports written in the source (parsed
with ast; an import inside a function, a "deferred" import, counts like any other) point
only backwards, so there is no import cycle anywhere; and each engine module, imported
alone in a fresh interpreter (minigrad's __init__ replaced by an empty stub), loads no
module that comes after it.
"""

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigrad"

# Bottom to top, as minigrad/__init__.py's docstring tells a reader.
LAYERS = ["files", "rules", "kernel_cache", "jit", "threads", "allocator", "random", "autograd", "grad_mode", "anomaly",
          "forward_mode", "codegen", "blas", "fast_exp", "kernels", "precompile", "runtime", "elementwise", "matmul", "ops", "tensor",
          "derivatives", "gradcheck", "nn", "optim", "viz_layout", "viz_model", "viz"]
# An import inside a function (a "deferred" import) hides a cycle; none in the engine core.
CORE = ["autograd", "grad_mode", "anomaly", "forward_mode", "elementwise", "matmul", "ops", "tensor", "derivatives", "gradcheck", "rules", "kernels", "codegen", "nn", "optim", "viz"]


# rnn, bottom to top: errors; the cell language; the fused engine; the model; data; the light
# settings; run-folder files and checkpoint headers (no model); checkpoints; sampling and
# evaluation; training.
RNN_LAYERS = ["errors", "cells.expr", "cells.registry",
              "fused.panel_driver", "fused.packed_gemm", "fused.packed_gemm_bf16", "fused.bf16_window", "fused.drawing", "fused.loops.cell_kernels", "fused.loops.window", "fused.loops.elementwise", "fused.loops.sampling",
              "fused.compiler", "fused.recurrence", "fused.elementwise_recurrence", "fused.projection",
              "model.options", "model.layers", "model.charlm", "model.checks",
              "data.text", "data.vocab", "data.ids", "data.corpus", "data.reading", "data.batches", "training.config",
              "runs.files", "checkpoint.values", "checkpoint.header", "runs.reader", "runs.folder",
              "checkpoint.format", "evaluate", "sample",
              "training.recipe", "training.optimizers", "training.state", "training.resume", "training.resume_policy", "training.sizing", "training.time_plan",
              "training.interrupt", "training.loop",
              "__init__"]
# cli, bottom to top: printing, the app, shared options, progress lines, the commands, main.
CLI_LAYERS = ["output", "output_file", "app", "options", "progress",
              "evaluate", "gradcheck", "graph", "info", "plot", "sample", "train", "main", "__init__"]
# The whole project, bottom to top, as dotted names (a package's __init__ under the package's name).
ORDER = [f"{package}.{module}".removesuffix(".__init__")
         for package, layers in (("minigrad", LAYERS + ["__init__"]), ("rnn", RNN_LAYERS), ("cli", CLI_LAYERS))
         for module in layers]


def project_modules() -> dict:
    """{dotted name: path} of every module of minigrad, rnn and cli."""
    found = {}
    for package in ("minigrad", "rnn", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def project_imports(name: str, path: Path, modules) -> dict:
    """{imported project module: True if imported at module level, False if deferred}.

    `from a.b import c` counts as an import of a.b.c when that is a module, else of a.b."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:  # import a.b.c where only a.b is ours: a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found[target] = found.get(target, False) or id(node) in top_level
    return found


@functools.cache
def project_graph() -> dict:
    modules = project_modules()
    return {name: project_imports(name, path, modules) for name, path in modules.items()}


def empty_subpackages(graph) -> set:
    """Sub-packages whose __init__ imports nothing: they hold a docstring and need no layer."""
    modules = project_modules()
    return {name for name, path in modules.items()
            if path.name == "__init__.py" and name.count(".") >= 1 and not graph[name]}


def imports_of(module: str) -> dict:
    """{imported sibling module: True if imported at module level, False if inside a def/class}."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("minigrad."):
            names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("minigrad.")]
        for name in names:
            found[name] = found.get(name, False) or id(node) in top_level
    return found


def test_every_module_has_a_layer():
    """A module with no place in the layers fails here (also one another change adds: give it one)."""
    graph = project_graph()
    unplaced = sorted(set(graph) - set(ORDER) - empty_subpackages(graph))
    assert not unplaced, f"modules with no layer (add them to LAYERS, RNN_LAYERS or CLI_LAYERS): {unplaced}"
    gone = sorted(set(ORDER) - set(graph))
    assert not gone, f"layers naming modules that do not exist: {gone}"
    assert set(CORE) <= set(LAYERS)


def test_subpackages_import_nothing():
    """`import rnn.runs.folder` runs rnn/runs/__init__.py too: a sub-package's __init__ stays a docstring,
    so that importing one light module never loads its heavy siblings."""
    graph = project_graph()
    subpackages = {name for name, path in project_modules().items() if path.name == "__init__.py" and "." in name}
    assert subpackages and subpackages == empty_subpackages(graph), sorted(subpackages - empty_subpackages(graph))


@pytest.mark.parametrize("module", ORDER)
def test_imports_point_only_to_earlier_layers(module):
    """Deferred imports (inside a def) count: they only hide a cycle."""
    graph = project_graph()
    for imported, at_top in graph.get(module, {}).items():
        if imported in ORDER:
            assert ORDER.index(imported) < ORDER.index(module), \
                f"{module} imports {imported}{'' if at_top else ' (inside a function)'}, a later layer"


def test_the_import_graph_of_the_whole_project_has_no_cycle():
    """Over minigrad, rnn and cli together, deferred imports included."""
    graph = {name: list(imports) for name, imports in project_graph().items()}
    modules = list(graph)
    state = {}  # white (absent), grey 1 (on the path), black 2 (done)

    def visit(start):
        stack = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                raise AssertionError(f"import cycle through {child}: {' -> '.join(n for n, _ in stack)} -> {child}")
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(graph[child])))

    for module in modules:
        if module not in state:
            visit(module)


@pytest.mark.parametrize("module", CORE)
def test_no_deferred_imports_in_the_core(module):
    deferred = [name for name, at_top in imports_of(module).items() if not at_top]
    assert deferred == [], f"{module} imports {deferred} inside a function"


PROBE = """
import importlib, sys, types
stub = types.ModuleType("minigrad")
stub.__path__ = [{directory!r}]
sys.modules["minigrad"] = stub          # the package without its __init__: one module alone
importlib.import_module("minigrad." + {module!r})
print(" ".join(sorted(name.split(".")[1] for name in sys.modules if name.startswith("minigrad."))))
"""


def test_each_module_imported_alone_loads_only_earlier_layers():
    for position, module in enumerate(LAYERS):
        if not (PACKAGE / f"{module}.py").exists():
            continue
        probe = PROBE.format(directory=str(PACKAGE), module=module)
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"importing minigrad.{module} alone failed:\n{done.stderr[-2000:]}"
        loaded = set(done.stdout.split())
        later = loaded & set(LAYERS[position + 1:])
        assert module in loaded and not later, f"importing {module} loaded later layers {sorted(later)}"


RUN_FOLDER_PROBE = """
import json, sys, tempfile
from pathlib import Path
from rnn.runs.folder import RunLock
from rnn.runs.reader import read_config
folder = Path(tempfile.mkdtemp())
(folder / "config.json").write_text(json.dumps({"hidden": 8}))
with RunLock(folder):
    assert read_config(folder / "config.json") == {"hidden": 8}
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in ("numba", "numpy", "llvmlite", "minigrad"))))
"""


def test_a_lock_and_config_json_load_neither_numpy_nor_numba():
    """Taking a run folder's lock and reading its config.json (what `plot` and a second `train` on
    the same folder do first) load no checkpoint loader, model, compiler or engine."""
    done = subprocess.run([sys.executable, "-c", RUN_FOLDER_PROBE], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
