"""The gradient checks that `minigrad-rnn gradcheck` runs: every public op and every cell.

Each check is a named `GradcheckCase`: a small float64 problem whose analytic gradients
(backward) are compared with central differences by `minigrad.gradcheck.gradcheck_report`.

- op cases: each public op of minigrad on small random inputs chosen inside the op's
  domain (log of positive numbers, relu and division away from zero, ...);
- cell cases: a `Recurrent` stack of the cell (2 layers, 5 steps, a given initial
  state, so the state carried across steps and layers is checked too), once per engine
  (eager and fused). Every input is checked: the sequence, the initial states and every
  weight and bias.

Cases are built lazily (`case.make()`), so checking one cell does not compile the others.
This module holds the list of checks and their runner; printing them is the CLI's job.
"""

import contextlib
from typing import Callable, Iterator, NamedTuple

import numpy as np

import minigrad as mg
from minigrad.gradcheck import gradcheck_report

from rnn.cells.registry import available_cells, get_cell
from rnn.errors import ArgumentError
from rnn.model.layers import ENGINES, Recurrent

# Sizes of the cell checks: small enough for finite differences over every weight.
CELL_BATCH, CELL_STEPS, CELL_INPUT, CELL_HIDDEN, CELL_LAYERS = 2, 5, 3, 3, 2


class GradcheckCase(NamedTuple):
    """One check: `make()` returns (fn, inputs) with float64 inputs that require grad."""

    name: str          # "tanh", "lstm (fused)"
    kind: str          # "op" or "cell"
    shape: str         # the sizes involved, for the report
    make: Callable


class CheckResult(NamedTuple):
    """The outcome of one case; errors are the worst over all of its inputs."""

    name: str
    kind: str
    shape: str
    max_abs_error: float
    max_rel_error: float
    ok: bool
    failed_inputs: list  # minigrad.gradcheck.InputReport of each input that failed


def run_case(case: GradcheckCase) -> CheckResult:
    fn, inputs = case.make()
    reports = gradcheck_report(fn, inputs)
    return CheckResult(
        name=case.name,
        kind=case.kind,
        shape=case.shape,
        max_abs_error=max(r.max_abs_error for r in reports),
        max_rel_error=max(r.max_rel_error for r in reports),
        ok=all(r.ok for r in reports),
        failed_inputs=[r for r in reports if not r.ok],
    )


# ---- ops ------------------------------------------------------------------------------------

def _normal(rng, shape):
    return rng.standard_normal(shape)


def _positive(rng, shape):
    """In [0.5, 2): the domain of log and of a fractional power, away from the pole at 0."""
    return rng.uniform(0.5, 2.0, shape)


