"""Matmul precision bf16 (rnn.fused.packed_gemm_bf16, rnn.fused.bf16_window): the rounding, the
products, a fused LSTM's values and gradients, and the `train` option.

The tolerance of the layer test is not a guess at bf16's error: the reference rounds the
same operands to bf16 as the fused layer does (a float64 LSTM whose every product is
round(a) @ round(b), backward too), so the two differ only by float32 against float64
arithmetic, and the plain float32 layer is shown to be far outside that tolerance.
"""

import json

import numpy as np
import pytest

import minigrad as mg
import rnn.fused.recurrence
import rnn.training.resume
from minigrad.autograd import Function
from rnn.fused import bf16_window, packed_gemm_bf16 as bf16, panel_driver
from rnn.model.layers import Recurrent
from rnn.training.config import TrainConfig
from rnn.errors import ConfigError

from cli_support import TINY_RUN, assert_one_error_line, make_text, run_in_process

needs_bf16 = pytest.mark.skipif(bool(bf16.BF16_UNAVAILABLE), reason=f"bf16 {bf16.BF16_UNAVAILABLE}")


def rounded(x) -> np.ndarray:
    """x rounded to bf16 (round to nearest, ties to even), as float64."""
    return bf16.bf16_to_float32(bf16.round_to_bf16(np.ascontiguousarray(x, np.float32))).astype(np.float64)


def test_rounding_is_to_nearest_with_ties_to_even():
    ulp = 2.0 ** -7  # bf16 keeps 7 bits of mantissa: its step above 1
    cases = {1 + ulp / 2: 1.0,  # a tie, to the even neighbour (1.0)
             1 + 3 * ulp / 2: 1 + 2 * ulp,  # a tie, to the even neighbour (1 + 2 ulp)
             1 + ulp / 2 + 2.0 ** -20: 1 + ulp,  # just above a tie: up
             1 + ulp / 2 - 2.0 ** -20: 1.0,  # just below: down
             -(1 + 3 * ulp / 2): -(1 + 2 * ulp), np.inf: np.inf, -np.inf: -np.inf, 0.0: 0.0}
    values = np.array(list(cases), np.float32)
    np.testing.assert_array_equal(rounded(values), np.array(list(cases.values())))
    assert np.isnan(rounded(np.array([np.nan], np.float32))).all()


@needs_bf16
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
# (the last: more pairs of K than one depth slice of the panels holds, odd K)
@pytest.mark.parametrize("rows, inner, columns", [(3, 7, 32), (37, 64, 96), (300, 129, 64),
                                                  (13, 2 * panel_driver.DEPTH + 45, 32)])
def test_bf16_products_are_float32_sums_of_rounded_operands(rows, inner, columns, transpose_a, transpose_b):
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner)).astype(np.float32)
    b = rng.standard_normal((columns, inner) if transpose_b else (inner, columns)).astype(np.float32)
    op_a, op_b = (rounded(a).T if transpose_a else rounded(a)), (rounded(b).T if transpose_b else rounded(b))
    exact = op_a @ op_b
    # float32 sums of `inner` exact products (bf16 x bf16 fits in float32): at most inner * 2**-24 * sum |a||b|
    bound = inner * 2.0 ** -24 * (np.abs(op_a) @ np.abs(op_b))
    product = bf16_window.matmul_bf16(a, b, transpose_a, transpose_b)
    assert product.dtype == np.float32
    assert np.all(np.abs(product - exact) <= bound)
    # the per-step kernel, setting and accumulating
    out = np.ones((rows, columns), np.float32)
    panels = bf16.pack_panels_bf16(b, transpose_b)
    bf16.packed_matmul_bf16_into(bf16.pairs_of(a, transpose_a), panels, 0, out, True)
    assert np.all(np.abs(out - (exact + 1)) <= bound + 2.0 ** -23 * np.abs(exact + 1))


class RoundedProduct(Function):
    """a @ b.T on bf16-rounded operands, its gradients too on rounded operands: what the bf16
    layer computes, in float64."""

    def forward(self, a, b):
        return rounded(a) @ rounded(b).T

    def backward(self, grad):
        a, b = (t.data for t in self.inputs)
        return rounded(grad) @ rounded(b), rounded(grad).T @ rounded(a)


