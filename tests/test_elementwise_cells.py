"""Cells whose recurrence is elementwise (no h.<gate>: mingru, qrnn, sru, a user's cell):
no W_hh parameters, no GEMM per step in the fused engine (forward or backward), the same
numbers as the eager engine, checkpoints, sampling and the CLI.

The built-in ones are also gradchecked (float64, eager and fused, 2 layers, 5 steps) and
compared eager = fused under every split of the work by the parametrized tests of
test_rnn.py, which take every registered built-in cell."""

import json

import numpy as np
import pytest

import minigrad as mg
import rnn.fused.elementwise_recurrence
import rnn.fused.recurrence
from cli_support import make_text, run_in_process
from helpers import cell_sweep
from minigrad import blas
from rnn.model import checks
from rnn.cells.registry import available_cells, cell, get_cell, pytorch_module, sigmoid, tanh
from rnn.checkpoint.format import load_checkpoint, save_checkpoint
from rnn.fused.compiler import bind_loop_template, compile_cell
from rnn.data.vocab import Vocab
from rnn.fused.elementwise_recurrence import ElementwiseRecurrence
from rnn.model.layers import Recurrent
from rnn.model.charlm import CharLM, ModelConfig
from rnn.sample import sample

ELEMENTWISE = ["mingru", "qrnn", "sru"]


@cell(gates=("a", "u"), state=("h", "m"), name="test_elementwise_user_cell")
def user_cell(x, h, m):
    """A user's cell that reads its states only through elementwise products."""
    a = sigmoid(x.a)
    m = a * m + (1 - a) * tanh(x.u)
    return tanh(m) * a + 0.5 * h * (1 - a), m


CELLS = ELEMENTWISE + [user_cell.name]


def test_a_cell_has_a_recurrent_projection_exactly_when_its_step_reads_h_dot_gate():
    flags = {name: get_cell(name).recurrent_projection for name in available_cells() if not name.startswith("test_")}
    assert flags == {name: name not in ELEMENTWISE for name in flags}
    assert not user_cell.recurrent_projection  # plain h is a state, not a projection through W_hh


@pytest.mark.parametrize("cell_name", CELLS)
def test_a_layer_of_a_cell_without_h_gate_has_no_recurrent_weights(cell_name):
    layer = Recurrent(cell_name, 3, 4, num_layers=2)
    gate_rows = len(get_cell(cell_name).gates) * 4
    assert {name: p.shape for name, p in layer.named_parameters()} == {
        "weight_ih_l0": (gate_rows, 3), "bias_ih_l0": (gate_rows,),
        "weight_ih_l1": (gate_rows, 4), "bias_ih_l1": (gate_rows,)}


@pytest.mark.parametrize("case", list(checks.cell_cases([user_cell.name])), ids=lambda case: case.name)
def test_a_users_elementwise_cell_passes_gradcheck_on_both_engines(case):
    result = checks.run_case(case)
    assert result.ok, (result.max_abs_error, result.max_rel_error)


def test_the_built_in_elementwise_cells_are_in_the_gradcheck_of_every_cell():
    names = {case.name for case in checks.cell_cases()}
    assert {f"{name} ({engine})" for name in ELEMENTWISE for engine in ("eager", "fused")} <= names


def charlm_pair(cell_name, dtype="float64"):
    config = ModelConfig(vocab_size=7, cell=cell_name, embed=3, hidden=5, layers=2, dtype=dtype)
    mg.random.manual_seed(2)
    eager = CharLM(ModelConfig(**{**config.to_dict(), "engine": "eager"}))
    fused = CharLM(config)
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        q.data[...] = p.data
    return eager, fused


# (row bounds, unit bounds) for 3 rows and 5 units: the cores' parts of the elementwise loops
SPLITS = {"own": None, "rows 1+2": ([0, 1, 3], [0, 5]), "units 2+3": ([0, 3], [0, 2, 5]),
          "rows 1+2 x units 1+4": ([0, 1, 3], [0, 1, 5])}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("cell_name", CELLS)
