"""Watching gradients flow through a recurrent network with hooks, and catching the op that
made a NaN or inf with `mg.detect_anomaly()`.

The hook tests check the recorded per-step gradients against backpropagation through time
written out by hand in numpy (and against PyTorch's LSTMCell where torch is installed).
The experiment built on them, examples/vanishing_gradients.py, is tested at the end.
"""

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from rnn.cells import Cell, log, tanh
from rnn.layers import Recurrent

from helpers import torch_or_skip

THIS_FILE = Path(__file__).name


def line_of_next_statement() -> int:
    return inspect.currentframe().f_back.f_lineno + 1


def unroll_with_hooks(layer, inputs, batch, hidden):
    """Run `layer` one step at a time from a zero state that requires grad; hook every state.

    Returns (states, calls): states[t] is the state tuple after t steps; calls lists
    (t, part, gradient) in the order the hooks fired.
    """
    state = tuple(mg.tensor(np.zeros((batch, hidden)), requires_grad=True) for _ in layer.cell.state)
    states = [state]
    for t in range(inputs.shape[1]):
        _, (state,) = layer(inputs[:, t:t + 1], [state])
        states.append(state)
    calls = []
    for t, state in enumerate(states):
        for part, tensor in enumerate(state):
            tensor.register_hook(lambda grad, t=t, part=part: calls.append((t, part, grad.copy())))
    return states, calls


def tanh_rnn(steps=12, batch=3, input_size=4, hidden=5, seed=0):
    mg.random.manual_seed(seed)
    layer = Recurrent("rnn", input_size, hidden, engine="eager", dtype=np.float64)
    rng = np.random.default_rng(seed)
    inputs = mg.tensor(rng.standard_normal((batch, steps, input_size)))
    probe = rng.standard_normal((batch, hidden))
    return layer, inputs, probe


# ---- hooks ---------------------------------------------------------------------------------------

def test_hooks_record_the_gradient_of_every_step_as_hand_written_bptt_says():
    steps, batch, hidden = 12, 3, 5
    layer, inputs, probe = tanh_rnn(steps, batch, hidden=hidden)
    states, calls = unroll_with_hooks(layer, inputs, batch, hidden)
    (states[-1][0] * probe).sum().backward()

    # one call per state, latest step first: backward walks time in reverse
    assert [t for t, _, _ in calls] == list(range(steps, -1, -1))
    recorded = {t: grad for t, _, grad in calls}

    # BPTT by hand: h_{t+1} = tanh(... + h_t W_hh^T), so dL/dh_t = (dL/dh_{t+1} * (1 - h_{t+1}^2)) @ W_hh
    w_hh = layer.weight_hh_l0.data
    expected = probe
    for t in range(steps, -1, -1):
        np.testing.assert_allclose(recorded[t], expected, rtol=1e-10, atol=1e-14)
        if t:
            h = states[t][0].data
            expected = (expected * (1 - h * h)) @ w_hh
    norms = [np.linalg.norm(recorded[t]) for t in range(steps + 1)]
    assert norms[0] < norms[steps]  # much less of the gradient reaches the start


def test_hook_gradients_equal_retain_grad():
    layer, inputs, probe = tanh_rnn(steps=6)
    states, calls = unroll_with_hooks(layer, inputs, 3, 5)
    for (h,) in states[1:]:
        h.retain_grad()
    (states[-1][0] * probe).sum().backward()
    recorded = {t: grad for t, _, grad in calls}
    for t, (h,) in enumerate(states[1:], start=1):
        np.testing.assert_array_equal(recorded[t], h.grad)


