"""Tests for minigrad.optim: trajectories against torch.optim, clipping against
torch.nn.utils.clip_grad_norm_, dtype keeping, state_dict round trips, argument checks.

The torch comparisons feed both frameworks the same starting parameters and the
gradient of the same loss (computed with numpy for minigrad and by torch's autograd
for torch), and compare the parameters after every one of 20 steps.
"""

import json
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim
from minigrad.nn import Parameter

from helpers import torch_or_skip

STEPS = 20
SHAPES = [(3, 4), (5,), ()]  # a matrix, a vector and a scalar parameter


# ---- a fixed loss and its gradient ---------------------------------------------------------

def _problem(dtype=np.float64, seed=0):
    """Starting values and, per parameter, a symmetric positive definite A and a vector b."""
    rng = np.random.default_rng(seed)
    starts, terms = [], []
    for shape in SHAPES:
        n = int(np.prod(shape))
        m = rng.standard_normal((n, n))
        terms.append((m @ m.T / n + 0.5 * np.eye(n), rng.standard_normal(n)))
        starts.append(rng.standard_normal(shape).astype(dtype))
    return starts, terms


def _numpy_grads(arrays, terms):
    """Gradient of sum_i 0.5 p.A p + b.p + 0.025 sum(p^4): A p + b + 0.1 p^3 (A symmetric)."""
    grads = []
    for p, (a, b) in zip(arrays, terms):
        x = p.reshape(-1).astype(np.float64)
        grads.append((a @ x + b + 0.1 * x ** 3).reshape(p.shape).astype(p.dtype))
    return grads


def _torch_loss(torch, params, terms):
    loss = 0
    for p, (a, b) in zip(params, terms):
        x = p.reshape(-1)
        a_t, b_t = torch.tensor(a, dtype=p.dtype), torch.tensor(b, dtype=p.dtype)
        loss = loss + 0.5 * x @ (a_t @ x) + b_t @ x + 0.025 * (x ** 4).sum()
    return loss


def _skipped(step, index):
    """The scalar parameter gets no gradient on odd steps: both frameworks must skip it
    (and not advance its step count, which Adam's bias correction depends on)."""
    return index == 2 and step % 2 == 1


def _run_minigrad(cls, kwargs, dtype=np.float64, steps=STEPS, lr_changes=None):
    starts, terms = _problem(dtype)
    params = [Parameter(s.copy()) for s in starts]
    opt = cls(params, **kwargs)
    trajectory = []
    for step in range(steps):
        if lr_changes and step in lr_changes:
            opt.lr = lr_changes[step]
        grads = _numpy_grads([p.data for p in params], terms)
        for index, (p, g) in enumerate(zip(params, grads)):
            p.grad = None if _skipped(step, index) else g
        kept = [None if g is None else g.copy() for g in (p.grad for p in params)]
        opt.step()
        for p, g in zip(params, kept):  # step() must never change the gradients
            if g is not None:
                np.testing.assert_array_equal(p.grad, g)
        trajectory.append([p.data.copy() for p in params])
    return trajectory, params, opt


def _run_torch(torch, name, kwargs, dtype=np.float64, steps=STEPS, lr_changes=None):
    starts, terms = _problem(dtype)
    params = [torch.tensor(s.copy(), requires_grad=True) for s in starts]
    opt = getattr(torch.optim, name)(params, **kwargs)
    trajectory = []
    for step in range(steps):
        if lr_changes and step in lr_changes:
            opt.param_groups[0]["lr"] = lr_changes[step]
        opt.zero_grad()
        _torch_loss(torch, params, terms).backward()
        for index, p in enumerate(params):
            if _skipped(step, index):
                p.grad = None
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


