"""Higher order and forward mode: mg.grad(create_graph=True), mg.gradgradcheck, mg.jvp, mg.hvp.

Every op appears in CASES once, with a minigrad function and the same function in PyTorch.
Each case is checked four ways: the fast array backward agrees with the differentiable
Tensor backward; gradgradcheck (second derivatives against finite differences); second
derivatives against PyTorch in float64; forward mode against finite differences and
torch.func.jvp. PyTorch comparisons are skipped where torch is absent.
"""

from typing import Callable, NamedTuple

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import unbroadcast
from rnn.cells import get_cell
from rnn.layers import Recurrent, eager_step

from helpers import TORCH_MISSING

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the comparisons with PyTorch are skipped, the rest still runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason=TORCH_MISSING)


class Case(NamedTuple):
    name: str
    make: Callable  # rng -> list of float64 arrays (the differentiable inputs)
    mg_fn: Callable
    torch_fn: Callable


def normal(*shapes):
    return lambda rng: [rng.standard_normal(shape) for shape in shapes]


def positive(*shapes):
    return lambda rng: [rng.uniform(0.5, 2.0, shape) for shape in shapes]


def away_from_zero(*shapes):  # for relu: no element near its kink
    return lambda rng: [np.sign(rng.standard_normal(s)) * rng.uniform(0.3, 1.5, s) for s in shapes]


TARGETS = np.array([1, 0, 3])
IDS = np.array([[0, 2], [2, 3]])

