"""Recurrent layers: every cell gradchecked in float64 on both engines, the fused engine
equal to the eager one (also with a window's work cut between cores by batch rows, by
hidden units, or both, and with its first projection read by id), and rnn / rnn_relu /
lstm / gru equal to torch.nn.RNN / LSTM / GRU."""

import numpy as np
import pytest

import minigrad as mg
import rnn.fused.elementwise_recurrence
import rnn.fused.recurrence
from rnn.model import checks
from rnn.cells.registry import CellError, available_cells, cell, get_cell, relu, sigmoid, tanh
from rnn.fused.compiler import generate_source, merged_projections
from rnn.model.layers import Recurrent

from helpers import cell_sweep, torch_or_skip


@cell(gates=("a", "u"), state=("h", "m"), name="test_rnn_user_cell")
def user_cell(x, h, m):
    """A two-state cell written for this test: a leaky memory m read through a gate."""
    a = sigmoid(x.a + h.a)
    m = a * m + (1 - a) * tanh(x.u + h.u)
    return tanh(m) * a, m


@cell(gates=("a", "u"), state=("h", "m"), name="test_rnn_unmerged_cell")
def unmerged_cell(x, h, m):
    """Gate u's projections enter apart (x.u squashed alone), so d xp is not d hp."""
    a = sigmoid(x.a + h.a)
    m = a * m + (1 - a) * tanh(x.u) * sigmoid(h.u)
    return tanh(m) * a, m


def built_in_cells():
    return [name for name in available_cells() if not name.startswith("test_")]


ALL_CELLS = built_in_cells() + ["test_rnn_user_cell", "test_rnn_unmerged_cell"]


@pytest.mark.parametrize("case", list(checks.cell_cases(ALL_CELLS)), ids=lambda case: case.name)
def test_every_cell_passes_gradcheck_through_5_steps_and_2_layers(case):
    result = checks.run_case(case)
    assert result.ok, (result.max_abs_error, result.max_rel_error)


def test_merged_projections_are_found_where_each_gate_adds_its_two_projections_first():
    # then the fused backward writes d xp once and uses it as d hp (rnn.fused.compiler)
    merged = {name: merged_projections(get_cell(name)) for name in ALL_CELLS}
    not_merged = {"gru", "mgu", "test_rnn_unmerged_cell",  # (their h.n, h.u is scaled or squashed first)
                  "mingru", "qrnn", "sru"}  # (no h.<gate> at all: no W_hh, rnn.fused.elementwise_recurrence)
    assert merged == {name: name not in not_merged for name in ALL_CELLS}


def copy_parameters(source, target):
    for (name, p), (other_name, q) in zip(source.named_parameters(), target.named_parameters()):
        assert name == other_name
        q.data[...] = p.data


def run_windows(layer, inputs, state, probes):
    """Several windows with the state carried (detached between windows, as in training)."""
    total = 0.0
    for window, probe in zip(inputs, probes):
        outputs, state = layer(window, state)
        loss = (outputs * probe).sum() + sum((s * s).sum() for layer_state in state for s in layer_state)
        loss.backward()
        total += float(loss.data)
        state = [tuple(s.detach() for s in layer_state) for layer_state in state]
    return total, state


# How the cores share a window (rnn.fused.recurrence.split_of_work), whatever the machine has:
# (row bounds, unit bounds) for a batch of 3 rows and 5 units; None: the machine's own.
SPLITS = {"own": None, "rows 1+2": ([0, 1, 3], [0, 5]), "rows 1+1+1": ([0, 1, 2, 3], [0, 5]),
          "units 2+3": ([0, 3], [0, 2, 5]), "units 1+1+1+1+1": ([0, 3], [0, 1, 2, 3, 4, 5]),
          "rows 1+2 x units 2+3": ([0, 1, 3], [0, 2, 5])}


def force_split(monkeypatch, rows, units):
    monkeypatch.setattr(rnn.fused.recurrence, "split_of_work",
                        lambda batch, hidden, gates, core_count=None: (np.array(rows, np.int64),
                                                                       np.array(units, np.int64)))
    # (the cells without h.<gate> share their elementwise loops the same way)
    monkeypatch.setattr(rnn.fused.elementwise_recurrence, "split_of_work",
                        lambda batch, hidden: (np.array(rows, np.int64), np.array(units, np.int64)))


