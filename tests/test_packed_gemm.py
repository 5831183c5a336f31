"""The recurrent layers' packed per-step product (rnn.fused.packed_gemm): equal to numpy's product
for every row count (the 8/4/2/1-row microkernels), depths across the L1 slices, column
offsets, strided operands and accumulation; and a fused layer gives the same outputs and
gradients with W packed as with BLAS, for both ways of cutting a window between cores. The
window-wide products (packed_gemm.window_product) likewise, plain and with a transposed a, and
the layers give the same with them as with BLAS; they are chosen only where the BLAS kernel
lacks the host's AVX-512."""

import numpy as np
import pytest

import minigrad as mg
import rnn.fused.recurrence
from rnn.fused import packed_gemm, panel_driver
from rnn.model.layers import Recurrent

from helpers import cell_sweep


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 8, 13, 17])
@pytest.mark.parametrize("inner", [1, 5, panel_driver.DEPTH + 3])
@pytest.mark.parametrize("accumulate", [False, True])
def test_packed_product_equals_numpy(rows, inner, accumulate):
    rng = np.random.default_rng(rows * 1000 + inner)
    w = rng.standard_normal((inner, 4 * packed_gemm.PANEL)).astype(np.float32)
    panels = packed_gemm.pack_panels(w)
    a = rng.standard_normal((rows, inner + 9)).astype(np.float32)[:, 4:4 + inner]  # rows apart, not contiguous
    out_buffer = rng.standard_normal((rows, 3 * packed_gemm.PANEL + 16)).astype(np.float32)
    out = out_buffer[:, 8:8 + 2 * packed_gemm.PANEL]  # two panels' columns, starting at panel 1 of W
    expected = a.astype(np.float64) @ w[:, packed_gemm.PANEL:3 * packed_gemm.PANEL].astype(np.float64)
    if accumulate:
        expected += out
    untouched = out_buffer[:, :8].copy(), out_buffer[:, 8 + 2 * packed_gemm.PANEL:].copy()
    packed_gemm.packed_matmul_into(a, panels, 1, out, accumulate)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4 * np.sqrt(inner))
    np.testing.assert_array_equal(out_buffer[:, :8], untouched[0])  # nothing written beside out
    np.testing.assert_array_equal(out_buffer[:, 8 + 2 * packed_gemm.PANEL:], untouched[1])


def test_packing_a_transposed_matrix_is_packing_its_transposed_copy():
    # (the fused layer packs W_hh^T straight from W_hh: rnn.fused.recurrence.FusedRecurrence.forward)
    w = np.random.default_rng(0).standard_normal((3 * packed_gemm.PANEL, 5)).astype(np.float32)
    np.testing.assert_array_equal(packed_gemm.pack_panels(w, transpose=True),
                                  packed_gemm.pack_panels(np.ascontiguousarray(w.T)))


def test_panels_only_where_every_cut_falls_on_a_panel(monkeypatch):
    monkeypatch.setattr(packed_gemm, "HOST_HAS_AVX512", True)
    assert packed_gemm.panels_fit(np.float32, [0, 32, 64])
    assert not packed_gemm.panels_fit(np.float32, [0, 24, 64])
    assert not packed_gemm.panels_fit(np.float64, [0, 32, 64])  # the kernels are float32 only
    monkeypatch.setattr(packed_gemm, "HOST_HAS_AVX512", False)
    assert not packed_gemm.panels_fit(np.float32, [0, 32, 64])  # 16 vector registers are too few


@pytest.mark.parametrize("split", [([0, 2, 5], [0, 64]), ([0, 5], [0, 32, 64])], ids=["rows", "units"])
# (gru compiles a second cell's loops, 6 s of CPU cold: marked slow, which CI runs too; the same below)
@pytest.mark.parametrize("cell_name", cell_sweep(["lstm", "gru"], quick=("lstm",)))
def test_fused_layer_is_the_same_with_packed_weights(cell_name, split, monkeypatch):
    monkeypatch.setattr(packed_gemm, "HOST_HAS_AVX512", True)  # (the microkernel is correct anywhere, if slow)
    monkeypatch.setattr(packed_gemm, "window_products_packed", lambda: False)  # (only the per-step products here)
    monkeypatch.setattr(rnn.fused.recurrence, "split_of_work",
                        lambda batch, hidden, gates, core_count=None: tuple(np.array(b, np.int64) for b in split))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    probe = rng.standard_normal((5, 6, 64)).astype(np.float32)
    packed = []
    original_pack = packed_gemm.pack_panels
    monkeypatch.setattr(packed_gemm, "pack_panels",
                        lambda w, transpose=False: packed.append(w.shape) or original_pack(w, transpose))
    results = []
    for use_panels in (False, True):
        monkeypatch.setattr(rnn.fused.recurrence, "USE_PANELS", use_panels)
        mg.random.manual_seed(0)
        layer = Recurrent(cell_name, 3, 64, num_layers=2, engine="fused", dtype=np.float32)
        inputs = mg.tensor(x, requires_grad=True)
        outputs, _ = layer(inputs)
        (outputs * probe).sum().backward()
        results.append([outputs.data, inputs.grad] + [p.grad for p in layer.parameters()])
        assert len(packed) == (4 if use_panels else 0)  # W_hh^T and W_hh of both layers: the packed path ran
    for blas_result, packed_result in zip(*results):
        np.testing.assert_allclose(packed_result, blas_result, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [0, 1, 7, 8, 13, packed_gemm.WINDOW_ROWS + 9])
