"""The reverse-mode machinery: graph walking, accumulation, recording switches, hooks,
and clear errors for bad input (anomaly mode: test_hooks_anomaly.py)."""

import sys

import numpy as np
import pytest

import minigrad as mg
from helpers import leaf, torch_or_skip


# ---------------------------------------------------------------------------------------
# Walking the graph
# ---------------------------------------------------------------------------------------
def test_backward_through_a_20000_op_chain():
    assert sys.getrecursionlimit() < 20_000  # a recursive walk would fail
    x = leaf(0.5)
    y = x
    for step in range(20_000):
        y = y * 1.0001 if step % 2 else y + 0.25
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 10_000)
    assert y.item() == pytest.approx(0.5 * 1.0001 ** 10_000 + 0.25 * sum(1.0001 ** k for k in range(1, 10_001)))
    del y  # freeing a long chain of nodes must not overflow the stack either


def test_backward_through_a_deep_chain_of_mixed_ops():
    x = leaf([0.1, 0.2, 0.3])
    y = x
    for _ in range(5_000):
        y = (y.tanh() + x).reshape(3)
    y.sum().backward()
    assert np.all(np.isfinite(x.grad)) and x.grad.shape == (3,)


def test_tensor_used_twice_gets_both_contributions():
    x = leaf([1.0, -2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


def test_diamond_graph_sums_both_paths():
    x = leaf([0.3, -1.2])
    top = x.tanh()  # used by both branches of the diamond
    left, right = top * 3.0, top.exp()
    (left + right).sum().backward()
    t = np.tanh(x.data)
    np.testing.assert_allclose(x.grad, (3.0 + np.exp(t)) * (1 - t ** 2))


def test_same_tensor_as_both_inputs_of_one_op():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    (x @ x).sum().backward()
    ones = np.ones((2, 2))
    np.testing.assert_allclose(x.grad, ones @ x.data.T + x.data.T @ ones)


def test_backward_twice_accumulates_like_pytorch():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)
    (x * 3.0).sum().backward()  # a second graph adds to the same .grad
    np.testing.assert_allclose(x.grad, 4 * x.data + 3.0)


def test_zero_grad_clears():
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    x.zero_grad()
    assert x.grad is None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)  # 1x again, not accumulated

    layer = mg.nn.Linear(3, 2)
    layer(mg.tensor(np.ones((4, 3)))).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())


def test_backward_with_explicit_gradient():
    x = leaf([1.0, 2.0, 3.0])
    y = x * x
    y.backward(np.array([1.0, 0.0, -2.0]))
    np.testing.assert_allclose(x.grad, [2.0, 0.0, -12.0])


def test_leaf_backward_and_non_grad_inputs():
    x = leaf([1.0, 2.0])
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_allclose(x.grad, [3.0, 4.0])
    c = mg.tensor(np.array([5.0, 6.0]))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [3.0 + 5.0, 4.0 + 6.0])


# ---------------------------------------------------------------------------------------
# Recording switches: no_grad, detach
# ---------------------------------------------------------------------------------------
def test_no_grad_records_no_graph():
    x = leaf([1.0, 2.0])
    with mg.no_grad():
        assert not mg.is_grad_enabled()
        y = (x * 2.0).exp().sum()
        with mg.enable_grad():
            z = x * 2.0
    assert mg.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None and z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    after = (x * 2.0).sum()  # recording is back on after the block
    assert after.requires_grad and after.grad_fn is not None


def test_no_grad_and_enable_grad_work_as_decorators_even_recursively():
    x = leaf([1.0, 2.0])

    @mg.no_grad()
    def inference(depth):
        inner = inference(depth - 1) if depth else None
        return x * 2.0, mg.is_grad_enabled(), inner

    @mg.enable_grad()
    def training():
        return x * 2.0

    y, enabled, inner = inference(2)
    assert not enabled and y.grad_fn is None and inner[0].grad_fn is None
    assert mg.is_grad_enabled()  # the outermost call restored it, not the innermost
    with mg.no_grad():
        assert training().grad_fn is not None
        assert not mg.is_grad_enabled()


def test_no_grad_in_one_thread_leaves_another_recording():
    import threading
    x = leaf([1.0, 2.0])
    inside, seen = threading.Event(), {}

    def other():
        inside.wait(5)
        seen["grad_fn"] = (x * 2.0).grad_fn

    worker = threading.Thread(target=other)
    worker.start()
    with mg.no_grad():
        inside.set()
        worker.join(5)
    assert seen["grad_fn"] is not None


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("boom")
    assert mg.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0])
    y = x * x
    d = y.detach()
    assert d.grad_fn is None and not d.requires_grad
    np.testing.assert_array_equal(d.data, y.data)
    (d * x + y).sum().backward()
    # through d nothing flows back: only d (as a constant) and y contribute
    np.testing.assert_allclose(x.grad, d.data + 2 * x.data)


