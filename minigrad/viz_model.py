"""What a graph page shows, as plain data: nodes, edges, tensor summaries, and the recorded backward walk.

    model = build(root, leaf_title, op_title)   # a dict, turned into JSON by mg.viz.to_html

The nodes come in data-flow order (the engine's `toposort` over tensors: inputs before the
ops that read them), one per leaf tensor and per op, plus one for the output. Each tensor
that flows somewhere is summarised once (shape, dtype, a few values, min/mean/max, and its
gradient). Gradients and the order of the walk are not recomputed here: `record_walk` runs
the engine's own `backward_walk` under `autograd.observe_backward` and keeps what each node
received and sent, exactly as the engine computed it.

Labels come from the caller (`leaf_title`, `op_title`: `mg.viz` keeps the one lookup of names).
This module only reads the graph; `record_walk` accumulates nothing into `.grad`.
"""

import contextlib
import functools
import inspect

import numpy as np

from . import autograd, rules
from .autograd import toposort, unbroadcast

VALUES_SHOWN = 6      # first values of a tensor listed in the panel
LABEL_CHARACTERS = 36  # longer node labels are cut in the box (the panel has them whole)
CHARACTER_WIDTH, BOX_HEIGHT = 6.8, 36  # px, for 11px monospace

# The derivative of each op that is not in the rule table, in words.
IN_WORDS = {
    "MatMul": "C = A B:  dA = g B^T,  dB = A^T g  (batched over leading axes)",
    "Linear": "y = x W^T + b:  dx = g W,  dW = g^T x,  db = sum of g over the rows",
    "Sum": "sum over axes: each summed element gets g (broadcast back over the summed axes)",
    "Mean": "mean over axes: each element gets g / (number of elements averaged)",
    "Expand": "broadcast copy: the gradient is g summed over the copied axes",
    "Max": "max over axes: g goes to the element(s) that were the maximum (split between ties)",
    "Reshape": "same values, new shape: the gradient is g reshaped back",
    "Transpose": "axes permuted: the gradient is g with the inverse permutation",
    "GetItem": "x[index]: g is written into zeros of x's shape at the index (summed where repeated)",
    "IndexAdd": "out = x with rows added at indices: dx = g, d(rows) = g at those indices",
    "Concat": "concatenate: each input gets its own slice of g",
    "Stack": "stack along a new axis: each input gets its own slice of g",
    "Softmax": "s = softmax(x):  dx = s * (g - sum(g * s))  along the axis",
    "LogSoftmax": "y = log softmax(x):  dx = g - softmax(x) * sum(g)  along the axis",
    "CrossEntropy": "mean of -log softmax(logits)[target]:  d logits = (softmax(logits) - onehot(target)) / rows",
    "Embedding": "rows of a table picked by ids: d table = g added into the picked rows",
    "ScatterRows": "rows scattered into a table: each input row gets g's row at its index",
    "FusedRecurrence": "the cell's whole recurrence in one compiled loop: forward saves each step's gate values; "
                       "backward walks the steps in reverse, each step's kernel applying the rule-table "
                       "derivatives of the cell's gates (kernel source below), then d W_hh with one GEMM",
    "ElementwiseRecurrence": "the recurrence of a cell that reads no h.<gate>, in one compiled loop with no "
                             "matrix product: no W_hh, each step only the cell's kernel (source below), "
                             "forward and, in reverse, backward",
}


def _number(value):
    """A JSON-safe number with 4 significant digits; NaN and infinities as text."""
    value = float(value)
    return float(f"{value:.4g}") if np.isfinite(value) else str(value)


def summary(array) -> dict:
    """shape, dtype, the first values, min/mean/max of an array (or a Tensor's data)."""
    array = np.asarray(getattr(array, "data", array))
    flat = array.reshape(-1)
    numeric = flat.astype(np.float64) if flat.dtype.kind in "biuf" else np.zeros(0)
    finite = numeric[np.isfinite(numeric)]
    stats = [_number(f(finite)) for f in (np.min, np.mean, np.max)] if finite.size else [None] * 3
    return {"shape": list(array.shape), "dtype": str(array.dtype), "size": int(array.size),
            "values": [_number(v) for v in numeric[:VALUES_SHOWN]], "min": stats[0], "mean": stats[1],
            "max": stats[2], "nonfinite": int(numeric.size - finite.size)}


@functools.lru_cache(maxsize=None)
def _rule_lines() -> dict:
    """op -> (line number, text) of its line in minigrad/rules.py."""
    found = {}
    for number, line in enumerate(inspect.getsource(rules).splitlines(), 1):
        for op in rules.RULES:
            if line.strip().startswith(f'"{op}":'):
                found[op] = (number, " ".join(line.split()))  # the table's column padding dropped
    return found


def derivative_rule(node) -> dict:
    """{"where": ..., "text": ...}: a rule-table line for elementwise ops, else the formula in words."""
    op = getattr(node, "op", None)
    if op in rules.RULES and op in _rule_lines():
        number, text = _rule_lines()[op]
        return {"where": f"minigrad/rules.py line {number} (a, b: inputs; g: output gradient)", "text": text}
    words = IN_WORDS.get(node.name)
    return {"where": "in words", "text": words} if words else None


def kernel_source(node):
    """The generated kernel source a fused node runs, when the node can say (`node.kernel_source()`)."""
    source = getattr(node, "kernel_source", None)
    return source() if callable(source) else None