@pytest.mark.parametrize("inner", [0, 5, packed_gemm.WINDOW_DEPTH + 3])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_window_product_equals_numpy(rows, inner, transpose_a):
    rng = np.random.default_rng(rows * 1000 + inner)
    w = rng.standard_normal((inner, 3 * packed_gemm.PANEL)).astype(np.float32)
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner)).astype(np.float32)  # (inner 0: zeros out)
    expected = (a.T if transpose_a else a).astype(np.float64) @ w.astype(np.float64)
    out = packed_gemm.window_product(a, packed_gemm.pack_panels(w), transpose_a=transpose_a)
    assert out.shape == (rows, 3 * packed_gemm.PANEL)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4 * np.sqrt(inner))


@pytest.mark.parametrize("architectures, host_avx512, packed", [
    (["haswell"], True, True), (["zen"], True, True), (["skylakex"], True, False), (["haswell", "cooperlake"], True, False),
    ([], True, False), (["haswell"], False, False)])
def test_window_products_packed_only_where_the_blas_lacks_avx512(architectures, host_avx512, packed, monkeypatch):
    monkeypatch.setattr(packed_gemm, "_blas_architectures", lambda: architectures)
    monkeypatch.setattr(packed_gemm, "HOST_HAS_AVX512", host_avx512)
    monkeypatch.setattr(packed_gemm, "_WINDOW_PACKED", None)  # (decided once per process)
    assert packed_gemm.window_products_packed() is packed


@pytest.mark.parametrize("cell_name", cell_sweep(["lstm", "gru"], quick=("lstm",)))
def test_fused_layer_is_the_same_with_window_products_packed(cell_name, monkeypatch):
    import rnn.fused.projection

    monkeypatch.setattr(packed_gemm, "HOST_HAS_AVX512", True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 32)).astype(np.float32)
    probe = rng.standard_normal((5, 6, 64)).astype(np.float32)
    results, ran = [], []
    original_backward = rnn.fused.projection.PackedLinear.backward
    monkeypatch.setattr(rnn.fused.projection.PackedLinear, "backward",
                        lambda self, grad: ran.append(1) or original_backward(self, grad))
    for packed in (False, True):
        monkeypatch.setattr(packed_gemm, "window_products_packed", lambda: packed)
        ran.clear()
        mg.random.manual_seed(0)
        layer = Recurrent(cell_name, 32, 64, num_layers=2, engine="fused", dtype=np.float32)
        inputs = mg.tensor(x, requires_grad=True)
        outputs, _ = layer(inputs)
        (outputs * probe).sum().backward()
        results.append([outputs.data, inputs.grad] + [p.grad for p in layer.parameters()])
        assert len(ran) == (2 if packed else 0)  # both layers' input projections ran on panels
    for blas_result, packed_result in zip(*results):
        np.testing.assert_allclose(packed_result, blas_result, rtol=1e-4, atol=1e-5)


def test_a_float64_layer_compiles_no_packed_path():
    # panels are float32 only: a float64 layer's loops get None for them, and Numba leaves the packed
    # product out of what it compiles (half the compile time of a gradient check's loops)
    layer = Recurrent("gru", 2, 3, engine="fused", dtype=np.float64)
    outputs, _ = layer(mg.tensor(np.ones((2, 3, 2)), requires_grad=True))
    outputs.sum().backward()
    assert layer.weight_hh_l0.grad is not None
    assert not [sig for sig in packed_gemm.packed_matmul_into.signatures if "float64" in str(sig)]