@pytest.mark.parametrize("core_count", [1, 2, 3, 8])
def test_split_of_work_covers_every_row_and_unit_once(core_count, monkeypatch):
    monkeypatch.setattr(rnn.fused.recurrence, "cores", lambda: core_count)
    for batch in (1, 3, 16, 31, 32, 64, 100):
        for hidden in (1, 5, 64, 128, 256, 512):
            rows, units = rnn.fused.recurrence.split_of_work(batch, hidden, 4)
            for bounds, end in ((rows, batch), (units, hidden)):
                assert bounds[0] == 0 and bounds[-1] == end and np.all(np.diff(bounds) > 0)
                assert len(bounds) - 1 <= core_count
            assert len(rows) == 2 or len(units) == 2, (batch, hidden)  # one way or the other, not both


@pytest.mark.parametrize("core_count, batch, hidden, by", [
    (2, 32, 128, "rows"), (2, 32, 256, "rows"),
    (2, 64, 512, "units"),   # W_hh too big for every core to read it at every step
    (2, 16, 256, "units"),   # 8 rows per core: too thin
    (4, 32, 256, "units"),   # rows would leave two of the four cores idle
    (4, 64, 128, "rows")])
def test_split_of_work_takes_rows_when_they_keep_every_core_busy(core_count, batch, hidden, by, monkeypatch):
    monkeypatch.setattr(rnn.fused.recurrence, "cores", lambda: core_count)
    rows, units = rnn.fused.recurrence.split_of_work(batch, hidden, 4)
    assert (len(rows) - 1, len(units) - 1) == ((core_count, 1) if by == "rows" else (1, core_count))


def test_only_windows_the_cores_could_share_get_the_parallel_loops(monkeypatch):
    # (the parallel loops of a gradient check's tiny window would compile in twice the time, for one part)
    monkeypatch.setattr(rnn.fused.recurrence, "parallel_available", lambda: True)
    monkeypatch.setattr(rnn.fused.recurrence, "most_cores", lambda: 2)
    monkeypatch.setattr(rnn.fused.recurrence, "cores", lambda: 1)  # the count now in use does not decide
    shared = rnn.fused.recurrence.shared_windows
    assert not shared(2, 3, 3)  # checks.CELL_BATCH x CELL_HIDDEN: one part
    assert shared(32, 16, 4)  # by rows
    assert shared(1, 64, 4)  # by units
    monkeypatch.setattr(rnn.fused.recurrence, "most_cores", lambda: 1)
    assert not shared(32, 256, 4)


# A forced split compiles the cell's parallel loops (about 4 s of CPU a cell, cold, in whichever
# test forces one first). The README's quick command runs the splits for lstm and a user's
# cell; every other cell's run with the tests marked slow (`-m slow`, which CI runs too): the
# loops are one template for all cells.
QUICK_SPLIT_CELLS = ("lstm", "test_rnn_user_cell")


def cell_split_cases(splits=SPLITS):
    for cell_name in ALL_CELLS:
        for split in splits:
            quick = SPLITS[split] is None or cell_name in QUICK_SPLIT_CELLS
            yield pytest.param(cell_name, split, marks=() if quick else pytest.mark.slow, id=f"{cell_name}-{split}")


@pytest.mark.parametrize("cell_name, split", list(cell_split_cases()))
def test_fused_equals_eager_over_windows_with_carried_state(cell_name, split, monkeypatch):
    if SPLITS[split] is not None:
        force_split(monkeypatch, *SPLITS[split])
    assert_fused_equals_eager_over_windows(cell_name)


def assert_fused_equals_eager_over_windows(cell_name):
    rng = np.random.default_rng(1)
    inputs = [mg.tensor(rng.standard_normal((3, 4, 2))) for _ in range(3)]
    probes = [rng.standard_normal((3, 4, 5)) for _ in range(3)]
    mg.random.manual_seed(0)
    eager = Recurrent(cell_name, 2, 5, num_layers=2, engine="eager", dtype=np.float64)
    fused = Recurrent(cell_name, 2, 5, num_layers=2, engine="fused", dtype=np.float64)
    copy_parameters(eager, fused)
    state = [tuple(mg.tensor(0.3 * rng.standard_normal((3, 5))) for _ in eager.cell.state) for _ in range(2)]
    loss_eager, state_eager = run_windows(eager, inputs, state, probes)
    loss_fused, state_fused = run_windows(fused, inputs, state, probes)
    assert loss_fused == pytest.approx(loss_eager, rel=1e-10)
    for a, b in zip(state_eager, state_fused):
        for s, t in zip(a, b):
            np.testing.assert_allclose(t.data, s.data, rtol=1e-10, atol=1e-12)
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-8, atol=1e-10, err_msg=name)