def test_lstm_hooks_see_both_h_and_c_and_match_torch():
    torch = torch_or_skip()
    steps, batch, input_size, hidden = 8, 2, 3, 4
    mg.random.manual_seed(1)
    layer = Recurrent("lstm", input_size, hidden, engine="eager", dtype=np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, steps, input_size))
    probe = rng.standard_normal((batch, hidden))
    states, calls = unroll_with_hooks(layer, mg.tensor(x), batch, hidden)
    (states[-1][0] * probe).sum().backward()
    ours = {(t, part): grad for t, part, grad in calls}
    assert len(ours) == 2 * (steps + 1)  # h_t and c_t for every t (c_T feeds h_T)

    torch_cell = torch.nn.LSTMCell(input_size, hidden, dtype=torch.float64)  # same (i, f, g, o) layout
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(torch_cell, name).copy_(torch.from_numpy(getattr(layer, f"{name}_l0").data))
    h = torch.zeros(batch, hidden, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(batch, hidden, dtype=torch.float64, requires_grad=True)
    torch_states = [(h, c)]
    for t in range(steps):
        h, c = torch_cell(torch.from_numpy(x[:, t]), (h, c))
        torch_states.append((h, c))
    for pair in torch_states[1:]:
        for tensor in pair:
            tensor.retain_grad()
    (torch_states[-1][0] * torch.from_numpy(probe)).sum().backward()
    for t, pair in enumerate(torch_states):
        for part, tensor in enumerate(pair):
            np.testing.assert_allclose(ours[(t, part)], tensor.grad.numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"state part {part} at step {t}")


def test_a_hook_that_returns_zeros_truncates_backpropagation_through_time():
    steps, cut = 10, 4
    layer, inputs, probe = tanh_rnn(steps)
    states, calls = unroll_with_hooks(layer, inputs, 3, 5)
    states[cut][0].register_hook(lambda grad: np.zeros_like(grad))  # runs after the recording hook
    (states[-1][0] * probe).sum().backward()
    norms = {t: np.linalg.norm(grad) for t, _, grad in calls}
    assert norms[cut] > 0  # the recording hook saw the real gradient first
    assert all(norms[t] == 0 for t in range(cut))
    assert all(norms[t] > 0 for t in range(cut + 1, steps + 1))


def test_the_hook_on_the_initial_state_is_the_same_for_the_eager_and_fused_engines():
    seen = {}
    for engine in ("eager", "fused"):
        mg.random.manual_seed(2)
        layer = Recurrent("gru", 3, 4, engine=engine, dtype=np.float64)
        inputs = mg.tensor(np.random.default_rng(2).standard_normal((2, 7, 3)))
        h0 = mg.tensor(np.zeros((2, 4)), requires_grad=True)
        h0.register_hook(lambda grad, engine=engine: seen.setdefault(engine, grad.copy()))
        outputs, _ = layer(inputs, [(h0,)])
        (outputs[:, -1] ** 2).sum().backward()
    np.testing.assert_allclose(seen["eager"], seen["fused"], rtol=1e-10, atol=1e-14)
    assert np.linalg.norm(seen["eager"]) > 0


# ---- anomaly mode ---------------------------------------------------------------------------------

def test_anomaly_in_forward_names_the_op_and_the_users_line():
    x = mg.tensor([1.0, 3.0], requires_grad=True)
    with mg.detect_anomaly():
        with pytest.raises(mg.AnomalyError) as error:
            line = line_of_next_statement()
            mg.log(x - 2.0) * 3.0  # log(-1) is NaN; the Mul after it is never reached
    message = str(error.value)
    assert message.startswith("Log produced NaN in its forward")
    assert f'{THIS_FILE}", line {line}' in message
    assert "mg.log(x - 2.0) * 3.0" in message


def test_anomaly_reports_inf_too():
    with mg.detect_anomaly():
        with pytest.raises(mg.AnomalyError, match=r"^Exp produced inf in its forward"):
            mg.tensor(np.array([100.0], np.float32), requires_grad=True).exp()  # overflows float32


def test_anomaly_in_backward_names_the_op_where_it_was_created_not_where_backward_ran():
    v = mg.tensor([0.0, 0.0], requires_grad=True)
    with mg.detect_anomaly():
        line = line_of_next_statement()
        norm = (v * v).sum() ** 0.5  # sqrt(0) = 0 is fine; its derivative is not
        assert norm.item() == 0.0
        with pytest.raises(mg.AnomalyError) as error:
            norm.backward()
    message = str(error.value)
    assert message.startswith("Pow produced inf in its backward (gradient of input 0)")
    assert f'{THIS_FILE}", line {line}' in message
    assert "** 0.5" in message
    assert v.grad is None  # stopped before anything reached the leaf


def test_anomaly_stops_an_eager_rnn_at_the_step_that_made_the_nan():
    # h' = log(x.h + h.h): fine while the pre-activation is positive, NaN once it is not
    log_cell = Cell("log_rnn", gates=("h",), state=("h",), step=lambda x, h: log(tanh(x.h + h.h)))
    mg.random.manual_seed(0)
    layer = Recurrent(log_cell, 1, 1, engine="eager", dtype=np.float64)
    for p in layer.parameters():
        p.data[...] = 0.0
    layer.weight_ih_l0.data[...] = 1.0
    inputs = np.ones((1, 5, 1))
    inputs[0, 3] = -1.0  # step 3's pre-activation is negative
    steps_done = []
    with mg.detect_anomaly():
        state = None
        with pytest.raises(mg.AnomalyError) as error:
            for t in range(5):
                _, state = layer(mg.tensor(inputs[:, t:t + 1]), state)
                steps_done.append(t)
    assert steps_done == [0, 1, 2]
    assert str(error.value).startswith("Log produced NaN in its forward")
    with mg.no_grad():  # without anomaly mode the NaN just flows on
        outputs, _ = layer(mg.tensor(inputs))
    assert np.isnan(outputs.data[0, 3:]).all() and np.isfinite(outputs.data[0, :3]).all()


def test_anomaly_mode_changes_no_value_and_no_gradient():
    def run():
        mg.random.manual_seed(3)
        layer = Recurrent("lstm", 2, 3, engine="eager", dtype=np.float64)
        outputs, _ = layer(mg.tensor(np.random.default_rng(3).standard_normal((2, 4, 2))))
        loss = (outputs ** 2).mean()
        loss.backward()
        return loss.item(), [p.grad for p in layer.parameters()]

    plain_loss, plain_grads = run()
    with mg.detect_anomaly():
        checked_loss, checked_grads = run()
    assert plain_loss == checked_loss
    for plain, checked in zip(plain_grads, checked_grads):
        np.testing.assert_array_equal(plain, checked)


def test_anomaly_mode_is_off_again_after_an_error_inside_the_block():
    with pytest.raises(mg.AnomalyError):
        with mg.detect_anomaly():
            mg.tensor([-1.0]).log()
    assert not mg.anomaly.is_anomaly_enabled()
    assert np.isnan(mg.tensor([-1.0]).log().item())


# ---- the vanishing-gradient experiment (examples/vanishing_gradients.py) ---------------------------

def load_example():
    path = Path(__file__).resolve().parents[1] / "examples" / "vanishing_gradients.py"
    spec = importlib.util.spec_from_file_location("vanishing_gradients_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gated_cells_keep_far_more_gradient_at_distance_20_when_tanh_saturates(example, seed):
    # W_ih x 4 drives tanh into saturation: 1 - h^2 ~ 0 kills the rnn's only path back,
    # while the gated cells keep an additive path through c (lstm) or z * h (gru).
    norms = example.measure(steps=30, input_scale=4.0, seed=seed)
    assert norms["lstm"][20] > 100 * norms["rnn"][20]
    assert norms["gru"][20] > 100 * norms["rnn"][20]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_the_usual_init_the_rnn_still_vanishes_fastest(example, seed):
    norms = example.measure(steps=30, seed=seed)
    assert norms["lstm"][20] > 10 * norms["rnn"][20]
    assert norms["gru"][20] > 10 * norms["rnn"][20]
    assert norms["rnn"][30] < 1e-4 * norms["rnn"][0]


def test_norms_by_distance_start_at_the_probe(example):
    norms = example.measure(steps=6, hidden=5, seed=4)
    for values in norms.values():
        assert values.shape == (7,) and np.all(np.isfinite(values)) and np.all(values > 0)
    # at distance 0, dL/dh_T is the probe itself, whatever the cell; the lstm adds dL/dc_T
    assert norms["rnn"][0] == pytest.approx(norms["gru"][0], rel=1e-12)
    assert norms["lstm"][0] > norms["rnn"][0]


def test_the_experiment_leaves_the_callers_random_stream_alone(example):
    mg.random.manual_seed(123)
    expected = mg.random.generator().standard_normal(3)
    mg.random.manual_seed(123)
    example.state_gradient_norms("rnn", steps=3, hidden=2)
    np.testing.assert_array_equal(mg.random.generator().standard_normal(3), expected)


def test_the_script_prints_the_table_and_writes_a_png(example, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert example.main(["--steps", "10", "--hidden", "4", "--png", str(png)]) == 0
    output = capsys.readouterr().out.splitlines()
    assert output[1].split() == ["distance", "rnn", "lstm", "gru"]
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]]
            for line in output[2:] if line[:8].strip().isdigit()}
    assert sorted(rows) == [0, 1, 2, 3, 5, 10]
    expected = example.measure(steps=10, hidden=4)
    for d, values in rows.items():
        np.testing.assert_allclose(values, [expected[c][d] for c in ("rnn", "lstm", "gru")], rtol=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_script_reports_an_unknown_cell_in_one_line(example, capsys):
    assert example.main(["--cells", "rnn,no_such_cell", "--steps", "2"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unknown cell 'no_such_cell'" in error
