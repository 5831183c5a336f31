"""Every public op: gradcheck in float64, parity with PyTorch, and float32 kept end to end.

Each test runs in the three modes of `helpers.check` (see there): "gradcheck",
"torch" (skipped where torch is not installed) and "float32".
"""

import numpy as np
import pytest

import minigrad as mg
from helpers import MODES, TORCH_MISSING, away_from_zero, check, positive

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the "torch" mode skips itself; the lambdas below are then never called
    torch = F = None

modes = pytest.mark.parametrize("mode", MODES)

if "torch" not in MODES:
    def test_ops_against_pytorch():
        """Stands for the "torch" mode of every op test, which needs PyTorch."""
        pytest.skip(TORCH_MISSING)


def T(index):
    """A numpy index as a torch index (integer arrays become long tensors)."""
    if isinstance(index, tuple):
        return tuple(T(i) for i in index)
    if isinstance(index, np.ndarray):
        return torch.as_tensor(index)
    return index


# ---------------------------------------------------------------------------------------
# Binary elementwise ops, broadcasting over every ordered pair of shapes
# ---------------------------------------------------------------------------------------
SHAPES = [(), (4,), (3, 4), (1, 4), (3, 1)]
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@modes
@pytest.mark.parametrize("shape_b", SHAPES, ids=str)
@pytest.mark.parametrize("shape_a", SHAPES, ids=str)
@pytest.mark.parametrize("op", BINARY)
def test_binary(op, shape_a, shape_b, mode):
    check(mode, BINARY[op], [shape_a, away_from_zero(shape_b) if op == "div" else shape_b])


@modes
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_functions(name, mode):
    check(mode, getattr(mg, name), [(3, 4), away_from_zero((4,))], getattr(torch, name, None))


SCALAR_OPERANDS = {
    "x+2": lambda x: x + 2.0,
    "2+x": lambda x: 2.0 + x,
    "x-2": lambda x: x - 2.0,
    "2-x": lambda x: 2.0 - x,
    "x*3": lambda x: x * 3.0,
    "3*x": lambda x: 3 * x,
    "x/2": lambda x: x / 2.0,
    "2/x": lambda x: 2.0 / x,
}


@modes
@pytest.mark.parametrize("name", SCALAR_OPERANDS)
def test_python_number_operand(name, mode):
    check(mode, SCALAR_OPERANDS[name], [away_from_zero((3, 4))])


# ---------------------------------------------------------------------------------------
# Unary elementwise ops
# ---------------------------------------------------------------------------------------
UNARY = [
    pytest.param(lambda x: x.exp(), None, (3, 4), id="exp"),
    pytest.param(lambda x: x.log(), None, positive((3, 4)), id="log"),
    pytest.param(lambda x: x.tanh(), None, (3, 4), id="tanh"),
    pytest.param(lambda x: x.sigmoid(), None, (3, 4), id="sigmoid"),
    pytest.param(lambda x: x.sigmoid(), None, lambda rng: rng.uniform(-40, 40, (3, 4)), id="sigmoid-large"),
    pytest.param(lambda x: x.relu(), None, away_from_zero((3, 4)), id="relu"),
    pytest.param(lambda x: -x, None, (3, 4), id="neg"),
    pytest.param(lambda x: x ** 2, None, (3, 4), id="pow2"),
    pytest.param(lambda x: x ** 3, None, (3, 4), id="pow3"),
    pytest.param(lambda x: x ** 0.5, None, positive((3, 4)), id="pow0.5"),
    pytest.param(lambda x: x ** -1, None, away_from_zero((3, 4)), id="pow-1"),
    pytest.param(lambda x: x ** 2, None, (), id="pow2-scalar-tensor"),
    # the mg.* function spellings
    pytest.param(mg.exp, lambda x: torch.exp(x), (5,), id="mg.exp"),
    pytest.param(mg.log, lambda x: torch.log(x), positive((5,)), id="mg.log"),
    pytest.param(mg.tanh, lambda x: torch.tanh(x), (5,), id="mg.tanh"),
    pytest.param(mg.sigmoid, lambda x: torch.sigmoid(x), (5,), id="mg.sigmoid"),
    pytest.param(mg.relu, lambda x: torch.relu(x), away_from_zero((5,)), id="mg.relu"),
    pytest.param(mg.neg, lambda x: torch.neg(x), (5,), id="mg.neg"),
    pytest.param(lambda x: mg.pow(x, 3), lambda x: torch.pow(x, 3), (5,), id="mg.pow3"),
    pytest.param(lambda x: mg.pow(x, 0.5), lambda x: torch.pow(x, 0.5), positive((5,)), id="mg.pow0.5"),
]


@modes
@pytest.mark.parametrize("mg_fn, torch_fn, data", UNARY)
def test_unary(mg_fn, torch_fn, data, mode):
    check(mode, mg_fn, [data], torch_fn)