CASES = [
    Case("add", normal((2, 3), (3,)), lambda a, b: a + b, lambda a, b: a + b),
    Case("sub", normal((2, 3), (2, 1)), lambda a, b: a - b, lambda a, b: a - b),
    Case("mul", normal((2, 3), (3,)), lambda a, b: a * b, lambda a, b: a * b),
    Case("div", positive((2, 3), (3,)), lambda a, b: a / b, lambda a, b: a / b),
    Case("pow", positive((2, 3)), lambda a: a ** 2.5, lambda a: a ** 2.5),
    Case("pow_integer", normal((2, 3)), lambda a: a ** 3, lambda a: a ** 3),
    Case("neg", normal((2, 3)), lambda a: -a, lambda a: -a),
    Case("exp", normal((2, 3)), lambda a: a.exp(), lambda a: a.exp()),
    Case("log", positive((2, 3)), lambda a: a.log(), lambda a: a.log()),
    Case("tanh", normal((2, 3)), lambda a: a.tanh(), lambda a: a.tanh()),
    Case("sigmoid", normal((2, 3)), lambda a: a.sigmoid(), lambda a: a.sigmoid()),
    Case("relu", away_from_zero((2, 3)), lambda a: a.relu() * a, lambda a: a.relu() * a),
    Case("matmul", normal((2, 3), (3, 4)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("matmul_vector", normal((3,), (3, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("matmul_batched", normal((2, 2, 3), (3, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("linear", normal((2, 3), (4, 3), (4,)), mg.linear, F.linear if torch else None),
    Case("linear_no_bias", normal((2, 3), (4, 3)), mg.linear, F.linear if torch else None),
    Case("sum", normal((2, 3)), lambda a: a.sum(axis=1), lambda a: a.sum(dim=1)),
    Case("sum_all", normal((2, 3)), lambda a: a.sum(), lambda a: a.sum()),
    Case("mean", normal((2, 3)), lambda a: a.mean(axis=0, keepdims=True), lambda a: a.mean(dim=0, keepdim=True)),
    Case("max", normal((2, 3)), lambda a: a.max(axis=1), lambda a: a.max(dim=1).values),
    Case("reshape", normal((2, 3)), lambda a: a.reshape(3, 2), lambda a: a.reshape(3, 2)),
    Case("transpose", normal((2, 3, 2)), lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1)),
    Case("getitem_slice", normal((3, 3)), lambda a: a[1:, ::2], lambda a: a[1:, ::2]),
    Case("getitem_repeats", normal((3, 2)), lambda a: a[[0, 0, 2]], lambda a: a[[0, 0, 2]]),
    Case("concat", normal((2, 2), (2, 3)), lambda a, b: mg.concat([a, b], axis=1),
         lambda a, b: torch.cat([a, b], dim=1)),
    Case("stack", normal((2, 3), (2, 3)), lambda a, b: mg.stack([a, b], axis=1),
         lambda a, b: torch.stack([a, b], dim=1)),
    Case("softmax", normal((2, 4)), lambda a: mg.softmax(a, axis=1), lambda a: torch.softmax(a, dim=1)),
    Case("log_softmax", normal((3, 2)), lambda a: mg.log_softmax(a, axis=0), lambda a: torch.log_softmax(a, dim=0)),
    Case("cross_entropy", normal((3, 4)), lambda a: mg.cross_entropy(a, TARGETS),
         lambda a: F.cross_entropy(a, torch.as_tensor(TARGETS))),
    Case("embedding", normal((4, 3)), lambda t: mg.embedding(t, IDS),
         lambda t: F.embedding(torch.as_tensor(IDS), t)),
]
BY_NAME = {case.name: case for case in CASES}
# The cases compared with PyTorch: without it, one skipped stand-in instead of one skip per case.
TORCH_CASES = CASES if torch is not None else [pytest.param(None, id="without-pytorch")]


def tensors(arrays, requires_grad=True):
    return [mg.tensor(a.copy(), requires_grad=requires_grad) for a in arrays]


def test_every_op_of_the_engine_has_a_case():
    names = {case.name.split("_")[0] for case in CASES} | {"log_softmax", "cross_entropy"}
    public_ops = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "tanh", "sigmoid", "relu", "matmul",
                  "linear", "sum", "mean", "max", "reshape", "transpose", "getitem", "concat", "stack", "softmax",
                  "log_softmax", "cross_entropy", "embedding"}
    assert public_ops <= names


# ---- one source of truth: the array backward and the Tensor backward agree ----------------

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_array_backward_and_differentiable_backward_agree(case):
    rng = np.random.default_rng(1)
    inputs = tensors(case.make(rng))
    out = case.mg_fn(*inputs)
    # Every node of the case's graph, each run both ways on the same random upstream gradient.
    for node in mg.autograd.graph_order([out]):
        grads = [rng.standard_normal(shape) for shape, _ in node.output_specs]
        fast = node.backward(*grads)
        with mg.enable_grad():
            graph = node.graph_backward(*(mg.tensor(g) for g in grads))
        assert len(fast) == len(graph)
        for x, a, b in zip(node.inputs, fast, graph):
            assert (a is None) == (b is None) or not x.requires_grad
            if a is not None and b is not None:
                assert isinstance(b, mg.Tensor)
                np.testing.assert_allclose(unbroadcast(np.asarray(a), x.shape), unbroadcast(b, x.shape).data,
                                           rtol=1e-12, atol=1e-12, err_msg=f"{case.name}: {node.name}")


def test_elementwise_nodes_are_named_classes_that_keep_only_what_their_rule_reads():
    import inspect

    x = mg.tensor([0.5, -1.0], requires_grad=True)
    c = mg.tensor([2.0, 3.0])
    assert "grad_fn=Tanh" in repr(x.tanh())
    assert "class Tanh(Elementwise)" in inspect.getsource(mg.elementwise)
    assert set((x + c).grad_fn.saved) == set()            # add's rule reads nothing
    assert set(x.tanh().grad_fn.saved) == {"out"}         # tanh' = 1 - out^2
    assert set((x * c).grad_fn.saved) == {"b"}            # only x needs a gradient: keep c
    assert set((x * x).grad_fn.saved) == {"a", "b"}
    assert set((x / c).grad_fn.saved) == {"b"}            # the vjp of a needs b only
    assert set(x.relu().grad_fn.saved) == {"a"}


# ---- second derivatives ---------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gradgradcheck_every_op(case):
    assert mg.gradgradcheck(case.mg_fn, tensors(case.make(np.random.default_rng(2))))


def second_derivatives_minigrad(case, arrays, weights, probes):
    xs = tensors(arrays)
    out = case.mg_fn(*xs)
    loss = (out.tanh() * mg.tensor(weights)).sum()  # nonlinear after the op: g depends on x
    firsts = mg.grad(loss, xs, create_graph=True)
    total = sum((g * mg.tensor(p)).sum() for g, p in zip(firsts, probes))
    return [g.data for g in firsts], [s.data for s in mg.grad(total, xs)]


def second_derivatives_torch(case, arrays, weights, probes):
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = case.torch_fn(*xs)
    loss = (out.tanh() * torch.tensor(weights)).sum()
    firsts = torch.autograd.grad(loss, xs, create_graph=True)
    total = sum((g * torch.tensor(p)).sum() for g, p in zip(firsts, probes))
    seconds = torch.autograd.grad(total, xs, allow_unused=True)
    return ([g.detach().numpy() for g in firsts],
            [np.zeros_like(a) if s is None else s.numpy() for s, a in zip(seconds, arrays)])


@needs_torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_second_derivatives_match_pytorch(case):
    rng = np.random.default_rng(3)
    arrays = case.make(rng)
    out_shape = case.mg_fn(*tensors(arrays, requires_grad=False)).shape
    weights = rng.standard_normal(out_shape)
    probes = [rng.standard_normal(a.shape) for a in arrays]
    ours = second_derivatives_minigrad(case, arrays, weights, probes)
    theirs = second_derivatives_torch(case, arrays, weights, probes)
    for mine, reference in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-11)


def test_third_derivative_of_tanh_is_the_closed_form():
    x = mg.tensor(np.linspace(-2.0, 2.0, 7), requires_grad=True)
    (first,) = mg.grad(x.tanh().sum(), x, create_graph=True)
    (second,) = mg.grad(first.sum(), x, create_graph=True)
    (third,) = mg.grad(second.sum(), x)
    t = np.tanh(x.data)
    np.testing.assert_allclose(first.data, 1 - t**2, rtol=1e-12)
    np.testing.assert_allclose(second.data, -2 * t * (1 - t**2), rtol=1e-12)
    np.testing.assert_allclose(third.data, -2 * (1 - t**2) * (1 - 3 * t**2), rtol=1e-10, atol=1e-12)
    if torch is not None:
        xt = torch.tensor(x.data, requires_grad=True)
        (d1,) = torch.autograd.grad(xt.tanh().sum(), xt, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), xt, create_graph=True)
        (d3,) = torch.autograd.grad(d2.sum(), xt)
        np.testing.assert_allclose(third.data, d3.numpy(), rtol=1e-10, atol=1e-12)


# ---- a small MLP: Hessian-vector product and a gradient penalty --------------------------

def mlp_arrays(rng):
    return [rng.standard_normal((5, 3)), rng.standard_normal((4, 3)) * 0.7, rng.standard_normal(4) * 0.1,
            rng.standard_normal((3, 4)) * 0.7, rng.standard_normal(3) * 0.1]


MLP_TARGETS = np.array([0, 2, 1, 1, 0])


def mg_mlp(x, w1, b1, w2, b2):
    return mg.linear(mg.linear(x, w1, b1).tanh(), w2, b2)


def torch_mlp(x, w1, b1, w2, b2):
    return F.linear(F.linear(x, w1, b1).tanh(), w2, b2)


@needs_torch
def test_hessian_vector_product_of_an_mlp_loss_matches_pytorch():
    rng = np.random.default_rng(4)
    x, *weights = mlp_arrays(rng)
    vectors = [rng.standard_normal(w.shape) for w in weights]
    params = tensors(weights)
    ours = mg.hvp(lambda *p: mg.cross_entropy(mg_mlp(mg.tensor(x), *p), MLP_TARGETS), params, vectors)
    # the documented two-line recipe gives the same thing
    grads = mg.grad(mg.cross_entropy(mg_mlp(mg.tensor(x), *params), MLP_TARGETS), params, create_graph=True)
    recipe = mg.grad(grads, params, grad_outputs=vectors)

    def torch_loss(*p):
        return F.cross_entropy(torch_mlp(torch.tensor(x), *p), torch.as_tensor(MLP_TARGETS))

    _, theirs = torch.autograd.functional.hvp(torch_loss, tuple(torch.tensor(w) for w in weights),
                                              tuple(torch.tensor(v) for v in vectors))
    for mine, again, reference in zip(ours, recipe, theirs):
        np.testing.assert_allclose(mine.data, reference.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(again.data, mine.data, rtol=1e-12, atol=1e-14)


@needs_torch
def test_gradient_penalty_trains_into_the_weights_like_pytorch():
    """loss = mean f(x) + ||d f / d x||^2: the weight gradient goes through the input gradient."""
    x, *weights = mlp_arrays(np.random.default_rng(5))
    xs = mg.tensor(x, requires_grad=True)
    params = [mg.nn.Parameter(w) for w in weights]
    out = mg_mlp(xs, *params)
    (dx,) = mg.grad(out.sum(), xs, create_graph=True)
    loss = out.mean() + (dx * dx).sum()
    loss.backward()

    xt = torch.tensor(x, requires_grad=True)
    pt = [torch.tensor(w, requires_grad=True) for w in weights]
    out_t = torch_mlp(xt, *pt)
    (dx_t,) = torch.autograd.grad(out_t.sum(), xt, create_graph=True)
    (out_t.mean() + (dx_t * dx_t).sum()).backward()
    np.testing.assert_allclose(loss.item(), (out_t.mean() + (dx_t * dx_t).sum()).item(), rtol=1e-12)
    for p, q in zip(params, pt):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-9, atol=1e-12)
    # x is not a leaf of the penalty's own backward only: it got its gradient as well
    np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- forward mode ------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_jvp_matches_central_differences(case):
    rng = np.random.default_rng(6)
    arrays = case.make(rng)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    out, tangent = mg.jvp(case.mg_fn, tensors(arrays, requires_grad=False), tangents)
    np.testing.assert_allclose(out.data, case.mg_fn(*tensors(arrays, False)).data)
    eps = 1e-6
    with mg.no_grad():
        above = case.mg_fn(*(mg.tensor(a + eps * t) for a, t in zip(arrays, tangents))).data
        below = case.mg_fn(*(mg.tensor(a - eps * t) for a, t in zip(arrays, tangents))).data
    np.testing.assert_allclose(tangent.data, (above - below) / (2 * eps), rtol=1e-5, atol=1e-7)


@needs_torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_jvp_matches_torch_func_jvp(case):
    rng = np.random.default_rng(7)
    arrays = case.make(rng)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    out, tangent = mg.jvp(case.mg_fn, [mg.tensor(a) for a in arrays], tangents)
    out_t, tangent_t = torch.func.jvp(case.torch_fn, tuple(torch.tensor(a) for a in arrays),
                                      tuple(torch.tensor(t) for t in tangents))
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tangent.data, tangent_t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_jvp_keeps_float32_and_returns_tuples_for_tuple_outputs():
    x = mg.tensor(np.array([0.5, -1.0], np.float32))
    outs, tangents = mg.jvp(lambda a: (a.tanh(), a * 2.0), [x], [np.ones(2)])
    assert isinstance(outs, tuple) and isinstance(tangents, tuple) and len(tangents) == 2
    assert tangents[0].dtype == np.float32
    np.testing.assert_allclose(tangents[1].data, [2.0, 2.0])
    # an output that does not depend on the primals has a zero tangent
    _, zero = mg.jvp(lambda a: mg.tensor(np.ones(3)) * 2.0, [x], [np.ones(2)])
    np.testing.assert_array_equal(zero.data, np.zeros(3))


# ---- mg.grad semantics -------------------------------------------------------------------

def test_grad_returns_zeros_for_unused_inputs_and_leaves_dot_grad_alone():
    x = mg.tensor([1.0, 2.0], requires_grad=True, dtype=np.float64)
    unused = mg.tensor([[3.0]], requires_grad=True, dtype=np.float64)
    x.grad = np.array([7.0, 7.0])
    gx, gu = mg.grad((x * x).sum(), [x, unused])
    np.testing.assert_array_equal(gx.data, [2.0, 4.0])
    np.testing.assert_array_equal(gu.data, np.zeros((1, 1)))
    np.testing.assert_array_equal(x.grad, [7.0, 7.0])
    assert unused.grad is None


def test_grad_of_a_non_leaf_and_with_grad_outputs():
    x = mg.tensor([0.5, -0.3], requires_grad=True, dtype=np.float64)
    h = x.tanh()
    y = h * 3.0
    gh, gx = mg.grad(y, [h, x], grad_outputs=[np.array([1.0, 2.0])])
    np.testing.assert_allclose(gh.data, [3.0, 6.0])
    np.testing.assert_allclose(gx.data, np.array([3.0, 6.0]) * (1 - np.tanh(x.data) ** 2))


def test_grad_errors_are_one_clear_line():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="grad_outputs"):
        mg.grad(x * 2.0, [x])  # non-scalar output without grad_outputs
    with pytest.raises(ValueError, match="input 0"):
        mg.grad((x * 2.0).sum(), [mg.tensor([1.0])])
    with pytest.raises(ValueError, match="output 0 does not require grad"):
        mg.grad(mg.tensor([1.0]).sum(), [x])
    with pytest.raises(RuntimeError, match=r"mg\.grad\(outputs, inputs, create_graph=True\)"):
        (x * x).sum().backward(create_graph=True)


def test_jvp_and_gradgradcheck_reject_a_function_that_returns_no_tensor():
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(TypeError, match="jvp: fn must return a Tensor"):
        mg.jvp(lambda a: 3.0, [x], [np.ones(2)])
    with pytest.raises(ValueError, match="tangent 0 has shape"):
        mg.jvp(lambda a: a * 2.0, [x], [np.ones(3)])
    with pytest.raises(TypeError, match="gradgradcheck: fn must return a Tensor"):
        mg.gradgradcheck(lambda a: a.data, [x])


def test_grad_to_any_order_reaches_zero_for_a_polynomial():
    x = mg.tensor([1.5], requires_grad=True, dtype=np.float64)
    y = x ** 3
    derivatives = []
    for _ in range(4):
        (y,) = mg.grad(y.sum(), x, create_graph=True)
        derivatives.append(float(y.data[0]))
    assert derivatives == [3 * 1.5**2, 6 * 1.5, 6.0, 0.0]


def test_first_order_gradients_keep_no_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (g,) = mg.grad((x.tanh() * x).sum(), x)
    assert g.grad_fn is None and not g.requires_grad


def test_gradgradcheck_names_the_input_and_the_element_of_a_wrong_second_derivative():
    class WrongSquare(mg.Function):
        """x * x with a correct first derivative but a differentiable backward that is off."""

        def forward(self, x):
            return x * x

        def backward(self, grad):
            return (2 * self.inputs[0].data * grad,)

        def graph_backward(self, grad):
            x = self.inputs[0]
            return (x * x * grad,)  # wrong: should be 2 * x * grad

    x = mg.tensor(np.array([0.5, 1.5]), requires_grad=True)
    assert mg.gradcheck(lambda t: WrongSquare.apply(t), [x])
    with pytest.raises(mg.GradcheckError) as failure:
        mg.gradgradcheck(lambda t: WrongSquare.apply(t), [x])
    message = str(failure.value)
    assert message.startswith("gradgradcheck failed") and "create_graph=True" in message
    (row,) = message.splitlines()[2:]  # one failing input: input 0, its worst element (1,)
    assert row.split()[:3] == ["0", "(2,)", "(1,)"]


# ---- eager cells by composition; fused layers refuse ----------------------------------------

EAGER_CELLS = ["rnn", "rnn_relu", "lstm", "gru", "mgu", "cifg_lstm", "ligru"]


def cell_function(name, hidden=2, steps=2, rng=None):
    cell = get_cell(name)
    initial = [mg.tensor(rng.standard_normal((1, hidden)) * 0.5) for _ in cell.state]

    def fn(x, w_ih, w_hh, b_ih, b_hh):
        states = tuple(initial)
        for t in range(steps):
            states = eager_step(cell, mg.linear(x[:, t], w_ih, b_ih), mg.linear(states[0], w_hh, b_hh),
                                states, hidden)
        return mg.concat(list(states), axis=1)

    return cell, fn


@pytest.mark.parametrize("name", EAGER_CELLS)
def test_gradgradcheck_every_eager_cell(name):
    rng = np.random.default_rng(8)
    cell, fn = cell_function(name, rng=rng)
    gates, hidden, inputs = len(cell.gates), 2, 2
    arrays = [rng.standard_normal((1, 2, inputs)), rng.standard_normal((gates * hidden, inputs)) * 0.8,
              rng.standard_normal((gates * hidden, hidden)) * 0.8, rng.standard_normal(gates * hidden) * 0.3,
              rng.standard_normal(gates * hidden) * 0.3]
    assert mg.gradgradcheck(fn, tensors(arrays))


def test_a_fused_layer_refuses_create_graph_and_jvp_naming_the_eager_engine():
    layer = Recurrent("gru", 2, 3, engine="fused", dtype=np.float64)
    x = mg.tensor(np.random.default_rng(9).standard_normal((1, 2, 2)))
    out, _ = layer(x)
    params = list(layer.parameters())
    mg.grad(out.sum(), params)  # first order is fine
    with pytest.raises(RuntimeError, match=r'engine="eager" \(CLI: --engine eager\)'):
        mg.grad(out.sum(), params, create_graph=True)
    with pytest.raises(RuntimeError, match='engine="eager"'):
        mg.jvp(lambda t: layer(t)[0], [x], [np.ones_like(x.data)])
    eager = Recurrent("gru", 2, 3, engine="eager", dtype=np.float64)
    out, _ = eager(x)
    (g,) = mg.grad(out.sum(), [eager.weight_hh_l0], create_graph=True)
    assert g.requires_grad


def test_hooks_and_anomaly_mode_see_tensor_gradients_when_a_graph_is_built():
    x = mg.tensor(np.array([0.5, 2.0]), requires_grad=True)
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(g) or g * 2.0)  # doubles the gradient flowing through h
    (gx,) = mg.grad(h.sum(), x, create_graph=True)
    assert isinstance(seen[0], mg.Tensor)
    np.testing.assert_allclose(gx.data, 4 * x.data)
    (ggx,) = mg.grad(gx.sum(), x)
    np.testing.assert_allclose(ggx.data, [4.0, 4.0])
    z = mg.tensor(np.array([0.0, 1.0]), requires_grad=True)
    with mg.detect_anomaly():
        (gz,) = mg.grad((z ** 1.5).sum(), z, create_graph=True)   # 1.5 z^0.5: finite at 0
        with pytest.raises(mg.AnomalyError, match="Pow produced inf"):
            mg.grad(gz.sum(), z, create_graph=True)                # 0.75 z^-0.5: not
