"""The char-LM's folded first projection (rnn.model.charlm.CharLM.projected_embedding): layer 0
reads W_ih e_c + b_ih from a table of the vocabulary's rows, and its gradient is added
into those rows by character. It must equal embedding -> projection of every (b, t) in
loss and in every gradient, on both engines, for built-in and user cells, with dropout on
or off; and it is used only when the vocabulary has no more rows than the window."""

import tracemalloc

import numpy as np
import pytest

import minigrad as mg
from rnn.cells.registry import cell, sigmoid, tanh
from rnn.model.charlm import CharLM, ModelConfig

VOCAB = 7


@cell(gates=("a", "u"), state=("h", "m"), name="test_fold_user_cell")
def fold_user_cell(x, h, m):
    """A two-state cell written for this test: a leaky memory m read through a gate."""
    a = sigmoid(x.a + h.a)
    m = a * m + (1 - a) * tanh(x.u + h.u)
    return tanh(m) * a, m


def make_model(cell_name, layers, dropout, engine):
    mg.random.manual_seed(11)
    config = ModelConfig(vocab_size=VOCAB, cell=cell_name, embed=3, hidden=4, layers=layers, dropout=dropout,
                         dtype="float64", engine=engine)
    return CharLM(config)


def loss_of_hidden(model, hidden, targets):
    logits = model.head(model.output_dropout(hidden))
    return mg.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def folded_loss(model, ids, targets):
    """Layer 0's projection read by id from the (V, G*H) table."""
    hidden, _ = model.rnn.forward_projected(model.projected_embedding(), None, ids=ids)
    return loss_of_hidden(model, hidden, targets)


def unfolded_loss(model, ids, targets):
    """The plain composition: embed every (b, t), then project it (one GEMM over the window)."""
    hidden, _ = model.rnn(model.embedding(ids))
    return loss_of_hidden(model, hidden, targets)


def loss_and_gradients(model, compute, ids, targets):
    """(loss, {name: gradient}) of one forward and backward, with the dropout masks of seed 3."""
    model.zero_grad()
    mg.random.manual_seed(3)
    loss = compute(model, ids, targets)
    loss.backward()
    return float(loss.data), {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "test_fold_user_cell"])
@pytest.mark.parametrize("batch, steps", [(3, 4), (1, 5)], ids=["window>=vocab", "window<vocab"])
def test_the_folded_projection_gives_the_unfolded_loss_and_gradients(cell_name, layers, dropout, batch, steps):
    """Fused and eager, folded and unfolded, and the model's own loss (which picks one of the
    two by the window's size): one loss and one gradient per parameter, to float64 rounding.
    Every character of the vocabulary but one appears, several of them more than once."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB - 1, (batch, steps))  # never the last character: its rows get no gradient
    targets = rng.integers(0, VOCAB, (batch, steps))
    reference_loss, reference = loss_and_gradients(make_model(cell_name, layers, dropout, "eager"), unfolded_loss,
                                                   ids, targets)
    assert reference["embedding.weight"][:VOCAB - 1].any() and not reference["embedding.weight"][VOCAB - 1].any()
    for engine in ("eager", "fused"):
        model = make_model(cell_name, layers, dropout, engine)
        assert model.folds_embedding(ids.size) == (VOCAB <= batch * steps)
        for how, compute in (("folded", folded_loss), ("unfolded", unfolded_loss), ("model.loss", model_loss)):
            loss, gradients = loss_and_gradients(model, compute, ids, targets)
            where = f"{engine}, {how}"
            np.testing.assert_allclose(loss, reference_loss, rtol=1e-12, err_msg=where)
            assert gradients.keys() == reference.keys()
            for name, gradient in gradients.items():
                np.testing.assert_allclose(gradient, reference[name], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{where}: {name}")


def model_loss(model, ids, targets):
    return model.loss(ids, targets)[0]


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "test_fold_user_cell"])
def test_gradcheck_of_the_fold_in_the_embedding_and_layer_0_input_weights(cell_name):
    """Central differences through table = E W_ih^T + b_ih, the gather by id in the fused
    loop, and the scatter-add of its gradient back into the table's rows."""
    model = make_model(cell_name, 2, 0.0, "fused")
    rng = np.random.default_rng(2)
    ids = rng.integers(0, VOCAB, (2, 5))
    targets = rng.integers(0, VOCAB, (2, 5))
    w_hh, b_hh = model.rnn.weight_hh_l0, model.rnn.bias_hh_l0

    def loss(embedding, w_ih, b_ih):
        table = mg.linear(embedding, w_ih, b_ih)  # what projected_embedding() computes from these three
        hidden, _ = model.rnn.forward_projected(table, None, ids=ids)
        return loss_of_hidden(model, hidden, targets)

    np.testing.assert_allclose(mg.linear(model.embedding.weight, model.rnn.weight_ih_l0, model.rnn.bias_ih_l0).data,
                               model.projected_embedding().data, rtol=0, atol=0)
    inputs = [mg.tensor(p.data.copy(), requires_grad=True)
              for p in (model.embedding.weight, model.rnn.weight_ih_l0, model.rnn.bias_ih_l0)]
    assert w_hh.requires_grad and b_hh.requires_grad
    assert mg.gradcheck(loss, inputs)


def test_a_vocabulary_larger_than_the_window_is_not_projected_whole():
    """Evaluating a checkpoint of 100,000 characters a few at a time (rnn.evaluate bounds its
    calls to 20 rows there) must not build the (100,000, G*H) table: 51 MB here in float64,
    against a few kB for the two rows the call reads."""
    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=100_000, cell="lstm", embed=4, hidden=16, layers=1, dtype="float64"))
    ids = np.array([[5, 99_999]])
    model.eval()
    with mg.no_grad():
        tracemalloc.start()
        try:
            logits, _ = model(ids)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert logits.shape == (1, 2, 100_000)
    assert peak < 10_000_000, f"{peak / 1e6:.1f} MB for a window of 2 characters"