CASES = [
    ("SGD", {}),  # torch's defaults (lr=1e-3)
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("Adam", {}),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.05, amsgrad=True)),
    ("AdamW", {}),  # weight_decay=1e-2 by default
    ("AdamW", dict(lr=0.05, weight_decay=0.2)),
    ("AdamW", dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True)),
    ("RMSprop", {}),
    ("RMSprop", dict(lr=0.01, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, momentum=0.9)),
    ("RMSprop", dict(lr=0.005, alpha=0.95, eps=1e-4, weight_decay=0.1, momentum=0.5, centered=True)),
    ("Adagrad", {}),
    ("Adagrad", dict(lr=0.2)),
    ("Adagrad", dict(lr=0.2, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.2, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.2, lr_decay=0.1, weight_decay=0.05, initial_accumulator_value=0.5, eps=1e-6)),
]


def _case_id(case):
    name, kwargs = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kwargs.items()) if kwargs else "-defaults")


def _assert_same_trajectory(ours, theirs, rtol, atol):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for index, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                                       err_msg=f"parameter {index} after step {step + 1}")


# ---- agreement with torch -------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_trajectory_matches_torch_float64(case):
    torch = torch_or_skip()
    name, kwargs = case
    ours, _, _ = _run_minigrad(getattr(optim, name), kwargs)
    theirs = _run_torch(torch, name, kwargs)
    # The parameters must actually move, or the comparison would prove nothing.
    assert np.abs(ours[-1][0] - _problem()[0][0]).max() > 1e-3
    _assert_same_trajectory(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[3], CASES[10], CASES[13], CASES[19], CASES[24]], ids=_case_id)
def test_trajectory_matches_torch_float32(case):
    torch = torch_or_skip()
    name, kwargs = case
    ours, params, _ = _run_minigrad(getattr(optim, name), kwargs, dtype=np.float32)
    theirs = _run_torch(torch, name, kwargs, dtype=np.float32)
    assert all(x.dtype == np.float32 for x in ours[-1])
    _assert_same_trajectory(ours, theirs, rtol=1e-5, atol=1e-6)


def _numpy_adam_step(p, g, m, v, v_max, t, lr, betas, eps, weight_decay, decoupled):
    """torch.optim.Adam's algorithm as numpy array operations, one op at a time."""
    if weight_decay and decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m += (1 - betas[0]) * (g - m)
    v *= betas[1]
    v += (1 - betas[1]) * g * g
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
        v = v_max
    p -= lr / (1 - betas[0] ** t) * (m / (np.sqrt(v) / math.sqrt(1 - betas[1] ** t) + eps))


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("Adam", "AdamW")], ids=_case_id)
def test_compiled_adam_equals_numpy_ops_bit_for_bit(case):
    """The one-pass Adam kernel does the same float32 operations in the same order as
    the numpy formulation, so the results are identical, not just close."""
    name, kwargs = case
    cls = getattr(optim, name)
    rng = np.random.default_rng(5)
    param = Parameter(rng.standard_normal((7, 9)).astype(np.float32))
    opt = cls([param], **kwargs)
    start = param.data.copy()
    p, m, v = param.data.copy(), np.zeros_like(param.data), np.zeros_like(param.data)
    v_max = np.zeros_like(p) if opt.amsgrad else None
    for t in range(1, 6):
        g = rng.standard_normal(p.shape).astype(np.float32)
        param.grad = g.copy()
        opt.step()
        _numpy_adam_step(p, g, m, v, v_max, t, opt.lr, opt.betas, opt.eps, opt.weight_decay, name == "AdamW")
        np.testing.assert_array_equal(param.data, p)
        np.testing.assert_array_equal(opt.state[0]["exp_avg"], m)
    assert np.abs(param.data - start).min() > 0  # every weight moved: the comparison is not vacuous


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_defaults_match_torch(name):
    torch = torch_or_skip()
    theirs = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)]).defaults
    ours = getattr(optim, name)([Parameter(np.zeros(2))])
    for key, value in ours.defaults.items():
        assert theirs[key] == value, key
        assert getattr(ours, key) == value


