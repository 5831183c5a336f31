"""Seeing the graph: the ops and leaf tensors that made a tensor, as a page, DOT text or a text tree.

    mg.viz.to_html(loss, "graph.html", params=model.named_parameters())  # an interactive page
    mg.viz.graph(loss)     # the same page inline in a notebook (or mg.viz.show(loss))
    print(mg.viz.to_dot(loss, params=model.named_parameters()))   # render with `dot -Tsvg`
    mg.viz.print_graph(loss)                                       # an indented tree in the terminal

The page (`to_html`) shows values, gradients, derivative rules and the backward walk; its
data comes from `viz_model`, its layout from `viz_layout`, its files from `viz_page`.

Both only read the graph (`tensor.grad_fn`, `node.inputs`): nothing is computed or changed,
and no graphviz is needed to produce the text. The DOT writer orders the graph with the
engine's one topological sort (`autograd.toposort`) and the tree printer uses an explicit
stack: no recursion, so the graph of a 10,000-step unrolled RNN prints as well as a small one.

What is a node where:
- an op node (`Function`) is one node, labelled with its name (`node.name`: Mul, Tanh,
  FusedRecurrence, ...) and the shape and dtype of each output;
- a leaf (a tensor no recorded op made: a parameter, an input, a constant) is one node,
  labelled with its name if given, its shape, dtype, and whether it requires grad;
- intermediate tensors are the edges between ops (an op with several outputs says which).
"""

import collections
import html
import sys
from numbers import Integral

from . import viz_layout, viz_model
from .autograd import toposort
from .files import write_atomically
from .nn import Parameter
from .tensor import Tensor
from .viz_model import record_backward  # noqa: F401  (mg.viz.record_backward)
from .viz_page import render_page, render_svg

# A page of more nodes than this draws only the part near the view (redrawn on scroll).
DRAW_ALL_LIMIT = 1500

# Deeper tree lines stop moving right (and say their depth instead), so a 10,000-step
# chain prints lines of bounded width rather than megabytes of spaces.
MAX_INDENT_LEVELS = 40


# ---- naming and labelling --------------------------------------------------------------------

def _name_table(names=None, params=None) -> dict:
    """id(tensor) -> display name, from `names` ({id or tensor: name}) and `params` ((name, tensor) pairs)."""
    table = {}
    if params is not None:
        pairs = params.items() if isinstance(params, dict) else params
        for name, tensor in pairs:
            table[id(tensor)] = name
    for key, name in (names or {}).items():
        table[key if isinstance(key, int) else id(key)] = name
    return table


def _spec(shape, dtype) -> str:
    return f"{tuple(shape)} {dtype}"


def _leaf_title(tensor: Tensor, table: dict) -> str:
    if id(tensor) in table:
        return table[id(tensor)]
    if tensor.name:
        return tensor.name
    if isinstance(tensor, Parameter):
        return "Parameter"
    if tensor.requires_grad:
        return "tensor"
    if tensor.size == 1:
        return f"constant {tensor.data.item():g}"  # the 1 of `1 - z`, a scale factor...
    return "constant"  # no gradient flows into it: an input, an initial state...


def _leaf_parts(tensor: Tensor, table: dict) -> tuple:
    """(name, "shape dtype", whether it requires grad): a leaf's label, line by line."""
    grad_note = "requires_grad" if tensor.requires_grad else "no grad"
    return _leaf_title(tensor, table), _spec(tensor.shape, tensor.dtype), grad_note


def _index_text(index) -> str:
    """x[index] written as in Python: (slice(None), slice(0, 2)) -> "[:, 0:2]"."""
    def one(part):
        if isinstance(part, slice):
            bounds = ["" if bound is None else str(bound) for bound in (part.start, part.stop)]
            return ":".join(bounds) + (f":{part.step}" if part.step is not None else "")
        if part is Ellipsis:
            return "..."
        if part is None:
            return "None"
        return str(part) if isinstance(part, Integral) else "array"
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(one(part) for part in parts) + "]"


def _op_title(node) -> str:
    """The op's name; for indexing also which slice it took (which gate, which step)."""
    if node.name == "GetItem" and hasattr(node, "index"):
        return node.name + _index_text(node.index)
    return node.name


