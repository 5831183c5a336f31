"""The char-LM's AWD-LSTM regularisers: DropConnect on W_hh (weight_drop), locked dropout and
embedding dropout (rnn.model.charlm, rnn.model.layers).

- with a fixed mask (the generator reseeded before every forward) each passes gradcheck in
  float64 on both engines, and the fused engine equals the eager one to 1e-10;
- the masks: one per window (a second window draws new ones), shaped as the method says
  (whole W_hh entries, one mask per sequence for all its steps, whole embedding rows), the
  same under the same seed, in the order CharLM documents (checked against PyTorch);
- eval mode and the defaults draw no mask at all (the default run is today's, number for number);
- the options: checked, recorded in config.json and the checkpoint, kept and changed on
  resume, shown by `info`; weight_drop on a cell without W_hh is one error line.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import minigrad as mg
from minigrad.nn import LockedDropout, keep_mask
from rnn.checkpoint.format import load_checkpoint
from rnn.model.charlm import CharLM, ModelConfig
from rnn.training.config import TrainConfig
from rnn.errors import ConfigError

from cli_support import assert_one_error_line, make_text
from helpers import torch_or_skip

VOCAB, EMBED, HIDDEN, LAYERS = 7, 3, 4, 2
MASK_SEED = 5
REGULARISERS = {
    "weight_drop": dict(weight_drop=0.3),
    "locked_dropout": dict(dropout=0.3, locked_dropout=True),
    "embed_dropout": dict(embed_dropout=0.3),
    "all": dict(dropout=0.2, locked_dropout=True, weight_drop=0.3, embed_dropout=0.3),
}
# (batch, steps): a window with more characters than the vocabulary reads the folded
# projection table (CharLM.folds_embedding), a smaller one embeds each character.
WINDOWS = {"folded": (2, 5), "unfolded": (1, 4)}


def make_model(engine="fused", dtype="float64", seed=11, **regularisers):
    mg.random.manual_seed(seed)
    return CharLM(ModelConfig(vocab_size=VOCAB, embed=EMBED, hidden=HIDDEN, layers=LAYERS, engine=engine,
                              dtype=dtype, **regularisers))


def window(batch, steps, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, (batch, steps)), rng.integers(0, VOCAB, (batch, steps))


def loss_with_masks_of(model, ids, targets, seed=MASK_SEED):
    mg.random.manual_seed(seed)
    return model.loss(ids, targets)[0]


def loss_and_gradients(model, ids, targets):
    model.zero_grad()
    loss = loss_with_masks_of(model, ids, targets)
    loss.backward()
    return float(loss.data), {name: p.grad.copy() for name, p in model.named_parameters()}


def install(model, name, tensor):
    """Put `tensor` where parameter `name` ("rnn.weight_hh_l0") is read, so that gradcheck's leaves are used."""
    *path, attribute = name.split(".")
    owner = model
    for part in path:
        owner = getattr(owner, part)
    object.__setattr__(owner, attribute, tensor)


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("size", WINDOWS)
@pytest.mark.parametrize("regulariser", REGULARISERS)
def test_gradcheck_with_a_fixed_mask(regulariser, size, engine):
    model = make_model(engine, **REGULARISERS[regulariser])
    ids, targets = window(*WINDOWS[size])
    names = [name for name, _ in model.named_parameters()]

    def loss(*tensors):
        for name, tensor in zip(names, tensors):
            install(model, name, tensor)
        return loss_with_masks_of(model, ids, targets)

    assert mg.gradcheck(loss, model.parameters(), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("size", WINDOWS)
@pytest.mark.parametrize("regulariser", REGULARISERS)
def test_fused_equals_eager_with_the_same_masks(regulariser, size):
    ids, targets = window(*WINDOWS[size])
    eager_loss, eager = loss_and_gradients(make_model("eager", **REGULARISERS[regulariser]), ids, targets)
    fused_loss, fused = loss_and_gradients(make_model("fused", **REGULARISERS[regulariser]), ids, targets)
    plain_loss, _ = loss_and_gradients(make_model("fused"), ids, targets)
    assert abs(fused_loss - plain_loss) > 1e-6, "the regulariser changed nothing"
    assert abs(fused_loss - eager_loss) <= 1e-10
    for name in eager:
        np.testing.assert_allclose(fused[name], eager[name], rtol=0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("regulariser", REGULARISERS)
def test_the_masks_follow_the_seed_and_change_with_every_window(regulariser):
    ids, targets = window(2, 5)
    model = make_model(**REGULARISERS[regulariser])
    first = float(loss_with_masks_of(model, ids, targets).data)
    assert float(loss_with_masks_of(model, ids, targets).data) == first
    assert float(loss_with_masks_of(model, ids, targets, seed=MASK_SEED + 1).data) != first
    mg.random.manual_seed(MASK_SEED)
    windows = [float(model.loss(ids, targets)[0].data) for _ in range(2)]  # the second window: new masks
    assert windows[0] == first and windows[1] != first


def test_the_masks_drop_what_each_method_says():
    model = make_model(weight_drop=0.5, embed_dropout=0.5)
    mg.random.manual_seed(3)
    w_hh = model.rnn.weight_hh_l0
    dropped = model.rnn.recurrent_weight(0).data
    assert set(np.unique(np.round(dropped / w_hh.data, 12))) == {0.0, 2.0}  # each weight: dropped or doubled
    table = model.embedding_table().data
    rows = np.round(table / model.embedding.weight.data, 12)
    assert all(len(set(row)) == 1 for row in rows) and set(rows[:, 0]) == {0.0, 2.0}  # whole characters
    sequences = LockedDropout(0.5)(mg.tensor(np.ones((6, 9, 5)))).data
    assert (sequences == sequences[:, :1]).all() and set(np.unique(sequences)) == {0.0, 2.0}  # one mask per row
    assert len({sequences[b, 0].tobytes() for b in range(6)}) > 1  # ...of its own


@pytest.mark.parametrize("regulariser", REGULARISERS)
def test_eval_mode_draws_and_applies_no_mask(regulariser):
    ids, targets = window(2, 5)
    model, plain = make_model(**REGULARISERS[regulariser]).eval(), make_model().eval()
    state = mg.random.get_state()
    assert float(model.loss(ids, targets)[0].data) == float(plain.loss(ids, targets)[0].data)
    assert mg.random.get_state() == state


def test_the_defaults_draw_nothing_in_training():
    """Without the options a training forward draws no random number: a default run's dropout
    masks (and so its numbers) are what they were before the options existed."""
    model = make_model()
    ids, targets = window(2, 5)
    state = mg.random.get_state()
    model.loss(ids, targets)[0].backward()
    assert mg.random.get_state() == state


@pytest.mark.parametrize("size", WINDOWS)
def test_pytorch_computes_the_same_masked_loss_and_gradients(size):
    """The masks replayed from the seed in CharLM's documented order (embedding rows, then per
    layer W_hh and its output's locked mask), applied in PyTorch by hand."""
    torch = torch_or_skip()
    config = REGULARISERS["all"]
    ids, targets = window(*WINDOWS[size])
    model = make_model(**config)
    loss, gradients = loss_and_gradients(model, ids, targets)

    mg.random.manual_seed(MASK_SEED)
    batch = ids.shape[0]
    embed_mask = keep_mask((VOCAB, 1), config["embed_dropout"], np.float64)
    layer_masks = []
    for k in range(LAYERS):
        w_mask = keep_mask((4 * HIDDEN, HIDDEN), config["weight_drop"], np.float64)
        layer_masks.append((w_mask, keep_mask((batch, 1, HIDDEN), config["dropout"], np.float64)))
    parameters = {name: torch.tensor(p.data, requires_grad=True) for name, p in model.named_parameters()}
    x = torch.nn.functional.embedding(torch.tensor(ids), parameters["embedding.weight"] * torch.tensor(embed_mask))
    for k, (w_mask, out_mask) in enumerate(layer_masks):
        lstm = torch.nn.LSTM(x.shape[2], HIDDEN, batch_first=True, dtype=torch.float64)
        weights = {name: parameters[f"rnn.{name}_l{k}"] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        weights["weight_hh"] = weights["weight_hh"] * torch.tensor(w_mask)
        x, _ = torch.func.functional_call(lstm, {f"{name}_l0": value for name, value in weights.items()}, (x,))
        x = x * torch.tensor(out_mask)
    logits = x @ parameters["head.weight"].T + parameters["head.bias"]
    reference = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(targets).reshape(-1))
    reference.backward()
    assert abs(reference.item() - loss) <= 1e-10
    for name, parameter in parameters.items():
        np.testing.assert_allclose(gradients[name], parameter.grad.numpy(), rtol=0, atol=1e-10, err_msg=name)


# ---- the options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(weight_drop=1.0), dict(embed_dropout=-0.1), dict(weight_drop="0.2"),
                                      dict(locked_dropout="yes"), dict(locked_dropout=1)])