@pytest.mark.parametrize("case", [CASES[2], CASES[10], CASES[13], CASES[18], CASES[22]], ids=_case_id)
def test_lr_set_between_steps_is_used(case):
    """A scheduler sets `opt.lr`; torch's equivalent is param_groups[0]["lr"]."""
    torch = torch_or_skip()
    name, kwargs = case
    changes = {5: 0.02, 12: 0.003}
    ours, _, opt = _run_minigrad(getattr(optim, name), kwargs, lr_changes=changes)
    theirs = _run_torch(torch, name, kwargs, lr_changes=changes)
    assert opt.lr == 0.003
    _assert_same_trajectory(ours, theirs, rtol=1e-10, atol=1e-12)


def _grads_for_clipping(dtype):
    rng = np.random.default_rng(1)
    return [rng.standard_normal((4, 3)).astype(dtype), None, rng.standard_normal(7).astype(dtype) * 3]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = torch_or_skip()
    grads = _grads_for_clipping(np.float64)
    ours = [Parameter(np.zeros(g.shape if g is not None else (2,))) for g in grads]
    theirs = [torch.zeros(p.shape, dtype=torch.float64, requires_grad=True) for p in ours]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = None if g is None else g.copy()
        q.grad = None if g is None else torch.tensor(g)

    norm = optim.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)

    assert isinstance(norm, float)
    assert norm == pytest.approx(expected.item(), rel=1e-12)
    assert ours[1].grad is None
    for p, q, g in zip(ours, theirs, grads):
        if g is None:
            continue
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12, atol=1e-15)
        if max_norm > norm:  # no clipping: the gradients are untouched, bit for bit
            np.testing.assert_array_equal(p.grad, g)
    if max_norm < norm:  # clipping happened: the new total norm is max_norm
        assert optim.clip_grad_norm_(ours, max_norm, norm_type) == pytest.approx(max_norm, rel=1e-5)


# ---- without torch --------------------------------------------------------------------------

def test_clip_grad_norm_float32_and_edge_cases():
    grads = _grads_for_clipping(np.float32)
    params = [Parameter(np.zeros((4, 3))), Parameter(np.zeros(2)), Parameter(np.zeros(7))]
    for p, g in zip(params, grads):
        p.grad = g
    flat = np.concatenate([grads[0].ravel(), grads[2].ravel()]).astype(np.float64)
    norm = optim.clip_grad_norm_(params, 1.0)
    assert norm == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    assert params[0].grad.dtype == np.float32 and params[2].grad.dtype == np.float32
    assert params[0].grad is grads[0]  # clipped in place
    clipped = np.concatenate([params[0].grad.ravel(), params[2].grad.ravel()])
    np.testing.assert_allclose(clipped, flat / (np.linalg.norm(flat) + 1e-6), rtol=1e-6)
    # A single parameter is accepted, and no gradients at all gives a norm of 0.
    single = Parameter(np.array([3.0, 4.0]))
    single.grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm_(single, 10.0) == 5.0
    assert optim.clip_grad_norm_([Parameter(np.zeros(3))], 1.0) == 0.0
    with pytest.raises(ValueError, match="norm_type"):
        optim.clip_grad_norm_(params, 1.0, norm_type=-1)


