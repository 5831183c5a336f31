"""Graph inspection: `mg.viz.to_dot`, `print_graph` / `format_graph`, `op_counts`, and the
`minigrad-rnn graph` command.

The DOT text is parsed here with a few regular expressions (no graphviz needed) and checked
against what the LSTM equations say the graph must hold: 3 sigmoids, 2 tanh, 3 products
per step, each op with as many incoming edges as it has inputs.
"""

import collections
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import minigrad as mg
from cli.graph import graph
from rnn.model.layers import Recurrent

# Inputs per op, by op name: the in-degree each op node must have in the DOT graph.
ARITY = {"Add": 2, "Sub": 2, "Mul": 2, "MatMul": 2, "Linear": 3, "Sigmoid": 1, "Tanh": 1,
         "Transpose": 1, "Reshape": 1, "GetItem": 1, "Sum": 1}

QUOTED = r'"((?:[^"\\]|\\.)*)"'
NODE_LINE = re.compile(rf"^\s*(\w+) \[label={QUOTED}[^\]]*\];$")
EDGE_LINE = re.compile(rf"^\s*(\w+) -> (\w+)(?: \[label={QUOTED}\])?;$")


def parse_dot(text):
    """(nodes {id: label lines}, edges [(source, target, label)]) of our DOT; fails on any other line."""
    lines = text.strip().splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith("{"), lines[0]
    assert lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip().startswith("node ["):  # default attributes
            continue
        node, edge = NODE_LINE.match(line), EDGE_LINE.match(line)
        assert node or edge, f"not a node or edge line: {line!r}"
        if node:
            assert node.group(1) not in nodes, f"node {node.group(1)} declared twice"
            nodes[node.group(1)] = node.group(2).split("\\n")
        else:
            edges.append((edge.group(1), edge.group(2), edge.group(3)))
    for source, target, _ in edges:
        assert source in nodes and target in nodes, f"edge {source} -> {target} to an undeclared node"
    return nodes, edges


def op_name(label_lines):
    """The op's name from its label ("GetItem[:, 0:2]" -> "GetItem")."""
    return re.match(r"\w+", label_lines[0]).group(0)


def eager_lstm(steps=1, hidden=2, input_size=3, seed=0):
    mg.random.manual_seed(seed)
    layer = Recurrent("lstm", input_size, hidden, engine="eager")
    x = mg.tensor(np.random.default_rng(seed).standard_normal((1, steps, input_size)).astype(np.float32))
    h0, c0 = (mg.tensor(np.zeros((1, hidden), np.float32)) for _ in range(2))
    outputs, _ = layer(x, [(h0, c0)])
    return outputs, layer, {id(h0): "h0", id(c0): "c0"}


# ---- to_dot -----------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 2])
def test_dot_of_an_eager_lstm_has_the_ops_of_the_lstm_equations(steps):
    outputs, layer, names = eager_lstm(steps=steps)
    nodes, edges = parse_dot(mg.viz.to_dot(outputs, names=names, params=layer.named_parameters()))
    ops = {node: op_name(label) for node, label in nodes.items() if node.startswith("op")}
    counts = collections.Counter(ops.values())
    # per step: i, f, o gates; g gate and tanh(c); f*c, i*g, o*tanh(c); W_ih x and W_hh h
    assert counts["Sigmoid"] == 3 * steps
    assert counts["Tanh"] == 2 * steps
    assert counts["Mul"] == 3 * steps
    assert counts["Linear"] == 1  # one GEMM (and bias) for every step's input
    assert counts["MatMul"] == steps  # one per step for W_hh h
    # 4 gate sums and c = f*c + i*g per step; the b_hh addition per step
    assert counts["Add"] == 5 * steps + steps
    assert counts["Stack"] == 1


def test_dot_edges_match_each_ops_number_of_inputs():
    steps = 2
    outputs, layer, names = eager_lstm(steps=steps)
    nodes, edges = parse_dot(mg.viz.to_dot(outputs, names=names, params=layer.named_parameters()))
    in_degree = collections.Counter(target for _, target, _ in edges)
    out_degree = collections.Counter(source for source, _, _ in edges)
    arity = dict(ARITY, Stack=steps)
    for node, label in nodes.items():
        if node.startswith("op"):
            assert in_degree[node] == arity[op_name(label)], (node, label)
            assert out_degree[node] >= 1, f"{label} feeds nothing"
        else:
            assert in_degree[node] == (1 if node == "output" else 0), (node, label)
    assert len(edges) == sum(arity[op_name(label)] for node, label in nodes.items() if node.startswith("op")) + 1
    assert out_degree["output"] == 0 and in_degree["output"] == 1