def _away_from_zero(rng, shape):
    """|x| in [0.5, 2): no kink of relu and no pole of 1/x within the finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, shape)


def _distinct(rng, shape):
    """A permutation of spaced values: max has a unique winner, so it is differentiable."""
    return rng.permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape) * 0.5


def _op_case(name, fn, *specs):
    """A case for `fn` on inputs described as (shape, how to draw the values)."""

    def make():
        rng = np.random.default_rng(0)
        inputs = [mg.tensor(draw(rng, shape), requires_grad=True, dtype=np.float64) for shape, draw in specs]
        return fn, inputs

    shape = " ".join(str(shape) for shape, _ in specs)
    return GradcheckCase(name, "op", shape, make)


def op_cases() -> Iterator[GradcheckCase]:
    """One case per public op of minigrad (broadcasting binary ops on mixed shapes)."""
    n, p, z, d = _normal, _positive, _away_from_zero, _distinct
    targets = np.array([0, 3, 1])
    ids = np.array([[0, 2, 2], [4, 1, 0]])  # a repeated id: its gradient rows must add up
    yield _op_case("add", mg.add, ((3, 4), n), ((4,), n))
    yield _op_case("sub", mg.sub, ((3, 1), n), ((1, 4), n))
    yield _op_case("mul", mg.mul, ((3, 4), n), ((3, 1), n))
    yield _op_case("div", mg.div, ((3, 4), n), ((4,), z))
    yield _op_case("neg", mg.neg, ((3, 4), n))
    yield _op_case("pow", lambda x: mg.pow(x, 1.5), ((3, 4), p))
    yield _op_case("exp", mg.exp, ((3, 4), n))
    yield _op_case("log", mg.log, ((3, 4), p))
    yield _op_case("tanh", mg.tanh, ((3, 4), n))
    yield _op_case("sigmoid", mg.sigmoid, ((3, 4), n))
    yield _op_case("relu", mg.relu, ((3, 4), z))
    yield _op_case("matmul", mg.matmul, ((3, 4), n), ((4, 5), n))
    yield _op_case("linear", mg.linear, ((2, 3, 4), n), ((5, 4), n), ((5,), n))
    yield _op_case("sum", lambda x: mg.sum(x, axis=1), ((3, 4), n))
    yield _op_case("mean", lambda x: mg.mean(x, axis=0, keepdims=True), ((3, 4), n))
    yield _op_case("max", lambda x: mg.max(x, axis=1), ((3, 4), d))
    yield _op_case("reshape", lambda x: mg.reshape(x, 4, 3), ((3, 4), n))
    yield _op_case("transpose", lambda x: mg.transpose(x, 1, 0), ((3, 4), n))
    yield _op_case("getitem", lambda x: mg.getitem(x, (slice(0, 2), np.array([3, 0, 3]))), ((3, 4), n))
    yield _op_case("concat", lambda a, b: mg.concat([a, b], axis=1), ((3, 4), n), ((3, 2), n))
    yield _op_case("stack", lambda a, b: mg.stack([a, b], axis=0), ((3, 4), n), ((3, 4), n))
    yield _op_case("softmax", mg.softmax, ((3, 4), n))
    yield _op_case("log_softmax", mg.log_softmax, ((3, 4), n))
    yield _op_case("cross_entropy", lambda logits: mg.cross_entropy(logits, targets), ((3, 4), n))
    yield _op_case("embedding", lambda table: mg.embedding(table, ids), ((5, 3), n))


# ---- cells ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _parameters_bound_to(layer: Recurrent, tensors: dict):
    """Let `layer` compute with `tensors` in place of its parameters, for one call.

    gradcheck perturbs its own float64 copies of the inputs, so the layer must read
    those copies; plain attribute binding (not Module.__setattr__) keeps the layer's
    parameter registry untouched.
    """
    originals = {name: getattr(layer, name) for name in tensors}
    try:
        for name, tensor in tensors.items():
            object.__setattr__(layer, name, tensor)
        yield
    finally:
        for name, original in originals.items():
            object.__setattr__(layer, name, original)


def _cell_case(cell_name: str, engine: str) -> GradcheckCase:
    def make():
        cell = get_cell(cell_name)
        layer = Recurrent(cell, CELL_INPUT, CELL_HIDDEN, CELL_LAYERS, engine=engine, dtype=np.float64)
        parameter_names = [name for name, _ in layer.named_parameters()]
        states_per_layer = len(cell.state)
        rng = np.random.default_rng(0)

        def leaf(shape, scale=1.0):
            return mg.tensor(scale * rng.standard_normal(shape), requires_grad=True, dtype=np.float64)

        x = leaf((CELL_BATCH, CELL_STEPS, CELL_INPUT))
        initial = [leaf((CELL_BATCH, CELL_HIDDEN), 0.5) for _ in range(CELL_LAYERS * states_per_layer)]
        # Weights at the scale of PyTorch's initialisation, so gates are not saturated.
        weights = [leaf(parameter.shape, 0.5) for _, parameter in layer.named_parameters()]

        def run(x, *rest):
            flat_states, params = rest[:len(initial)], rest[len(initial):]
            state = [tuple(flat_states[k * states_per_layer:(k + 1) * states_per_layer])
                     for k in range(CELL_LAYERS)]
            with _parameters_bound_to(layer, dict(zip(parameter_names, params))):
                outputs, final = layer(x, state)
            # Every output step and every final state, so gradients through both are checked.
            pieces = [outputs.reshape(-1)] + [s.reshape(-1) for layer_state in final for s in layer_state]
            return mg.concat(pieces, axis=0)

        return run, [x, *initial, *weights]

    shape = f"B={CELL_BATCH} T={CELL_STEPS} I={CELL_INPUT} H={CELL_HIDDEN} layers={CELL_LAYERS}"
    return GradcheckCase(f"{cell_name} ({engine})", "cell", shape, make)


def cell_cases(names=None) -> Iterator[GradcheckCase]:
    """Cases for the cells `names` (default: every registered cell), each with both engines.

    An unknown name raises rnn.CellError listing the available cells.
    """
    names = available_cells() if names is None else list(names)
    for name in names:
        get_cell(name)  # fail early with the list of cells
    for name in names:
        for engine in ENGINES:
            yield _cell_case(name, engine)


def gradcheck_cases(cell=None, op=None) -> list:
    """The cases of `minigrad-rnn gradcheck`: every op's, then every cell's, when neither `cell`
    nor `op` is named; else those of op `op` and of cell `cell` ("all": every one of them).
    ArgumentError for an unknown op; an unknown cell raises rnn.CellError listing the cells."""
    if cell is None and op is None:
        return list(op_cases()) + list(cell_cases())
    cases = []
    if op is not None:
        ops = [case for case in op_cases() if op in ("all", case.name)]
        if not ops:
            names = ", ".join(case.name for case in op_cases())
            raise ArgumentError(f"unknown op {op!r}; available: {names}")
        cases += ops
    if cell is not None:
        cases += list(cell_cases(None if cell == "all" else [cell]))
    return cases