def test_first_steps_by_hand():
    """Values worked out from the algorithms, independently of torch."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.5)
    p.grad = np.array([1.0, 2.0])
    opt.step()  # buffer = g
    np.testing.assert_allclose(p.data, [0.9, -2.2])
    opt.step()  # buffer = 0.5 * g + g
    np.testing.assert_allclose(p.data, [0.75, -2.5])

    # Adam's first step moves every coordinate by lr * g / (|g| + eps), about lr * sign(g).
    p = Parameter(np.array([1.0, -2.0, 0.5]))
    opt = optim.Adam([p], lr=0.01)
    p.grad = np.array([3.0, -0.2, 1e-3])
    opt.step()
    np.testing.assert_allclose(p.data, [0.99, -1.99, 0.49], rtol=1e-6)

    # AdamW with a zero gradient only decays the weights: p * (1 - lr * weight_decay).
    p = Parameter(np.array([2.0, -4.0]))
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = np.zeros(2)
    opt.step()
    np.testing.assert_allclose(p.data, [1.9, -3.8])

    # Adagrad: the first step is lr * g / |g| (plus eps); with lr_decay the second step is lr / (1 + lr_decay).
    p = Parameter(np.array([0.0]))
    opt = optim.Adagrad([p], lr=0.5, lr_decay=1.0)
    p.grad = np.array([2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.5])
    opt.step()  # sum = 8, step = 0.25 * 2 / sqrt(8)
    np.testing.assert_allclose(p.data, [-0.5 - 0.25 * 2 / math.sqrt(8)])


ALL = [
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05)),
    (optim.Adam, dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=0.05)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
]


def _all_id(case):
    return case[0].__name__ + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", ALL, ids=_all_id)
def test_float32_parameters_stay_float32_and_are_updated_in_place(case):
    cls, kwargs = case
    _, terms = _problem(np.float32)
    params = [Parameter(np.ones(shape, np.float32)) for shape in SHAPES]
    arrays = [p.data for p in params]
    opt = cls(params, **kwargs)
    # numpy scalars as hyperparameters must not promote either (a scheduler may set one).
    opt.lr = np.float64(opt.lr)
    for _ in range(5):
        for p, g in zip(params, _numpy_grads([p.data for p in params], terms)):
            p.grad = g
        opt.step()
    for p, array in zip(params, arrays):
        assert p.data.dtype == np.float32
        assert p.data is array  # updated in place, not replaced
        assert not np.array_equal(p.data, np.ones(p.shape, np.float32))
    for key, value in opt.state_dict().items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key


def _continue(opt, params, terms, steps):
    for _ in range(steps):
        for p, g in zip(params, _numpy_grads([p.data for p in params], terms)):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ALL, ids=_all_id)
def test_state_dict_gives_bit_identical_continuation(case, dtype):
    cls, kwargs = case
    starts, terms = _problem(dtype)
    params_a = [Parameter(s.copy()) for s in starts]
    opt_a = cls(params_a, **kwargs)
    _continue(opt_a, params_a, terms, 5)

    saved = opt_a.state_dict()
    saved_params = [p.data.copy() for p in params_a]
    # Only numpy arrays and plain numbers, and the numbers survive JSON.
    scalars = {k: v for k, v in saved.items() if not isinstance(v, np.ndarray)}
    assert all(type(v) in (int, float, bool) for v in scalars.values()), scalars
    assert any(isinstance(v, np.ndarray) for v in saved.values()) or cls is optim.SGD
    scalars = json.loads(json.dumps(scalars))

    _continue(opt_a, params_a, terms, 5)  # A goes on to step 10 (and must not change `saved`)

    params_b = [Parameter(p.copy()) for p in saved_params]
    opt_b = cls(params_b, lr=123.0)  # different hyperparameters: all restored from the dict
    arrays = {k: v for k, v in saved.items() if isinstance(v, np.ndarray)}
    opt_b.load_state_dict({**scalars, **arrays})
    assert opt_b.lr == kwargs["lr"]
    _continue(opt_b, params_b, terms, 5)

    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.dtype == b.data.dtype == dtype
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)


def test_state_dict_through_safetensors():
    """What the checkpoint code does: arrays into a safetensors blob, numbers into JSON."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    starts, terms = _problem(np.float32)
    params = [Parameter(s.copy()) for s in starts]
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    _continue(opt, params, terms, 3)
    saved = opt.state_dict()
    assert saved["state.0.step"] == 3 and saved["betas.1"] == 0.999 and saved["amsgrad"] is True
    blob = safetensors_numpy.save({k: v for k, v in saved.items() if isinstance(v, np.ndarray)})
    text = json.dumps({k: v for k, v in saved.items() if not isinstance(v, np.ndarray)})
    restored = {**safetensors_numpy.load(blob), **json.loads(text)}

    fresh = [Parameter(p.data.copy()) for p in params]
    opt2 = optim.Adam(fresh).load_state_dict(restored)
    assert opt2.betas == (0.9, 0.999) and opt2.amsgrad is True and opt2.lr == 0.01
    _continue(opt, params, terms, 2)
    _continue(opt2, fresh, terms, 2)
    for a, b in zip(params, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_rejects_a_mismatch_and_changes_nothing():
    params = [Parameter(np.ones((2, 3))), Parameter(np.ones(4))]
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    good = opt.state_dict()
    before = opt.state_dict()

    wrong_shape = dict(good, **{"state.1.exp_avg": np.zeros(5)})
    unknown_state = dict(good, **{"state.0.velocity": np.zeros((2, 3))})
    bad_index = dict(good, **{"state.7.exp_avg": np.zeros(4)})
    missing_hyper = {k: v for k, v in good.items() if k != "eps"}
    incomplete = dict(good, amsgrad=True)  # amsgrad needs max_exp_avg_sq, which is not there
    sgd_state = optim.SGD(params, lr=0.1, momentum=0.9).state_dict()
    for bad, message in [(wrong_shape, "shape"), (unknown_state, "velocity"), (bad_index, "state.7"),
                         (missing_hyper, "eps"), (incomplete, "max_exp_avg_sq"), (sgd_state, "hyperparameters")]:
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after.keys() == before.keys() and opt.amsgrad is False
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_zero_grad_and_parameters_without_gradients():
    params = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    opt = optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = np.full(p.shape, 0.5)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.step()  # nothing has a gradient: nothing moves, no state appears
    for p in params:
        np.testing.assert_array_equal(p.data, np.ones(p.shape))
    assert not any(k.startswith("state.") for k in opt.state_dict())

    params[0].grad = np.full(3, 0.5)
    opt.step()
    opt.step()
    state = opt.state_dict()
    assert state["state.0.step"] == 2 and "state.1.step" not in state
    np.testing.assert_array_equal(params[1].data, np.ones(2))
    assert np.all(params[0].data < 1)


def test_works_with_a_module_and_backward():
    """The intended use: model.parameters(), a loss, backward(), step()."""
    mg.random.manual_seed(0)
    model = mg.nn.Linear(3, 1)
    x = mg.tensor(np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32))
    target = mg.tensor((x.data @ np.array([[1.0], [-2.0], [0.5]], np.float32)) + 0.3)
    opt = optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(200):
        error = model(x) - target
        loss = (error * error).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(model.weight.data, [[1.0, -2.0, 0.5]], atol=1e-2)
    assert model.weight.dtype == np.float32


