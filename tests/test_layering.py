"""The engine's modules form one-way layers: each imports only modules before it in LAYERS.

Checked two ways: the imports written in the source (parsed with ast) form a graph whose
every edge points backwards in LAYERS (so there is no cycle); and each module, imported
alone in a fresh interpreter (the package's __init__ replaced by an empty stub), loads
no module that comes after it.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minigrad"

# Bottom to top, as minigrad/__init__.py's docstring tells a reader.
LAYERS = ["files", "rules", "kernel_cache", "jit", "threads", "allocator", "random", "autograd", "grad_mode", "anomaly",
          "forward_mode", "codegen", "blas", "kernels", "precompile", "runtime", "elementwise", "matmul", "ops", "tensor",
          "derivatives", "gradcheck", "nn", "optim", "viz_layout", "viz_model", "viz"]
# An import inside a function (a "deferred" import) hides a cycle; none in the engine core.
CORE = ["autograd", "grad_mode", "anomaly", "forward_mode", "elementwise", "matmul", "ops", "tensor", "derivatives", "gradcheck", "rules", "kernels", "codegen", "nn", "optim", "viz"]


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


def test_every_engine_module_has_a_layer():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    unplaced = modules - set(LAYERS)
    # A module another change adds must still form a DAG; give it a layer here when it lands.
    assert set(CORE) <= modules and not (unplaced & set(CORE))


@pytest.mark.parametrize("module", LAYERS)
def test_imports_point_only_to_earlier_layers(module):
    if not (PACKAGE / f"{module}.py").exists():
        pytest.skip(f"{module}.py is not in this tree")
    for imported in imports_of(module):
        if imported in LAYERS:
            assert LAYERS.index(imported) < LAYERS.index(module), f"{module} imports {imported}, a later layer"


def test_the_import_graph_of_the_whole_package_has_no_cycle():
    modules = [path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"]
    graph = {m: [i for i in imports_of(m) if i in modules] for m in modules}
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