def _output_index(tensor: Tensor):
    """Which output of its op `tensor` is, or None when the op has a single output."""
    node = tensor.grad_fn
    if len(node.output_specs) == 1:
        return None
    return next(k for k, output in enumerate(node.outputs()) if output is tensor)


# ---- the walk shared by the DOT writer -------------------------------------------------------

class _Graph:
    """The op nodes and leaves behind a tensor, the output's op first (reverse topological order)."""

    def __init__(self, root: Tensor):
        def producers(tensor):  # a tensor's parents are the tensors its op read
            return tensor.grad_fn.inputs if tensor.grad_fn is not None else ()

        self.ops, self.leaves = [], []
        self.op_number, self.leaf_number = {}, {}  # id -> index into the lists above
        for tensor in reversed(toposort([root], producers)):
            if tensor.grad_fn is None:
                self.leaf_number[id(tensor)] = len(self.leaves)
                self.leaves.append(tensor)
            elif id(tensor.grad_fn) not in self.op_number:  # (a multi-output op: once)
                self.op_number[id(tensor.grad_fn)] = len(self.ops)
                self.ops.append(tensor.grad_fn)

    def source_of(self, tensor: Tensor) -> str:
        """The DOT node id an edge carrying `tensor` starts from."""
        if tensor.grad_fn is None:
            return f"leaf{self.leaf_number[id(tensor)]}"
        return f"op{self.op_number[id(tensor.grad_fn)]}"