BAD_ARGUMENTS = [
    (optim.SGD, dict(lr=-0.1), "learning rate"),
    (optim.SGD, dict(momentum=-0.5), "momentum"),
    (optim.SGD, dict(weight_decay=-1e-4), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "Nesterov"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (optim.Adam, dict(lr=-1e-3), "learning rate"),
    (optim.Adam, dict(eps=-1e-8), "epsilon"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "index 1"),
    (optim.Adam, dict(weight_decay=-0.1), "weight_decay"),
    (optim.AdamW, dict(betas=(0.9, 1.5)), "index 1"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.RMSprop, dict(lr=-0.01), "learning rate"),
    (optim.RMSprop, dict(alpha=-0.5), "alpha"),
    (optim.RMSprop, dict(eps=-1.0), "epsilon"),
    (optim.RMSprop, dict(momentum=-0.9), "momentum"),
    (optim.RMSprop, dict(weight_decay=-0.1), "weight_decay"),
    (optim.Adagrad, dict(lr=-0.01), "learning rate"),
    (optim.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
    (optim.Adagrad, dict(weight_decay=-0.1), "weight_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (optim.Adagrad, dict(eps=-1e-10), "epsilon"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD_ARGUMENTS,
                         ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _ in BAD_ARGUMENTS])
def test_bad_arguments_raise(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([Parameter(np.zeros(2))], **kwargs)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_bad_parameter_lists_raise(cls):
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])
    with pytest.raises(ValueError, match="empty parameter list"):
        cls(iter([]))  # an exhausted generator, e.g. parameters() consumed twice
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="more than once"):
        cls([p, p])
    with pytest.raises(TypeError):
        cls(p)  # a single tensor, not an iterable of them
    with pytest.raises(TypeError):
        cls([np.zeros(2)])
    assert cls(iter([p])).params == [p]  # any iterable is fine