def test_impossible_values_are_refused_by_both_configs(settings):
    with pytest.raises(ConfigError, match=next(iter(settings)).replace("_", "[_-]")):
        TrainConfig(**settings).validate()
    with pytest.raises(ValueError, match=next(iter(settings))):
        ModelConfig(vocab_size=VOCAB, **settings).validate()


def test_a_model_config_recorded_before_the_options_loads_with_them_off():
    record = {"vocab_size": VOCAB, "cell": "lstm", "embed": 3, "hidden": 4, "layers": 1, "dropout": 0.1,
              "dtype": "float32", "engine": "fused"}
    config = ModelConfig.from_dict(record)
    assert (config.weight_drop, config.locked_dropout, config.embed_dropout) == (0.0, False, 0.0)


TINY = ["--hidden", "8", "--embed", "4", "--layers", "2", "--seq-len", "8", "--batch-size", "4", "--steps", "2",
        "--eval-every", "0", "--sample-every", "0", "--warmup", "0", "--dropout", "0.1", "--quiet"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("regularisation") / "text.txt"
    path.write_text(make_text(1200, seed=5))
    return path


def regularisers_of(out):
    """The three settings as config.json's train and model records and the checkpoint's model config hold them."""
    names = ("weight_drop", "locked_dropout", "embed_dropout")
    record = json.loads((out / "config.json").read_text())
    checkpoint = load_checkpoint(out / "latest.safetensors")
    found = [tuple(source[name] for name in names) for source in (record["train"], record["model"])]
    return found + [tuple(getattr(checkpoint.config, name) for name in names)]


def test_the_options_are_recorded_kept_on_resume_changed_on_resume_and_shown(text, tmp_path):
    from cli.main import main

    out = tmp_path / "run"
    runner = CliRunner()
    given = ["--weight-drop", "0.25", "--locked-dropout", "--embed-dropout", "0.15"]
    result = runner.invoke(main, ["train", str(text), *TINY, *given, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert regularisers_of(out) == [(0.25, True, 0.15)] * 3
    info = runner.invoke(main, ["info", str(out / "latest.safetensors")])
    assert "dropout 0.1 (locked), weight drop 0.25, embedding dropout 0.15" in info.output

    resume = ["train", "--resume", str(out / "latest.safetensors"), "--quiet"]
    result = runner.invoke(main, [*resume, "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert regularisers_of(out) == [(0.25, True, 0.15)] * 3
    result = runner.invoke(main, [*resume, "--steps", "4", "--weight-drop", "0", "--no-locked-dropout",
                                  "--embed-dropout", "0.05"])
    assert result.exit_code == 0, result.output
    assert regularisers_of(out) == [(0.0, False, 0.05)] * 3
    info = runner.invoke(main, ["info", str(out / "latest.safetensors")])
    assert "dropout 0.1, embedding dropout 0.05, float32" in info.output


def test_weight_drop_on_a_cell_without_recurrent_weights_is_one_error_line(text, tmp_path):
    from cli.main import main

    result = CliRunner().invoke(main, ["train", str(text), *TINY, "--cell", "mingru", "--weight-drop", "0.2",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "--weight-drop", "mingru")
    assert not (tmp_path / "run").exists()
