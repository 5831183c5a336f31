"""The graph page's data and files, without a browser: `mg.viz.to_html`, `graph`, `show`, the
notebook views, the layouts (Graphviz present and absent), escaping, and `graph --html`.

What the page does in a browser is tested in tests/test_viz_browser.py.
"""

import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import minigrad as mg
from cli.graph import graph as graph_command
from minigrad import autograd, viz, viz_layout
from rnn.model.layers import Recurrent
from browser_support import require

DATA = re.compile(r'<script type="application/json" id="graph-data">(.*?)</script>', re.S)
RULES_PY = Path(mg.__file__).with_name("rules.py")
HOSTILE = "</script><script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">'\""


def page_model(text: str) -> dict:
    """The JSON the page's script reads, parsed back from the page."""
    return json.loads(DATA.search(text).group(1))


def lstm_loss(steps=2, engine="eager", hidden=3):
    """(loss, layer, names, walk): an LSTM unrolled `steps` steps, after one recorded backward."""
    mg.random.manual_seed(0)
    layer = Recurrent("lstm", 2, hidden, engine=engine)
    x = mg.tensor(np.random.default_rng(0).standard_normal((1, steps, 2)).astype(np.float32))
    h0, c0 = (mg.tensor(np.zeros((1, hidden), np.float32)) for _ in range(2))
    outputs, _ = layer(x, [(h0, c0)])
    loss = (outputs * outputs).sum()
    walk = []  # the engine's own order, seen through its hook (not through mg.viz)
    with autograd.observe_backward(lambda node, outs, ins: walk.append(node)):
        loss.backward()
    return loss, layer, {id(h0): "h0", id(c0): "c0"}, walk


def below_its_inputs(model) -> bool:
    """Data flows down: every edge ends lower on the page than it starts."""
    nodes = model["nodes"]
    return all(nodes[e["to"]]["y"] > nodes[e["from"]]["y"] for e in model["edges"])


# ---- what the page holds ---------------------------------------------------------------------

def test_page_has_one_node_per_op_and_leaf_and_the_walk_in_the_engines_order(tmp_path):
    loss, layer, names, walk = lstm_loss()
    view = mg.viz.to_html(loss, tmp_path / "page.html", names=names, params=layer.named_parameters())
    model = page_model((tmp_path / "page.html").read_text(encoding="utf-8"))
    counted = viz._Graph(loss)  # the DOT writer's walk over the same graph
    assert len(model["nodes"]) == len(counted.ops) + len(counted.leaves) + 1  # + the output
    assert [step["node"] for step in model["walk"]] == [view.index_of(node) for node in walk]
    titles = {node["title"] for node in model["nodes"]}
    assert {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "h0", "c0"} <= titles
    assert all(e["label"] for e in model["edges"])  # every edge says its shape


def test_page_gradients_are_the_ones_backward_accumulated(tmp_path):
    loss, layer, names, _ = lstm_loss()
    view = mg.viz.graph(loss, names=names, params=layer.named_parameters())
    for name, parameter in layer.named_parameters():
        shown = view.model["tensors"][view.model["nodes"][view.index_of(parameter)]["outputs"][0]]["grad"]
        flat = parameter.grad.reshape(-1)
        np.testing.assert_allclose(shown["values"], flat[:len(shown["values"])], rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose([shown["min"], shown["max"]], [flat.min(), flat.max()], rtol=1e-3)
        assert shown["shape"] == list(parameter.shape)


def test_replaying_the_walk_changes_no_gradient():
    loss, layer, _, _ = lstm_loss()
    before = {name: p.grad.copy() for name, p in layer.named_parameters()}
    mg.viz.graph(loss)  # no walk given: the engine walks again, accumulating nothing
    for name, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, before[name])


def test_elementwise_ops_show_their_line_of_rules_py_and_others_a_formula():
    loss, _, _, _ = lstm_loss(steps=1)
    model = mg.viz.graph(loss).model
    lines = RULES_PY.read_text(encoding="utf-8").splitlines()
    tanh = next(node for node in model["nodes"] if node["op"] == "Tanh")
    number = int(re.search(r"line (\d+)", tanh["rule"]["where"]).group(1))
    assert lines[number - 1].split() == tanh["rule"]["text"].split()
    assert '"tanh":' in tanh["rule"]["text"] and "1.0 - out * out" in tanh["rule"]["text"]
    matmul = next(node for node in model["nodes"] if node["op"] in ("MatMul", "Linear"))
    assert matmul["rule"]["where"] == "in words" and "^T" in matmul["rule"]["text"]


