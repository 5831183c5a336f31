"""Vanishing gradients, measured: how much of the loss's gradient reaches the state T-d steps back.

For each cell (rnn, lstm, gru by default) with the same sizes and PyTorch's random
initialisation, this runs the eager engine one step at a time over random inputs,
registers a hook on the state after every step, and backpropagates a loss computed
from the last step only:

    L = sum(v * h_T)            v: a fixed random (batch, hidden) array

The hook on the state s_t = (h_t, or h_t and c_t for lstm) records ||dL/ds_t||; the
table lists it against the distance d = T - t. A plain tanh RNN multiplies the gradient
by W_hh^T diag(1 - h^2) at every step back, so it shrinks geometrically; the gated
cells also have an additive path (c for lstm, z * h for gru) whose gain is a gate.

    python examples/vanishing_gradients.py                    # the table
    python examples/vanishing_gradients.py --input-scale 4    # saturating tanh: rnn dies faster
    python examples/vanishing_gradients.py --png curves.png   # and a plot, if matplotlib is installed

From Python: `state_gradient_norms("lstm", steps=30)` returns the norms by distance.
"""

import argparse
import sys

import numpy as np

import minigrad as mg
from rnn.cells.registry import CellError
from rnn.model.layers import Recurrent

DEFAULT_CELLS = ("rnn", "lstm", "gru")


def state_gradient_norms(cell, steps=30, hidden=16, input_size=8, batch=4, input_scale=1.0, seed=0) -> np.ndarray:
    """norms[d] = ||dL/d(state at step T-d)|| for d = 0..steps (float64, eager engine).

    input_scale multiplies W_ih after the usual initialisation: values above 1 push the
    pre-activations into the flat, saturated parts of tanh and sigmoid.
    """
    saved_random_state = mg.random.get_state()  # leave the caller's random stream as it was
    mg.random.manual_seed(seed)
    layer = Recurrent(cell, input_size, hidden, engine="eager", dtype=np.float64)
    mg.random.set_state(saved_random_state)
    layer.weight_ih_l0.data *= input_scale

    data = np.random.default_rng(seed + 1)
    inputs = mg.tensor(data.standard_normal((batch, steps, input_size)))
    probe = data.standard_normal((batch, hidden))  # v: the loss reads h_T through it

    # The initial state requires grad only so that we may hook it (distance T).
    state = tuple(mg.tensor(np.zeros((batch, hidden)), requires_grad=True) for _ in layer.cell.state)
    states = [state]  # states[t] = the state after t steps
    for t in range(steps):
        _, (state,) = layer(inputs[:, t:t + 1], [state])
        states.append(state)

    squared_norms = np.zeros(steps + 1)  # a state part nothing read (c_T) gets no call: 0

    def record(t):
        def hook(grad):
            squared_norms[t] += float(np.sum(grad * grad))
        return hook

    for t, state in enumerate(states):
        for part in state:  # h, and c for lstm
            part.register_hook(record(t))

    loss = (states[-1][0] * probe).sum()
    loss.backward()
    return np.sqrt(squared_norms)[::-1]  # index = distance T - t


def measure(cells=DEFAULT_CELLS, **options) -> dict:
    """cell name -> its norms by distance (see `state_gradient_norms` for the options)."""
    return {cell: state_gradient_norms(cell, **options) for cell in cells}


def table_distances(steps: int) -> list:
    """The rows to print: the first few steps, then every fifth."""
    return sorted(set([0, 1, 2, 3] + list(range(0, steps + 1, 5))) & set(range(steps + 1)))


def format_table(results: dict) -> str:
    cells = list(results)
    steps = len(next(iter(results.values()))) - 1
    lines = ["distance  " + "".join(f"{cell:>12}" for cell in cells)]
    for d in table_distances(steps):
        lines.append(f"{d:>8}  " + "".join(f"{results[cell][d]:>12.3e}" for cell in cells))
    return "\n".join(lines)


def plot(results: dict, path) -> None:
    """Gradient norm against distance, log scale, one curve per cell (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for cell, norms in results.items():
        axes.semilogy(np.arange(len(norms)), norms, marker=".", label=cell)
    axes.set_xlabel("distance T - t (steps back from the loss)")
    axes.set_ylabel("||dL / d state_t||")
    axes.set_title("How far back the gradient reaches")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default=",".join(DEFAULT_CELLS), help="comma-separated cell names")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--input-scale", type=float, default=1.0,
                        help="multiply W_ih by this (above 1: saturating pre-activations)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", help="also plot the curves to this PNG file (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.hidden < 1 or args.input_size < 1 or args.batch < 1:
        parser.error("--steps, --hidden, --input-size and --batch must be at least 1")

    cells = [name.strip() for name in args.cells.split(",") if name.strip()]
    try:
        results = measure(cells, steps=args.steps, hidden=args.hidden, input_size=args.input_size,
                          batch=args.batch, input_scale=args.input_scale, seed=args.seed)
    except CellError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"||dL/d state|| by distance from the loss (hidden {args.hidden}, batch {args.batch}, "
          f"input scale {args.input_scale:g}, seed {args.seed})")
    print(format_table(results))
    if args.png:
        try:
            plot(results, args.png)
        except ImportError:
            print("error: matplotlib is not installed: no PNG written", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"error: cannot write {args.png}: {error.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
