"""nn.Dropout: the fraction dropped, the scale of the rest, the gradient, eval mode."""

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import Dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest(p, dtype):
    mg.random.manual_seed(0)
    x = mg.tensor(np.full((200, 500), 2.0, dtype), requires_grad=True)
    y = Dropout(p)(x)
    assert y.dtype == dtype
    kept = y.data != 0
    assert abs(1.0 - kept.mean() - p) < 4.5 * np.sqrt(p * (1 - p) / kept.size)
    np.testing.assert_allclose(y.data[kept], 2.0 / (1.0 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.where(kept, 1.0 / (1.0 - p), 0.0), rtol=1e-6)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_0():
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    assert Dropout(0.0)(x) is x
    np.testing.assert_array_equal(Dropout(1.0)(x).data, np.zeros((2, 3)))


def test_dropout_masks_follow_the_seed():
    x = mg.tensor(np.ones((4, 50)))
    mg.random.manual_seed(3)
    first = Dropout(0.3)(x).data
    mg.random.manual_seed(3)
    np.testing.assert_array_equal(Dropout(0.3)(x).data, first)
    assert not np.array_equal(Dropout(0.3)(x).data, first)