def test_a_fused_node_carries_the_kernel_source_of_its_cell():
    loss, layer, _, walk = lstm_loss(engine="fused")
    model = mg.viz.graph(loss).model
    fused = [node for node in model["nodes"] if node["kind"] == "fused"]
    assert len(fused) == 1 and fused[0]["op"] == "FusedRecurrence"
    recurrence = next(node for node in walk if node.name == "FusedRecurrence")
    assert fused[0]["kernel"] == recurrence.options["fused"].source
    assert "def step_backward" in fused[0]["kernel"]


def test_a_leaf_root_and_a_root_without_grad_make_a_page_without_a_walk(tmp_path):
    mg.viz.to_html(mg.tensor([1.0, 2.0]), tmp_path / "leaf.html")
    model = page_model((tmp_path / "leaf.html").read_text(encoding="utf-8"))
    assert len(model["nodes"]) == 1 and model["walk"] == []
    with mg.no_grad():
        y = mg.tensor([1.0]) * 2
    assert mg.viz.graph(y).model["walk"] == []


def test_non_finite_values_are_written_as_text_so_the_json_stays_valid(tmp_path):
    x = mg.tensor([1.0, 0.0], requires_grad=True)
    y = mg.log(x).sum()
    mg.viz.to_html(y, tmp_path / "inf.html")
    model = page_model((tmp_path / "inf.html").read_text(encoding="utf-8"))
    log_output = model["tensors"][next(n for n in model["nodes"] if n["op"] == "Log")["outputs"][0]]
    assert log_output["values"][1] == "-inf" and log_output["nonfinite"] == 1


# ---- self-contained and escaped --------------------------------------------------------------

