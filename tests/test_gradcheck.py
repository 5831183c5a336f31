"""gradcheck itself: it passes correct gradients, and it catches (and explains) wrong ones."""

import re

import numpy as np
import pytest

import minigrad as mg
from helpers import leaf
from minigrad.gradcheck import gradcheck_report


class SquareWithWrongBackward(mg.Function):
    """x * x whose backward says 3x instead of 2x."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * 3.0 * self.x,)


class ProductWithOneWrongElement(mg.Function):
    """a * b (elementwise) whose gradient for b is wrong at exactly one element, (1, 2)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        grad_b = grad * self.a
        grad_b[1, 2] += 0.75
        return grad * self.b, grad_b


class ScaleWithCorrectBackward(mg.Function):
    def forward(self, x, scale=2.0):
        self.scale = scale
        return x * scale

    def backward(self, grad):
        return (grad * self.scale,)


def _failed_rows(message):
    """The rows of gradcheck's table: (input, element, analytic, numeric)."""
    rows = []
    for match in re.finditer(r"^\s*(\d+)\s+(\([^)]*\))\s+(\([^)]*\))\s+(\S+)\s+(\S+)", message, re.MULTILINE):
        rows.append((int(match[1]), match[3], float(match[4]), float(match[5])))
    return rows


def test_returns_true_for_correct_functions():
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal((3, 4))), leaf(rng.standard_normal((4,)))
    assert mg.gradcheck(lambda a, b: (a * b).tanh() @ b + a.exp().sum(axis=1), [a, b]) is True
    assert mg.gradcheck(lambda x: ScaleWithCorrectBackward.apply(x, scale=-1.5), [a]) is True
    assert mg.gradcheck(lambda x: mg.cross_entropy(x, np.array([0, 3, 1])), [a]) is True


def test_a_wrong_backward_raises_gradcheck_error():
    x = leaf([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    with pytest.raises(mg.GradcheckError) as error:
        mg.gradcheck(lambda x: SquareWithWrongBackward.apply(x), [x])
    assert isinstance(error.value, AssertionError)  # so a bare `assert gradcheck(...)` reads right too
    rows = _failed_rows(str(error.value))
    assert len(rows) == 1
    index, element, analytic, numeric = rows[0]
    assert index == 0
    assert re.fullmatch(r"\(\d+, \d+\)", element)
    assert analytic == pytest.approx(1.5 * numeric, rel=1e-4)  # 3x against the true 2x


def test_the_message_names_the_input_the_element_and_both_values():
    rng = np.random.default_rng(1)
    a, b = leaf(rng.standard_normal((2, 4))), leaf(rng.standard_normal((2, 4)))
    with pytest.raises(mg.GradcheckError) as error:
        mg.gradcheck(lambda a, b: ProductWithOneWrongElement.apply(a, b), [a, b])
    message = str(error.value)
    assert "analytic" in message and "numeric" in message
    rows = _failed_rows(message)
    assert len(rows) == 1  # input 0's gradient is right: only input 1 is reported
    index, element, analytic, numeric = rows[0]
    assert (index, element) == (1, "(1, 2)")
    assert analytic - numeric == pytest.approx(0.75, abs=1e-5)
    # numeric is the true derivative of sum(v * a * b) for gradcheck's weight v, so it is v * a
    report = {r.index: r for r in gradcheck_report(lambda a, b: ProductWithOneWrongElement.apply(a, b), [a, b])}
    assert f"{report[1].analytic:.8g}" in message and f"{report[1].numeric:.8g}" in message


def test_a_missing_gradient_is_caught():
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])

    class ForgetsSecondInput(mg.Function):
        def forward(self, a, b):
            self.a, self.b = a, b
            return a * b

        def backward(self, grad):
            return grad * self.b, None

    with pytest.raises(mg.GradcheckError) as error:
        mg.gradcheck(lambda a, b: ForgetsSecondInput.apply(a, b), [x, y])
    assert [row[0] for row in _failed_rows(str(error.value))] == [1]


def test_float32_inputs_are_checked_in_float64():
    seen = []

    def fn(x, w):
        seen.append((x.dtype, w.dtype))
        return (x @ w).tanh().sigmoid().log()

    rng = np.random.default_rng(2)
    x = leaf(rng.standard_normal((3, 4)), np.float32)
    w = leaf(rng.standard_normal((4, 2)), np.float32)
    original = x.data.copy()
    # eps=1e-6 is far below float32 resolution: this only passes because the check runs in float64
    assert mg.gradcheck(fn, [x, w], eps=1e-6, atol=1e-7, rtol=1e-5) is True
    assert seen and all(dtypes == (np.float64, np.float64) for dtypes in seen)
    assert x.dtype == np.float32 and w.dtype == np.float32  # the caller's tensors are untouched
    np.testing.assert_array_equal(x.data, original)
    assert x.grad is None and w.grad is None


def test_non_tensor_and_constant_inputs_pass_through():
    x = leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    constant = mg.tensor(np.array([0.5, -1.0, 2.0]))  # does not require grad: not checked, not perturbed
    ids = np.array([1, 0, 1])
    assert mg.gradcheck(lambda x, c, ids: mg.embedding(x, ids) * c, [x, constant, ids]) is True


def test_no_input_requiring_grad_is_an_error():
    with pytest.raises(ValueError, match="requires grad"):
        mg.gradcheck(lambda x: x * 2.0, [mg.tensor(np.ones(3))])


def test_tolerances_are_respected():
    class SlightlyOff(mg.Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, grad):
            return (grad * 2.0 * (1 + 1e-4),)

    x = leaf([1.0, -2.0, 3.0])
    assert mg.gradcheck(lambda x: SlightlyOff.apply(x), [x], atol=0.0, rtol=1e-3) is True
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(lambda x: SlightlyOff.apply(x), [x], atol=0.0, rtol=1e-6)