def test_dot_labels_name_parameters_and_show_shape_dtype_and_grad():
    outputs, layer, names = eager_lstm(hidden=2, input_size=3)
    nodes, _ = parse_dot(mg.viz.to_dot(outputs, names=names, params=layer.named_parameters()))
    leaves = {label[0]: label[1:] for node, label in nodes.items() if node.startswith("leaf")}
    assert leaves["weight_ih_l0"] == ["(8, 3) float32", "requires_grad"]
    assert leaves["weight_hh_l0"] == ["(8, 2) float32", "requires_grad"]
    assert leaves["bias_ih_l0"] == ["(8,) float32", "requires_grad"]
    assert leaves["h0"] == ["(1, 2) float32", "no grad"]
    assert leaves["c0"] == ["(1, 2) float32", "no grad"]
    assert nodes["output"] == ["output", "(1, 1, 2) float32"]


def test_names_can_be_keyed_by_tensor_and_params_given_as_a_dict():
    w = mg.nn.Parameter(np.ones((2, 2)))
    x = mg.tensor(np.ones(2), requires_grad=True)
    y = w @ x
    nodes, _ = parse_dot(mg.viz.to_dot(y, names={x: "x"}, params={"w": w}))
    titles = sorted(label[0] for node, label in nodes.items() if node.startswith("leaf"))
    assert titles == ["w", "x"]
    unnamed, _ = parse_dot(mg.viz.to_dot(y))
    assert sorted(label[0] for node, label in unnamed.items() if node.startswith("leaf")) == ["Parameter", "tensor"]


def test_a_constant_shows_its_value_and_a_gru_shows_the_one_of_one_minus_z():
    mg.random.manual_seed(0)
    layer = Recurrent("gru", 2, 2, engine="eager")
    outputs, _ = layer(mg.tensor(np.ones((1, 1, 2), np.float32)))
    nodes, edges = parse_dot(mg.viz.to_dot(outputs))
    constant = [node for node, label in nodes.items() if label[0] == "constant 1"]
    assert len(constant) == 1
    (target,) = [t for s, t, _ in edges if s == constant[0]]
    assert op_name(nodes[target]) == "Sub"  # 1 - z


def test_dot_escapes_quotes_and_backslashes_in_names():
    x = mg.tensor([1.0], requires_grad=True)
    text = mg.viz.to_dot(x.exp(), names={id(x): 'say "hi" \\ bye'})
    assert r'say \"hi\" \\ bye' in text
    nodes, _ = parse_dot(text)
    assert any(label[0] == r'say \"hi\" \\ bye' for label in nodes.values())


def test_dot_of_a_leaf_is_one_node():
    x = mg.tensor(np.zeros((2, 3)), requires_grad=True)
    nodes, edges = parse_dot(mg.viz.to_dot(x, names={id(x): "x"}))
    assert nodes == {"leaf0": ["x", "(2, 3) float64", "requires_grad"]} and edges == []


def test_fused_layer_is_one_node_with_numbered_outputs():
    mg.random.manual_seed(0)
    layer = Recurrent("rnn", 2, 3, engine="fused", dtype=np.float64)
    outputs, [(h_last,)] = layer(mg.tensor(np.ones((1, 4, 2))))
    loss = outputs.sum() + h_last.sum()
    nodes, edges = parse_dot(mg.viz.to_dot(loss))
    fused = [node for node, label in nodes.items() if op_name(label) == "FusedRecurrence"]
    assert len(fused) == 1
    assert nodes[fused[0]][1:] == ["out 0: (1, 4, 3) float64", "out 1: (1, 3) float64"]
    assert sorted(label for source, _, label in edges if source == fused[0]) == ["out 0", "out 1"]
    ops = collections.Counter(op_name(label) for node, label in nodes.items() if node.startswith("op"))
    # the recurrence is one node; the input projection of all steps is one Linear before it
    assert ops == {"Linear": 1, "FusedRecurrence": 1, "Sum": 2, "Add": 1}


def test_dot_of_a_10000_op_chain_needs_no_recursion():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0
    nodes, edges = parse_dot(mg.viz.to_dot(y))
    assert sum(node.startswith("op") for node in nodes) == 10_000
    assert len(edges) == 2 * 10_000 + 1  # each Mul reads the chain and a constant; + the output


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graphviz_accepts_the_dot_text(tmp_path):
    outputs, layer, names = eager_lstm(steps=2)
    result = subprocess.run(["dot", "-Tsvg"], input=mg.viz.to_dot(outputs, names=names), text=True,
                            capture_output=True)
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout


def test_viz_does_not_change_the_gradients():
    x = mg.tensor([0.3, -0.4], requires_grad=True)
    loss = (x.tanh() * x).sum()
    mg.viz.to_dot(loss)
    mg.viz.format_graph(loss)
    loss.backward()
    t = np.tanh(x.data)
    np.testing.assert_allclose(x.grad, (1 - t * t) * x.data + t, rtol=1e-6)


# ---- the text tree -----------------------------------------------------------------------------

def indentation(line):
    return len(line) - len(line.lstrip(" "))


def test_print_graph_prints_a_shared_subgraph_once_then_refers_to_it(capsys):
    x = mg.tensor([0.3, -0.7], requires_grad=True)
    h = x.tanh()
    loss = (h * h + h).sum()
    mg.viz.print_graph(loss, names={id(x): "x"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Sum #1  () float32"
    tanh_lines = [line for line in lines if line.lstrip().startswith("Tanh")]
    assert len(tanh_lines) == 3  # h read three times
    definitions = [line for line in tanh_lines if "(above)" not in line]
    assert len(definitions) == 1 and definitions[0].strip().endswith("(2,) float32")
    number = re.search(r"#(\d+)", definitions[0]).group(1)
    assert all(f"Tanh #{number} (above)" in line for line in tanh_lines if line not in definitions)
    # the shared subgraph's contents (x) are printed once, under the definition
    x_lines = [k for k, line in enumerate(lines) if line.strip().startswith("x  ")]
    assert len(x_lines) == 1
    assert lines[x_lines[0] - 1] == definitions[0]
    assert lines[x_lines[0]].strip() == "x  (2,) float32  requires_grad"


def test_print_graph_indents_each_input_under_its_op():
    a = mg.tensor([1.0], requires_grad=True)
    b = mg.tensor([2.0], requires_grad=True)
    text = mg.viz.format_graph((a * b).exp(), names={id(a): "a", id(b): "b"})
    assert text.splitlines() == [
        "Exp #1  (1,) float32",
        "  Mul #2  (1,) float32",
        "    a  (1,) float32  requires_grad",
        "    b  (1,) float32  requires_grad",
    ]


def test_print_graph_of_an_lstm_step_names_parameters_and_slices():
    outputs, layer, names = eager_lstm(hidden=2)
    text = mg.viz.format_graph(outputs, names=names, params=layer.named_parameters())
    lines = text.splitlines()
    for line in lines[1:]:  # a child is indented at most one level deeper than the line above it
        assert indentation(line) % 2 == 0
    steps_deeper = [indentation(b) - indentation(a) for a, b in zip(lines, lines[1:])]
    assert max(steps_deeper) == 2
    # every op is defined once: op definitions = op nodes of the graph
    definitions = [line for line in lines if re.match(r"\s*\w+(\[.*?\])? #\d+  ", line)]
    assert len(definitions) == sum(mg.viz.op_counts(outputs).values())
    for gate_columns in ("[:, 0:2]", "[:, 2:4]", "[:, 4:6]", "[:, 6:8]"):  # i, f, g, o
        assert f"GetItem{gate_columns}" in text
    for name in ("weight_ih_l0  (8, 3) float32  requires_grad", "h0  (1, 2) float32  no grad", "c0  "):
        assert name in text


def test_print_graph_of_a_deep_chain_keeps_lines_short():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y.tanh()
    lines = mg.viz.format_graph(y).splitlines()
    assert len(lines) == 10_001
    assert max(len(line) for line in lines) < 200
    assert lines[-1].endswith("(1,) float32  requires_grad") and "[depth 10000]" in lines[-1]


def test_print_graph_can_write_to_a_file(tmp_path):
    x = mg.tensor([1.0], requires_grad=True)
    path = tmp_path / "graph.txt"
    with open(path, "w") as file:
        mg.viz.print_graph(x * 2.0, file=file)
    assert path.read_text().splitlines()[0] == "Mul #1  (1,) float32"


def test_op_counts_counts_nodes_not_uses():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x.sigmoid()
    assert mg.viz.op_counts((h * h).sum()) == {"Sum": 1, "Mul": 1, "Sigmoid": 1}


# ---- minigrad-rnn graph ------------------------------------------------------------------------

def run_graph(*args):
    return CliRunner().invoke(graph, list(args))


def test_graph_command_prints_the_text_tree_of_an_unrolled_lstm():
    result = run_graph("--cell", "lstm", "--steps", "2", "--hidden", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Stack #1  (1, 2, 3) float32")
    defined = collections.Counter(re.match(r"\s*(\w+)", line).group(1) for line in lines
                                  if re.match(r"\s*\w+(\[.*?\])? #\d+  ", line))
    assert defined["Sigmoid"] == 6 and defined["Tanh"] == 4 and defined["Mul"] == 6
    for text in ("weight_hh_l0  (12, 3) float32  requires_grad", "h0  (1, 3)", "c0  (1, 3)", "(above)"):
        assert text in result.output


def test_graph_command_writes_dot_to_a_file(tmp_path):
    path = tmp_path / "gru.dot"
    result = run_graph("--cell", "gru", "--steps", "3", "--hidden", "2", "--dot", str(path))
    assert result.exit_code == 0, result.output
    assert str(path) in result.output
    nodes, edges = parse_dot(path.read_text())
    counts = collections.Counter(op_name(label) for node, label in nodes.items() if node.startswith("op"))
    assert counts["Sigmoid"] == 2 * 3 and counts["Tanh"] == 3  # r, z and n per step
    assert f"{sum(counts.values())} ops" in result.output
    assert any(label[0] == "weight_ih_l0" for label in nodes.values())


def test_graph_command_prints_the_fused_kernel_source():
    result = run_graph("--cell", "lstm", "--kernel")
    assert result.exit_code == 0, result.output
    assert "def step_forward(" in result.output and "def step_backward(" in result.output
    compile(result.output, "lstm kernels", "exec")  # it is valid Python


def test_graph_kernel_comments_every_generated_line_with_the_gate_it_computes():
    result = run_graph("--cell", "gru", "--kernel")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # the loop bodies: every line that assigns a prefixed variable or an output array says what it is
    body = [line for line in lines if re.match(r" {12}(_|saved\[|state_out\[|new_state\[|g_xp\[|g_hp\[|g_states\[)", line)]
    assert len(body) > 60 and all("  # " in line for line in body), [line for line in body if "  # " not in line]
    comments = {line.split("  # ", 1)[1] for line in body}
    for gate in ("r = sigmoid(x.r + h.r)", "z = sigmoid(x.z + h.z)", "n = tanh(x.n + r * h.n)",
                 "h' = (1 - z) * n + z * h", "keep r for backward", "dL/dr via r * h.n", "dL/dx.n"):
        assert gate in comments, gate


@pytest.mark.parametrize("args, message", [
    (["--cell", "no_such_cell"], "unknown cell 'no_such_cell'"),
    (["--dot", "/nonexistent/dir/out.dot"], "cannot write /nonexistent/dir/out.dot"),
])
def test_graph_command_errors_are_one_line_and_exit_1(args, message):
    result = run_graph(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr


def test_graph_takes_the_shared_cell_file_option():
    """graph's --cell-file is the other commands' (cli.options): the same help, a missing file a usage error."""
    from cli.main import main

    helps = {command: main.commands[command].params for command in ("graph", "sample", "gradcheck")}
    cell_file = {command: next(p for p in params if p.name == "cell_file") for command, params in helps.items()}
    assert len({(option.help, repr(option.type)) for option in cell_file.values()}) == 1
    result = run_graph("--cell-file", "/nonexistent/cells.py")
    assert result.exit_code == 2 and result.stdout == ""
    assert "Invalid value for '--cell-file'" in result.stderr and "does not exist" in result.stderr


def test_graph_command_through_the_console_script_with_a_cell_file(tmp_path):
    script = shutil.which("minigrad-rnn")
    if script is None:
        pytest.skip("the minigrad-rnn console script is not installed")
    cell_file = tmp_path / "my_cells.py"
    cell_file.write_text(
        "from rnn import cell, sigmoid, tanh\n\n"
        "@cell(gates=('z', 'n'), state=('h',))\n"
        "def viz_test_cell(x, h):\n"
        "    z = sigmoid(x.z + h.z)\n"
        "    return z * h + (1 - z) * tanh(x.n + h.n)\n"
    )
    result = subprocess.run([script, "graph", "--cell-file", str(cell_file), "--cell", "viz_test_cell",
                             "--steps", "1", "--hidden", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    defined = [line.strip() for line in result.stdout.splitlines() if re.match(r"\s*(Sigmoid|Tanh) #\d+  ", line)]
    assert len(defined) == 2
    missing = subprocess.run([sys.executable, "-m", "cli.main", "graph", "--cell", "nope"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "unknown cell 'nope'" in missing.stderr