# ---------------------------------------------------------------------------------------
# Reductions on a (3, 4, 5) tensor
# ---------------------------------------------------------------------------------------
AXES = [None, 0, 1, 2, -1, -2, -3, (0, 2), (-1, 0), (0, 1, 2)]


def torch_reduction(name, axis, keepdims):
    def reduce(x):
        dims = tuple(range(x.ndim)) if axis is None else axis
        return {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[name](x, dim=dims, keepdim=keepdims)
    return reduce


@modes
@pytest.mark.parametrize("keepdims", [False, True], ids=["", "keepdims"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction(name, axis, keepdims, mode):
    check(mode, lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), [(3, 4, 5)],
          torch_reduction(name, axis, keepdims))


REDUCTION_FUNCTIONS = [
    pytest.param(lambda x: mg.sum(x), lambda x: x.sum(), (3, 4), id="mg.sum"),
    pytest.param(lambda x: mg.mean(x, 1, True), lambda x: x.mean(1, keepdim=True), (3, 4), id="mg.mean(1,keepdims)"),
    pytest.param(lambda x: mg.max(x, axis=0), lambda x: x.amax(0), (3, 4), id="mg.max(0)"),
    pytest.param(lambda x: x.sum(), None, (), id="sum-of-0d"),
    pytest.param(lambda x: x.mean(), None, (7,), id="mean-1d"),
    pytest.param(lambda x: x.max(), lambda x: x.amax(), (7,), id="max-1d"),
]


@modes
@pytest.mark.parametrize("mg_fn, torch_fn, data", REDUCTION_FUNCTIONS)
def test_reduction_functions(mg_fn, torch_fn, data, mode):
    check(mode, mg_fn, [data], torch_fn)


# ---------------------------------------------------------------------------------------
# Shape ops: reshape, transpose, .T, indexing, concat, stack
# ---------------------------------------------------------------------------------------
SHAPE_OPS = [
    pytest.param(lambda x: x.reshape(12, 5), None, (3, 4, 5), id="reshape(12,5)"),
    pytest.param(lambda x: x.reshape((5, 2, 6)), None, (3, 4, 5), id="reshape((5,2,6))"),
    pytest.param(lambda x: x.reshape(-1), None, (3, 4, 5), id="reshape(-1)"),
    pytest.param(lambda x: x.reshape(2, -1, 3), None, (3, 4, 5), id="reshape(2,-1,3)"),
    pytest.param(lambda x: x.reshape(1), None, (), id="reshape-0d"),
    pytest.param(lambda x: mg.reshape(x, 4, 15), lambda x: torch.reshape(x, (4, 15)), (3, 4, 5), id="mg.reshape"),
    pytest.param(lambda x: x.transpose(), lambda x: x.permute(2, 1, 0), (3, 4, 5), id="transpose()"),
    pytest.param(lambda x: x.transpose(1, 0, 2), lambda x: x.permute(1, 0, 2), (3, 4, 5), id="transpose(1,0,2)"),
    pytest.param(lambda x: x.transpose((2, 0, 1)), lambda x: x.permute(2, 0, 1), (3, 4, 5), id="transpose((2,0,1))"),
    pytest.param(lambda x: x.transpose(-1, 0, 1), lambda x: x.permute(2, 0, 1), (3, 4, 5), id="transpose(-1,0,1)"),
    pytest.param(lambda x: mg.transpose(x, 0, 2, 1), lambda x: x.permute(0, 2, 1), (3, 4, 5), id="mg.transpose"),
    pytest.param(lambda x: x.T, None, (3, 4), id=".T"),
    pytest.param(lambda x: x.T, lambda x: x.permute(2, 1, 0), (3, 4, 5), id=".T-3d"),
    pytest.param(lambda x: x.T * x.T, lambda x: x.T * x.T, (3, 4), id=".T-used-twice"),
]


@modes
@pytest.mark.parametrize("mg_fn, torch_fn, data", SHAPE_OPS)
def test_shape_op(mg_fn, torch_fn, data, mode):
    check(mode, mg_fn, [data], torch_fn)


INDICES = [
    pytest.param(np.s_[1:3], id="x[1:3]"),
    pytest.param(np.s_[:, 1:4], id="x[:,1:4]"),
    pytest.param(np.s_[1:, ::2, 1:5:3], id="x[1:,::2,1:5:3]"),
    pytest.param(np.s_[..., 2], id="x[...,2]"),
    pytest.param(np.s_[2], id="x[2]"),
    pytest.param(np.s_[1, 3], id="x[1,3]"),
    pytest.param(np.s_[-1], id="x[-1]"),
    pytest.param(np.s_[-3:-1, -2], id="x[-3:-1,-2]"),
    pytest.param(np.s_[np.array([0, 2, 0, 0])], id="x[[0,2,0,0]]"),
    pytest.param(np.s_[np.array([-1, 0, -1])], id="x[[-1,0,-1]]"),
    pytest.param(np.s_[np.array([0, 1, 1, 0]), np.array([2, 0, 0, 2])], id="x[rows,cols]"),
    pytest.param(np.s_[1:, np.array([3, 3, 0])], id="x[1:,[3,3,0]]"),
    pytest.param(np.s_[np.array([[0, 1], [1, 1]])], id="x[2d-ids]"),
]


@modes
@pytest.mark.parametrize("index", INDICES)
def test_getitem(index, mode):
    check(mode, lambda x: x[index], [(4, 5, 6)], lambda x: x[T(index)])


@modes
def test_getitem_with_list_and_tensor_indices(mode):
    ids = mg.tensor(np.array([2, 2, 0]))
    check(mode, lambda x: x[[0, 0, 3]] + x[ids] + mg.getitem(x, 1), [(4, 5)],
          lambda x: x[[0, 0, 3]] + x[torch.tensor([2, 2, 0])] + x[1])


def _sizes_along(axis, sizes, base=(2, 3, 4)):
    """Shapes equal to `base` except along `axis`, where they take `sizes`."""
    shapes = []
    for size in sizes:
        shape = list(base)
        shape[axis] = size
        shapes.append(tuple(shape))
    return shapes


@modes
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_concat(axis, mode):
    check(mode, lambda a, b, c: mg.concat([a, b, c], axis=axis), _sizes_along(axis, (1, 2, 3)),
          lambda a, b, c: torch.cat([a, b, c], dim=axis))


@modes
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -4])
def test_stack(axis, mode):
    check(mode, lambda a, b, c: mg.stack([a, b, c], axis=axis), [(2, 3, 4)] * 3,
          lambda a, b, c: torch.stack([a, b, c], dim=axis))