def test_gate_and_state_names_may_be_the_generated_kernels_own_names():
    """The kernels' variables are prefixed, so no name of theirs is taken from the user: a
    state b with a gate hh (the kernels' bias array is b_hh), gates x, t, j and H (their
    loop indices and sizes), a state g_xp (an array of the backward kernel)."""

    @cell(gates=("hh", "x", "t", "j", "H"), state=("b", "g_xp"), name="test_rnn_kernel_names_cell")
    def kernel_names(x, b, g_xp):
        hh = sigmoid(x.hh + b.hh)
        t = tanh(x.t + b.t * hh)
        g_xp = sigmoid(x.j + b.j) * g_xp + (1 - hh) * t
        return tanh(g_xp) * sigmoid(x.H + b.H) + 0.5 * relu(x.x + b.x), g_xp

    for case in checks.cell_cases([kernel_names.name]):  # float64 gradchecks, eager and fused
        result = checks.run_case(case)
        assert result.ok, (case.name, result.max_abs_error, result.max_rel_error)
    assert_fused_equals_eager_over_windows(kernel_names.name)


@pytest.mark.parametrize("template", ["window", "elementwise", "sampling"])
def test_a_loop_template_is_a_module_whose_stand_in_import_is_bound_to_the_cell(template):
    import importlib

    from rnn.fused import compiler

    importlib.import_module(f"rnn.fused.loops.{template}")  # plain Python: it imports (and compiles nothing)
    fused = compiler.compile_cell(get_cell("gru"), np.float64)
    source = compiler.bind_loop_template(template, fused, parallel=False)
    assert f"from {compiler.STAND_INS} import" not in source
    assert f"from {fused.module.__name__} import step_" in source
    assert "from minigrad.jit import kernel as loop_kernel" in source


@pytest.mark.parametrize("gates, state, bad", [
    (("op",), ("h",), "'op' cannot be a gate name"),            # an Expr attribute: h.op is not the gate
    (("__class__",), ("h",), "'__class__' cannot be a gate name"),
    (("i",), ("h", "x"), "'x' cannot be a state name"),         # x.i would name two projections
    (("i",), ("h", "lambda"), "'lambda' cannot be a state name"),
    (("r", "\uff52"), ("h",), "cannot be a gate name"),          # fullwidth r: Python reads it as r
])
def test_names_python_or_the_expression_api_need_stay_reserved(gates, state, bad):
    def step(x, *states):
        return states

    with pytest.raises(CellError, match=bad):
        cell(gates=gates, state=state, name="test_rnn_reserved_names")(step)


@pytest.mark.parametrize("cell_name, split", list(cell_split_cases(["own", "rows 1+2", "units 2+3"])))
def test_a_fused_layer_reading_its_first_projection_by_id_equals_eager(cell_name, split, monkeypatch):
    """Layer 0's projection given as a table of rows picked by id (the char-LM's folded
    embedding): rows used at several steps get the sum of their gradients."""
    if SPLITS[split] is not None:
        force_split(monkeypatch, *SPLITS[split])
    rng = np.random.default_rng(5)
    gates = len(get_cell(cell_name).gates) * 5
    ids = np.array([[0, 3, 3, 1], [2, 0, 0, 0], [3, 3, 1, 2]])  # row 3 of the table, never row 4
    probe = rng.standard_normal((3, 4, 5))
    results = {}
    for engine in ("eager", "fused"):
        mg.random.manual_seed(0)
        layer = Recurrent(cell_name, 2, 5, num_layers=2, engine=engine, dtype=np.float64)
        table = mg.tensor(np.random.default_rng(6).standard_normal((5, gates)), requires_grad=True)
        outputs, state = layer.forward_projected(table, None, ids=ids)
        ((outputs * probe).sum() + sum((s * s).sum() for s in state[1])).backward()
        results[engine] = outputs.data, table.grad, [p.grad for _, p in layer.named_parameters()][4:]
    (out_eager, table_eager, params_eager), (out_fused, table_fused, params_fused) = results.values()
    np.testing.assert_allclose(out_fused, out_eager, rtol=1e-10, atol=1e-12)
    assert not table_fused[4].any() and table_fused[3].any()
    np.testing.assert_allclose(table_fused, table_eager, rtol=1e-8, atol=1e-10)
    for p, q in zip(params_eager, params_fused):  # (layer 0's W_ih and b_ih get no gradient: the table is given)
        np.testing.assert_allclose(q, p, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "test_rnn_unmerged_cell"])