def test_the_page_loads_nothing_from_anywhere(tmp_path):
    loss, layer, names, _ = lstm_loss(steps=1)
    text = mg.viz.graph(loss, names=names, params=layer.named_parameters()).html()
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]*", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, not a fetch
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc\s*=|@import|url\(\s*['\"]?(?!#)", text)
    assert "default-src 'none'" in text  # and the browser is told so


def test_hostile_names_cannot_close_the_script_or_the_title():
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    loss = (x * x).sum()
    text = mg.viz.graph(loss, names={x: HOSTILE}, title=HOSTILE).html()
    assert text.count("</script>") == 2  # the page's own two script elements, nothing more
    assert "<img" not in text and "window.__pwned" in text  # present, as data only
    assert HOSTILE in [node["title"] for node in page_model(text)["nodes"]]  # and intact when parsed


# ---- layout: Graphviz present and absent -----------------------------------------------------

def test_without_graphviz_the_layered_fallback_lays_the_graph_top_to_bottom(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # `import graphviz` now raises ImportError
    loss, _, _, _ = lstm_loss()
    model = mg.viz.graph(loss).model
    assert model["layout"] == "layered (graphviz not available)"
    assert below_its_inputs(model)
    assert all(len(edge["route"]) == 2 for edge in model["edges"])


def test_with_the_package_but_no_dot_program_the_page_still_gets_the_fallback(monkeypatch):
    require("graphviz (PyPI)", viz_layout._graphviz() is not None)
    monkeypatch.setenv("PATH", "")  # the package is there, the `dot` program is not found
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    model = mg.viz.graph((x * x).sum()).model
    assert model["layout"] == "layered (graphviz not available)" and below_its_inputs(model)


def test_with_graphviz_dot_lays_out_the_graph():
    require("graphviz (PyPI) and dot", viz_layout._graphviz() is not None and viz_layout.graphviz_layout(
        [(10, 10)], []) is not None)
    loss, _, _, _ = lstm_loss()
    model = mg.viz.graph(loss).model
    assert model["layout"] == "graphviz dot"
    assert below_its_inputs(model)
    assert all(len(edge["route"]) % 3 == 1 for edge in model["edges"])  # Bezier pieces


def test_a_graph_too_large_for_dot_gets_the_layered_layout_without_recursion():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):  # 5,000 ops, 1 leaf, and the output node
        y = mg.tanh(y)
    model = mg.viz.graph(y).model
    assert len(model["nodes"]) == 5002
    assert model["layout"] == f"layered (over {viz_layout.GRAPHVIZ_MAX_NODES} nodes)"
    assert len(model["walk"]) == 5000 and below_its_inputs(model)


def test_multi_output_edges_say_which_output():
    loss, _, _, _ = lstm_loss(engine="fused")
    labels = [edge["label"] for edge in mg.viz.graph(loss).model["edges"]]
    assert any(label.startswith("out 0: ") for label in labels)


# ---- notebooks ---------------------------------------------------------------------------------

def test_a_tensor_shows_a_short_escaped_summary_in_a_notebook():
    x = mg.tensor([[1.0, -3.0]], requires_grad=True)
    (x * x).sum().backward()
    text = x._repr_html_()
    assert text == "<code>tensor (1, 2) float32 · leaf, requires_grad · min -3 · mean -1 · max 1 · .grad set</code>"
    assert "grad_fn=Mul" in (x * x)._repr_html_()


def test_the_graph_view_shows_the_page_inline_and_as_svg():
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    loss = (x * x).sum()
    view = mg.viz.graph(loss, names={x: HOSTILE})
    inline = view._repr_html_()
    assert inline.startswith("<iframe srcdoc=\"") and "<script" not in inline  # the page, escaped into srcdoc
    svg = ElementTree.fromstring(view._repr_svg_())  # well-formed, so the name was escaped
    rects = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 1 + len(view.model["nodes"])  # a background and one box per node
    label = view.model["nodes"][view.index_of(x)]["label"]  # the name, cut to fit its box
    assert label.startswith("</script><script>") and label in [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]


def test_show_returns_the_view_and_displays_it_under_ipython(monkeypatch):
    shown = []
    display_module = type(sys)("IPython.display")
    display_module.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", type(sys)("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    x = mg.tensor([1.0], requires_grad=True)
    view = mg.viz.show(x * 2)
    assert shown == [view] and isinstance(view, viz.GraphView)


# ---- the command -----------------------------------------------------------------------------

def test_graph_html_writes_the_page_of_an_unrolled_cell_after_one_backward(tmp_path):
    path = tmp_path / "lstm.html"
    result = CliRunner().invoke(graph_command, ["--cell", "lstm", "--steps", "3", "--html", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {path}: lstm, 3 steps, eager")
    model = page_model(path.read_text(encoding="utf-8"))
    assert model["title"] == "lstm, 3 steps, eager"
    assert sum(node["op"] == "Tanh" for node in model["nodes"]) == 2 * 3  # two tanh per LSTM step
    params = [node for node in model["nodes"] if node["kind"] == "param"]
    assert {node["title"] for node in params} == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    assert all(model["tensors"][node["outputs"][0]]["grad"] is not None for node in params)
    assert len(model["walk"]) > 0


def test_graph_html_fused_shows_the_fused_node_with_its_kernel(tmp_path):
    path = tmp_path / "fused.html"
    result = CliRunner().invoke(graph_command, ["--steps", "3", "--fused", "--html", str(path)])
    assert result.exit_code == 0, result.output
    model = page_model(path.read_text(encoding="utf-8"))
    fused = [node for node in model["nodes"] if node["kind"] == "fused"]
    assert len(fused) == 1 and "def step_forward" in fused[0]["kernel"]


def test_graph_html_into_a_missing_folder_is_one_line_and_exit_1(tmp_path):
    result = CliRunner().invoke(graph_command, ["--html", str(tmp_path / "no" / "page.html")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: cannot write {tmp_path / 'no' / 'page.html'}: "
                                                  "No such file or directory"]


# ---- the browser tests' rule: skip on a developer's machine, fail in CI -------------------------

def test_a_missing_browser_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        require("chromium", False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this test"):
        require("chromium", False)
    require("chromium", True)  # present: nothing happens