@modes
def test_concat_and_stack_default_axis_and_reuse(mode):
    check(mode, lambda a, b: mg.concat([a, b, a]).sum(0) + mg.stack([b, b]).sum(0), [(2, 3), (2, 3)],
          lambda a, b: torch.cat([a, b, a]).sum(0) + torch.stack([b, b]).sum(0))


# ---------------------------------------------------------------------------------------
# Softmax family, cross-entropy, embedding
# ---------------------------------------------------------------------------------------
@modes
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, axis, mode):
    check(mode, lambda x: getattr(mg, name)(x, axis=axis), [(3, 4, 5)],
          lambda x: getattr(torch, name)(x, dim=axis))


@modes
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_default_axis_and_method(name, mode):
    check(mode, lambda x: getattr(x, name)() + getattr(mg, name)(x), [(4, 6)],
          lambda x: 2 * getattr(torch, name)(x, dim=-1))


@modes
def test_softmax_large_logits(mode):
    check(mode, mg.log_softmax, [lambda rng: rng.uniform(-500, 500, (3, 7))],
          lambda x: torch.log_softmax(x, dim=-1))


TARGETS = np.array([0, 4, 2, 2, 1, 4])


@modes
@pytest.mark.parametrize("targets", [
    pytest.param(TARGETS, id="int64"),
    pytest.param(TARGETS.astype(np.int32), id="int32"),
    pytest.param(TARGETS.tolist(), id="list"),
    pytest.param(mg.tensor(TARGETS), id="mg.tensor"),
])
def test_cross_entropy(targets, mode):
    check(mode, lambda logits: mg.cross_entropy(logits, targets), [(6, 5)],
          lambda logits: F.cross_entropy(logits, torch.as_tensor(TARGETS)))


@modes
def test_cross_entropy_after_matmul(mode):
    check(mode, lambda x, w, b: mg.cross_entropy((x @ w + b).tanh(), TARGETS), [(6, 3), (3, 5), (5,)],
          lambda x, w, b: F.cross_entropy((x @ w + b).tanh(), torch.as_tensor(TARGETS)))


@modes
@pytest.mark.parametrize("ids", [
    pytest.param(np.array([1, 3, 1, 1, 0]), id="1d-repeats"),
    pytest.param(np.array([[1, 3, 1], [0, 1, 4]]), id="2d-repeats"),
    pytest.param(np.array(2), id="0d"),
])
def test_embedding(ids, mode):
    check(mode, lambda table: mg.embedding(table, ids) * 1.5, [(5, 3)],
          lambda table: F.embedding(torch.as_tensor(ids), table) * 1.5)


@modes
def test_embedding_with_tensor_ids(mode):
    ids = np.array([[1, 3, 1], [0, 1, 4]])
    check(mode, lambda table: mg.embedding(table, mg.tensor(ids)), [(5, 3)],
          lambda table: F.embedding(torch.as_tensor(ids), table))