# ---------------------------------------------------------------------------------------
# Hooks and retain_grad
# ---------------------------------------------------------------------------------------
def test_register_hook_sees_the_gradient():
    x = leaf([1.0, 2.0, 3.0])
    seen = []
    x.register_hook(lambda g: seen.append(g.copy()))
    (x * x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * x.data)
    np.testing.assert_allclose(x.grad, 2 * x.data)  # a hook returning None changes nothing


def test_register_hook_can_replace_the_gradient_of_a_leaf():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 10.0)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 20 * x.data)


def test_register_hook_on_an_intermediate_changes_what_flows_upstream():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    seen = []

    def hook(g):
        seen.append(g.copy())
        return np.zeros_like(g) + 0.5

    handle = y.register_hook(hook)
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * y.data)  # called with d(sum y^2)/dy
    np.testing.assert_allclose(x.grad, [1.5, 1.5])   # 0.5 * dy/dx, not 2y * 3
    assert y.grad is None  # a hook does not make a non-leaf keep its grad

    handle.remove()
    x.zero_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * y.data * 3.0)
    assert len(seen) == 1


def test_register_hook_matches_torch():
    torch = torch_or_skip()
    values = np.array([0.5, -1.5, 2.0])

    x = leaf(values)
    y = x.tanh()
    y.register_hook(lambda g: g * 2.0 + 1.0)
    (y * y).sum().backward()

    tx = torch.tensor(values, requires_grad=True)
    ty = tx.tanh()
    ty.register_hook(lambda g: g * 2.0 + 1.0)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)


def test_register_hook_needs_requires_grad():
    with pytest.raises(RuntimeError):
        mg.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad_keeps_a_non_leaf_grad():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    z = x * 3.0
    y.retain_grad()
    (y * y + z).sum().backward()
    np.testing.assert_allclose(y.grad, 2 * y.data)
    assert z.grad is None  # not retained: like PyTorch, a non-leaf keeps no grad
    np.testing.assert_allclose(x.grad, 2 * y.data * 2.0 + 3.0)


# ---------------------------------------------------------------------------------------
# Bad input: clear exceptions that name the offending values
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a, shape_b", [((3, 4), (5, 6)), ((4,), (3,)), ((2, 3, 4), (5, 2))])
def test_matmul_shape_mismatch_names_both_shapes(shape_a, shape_b):
    a, b = mg.tensor(np.ones(shape_a)), mg.tensor(np.ones(shape_b))
    with pytest.raises(ValueError) as error:
        a @ b
    assert str(shape_a) in str(error.value) and str(shape_b) in str(error.value)


def test_backward_on_non_scalar_without_gradient_says_so():
    y = leaf([[1.0, 2.0], [3.0, 4.0]]) * 2.0
    with pytest.raises(RuntimeError, match=r"non-scalar") as error:
        y.backward()
    assert "(2, 2)" in str(error.value) and "grad" in str(error.value)


def test_backward_with_gradient_of_wrong_shape():
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        y.backward(np.ones(3))


@pytest.mark.parametrize("bad", [5, 7, -1])
def test_cross_entropy_out_of_range_target_names_it(bad):
    logits = leaf(np.zeros((3, 5)))
    with pytest.raises(IndexError) as error:
        mg.cross_entropy(logits, np.array([0, bad, 1]))
    assert f"target {bad}" in str(error.value)
    assert "[0, 5)" in str(error.value)


def test_cross_entropy_wrong_target_shape_or_dtype():
    logits = leaf(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        mg.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        mg.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("bad", [4, 10, -2])
def test_embedding_out_of_range_id_names_it(bad):
    table = leaf(np.zeros((4, 3)))
    with pytest.raises(IndexError) as error:
        mg.embedding(table, np.array([[0, 1], [bad, 2]]))
    assert f"id {bad}" in str(error.value)
    assert "[0, 4)" in str(error.value)


def test_reshape_to_wrong_size_names_the_shapes():
    x = mg.tensor(np.ones((3, 4)))
    with pytest.raises(ValueError) as error:
        x.reshape(5, 2)
    assert "(3, 4)" in str(error.value) and "(5, 2)" in str(error.value)


@pytest.mark.parametrize("call", [
    pytest.param(lambda x: mg.softmax(x, axis=2), id="softmax"),
    pytest.param(lambda x: mg.log_softmax(x, axis=-3), id="log_softmax"),
    pytest.param(lambda x: x.sum(axis=2), id="sum"),
    pytest.param(lambda x: x.max(axis=(0, -3)), id="max"),
    pytest.param(lambda x: x.transpose(0, 2), id="transpose"),
    pytest.param(lambda x: mg.concat([x, x], axis=2), id="concat"),
    pytest.param(lambda x: mg.stack([x, x], axis=-4), id="stack"),
])
def test_out_of_range_axis_raises_instead_of_wrapping_around(call):
    with pytest.raises(ValueError, match=r"out of (range|bounds)"):
        call(mg.tensor(np.ones((3, 4))))


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        mg.tensor(np.array([1, 2]), requires_grad=True)


def test_pow_rejects_a_tensor_exponent():
    with pytest.raises(TypeError, match="exponent"):
        mg.pow(leaf([1.0]), mg.tensor([2.0]))
