"""Where the boxes of a graph page go: Graphviz's `dot` when it is installed, else a layered layout of our own.

    layout = place(sizes, edges)   # sizes: [(width, height)] in px; edges: [(from, to)] node indices
    layout.positions               # [(x, y)] box centres in px, y growing downwards (data flows down)
    layout.routes                  # one list of points per edge: 2 points (a straight drop) or 3k+1 (Bezier)
    layout.engine                  # "graphviz dot" or "layered (graphviz not available)" ...

Graphviz is used only to place boxes and route edges (`dot -Tplain`, through the optional
PyPI package `graphviz`, extra `minigrad-rnn[viz]`): the page draws the SVG itself, so every
label reaches the browser as text the page's script sets with `textContent`, never as
markup another program wrote. Nodes are given to dot with empty labels and fixed sizes.

The fallback is a plain layered (Sugiyama-style) layout: each node one layer below the
deepest node it reads, then moved down to just above its first reader (so what step t of an
unrolled RNN reads sits by step t, not at the top), one barycentre pass each way to
untangle the order within a layer. It is linear in the graph's size, so it is also what
large graphs get: dot's crossing minimisation takes minutes on ten thousand nodes.
"""

import shlex
from typing import NamedTuple

# Above this many nodes dot is too slow to wait for: with the limits below, an eager LSTM
# of 16 steps (411 nodes) took 2 s here, 32 steps (811) 34 s (docs/internals.md).
GRAPHVIZ_MAX_NODES = 400
LIMIT_ROUNDS_FROM = 150
LAYER_GAP, NODE_GAP = 44, 18  # px between layers, between boxes of a layer
POINTS_PER_INCH = 72


class Layout(NamedTuple):
    positions: list
    routes: list
    width: float
    height: float
    engine: str


def place(sizes: list, edges: list) -> Layout:
    """Graphviz when it is installed and the graph is small enough for it, else `layered`."""
    if len(sizes) > GRAPHVIZ_MAX_NODES:
        return layered(sizes, edges, f"layered (over {GRAPHVIZ_MAX_NODES} nodes)")
    found = graphviz_layout(sizes, edges)
    return found if found is not None else layered(sizes, edges, "layered (graphviz not available)")


def _graphviz():
    """The `graphviz` PyPI package, or None (a function, so tests can pretend it is absent)."""
    try:
        import graphviz
    except ImportError:
        return None
    return graphviz


def graphviz_layout(sizes: list, edges: list):
    """dot's layout of the boxes, or None when the package or the `dot` program is missing."""
    graphviz = _graphviz()
    if graphviz is None:
        return None
    # Past LIMIT_ROUNDS_FROM nodes, fewer rounds of crossing reduction and placement (dot's time grows fast)
    rounds = ", mclimit=0.1, nslimit=1, nslimit1=1" if len(sizes) > LIMIT_ROUNDS_FROM else ""
    lines = ["digraph g {", f"graph [rankdir=TB, nodesep=0.25, ranksep=0.45{rounds}];",
             'node [shape=box, fixedsize=true, label=""];', 'edge [arrowhead=none];']
    lines += [f"n{k} [width={w / POINTS_PER_INCH:.3f}, height={h / POINTS_PER_INCH:.3f}];"
              for k, (w, h) in enumerate(sizes)]
    lines += [f"n{a} -> n{b};" for a, b in edges]
    lines.append("}")
    try:
        text = graphviz.Source("\n".join(lines)).pipe(format="plain", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError, OSError):
        return None
    return _read_plain(text, len(sizes), edges)


def _read_plain(text: str, count: int, edges: list) -> Layout:
    """Parse dot's `plain` output (inches, y up) into a Layout (px, y down)."""
    positions, routes_by_pair, height = [None] * count, {}, 0.0
    width = 0.0
    for line in text.splitlines():
        fields = shlex.split(line)
        if not fields:
            continue
        if fields[0] == "graph":
            width, height = float(fields[2]) * POINTS_PER_INCH, float(fields[3]) * POINTS_PER_INCH

        def point(x, y):
            return [round(float(x) * POINTS_PER_INCH, 1), round(height - float(y) * POINTS_PER_INCH, 1)]

        if fields[0] == "node":
            positions[int(fields[1][1:])] = tuple(point(fields[2], fields[3]))
        elif fields[0] == "edge":
            count_points = int(fields[3])
            coordinates = fields[4:4 + 2 * count_points]
            route = [point(coordinates[i], coordinates[i + 1]) for i in range(0, len(coordinates), 2)]
            routes_by_pair.setdefault((int(fields[1][1:]), int(fields[2][1:])), []).append(route)
    routes = [routes_by_pair[pair].pop(0) for pair in edges]  # dot keeps an edge pair's order
    return Layout(positions, routes, width, height, "graphviz dot")


def layered(sizes: list, edges: list, engine: str = "layered") -> Layout:
    """A layer per depth, top to bottom; nodes must come in data-flow order (inputs first)."""
    count = len(sizes)
    readers, inputs = [[] for _ in range(count)], [[] for _ in range(count)]
    for a, b in edges:
        readers[a].append(b)
        inputs[b].append(a)
    layer = [0] * count
    for k in range(count):  # data-flow order: a node's inputs already have their layer
        layer[k] = 1 + max((layer[a] for a in inputs[k]), default=-1)
    for k in reversed(range(count)):  # then each node moves down to just above its first reader,
        if readers[k]:                # so a leaf or a slice read at step t sits by step t, not at the top
            layer[k] = min(layer[b] for b in readers[k]) - 1
    layers = [[] for _ in range(max(layer, default=0) + 1)]
    for k in range(count):
        layers[layer[k]].append(k)

    # Where each box sits across its layer, 0 (left) to 1 (right); a barycentre pass moves each
    # box under the mean place of the boxes it reads, then one moves it above its readers.
    across = {}
    def settle(row):
        for position, k in enumerate(row):
            across[k] = position / max(1, len(row) - 1)
    for row in layers:
        settle(row)
    for neighbours, sweep in ((inputs, layers), (readers, list(reversed(layers)))):
        for row in sweep:
            row.sort(key=lambda k: sum(across[n] for n in neighbours[k]) / len(neighbours[k])
                     if neighbours[k] else across[k])
            settle(row)

    positions = [None] * count
    widths = [sum(sizes[k][0] for k in row) + NODE_GAP * (len(row) - 1) for row in layers]
    width = max(widths, default=0) + 2 * NODE_GAP
    y = LAYER_GAP / 2
    for row, row_width in zip(layers, widths):
        tallest = max((sizes[k][1] for k in row), default=0)
        x = (width - row_width) / 2
        for k in row:
            positions[k] = (round(x + sizes[k][0] / 2, 1), round(y + tallest / 2, 1))
            x += sizes[k][0] + NODE_GAP
        y += tallest + LAYER_GAP
    routes = [[[positions[a][0], positions[a][1] + sizes[a][1] / 2],
               [positions[b][0], positions[b][1] - sizes[b][1] / 2]] for a, b in edges]
    return Layout(positions, routes, width, y - LAYER_GAP / 2, engine)