# ---------------------------------------------------------------------------------------
# Matrix products (numpy's rules for 1-D and batched operands)
# ---------------------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((4,), (4,)),
    ((4,), (2, 4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 5)),
]


@modes
@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES, ids=lambda s: str(s))
def test_matmul(shape_a, shape_b, mode):
    check(mode, lambda a, b: a @ b, [shape_a, shape_b])


@modes
@pytest.mark.parametrize("shape_x", [(3, 4), (2, 3, 4), (4,)], ids=str)
def test_linear(shape_x, mode):
    check(mode, lambda x, w, b: mg.linear(x, w, b), [shape_x, (5, 4), (5,)],
          lambda x, w, b: torch.nn.functional.linear(x, w, b))


@modes
def test_linear_without_bias(mode):
    check(mode, lambda x, w: mg.linear(x, w), [(3, 4), (5, 4)], lambda x, w: torch.nn.functional.linear(x, w))


@modes
def test_matmul_function_spelling(mode):
    check(mode, lambda a, b: mg.matmul(a, b) @ b.T, [(3, 4), (4, 4)], lambda a, b: torch.matmul(a, b) @ b.T)


# ---------------------------------------------------------------------------------------
# A whole small network: every op's backward composed with the others
# ---------------------------------------------------------------------------------------
@modes
def test_mlp_composite(mode):
    ids = np.array([0, 2, 2, 1])

    def mg_fn(table, w1, b1, w2):
        h = mg.embedding(table, ids).reshape(2, 12).reshape(4, 6)
        h = (h @ w1 + b1).tanh() * (h @ w1).sigmoid() + (h @ w1).relu()
        h = mg.concat([h, h.max(axis=1, keepdims=True)], axis=1)
        return mg.cross_entropy(h @ w2, np.array([1, 0, 2, 2])) + (h.mean() - 1.0) ** 2

    def torch_fn(table, w1, b1, w2):
        h = F.embedding(torch.as_tensor(ids), table).reshape(2, 12).reshape(4, 6)
        h = (h @ w1 + b1).tanh() * (h @ w1).sigmoid() + (h @ w1).relu()
        h = torch.cat([h, h.amax(dim=1, keepdim=True)], dim=1)
        return F.cross_entropy(h @ w2, torch.tensor([1, 0, 2, 2])) + (h.mean() - 1.0) ** 2

    check(mode, mg_fn, [(3, 6), (6, 5), (5,), (6, 3)], torch_fn)


@pytest.mark.parametrize("op", sorted(mg.elementwise.ELEMENTWISE_OPS))
def test_small_tensors_numpy_path_agrees_with_the_kernel_path(op):
    """Below NUMPY_BELOW elements an elementwise op runs its rule with numpy's ufuncs, from
    there on with the Numba kernels: the two must give the same values and gradients."""
    cls = mg.elementwise.ELEMENTWISE_OPS[op]
    rng = np.random.default_rng(3)
    n = mg.elementwise.NUMPY_BELOW
    a, b, g = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n), rng.standard_normal(n)
    a[::7] *= -1  # relu's both branches

    def run(length):
        x = mg.tensor(a[:length], requires_grad=True)
        other = mg.tensor(np.array(1.5)) if op == "pow" else mg.tensor(b[:length], requires_grad=True)
        out = cls.apply(x, other) if mg.rules.arity(op) == 2 else cls.apply(x)
        kernel_path = out.grad_fn.shape is not None
        out.backward(g[:length])
        return kernel_path, out.data, x.grad, other.grad

    large, small = run(n), run(16)
    assert large[0] and not small[0]  # the two paths were really taken
    for big, little in zip(large[1:], small[1:]):
        if little is None:
            assert big is None
        else:
            np.testing.assert_allclose(big[:16], little, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (None, True), (1, False), ((0, 2), True)])
def test_small_sums_agree_with_the_kernels_sums(monkeypatch, dtype, axis, keepdims):
    """Below NUMPY_BELOW elements Sum does not call its kernel: over every axis it takes Python's
    float sum, in order, the kernel's own float64 sum (the same bits); over some axes numpy's
    float64 reduce (pairwise: float64 rounding apart)."""
    x = np.random.default_rng(4).standard_normal((3, 5, 7)).astype(dtype) * 1e3
    small = mg.tensor(x).sum(axis=axis, keepdims=keepdims).data
    monkeypatch.setattr(mg.elementwise, "NUMPY_BELOW", 0)  # the kernel for every size
    kernel = mg.tensor(x).sum(axis=axis, keepdims=keepdims).data
    assert small.dtype == kernel.dtype == dtype and small.shape == kernel.shape
    if axis is None:
        np.testing.assert_array_equal(small, kernel)
    else:
        np.testing.assert_allclose(small, kernel, rtol=1e-12)