def test_gradcheck_of_a_table_read_by_id(cell_name):
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 3, (2, 5))
    probe = rng.standard_normal((2, 5, 3))
    mg.random.manual_seed(1)
    layer = Recurrent(cell_name, 2, 3, num_layers=2, engine="fused", dtype=np.float64)
    table = mg.tensor(rng.standard_normal((3, len(layer.cell.gates) * 3)), requires_grad=True)
    assert mg.gradcheck(lambda t: (layer.forward_projected(t, None, ids=ids)[0] * probe).sum(), [table])


def test_ids_out_of_the_table_are_refused_before_any_kernel_runs():
    layer = Recurrent("lstm", 2, 3, engine="fused", dtype=np.float64)
    table = mg.tensor(np.zeros((4, 12)))
    with pytest.raises(IndexError, match="id 4 at position"):
        layer.forward_projected(table, None, ids=np.array([[0, 4]]))


@pytest.mark.parametrize("engine", ["fused", "eager"])
def test_a_window_of_no_steps_gives_no_outputs_and_keeps_the_state(engine):
    layer = Recurrent("lstm", 2, 4, num_layers=2, engine=engine, dtype=np.float64)
    state = [tuple(mg.tensor(np.full((3, 4), 0.5 + k)) for _ in range(2)) for k in range(2)]
    outputs, new_state = layer(mg.tensor(np.zeros((3, 0, 2))), state)
    assert outputs.shape == (3, 0, 4)
    for old, new in zip(state, new_state):
        for s, t in zip(old, new):
            np.testing.assert_array_equal(t.data, s.data)


@pytest.mark.parametrize("split", [([0, 4], [0, 24, 40]), ([0, 1, 4], [0, 40])], ids=["units", "rows"])
# (each cell compiles its float32 parallel loops: gru's and rnn's run with -m slow)
@pytest.mark.parametrize("cell_name", cell_sweep(["lstm", "gru", "rnn"], quick=("lstm",)))
def test_float32_fused_agrees_with_float64(cell_name, split, monkeypatch):
    """The float32 kernels use a fast tanh approximation: close to exact, not equal.
    Forward and gradients, with the work cut in two between the cores by units, then by rows."""
    force_split(monkeypatch, *split)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16, 3))
    probe = rng.standard_normal((4, 16, 40))
    mg.random.manual_seed(3)
    exact = Recurrent(cell_name, 3, 40, num_layers=2, engine="fused", dtype=np.float64)
    fast = Recurrent(cell_name, 3, 40, num_layers=2, engine="fused", dtype=np.float32)
    copy_parameters(exact, fast)
    outputs_exact, _ = exact(mg.tensor(x))
    outputs_fast, _ = fast(mg.tensor(x.astype(np.float32)))
    np.testing.assert_allclose(outputs_fast.data, outputs_exact.data, atol=2e-5)
    (outputs_exact * probe).sum().backward()
    (outputs_fast * probe.astype(np.float32)).sum().backward()
    for (name, p), (_, q) in zip(exact.named_parameters(), fast.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-3, atol=2e-3, err_msg=name)