def reference_lstm(layer, x, state, precision):
    """The LSTM `layer` computes, with mg ops in float64; every product bf16-rounded if asked."""
    def product(a, w):
        return RoundedProduct.apply(a, w) if precision == "bf16" else a @ w.T

    hidden_size, outputs_of_layer, new_state = layer.hidden_size, x, []
    for k in range(layer.num_layers):
        w_ih, w_hh, b_ih, b_hh = (mg.tensor(p.data, dtype=np.float64, requires_grad=True)
                                  for p in layer.layer_parameters(k))
        steps = outputs_of_layer.shape[1]
        xp = product(outputs_of_layer.reshape(-1, outputs_of_layer.shape[2]), w_ih).reshape(x.shape[0], steps, -1)
        h, c = state[k]
        outputs = []
        for t in range(steps):
            gates = xp[:, t] + b_ih + product(h, w_hh) + b_hh
            i, f, g, o = (gates[:, n * hidden_size:(n + 1) * hidden_size] for n in range(4))
            c = i.sigmoid() * g.tanh() + f.sigmoid() * c
            h = o.sigmoid() * c.tanh()
            outputs.append(h)
        outputs_of_layer = mg.stack(outputs, axis=1)
        new_state.append((h, c))
        layer.reference_parameters = getattr(layer, "reference_parameters", []) + [w_ih, w_hh, b_ih, b_hh]
    return outputs_of_layer, new_state


