"""The graph page of a tiny MLP: write it, open it in a browser, step through backward.

    python examples/tiny_mlp_graph.py                 # writes tiny_mlp.html here
    python examples/tiny_mlp_graph.py --out /tmp/mlp.html

A 2-layer MLP (4 -> 8 -> 3, tanh) classifies a batch of 5 random points; one backward pass
of its cross-entropy loss is recorded as the engine walks it, and `mg.viz.to_html` writes
one self-contained page (no network): click a box for its values, gradient and derivative
rule; the backward buttons replay the walk, node by node, in the engine's order.
"""

import argparse

import numpy as np

import minigrad as mg


class TinyMLP(mg.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = mg.nn.Linear(4, 8)
        self.out = mg.nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.hidden(x).tanh())


def main():
    parser = argparse.ArgumentParser(description="Write the graph page of a tiny MLP.")
    parser.add_argument("--out", default="tiny_mlp.html", help="the page to write (default: tiny_mlp.html)")
    args = parser.parse_args()

    mg.random.manual_seed(0)
    model = TinyMLP()
    rng = np.random.default_rng(0)
    points = mg.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    labels = rng.integers(0, 3, size=5)
    loss = mg.cross_entropy(model(points), labels)

    with mg.viz.record_backward() as walk:  # the engine's own order, node by node
        loss.backward()
    view = mg.viz.to_html(loss, args.out, names={points: "points"}, params=model.named_parameters(),
                          walk=walk, title="tiny MLP: cross-entropy of 5 points")
    print(f"wrote {args.out}: {len(view.model['nodes'])} nodes, {len(walk)} backward steps, "
          f"layout {view.model['layout']}; open it in a browser")


if __name__ == "__main__":
    main()