def _quote(text: str) -> str:
    """A DOT string literal: quotes and backslashes escaped, newlines as DOT's \\n."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _op_label(node) -> str:
    specs = node.output_specs
    if len(specs) == 1:
        return f"{_op_title(node)}\n{_spec(*specs[0])}"
    return _op_title(node) + "".join(f"\nout {k}: {_spec(*spec)}" for k, spec in enumerate(specs))


def to_dot(tensor: Tensor, names: dict = None, params=None, graph_name: str = "minigrad") -> str:
    """Graphviz DOT text of the graph that made `tensor`.

    names:  {id(t) or t: "name"} for any tensors you want labelled (inputs, states...);
    params: (name, tensor) pairs such as `model.named_parameters()`, or a dict name -> tensor.
    Edges run the way data flows: leaves -> ops -> ... -> the output node.
    """
    table = _name_table(names, params)
    graph = _Graph(tensor)
    lines = [
        f"digraph {_quote(graph_name)} {{",
        '  node [fontname="monospace", fontsize=10, shape=box];',
    ]
    for k, leaf in enumerate(graph.leaves):
        colour = "lightblue" if leaf.requires_grad else "whitesmoke"
        label = "\n".join(_leaf_parts(leaf, table))
        lines.append(f"  leaf{k} [label={_quote(label)}, style=filled, fillcolor={colour}];")
    for k, node in enumerate(graph.ops):
        lines.append(f"  op{k} [label={_quote(_op_label(node))}, style=rounded];")
    if tensor.grad_fn is not None:  # a leaf root is already drawn as its leaf node
        label = table.get(id(tensor), "output") + "\n" + _spec(tensor.shape, tensor.dtype)
        lines.append(f"  output [label={_quote(label)}, style=filled, fillcolor=palegreen];")
    for k, node in enumerate(graph.ops):
        for parent in node.inputs:
            index = _output_index(parent) if parent.grad_fn is not None else None
            attributes = f" [label={_quote(f'out {index}')}]" if index is not None else ""
            lines.append(f"  {graph.source_of(parent)} -> op{k}{attributes};")
    if tensor.grad_fn is not None:
        index = _output_index(tensor)
        attributes = f" [label={_quote(f'out {index}')}]" if index is not None else ""
        lines.append(f"  {graph.source_of(tensor)} -> output{attributes};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- the text tree ---------------------------------------------------------------------------

def format_graph(tensor: Tensor, names: dict = None, params=None) -> str:
    """The graph as an indented tree: each op above the tensors it read.

    An op reached a second time (a shared subgraph, e.g. h used by every gate) is
    printed once with a number `#k`, then referred to as `Name #k (above)`.
    """
    table = _name_table(names, params)
    numbers = {}  # id(op node) -> its #k
    lines = []
    stack = [(tensor, 0)]
    while stack:
        current, depth = stack.pop()
        indent = "  " * min(depth, MAX_INDENT_LEVELS)
        if depth > MAX_INDENT_LEVELS:
            indent += f"[depth {depth}] "
        node = current.grad_fn
        if node is None:
            lines.append(indent + "  ".join(_leaf_parts(current, table)))
            continue
        index = _output_index(current)
        which = f" out {index}" if index is not None else ""
        if id(node) in numbers:
            lines.append(f"{indent}{_op_title(node)} #{numbers[id(node)]}{which} (above)")
            continue
        numbers[id(node)] = number = len(numbers) + 1
        name = table.get(id(current)) or current.name
        name = f"  {name}" if name else ""
        lines.append(f"{indent}{_op_title(node)} #{number}{which}{name}  {_spec(current.shape, current.dtype)}")
        # reversed, so the first input is popped (printed) first
        stack.extend((parent, depth + 1) for parent in reversed(node.inputs))
    return "\n".join(lines) + "\n"


def print_graph(tensor: Tensor, names: dict = None, params=None, file=None):
    """Print `format_graph(tensor, ...)` (to stdout unless `file` is given)."""
    (file or sys.stdout).write(format_graph(tensor, names, params))


def op_counts(tensor: Tensor) -> dict:
    """How many op nodes of each name made `tensor`, e.g. {"Sigmoid": 3, "Tanh": 2, ...}."""
    return dict(collections.Counter(node.name for node in _Graph(tensor).ops))


# ---- the interactive page --------------------------------------------------------------------

class GraphView:
    """The page of a graph, for notebooks (`_repr_html_`: the page in an iframe; `_repr_svg_`:
    a still picture) and for files (`save`). `model` is the data the page shows."""

    def __init__(self, tensor: Tensor, names: dict = None, params=None, walk=None, title: str = None):
        table = _name_table(names, params)
        self.model, self._node_of = viz_model.build(
            tensor, lambda leaf: _leaf_title(leaf, table), _op_title, output_title=table.get(id(tensor), "output"),
            walk=walk, title=title or "minigrad graph")
        nodes, edges = self.model["nodes"], self.model["edges"]
        layout = viz_layout.place([(node["w"], node["h"]) for node in nodes], [(e["from"], e["to"]) for e in edges])
        for node, (x, y) in zip(nodes, layout.positions):
            node["x"], node["y"] = x, y
        for edge, route in zip(edges, layout.routes):
            edge["route"] = route
        self.model.update(width=layout.width, height=layout.height, layout=layout.engine,
                          draw_all_limit=DRAW_ALL_LIMIT)

    def index_of(self, item) -> int:
        """The page's node index (`data-index`) of an op node or a leaf tensor."""
        return self._node_of[id(item)]

    def html(self) -> str:
        return render_page(self.model)

    def save(self, path) -> None:
        write_atomically(path, self.html().encode("utf-8"))

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" style="width:100%;height:640px;'
                'border:1px solid #cbd5e1" sandbox="allow-scripts"></iframe>')

    def _repr_svg_(self) -> str:
        return render_svg(self.model)


def graph(tensor: Tensor, names: dict = None, params=None, walk=None, title: str = None) -> GraphView:
    """The graph page of `tensor` as an object a notebook displays inline (see `to_html`)."""
    return GraphView(tensor, names, params, walk, title)


def show(tensor: Tensor, names: dict = None, params=None, walk=None, title: str = None) -> GraphView:
    """Display the graph page inline when running under IPython; returns the GraphView either way."""
    view = GraphView(tensor, names, params, walk, title)
    try:
        from IPython.display import display
    except ImportError:
        return view
    display(view)
    return view


def to_html(tensor: Tensor, path, names: dict = None, params=None, walk=None, title: str = None) -> GraphView:
    """Write one self-contained interactive HTML page of the graph behind `tensor` to `path`.

    names, params: as for `to_dot`. walk: a backward pass recorded with
    `with mg.viz.record_backward() as walk: loss.backward()`; without it, when `tensor`
    requires grad, the engine's walk is run once more from `tensor` (seeded with ones,
    nothing accumulated into .grad) and recorded. The page needs no network.
    """
    view = GraphView(tensor, names, params, walk, title)
    view.save(path)
    return view