@needs_bf16
# one block; each core its own panels (that one compiles the parallel loops: marked slow, CI runs it)
@pytest.mark.parametrize("unit_bounds", [[0, 64], pytest.param([0, 32, 64], marks=pytest.mark.slow)])
def test_a_fused_bf16_lstm_equals_the_float64_one_on_rounded_operands(unit_bounds, monkeypatch):
    monkeypatch.setattr(rnn.fused.recurrence, "split_of_work",
                        lambda batch, hidden, gates, core_count=None: (np.array([0, batch]), np.array(unit_bounds)))
    rng = np.random.default_rng(3)
    batch, steps, inputs, hidden = 5, 6, 32, 64
    mg.random.manual_seed(0)
    layer = Recurrent("lstm", inputs, hidden, num_layers=2)
    layer.matmul_precision = "bf16"
    x = rng.standard_normal((batch, steps, inputs)).astype(np.float32)
    start = [tuple(0.5 * rng.standard_normal((batch, hidden)).astype(np.float32) for _ in range(2)) for _ in range(2)]
    probe = rng.standard_normal((batch, steps, hidden))

    def loss_of(outputs, state):
        return (outputs * probe).sum() + sum((s * s).sum() for layer_state in state for s in layer_state)

    outputs, state = layer(mg.tensor(x), [tuple(mg.tensor(s) for s in pair) for pair in start])
    loss_of(outputs, state).backward()
    fused = [outputs.data, *(s.data for pair in state for s in pair), *(p.grad for p in layer.parameters())]
    assert fused[0].dtype == np.float32
    results = {}
    for precision in ("bf16", "float32"):
        layer.reference_parameters = []
        outputs, state = reference_lstm(layer, mg.tensor(x, dtype=np.float64),
                                        [tuple(mg.tensor(s, dtype=np.float64) for s in pair) for pair in start],
                                        precision)
        loss_of(outputs, state).backward()
        results[precision] = [outputs.data, *(s.data for pair in state for s in pair),
                              *(p.grad for p in layer.reference_parameters)]
    # Outputs and final states: float32 arithmetic against float64 on the same rounded operands.
    values = 1 + 2 * 2  # outputs, then h and c of both layers
    for got, want in zip(fused[:values], results["bf16"][:values]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    # Gradients: the same, except where a float32 gradient and its float64 reference fall on two
    # sides of a bf16 tie before they are rounded (chance ~ 1e-7 / 2**-9 per value): that
    # operand then differs by a bf16 step (2**-8), which moves a row or two of a weight
    # gradient (measured: < 1% of the elements, 2-5e-5 of the norm). Compared in norm:
    def distance(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    for got, want in zip(fused[values:], results["bf16"][values:]):
        assert distance(got, want) < 2e-4
    # ...which the float32 products miss by far: the test sees the rounding
    separation = [distance(a, b) for a, b in zip(results["float32"], results["bf16"])]
    assert min(separation[values:]) > 5e-4 and max(separation[:values]) > 1e-3


def test_bf16_needs_float32_and_the_fused_engine():
    TrainConfig(matmul_precision="bf16").validate()
    for changes in ({"dtype": "float64"}, {"engine": "eager"}):
        with pytest.raises(ConfigError, match="bf16 needs dtype float32 and the fused engine"):
            TrainConfig(matmul_precision="bf16", **changes).validate()
    with pytest.raises(ConfigError, match="matmul_precision"):
        TrainConfig(matmul_precision="bfloat16").validate()


@pytest.mark.parametrize("cpu, llvm, says", [(False, (22, 1), "needs a CPU with AVX512_BF16"),
                                             (True, (14, 0), "needs llvmlite built on LLVM 16 or newer (this one: LLVM 14")])
def test_a_host_that_cannot_run_bf16_refuses_it_in_one_line(tmp_path, monkeypatch, cpu, llvm, says):
    # (numba 0.59's llvmlite, on LLVM 14, fails to compile the kernel: its intrinsic takes no bfloat)
    monkeypatch.setattr(bf16, "HOST_HAS_AVX512_BF16", cpu)
    monkeypatch.setattr(bf16.llvmlite.binding, "llvm_version_info", llvm)
    monkeypatch.setattr(rnn.training.resume, "BF16_UNAVAILABLE", bf16._bf16_unavailable())
    text = tmp_path / "t.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    result = run_in_process("train", text, *TINY_RUN, "--matmul-precision", "bf16", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert_one_error_line(result.stderr, f"--matmul-precision bf16 {says}")
    assert not list(tmp_path.glob("run/*.safetensors"))


@needs_bf16
@pytest.mark.slow  # (compiles a 2-layer model's bf16 loops in the CLI, ~9 s of CPU cold; CI runs it)
def test_train_records_bf16_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text(make_text(3000), encoding="utf-8")
    model = ["--cell", "lstm", "--hidden", "64", "--embed", "8", "--layers", "2", "--seq-len", "8", "--batch-size", "4",
             "--eval-every", "0", "--sample-every", "0", "--val-frac", "0.1"]
    run = tmp_path / "run"
    run_in_process("train", text, *model, "--steps", "3", "--matmul-precision", "bf16", "--out", run, check_exit=0)
    assert json.loads((run / "config.json").read_text())["train"]["matmul_precision"] == "bf16"
    products = []  # the resumed run's bf16 window products (d W_hh, layer 1's projection)
    real_product = bf16_window.matmul_bf16
    monkeypatch.setattr(bf16_window, "matmul_bf16", lambda *args, **kw: products.append(1) or real_product(*args, **kw))
    run_in_process("train", text, "--steps", "5", "--resume", run / "latest.safetensors", check_exit=0)
    assert json.loads((run / "config.json").read_text())["train"]["matmul_precision"] == "bf16"
    assert len(products) >= 2 * (2 + 3)  # two steps, each: d W_hh of 2 layers, 3 products of Bf16Linear
    from safetensors.numpy import load_file
    tensors = load_file(run / "latest.safetensors")
    parameters = [name for name in tensors if name.split(".")[0] in ("embedding", "rnn", "head")]
    assert len(parameters) == 11 and all(tensors[name].dtype == np.float32 for name in parameters)


@needs_bf16
def test_a_bf16_run_times_its_size_choice_in_bf16(monkeypatch):
    """The recipe sizes a time-budget run from the speed of its default size: measured in the
    run's own precision, since a bf16 step is the one the budget will hold."""
    from rnn.data.corpus import Corpus
    from rnn.model.charlm import CharLM
    from rnn.training import sizing

    precisions = []
    real_loss = CharLM.loss
    monkeypatch.setattr(CharLM, "loss", lambda model, *a, **kw: precisions.append(model.rnn.matmul_precision)
                        or real_loss(model, *a, **kw))
    corpus = Corpus.from_text(make_text(3000, seed=1), val_frac=0.1)
    config = TrainConfig(cell="lstm", embed=8, seq_len=8, batch_size=4, time_budget=10.0,
                         matmul_precision="bf16").validate()
    assert sizing.seconds_per_step_of_default_size(config, corpus) > 0
    assert precisions and set(precisions) == {"bf16"}