def test_the_fused_char_lm_equals_the_eager_one_over_windows(cell_name, split, monkeypatch):
    """Layer 0 reads its projection from the folded embedding table by id, layer 1 from
    layer 0's outputs: both inputs of ElementwiseRecurrence, over two windows with the
    state carried."""
    if SPLITS[split] is not None:
        rows, units = (np.array(b, np.int64) for b in SPLITS[split])
        monkeypatch.setattr(rnn.fused.elementwise_recurrence, "split_of_work", lambda batch, hidden: (rows, units))
    eager, fused = charlm_pair(cell_name)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (3, 9))
    targets = rng.integers(0, 7, (3, 9))
    results = []
    for model in (eager, fused):
        state, losses = None, []
        for window in (slice(0, 4), slice(4, 9)):
            loss, state = model.loss(ids[:, window], targets[:, window], state)
            final = sum((s * s).sum() for layer_state in state for s in layer_state)
            (loss + final).backward()
            losses.append(float(loss.data))
            state = [tuple(s.detach() for s in layer_state) for layer_state in state]
        results.append((losses, state))
    (eager_losses, eager_state), (fused_losses, fused_state) = results
    np.testing.assert_allclose(fused_losses, eager_losses, rtol=1e-12)
    for a, b in zip(eager_state, fused_state):
        for s, t in zip(a, b):
            np.testing.assert_allclose(t.data, s.data, rtol=1e-12, atol=1e-14)
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell_name", CELLS)
def test_the_fused_layer_runs_no_recurrent_gemm_forward_or_backward(cell_name, monkeypatch):
    """The per-step GEMMs (W_hh h, d hp W_hh) live only in FusedRecurrence's window loops,
    and so does the GEMM for d W_hh in its backward: a layer of a cell without h.<gate>
    must not reach them. Its loop has no product in it, and the products it leaves to
    BLAS are the input projection's (x W_ih^T; d x, d W_ih), none with a side of the
    hidden size (which d W_hh = d hp^T h would have)."""

    def refuse(*args, **kwargs):
        raise AssertionError("FusedRecurrence ran for a cell without h.<gate>")

    monkeypatch.setattr(rnn.fused.recurrence.FusedRecurrence, "forward", refuse)
    monkeypatch.setattr(rnn.fused.recurrence.FusedRecurrence, "backward", refuse)
    products = []
    real_matmul = blas.matmul

    def counting_matmul(a, b, *args, **kwargs):
        products.append(a.shape + b.shape)
        return real_matmul(a, b, *args, **kwargs)

    monkeypatch.setattr(blas, "matmul", counting_matmul)
    hidden = 5  # (input 3, 2 x 7 = 14 rows, gate rows 10, 15 or 20: no other size is 5)
    layer = Recurrent(cell_name, 3, hidden, num_layers=1, dtype=np.float64)
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 7, 3)), requires_grad=True)
    outputs, state = layer(x)
    assert isinstance(outputs.grad_fn, ElementwiseRecurrence)
    (outputs.sum() + sum(s.sum() for s in state[0])).backward()
    assert products and all(hidden not in shapes for shapes in products), products
    assert x.grad is not None and layer.weight_ih_l0.grad is not None
    source = bind_loop_template("elementwise", compile_cell(get_cell(cell_name), np.float64), parallel=False)
    assert "matmul" not in source and "elementwise_forward" in source


# Each cell's round trip compiles its own kernels in a CLI process (6-9 s of CPU, cold): the
# quick command runs mingru's, the tests marked slow (CI runs them too) the other two.
@pytest.mark.parametrize("cell_name", cell_sweep(ELEMENTWISE, quick=ELEMENTWISE[:1]))
def test_checkpoint_round_trip_and_sampling(cell_name, tmp_path):
    text = "the quick brown fox jumps over the lazy dog.\n"
    vocab = Vocab.from_text(text)
    mg.random.manual_seed(5)
    model = CharLM(ModelConfig(vocab_size=len(vocab), cell=cell_name, embed=4, hidden=8, layers=2))
    optimizer = mg.optim.Adam(model.parameters(), lr=1e-2)
    ids = vocab.encode(text)[None, :]
    loss, _ = model.loss(ids[:, :-1], ids[:, 1:])
    loss.backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "m.safetensors", model, optimizer, {"step": 1}, vocab=vocab)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert set(loaded.model.state_dict()) == set(model.state_dict())
    assert not any("_hh_" in name for name in model.state_dict())
    for name, array in model.state_dict().items():
        assert np.array_equal(loaded.model.state_dict()[name], array), name
    again, _ = loaded.model.loss(ids[:, :-1], ids[:, 1:])
    assert float(again.data) < float(loss.data)  # the stepped weights, not fresh ones
    drawn = "".join(sample(loaded.model, loaded.vocab, prime="the", length=30, seed=1))
    assert len(drawn) == 30 and set(drawn) <= set(vocab.chars)
    assert pytorch_module(cell_name) is None and pytorch_module("lstm") == "nn.LSTM"


def test_train_mingru_through_the_cli_then_info_says_pytorch_has_no_such_module(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    run = tmp_path / "run"
    result = run_in_process("train", text, "--cell", "mingru", "--steps", "5", "--hidden", "16", "--embed", "8",
                     "--layers", "2", "--seq-len", "16", "--batch-size", "4", "--eval-every", "5",
                     "--sample-every", "0", "--json", "--out", run, check_exit=0)
    report = json.loads(result.stdout)
    assert report["latest_step"] == 5 and np.isfinite(report["last_val_loss_nats"])
    info = json.loads(run_in_process("info", run / "latest.safetensors", "--json", check_exit=0).stdout)
    assert info["model_config"]["cell"] == "mingru" and info["pytorch_module"] is None
    text_info = run_in_process("info", run / "latest.safetensors", check_exit=0).stdout
    assert "no torch.nn module computes the mingru cell" in text_info