TORCH_MODULES = {"rnn": ("RNN", {"nonlinearity": "tanh"}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
                 "lstm": ("LSTM", {}), "gru": ("GRU", {})}


@pytest.mark.parametrize("engine", ["fused", "eager"])
@pytest.mark.parametrize("cell_name", list(TORCH_MODULES))
def test_matches_the_pytorch_module(cell_name, engine):
    torch = torch_or_skip()
    batch, steps, inputs, hidden, layers = 3, 6, 4, 5, 2
    class_name, options = TORCH_MODULES[cell_name]
    torch.manual_seed(0)
    reference = getattr(torch.nn, class_name)(inputs, hidden, num_layers=layers, batch_first=True,
                                              dtype=torch.float64, **options)
    ours = Recurrent(cell_name, inputs, hidden, num_layers=layers, engine=engine, dtype=np.float64)
    names = [name for name, _ in ours.named_parameters()]
    assert names == [name for name, _ in reference.named_parameters()]
    for (_, p), (_, q) in zip(reference.named_parameters(), ours.named_parameters()):
        q.data[...] = p.detach().numpy()

    rng = np.random.default_rng(4)
    x = rng.standard_normal((batch, steps, inputs))
    states = [rng.standard_normal((layers, batch, hidden)) for _ in ours.cell.state]
    probe = rng.standard_normal((batch, steps, hidden))
    state_probes = [rng.standard_normal((layers, batch, hidden)) for _ in ours.cell.state]

    x_torch = torch.tensor(x, requires_grad=True)
    states_torch = [torch.tensor(s, requires_grad=True) for s in states]
    out_torch, final_torch = reference(x_torch, tuple(states_torch) if cell_name == "lstm" else states_torch[0])
    final_torch = final_torch if cell_name == "lstm" else (final_torch,)
    loss_torch = (out_torch * torch.tensor(probe)).sum() + sum(
        (f * torch.tensor(p)).sum() for f, p in zip(final_torch, state_probes))
    loss_torch.backward()

    x_ours = mg.tensor(x, requires_grad=True)
    states_ours = [mg.tensor(s, requires_grad=True) for s in states]
    state = [tuple(s[k] for s in states_ours) for k in range(layers)]
    out_ours, final_ours = ours(x_ours, state)
    loss_ours = (out_ours * probe).sum()
    for i, p in enumerate(state_probes):
        loss_ours = loss_ours + sum((final_ours[k][i] * p[k]).sum() for k in range(layers))
    loss_ours.backward()

    np.testing.assert_allclose(out_ours.data, out_torch.detach().numpy(), atol=1e-6)
    for i, final in enumerate(final_torch):
        for k in range(layers):
            np.testing.assert_allclose(final_ours[k][i].data, final[k].detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(x_ours.grad, x_torch.grad.numpy(), atol=1e-6)
    for s_ours, s_torch in zip(states_ours, states_torch):
        np.testing.assert_allclose(s_ours.grad, s_torch.grad.numpy(), atol=1e-6)
    for (name, p), (_, q) in zip(reference.named_parameters(), ours.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad.numpy(), atol=1e-6, err_msg=name)


def test_gradcheck_cases_are_selected_by_name():
    """What `minigrad-rnn gradcheck --op/--cell` runs (rnn.model.checks.gradcheck_cases), without the CLI."""
    from rnn.errors import ArgumentError

    ops = [case.name for case in checks.op_cases()]
    assert [case.name for case in checks.gradcheck_cases(op="all")] == ops
    assert [case.name for case in checks.gradcheck_cases(op="mul")] == ["mul"]
    assert sorted(case.name for case in checks.gradcheck_cases(cell="gru")) == ["gru (eager)", "gru (fused)"]
    assert [case.name for case in checks.gradcheck_cases(cell="gru", op="mul")][0] == "mul"  # ops first
    every = [case.name for case in checks.gradcheck_cases()]
    assert every[:len(ops)] == ops and "lstm (fused)" in every[len(ops):]
    with pytest.raises(ArgumentError, match="unknown op 'nope'; available: "):
        checks.gradcheck_cases(op="nope")
    with pytest.raises(CellError):
        checks.gradcheck_cases(cell="nope")


def test_a_user_cell_written_like_the_built_in_lstm_compiles_to_the_same_kernels():
    """A cell is fused from its gate expressions alone: the user's lstm gets the built-in's
    kernels (so its speed), whatever its name. Only the docstring naming the cell differs."""
    @cell(gates=("i", "f", "g", "o"), state=("h", "c"), name="test_rnn_lstm_as_a_user_writes_it")
    def users_lstm(x, h, c):
        i = sigmoid(x.i + h.i)
        f = sigmoid(x.f + h.f)
        g = tanh(x.g + h.g)
        o = sigmoid(x.o + h.o)
        c = f * c + i * g
        return o * tanh(c), c

    for fast in (True, False):
        built_in = generate_source(get_cell("lstm"), fast)
        users = generate_source(users_lstm, fast).replace("'test_rnn_lstm_as_a_user_writes_it'", "'lstm'")
        assert users == built_in