@contextlib.contextmanager
def record_backward():
    """Inside, every backward walk appends (node, output_grads, input_grads) to the list it
    yields, one per node visited, in the engine's order:
        with mg.viz.record_backward() as walk:
            loss.backward()
        mg.viz.to_html(loss, "graph.html", walk=walk)"""
    steps = []
    with autograd.observe_backward(lambda node, outs, ins: steps.append((node, outs, ins))):
        yield steps


def record_walk(root) -> list:
    """The walk of a backward pass from `root` seeded with ones (the gradient of root.sum()),
    recorded as by `record_backward`; nothing is accumulated into .grad. Tensor hooks run."""
    with record_backward() as steps:
        autograd.backward_walk([root], [np.ones_like(root.data)], accumulate=False)
    return steps


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARACTERS else text[:LABEL_CHARACTERS - 1] + "…"


def build(root, leaf_title, op_title, output_title="output", walk=None, title="minigrad graph"):
    """The page's data for the graph behind `root` (see the module docstring).

    walk: steps recorded with `mg.viz.record_backward()`; None runs `record_walk(root)` when
    root requires grad (no gradients otherwise).
    Returns (model, node_of): node_of maps id(op) or id(leaf tensor) to its node's index.
    """
    nodes, edges, tensors = [], [], []
    node_of, tensor_of = {}, {}  # id(op or leaf tensor) -> node index; id(tensor) -> tensor index

    def tensor_index(tensor, source):
        if id(tensor) not in tensor_of:
            tensor_of[id(tensor)] = len(tensors)
            tensors.append(dict(summary(tensor), source=source, grad=None))
        return tensor_of[id(tensor)]

    def add_node(key, **fields):
        node_of[key] = len(nodes)
        nodes.append(fields)
        return node_of[key]

    def producers(tensor):
        return tensor.grad_fn.inputs if tensor.grad_fn is not None else ()

    for tensor in toposort([root], producers):
        op = tensor.grad_fn
        if op is None:
            kind = "param" if tensor.requires_grad else "const"
            k = add_node(id(tensor), kind=kind, title=leaf_title(tensor), op=None, inputs=[], rule=None, kernel=None)
            nodes[k]["outputs"] = [tensor_index(tensor, k)]
            continue
        if id(op) in node_of:  # another output of a multi-output op already placed
            continue
        k = add_node(id(op), kind="fused" if kernel_source(op) else "op", title=op_title(op), op=op.name,
                     rule=derivative_rule(op), kernel=kernel_source(op))
        nodes[k]["outputs"] = [tensor_index(out, k) if out is not None else None for out in op.outputs()]
        nodes[k]["inputs"] = [tensor_of[id(parent)] for parent in op.inputs]
        for parent in op.inputs:
            edges.append({"from": tensors[tensor_of[id(parent)]]["source"], "to": k, "tensor": tensor_of[id(parent)]})
    if root.grad_fn is not None:
        k = add_node("output", kind="output", title=output_title, op=None, inputs=[tensor_of[id(root)]],
                     outputs=[], rule=None, kernel=None)
        edges.append({"from": tensors[tensor_of[id(root)]]["source"], "to": k, "tensor": tensor_of[id(root)]})

    if walk is None and root.requires_grad:
        walk = record_walk(root)
    steps = _gradients(walk or [], root, node_of, tensor_of, tensors)

    for node in nodes:
        spec = tensors[node["outputs"][0]] if node["outputs"] and node["outputs"][0] is not None else (
            tensors[node["inputs"][0]])
        node["sub"] = f"{tuple(spec['shape'])} {spec['dtype']}"
        if len([o for o in node["outputs"] if o is not None]) > 1:
            node["sub"] = f"{len(node['outputs'])} outputs"
        node["w"] = round(max(len(_label(node["title"])), len(node["sub"]), 6) * CHARACTER_WIDTH + 18)
        node["h"] = BOX_HEIGHT
        node["label"] = _label(node["title"])
    for edge in edges:
        tensor = tensors[edge["tensor"]]
        edge["label"] = "×".join(map(str, tensor["shape"])) or "scalar"
        source_outputs = nodes[edge["from"]]["outputs"]
        if len(source_outputs) > 1:  # which output of a multi-output op
            edge["label"] = f"out {source_outputs.index(edge['tensor'])}: {edge['label']}"
    return {"title": title, "nodes": nodes, "edges": edges, "tensors": tensors, "walk": steps}, node_of


def _gradients(walk, root, node_of, tensor_of, tensors) -> list:
    """Put each tensor's total gradient on its summary; return the page's walk steps
    [{node, flows: [summary of the gradient sent into each input]}] in the engine's order."""
    steps, leaf_sums = [], {}
    if walk and id(root) in tensor_of:
        tensors[tensor_of[id(root)]]["grad"] = summary(np.ones_like(root.data))
    for node, output_grads, input_grads in walk:
        if id(node) not in node_of:
            continue  # a node of another graph walked in the same recording
        for out, grad in zip(node.outputs(), output_grads):
            if out is not None and grad is not None and id(out) in tensor_of:
                tensors[tensor_of[id(out)]]["grad"] = summary(grad)
        flows = []
        for parent, grad in zip(node.inputs, input_grads):
            if grad is None or not parent.requires_grad:
                flows.append(None)
                continue
            grad = unbroadcast(np.asarray(getattr(grad, "data", grad)), parent.shape)
            flows.append(summary(grad))
            if parent.grad_fn is None:
                leaf_sums[id(parent)] = leaf_sums[id(parent)] + grad if id(parent) in leaf_sums else grad
        steps.append({"node": node_of[id(node)], "flows": flows})
    for key, total in leaf_sums.items():
        tensors[tensor_of[key]]["grad"] = summary(total)
    return steps
