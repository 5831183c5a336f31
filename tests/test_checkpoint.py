"""Checkpoints: round trip, atomic writes, hostile and damaged files, and loading into PyTorch."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from safetensors.numpy import save as safetensors_bytes

import minigrad as mg
import rnn.checkpoint as checkpoint_module
from rnn.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from rnn.data import Vocab
from rnn.evaluate import EVAL_CHUNK, evaluate
from rnn.model import CharLM, ModelConfig

from helpers import torch_or_skip

TEXT = "the quick brown fox jumps over the lazy dog.\nTHE END!\n"


def tiny_model(dtype="float32", cell="lstm", hidden=8, layers=2, vocab=None):
    vocab = vocab or Vocab.from_text(TEXT)
    mg.random.manual_seed(3)
    config = ModelConfig(vocab_size=len(vocab), cell=cell, embed=5, hidden=hidden, layers=layers, dtype=dtype)
    return CharLM(config), vocab


def one_adam_step(model, vocab):
    optimizer = mg.optim.Adam(model.parameters(), lr=1e-2)
    ids = vocab.encode(TEXT)[None, :]
    loss, _ = model.loss(ids[:, :-1], ids[:, 1:])
    loss.backward()
    optimizer.step()
    return optimizer


@pytest.fixture
def saved(tmp_path):
    """A checkpoint with optimizer state, meta and extra tensors; returns (path, model, optimizer, vocab, meta)."""
    model, vocab = tiny_model()
    optimizer = one_adam_step(model, vocab)
    meta = {"step": 7, "rng_state": mg.random.get_state(), "data_position": {"pass": 0, "window": 3},
            "best_val_loss": 1.25}
    extra = {"l0.h": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = save_checkpoint(tmp_path / "model.safetensors", model, optimizer, meta, vocab=vocab, extra_tensors=extra)
    return path, model, optimizer, vocab, meta


def resign(path, tensors, metadata):
    """Rewrite a checkpoint with edited tensors/metadata and a valid checksum, so that the
    specific check under test is reached (instead of the checksum catching the edit)."""
    metadata = dict(metadata)
    metadata["checksum"] = checkpoint_module._checksum(metadata, tensors)
    path.write_bytes(safetensors_bytes(tensors, metadata=metadata))


def read_raw(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="np") as file:
        return {name: file.get_tensor(name) for name in file.keys()}, dict(file.metadata())


# ---- round trip ------------------------------------------------------------------------------

def test_round_trip_restores_everything(saved):
    path, model, optimizer, vocab, meta = saved
    rng_before = mg.random.get_state()
    loaded = load_checkpoint(path)
    assert mg.random.get_state() == rng_before  # loading does not disturb the random stream
    assert loaded.vocab.chars == vocab.chars
    assert loaded.config == model.config
    assert not loaded.model.training
    for name, array in model.state_dict().items():
        assert np.array_equal(loaded.model.state_dict()[name], array), name
    assert loaded.meta == json.loads(json.dumps(meta))
    assert loaded.optimizer_name == "Adam"
    fresh = mg.optim.Adam(loaded.model.parameters(), lr=0.5)
    fresh.load_state_dict(loaded.optimizer_state)
    original = optimizer.state_dict()
    restored = fresh.state_dict()
    assert set(original) == set(restored)
    for key, value in original.items():
        assert np.array_equal(np.asarray(restored[key]), np.asarray(value)), key
    assert np.array_equal(loaded.train_state["l0.h"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_file_layout_is_plain_safetensors(saved):
    path = saved[0]
    tensors, metadata = read_raw(path)
    assert "embedding.weight" in tensors and "rnn.weight_hh_l1" in tensors and "head.bias" in tensors
    assert "optimizer.head.bias.exp_avg" in tensors
    assert "train_state.l0.h" in tensors
    assert metadata["program"] == "minigrad-rnn"
    assert metadata["format_version"] == str(FORMAT_VERSION)
    assert json.loads(metadata["vocab"]) == sorted(set(TEXT))
    assert json.loads(metadata["model_config"])["hidden"] == 8
    assert json.loads(metadata["optimizer"])["scalars"]["head.bias.step"] == 1


def test_model_without_optimizer(tmp_path):
    model, vocab = tiny_model(dtype="float64", cell="gru")
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta={"vocab": vocab})
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None and loaded.optimizer_name is None
    assert loaded.model.embedding.weight.dtype == np.float64
    assert loaded.config.cell == "gru"


# ---- atomic writes ----------------------------------------------------------------------------

def test_a_failed_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    path, model, optimizer, vocab, _ = saved
    before = path.read_bytes()
    model.head.bias.data += 1.0

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, model, optimizer, {"step": 8}, vocab=vocab)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert load_checkpoint(path).meta["step"] == 7


def test_an_interrupted_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    path, model, optimizer, vocab, _ = saved

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, optimizer, {"step": 8}, vocab=vocab)
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert load_checkpoint(path).meta["step"] == 7


# ---- files that are not (good) checkpoints ---------------------------------------------------------

def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    with pytest.raises(CheckpointError, match="not a checkpoint file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [
    b"",
    b"\x01\x02",
    os.urandom(4096),
    # the start of a pickle stream: it must be rejected as data, never unpickled
    b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.",
    (2 ** 62).to_bytes(8, "little") + b"{}",  # a huge declared header
    (40).to_bytes(8, "little") + b"{" * 40,  # a header that is not JSON
    (2).to_bytes(8, "little") + b"[]",  # JSON, but not an object
], ids=["empty", "tiny", "random", "pickle", "huge-header", "bad-json", "json-list"])
def test_non_checkpoints_are_rejected(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_truncated_at_every_offset(tmp_path):
    model, vocab = tiny_model(hidden=2, layers=1)
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta={"vocab": vocab})
    content = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    for length in range(len(content)):
        cut.write_bytes(content[:length])
        with pytest.raises(CheckpointError):
            load_checkpoint(cut)


def test_random_byte_flips_are_caught(tmp_path):
    model, vocab = tiny_model(hidden=4, layers=1)
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta={"vocab": vocab, "step": 1})
    content = path.read_bytes()
    rng = np.random.default_rng(0)
    damaged = tmp_path / "flipped.safetensors"
    for _ in range(200):
        position = int(rng.integers(len(content)))
        flipped = bytearray(content)
        flipped[position] ^= int(rng.integers(1, 256))
        damaged.write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(damaged)
        except CheckpointError:
            continue
        # Only a flip inside the header's padding or JSON whitespace may go unnoticed: then
        # nothing that matters changed.
        for name, array in model.state_dict().items():
            assert np.array_equal(loaded.model.state_dict()[name], array)


def test_file_from_another_program(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not written by minigrad-rnn"):
        load_checkpoint(path)


def test_future_format_version(saved):
    path = saved[0]
    tensors, metadata = read_raw(path)
    metadata["format_version"] = str(FORMAT_VERSION + 1)
    resign(path, tensors, metadata)
    with pytest.raises(CheckpointError, match="format 2, newer"):
        load_checkpoint(path)


def test_checksum_catches_an_edited_tensor(saved):
    path = saved[0]
    tensors, metadata = read_raw(path)
    tensors["head.bias"] = tensors["head.bias"] + 1
    path.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def edited(path, edit):
    tensors, metadata = read_raw(path)
    edit(tensors, metadata)
    resign(path, tensors, metadata)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t, m: t.pop("rnn.bias_hh_l1"), "lacks the tensors rnn.bias_hh_l1"),
    (lambda t, m: t.update(extra=np.zeros(2, np.float32)), "unexpected tensors extra"),
    (lambda t, m: t.update({"head.bias": np.zeros(3, np.float32)}), r"head.bias has shape \(3,\)"),
    (lambda t, m: t.update({"head.bias": t["head.bias"].astype(np.float64)}), "head.bias is float64"),
    (lambda t, m: m.update(meta="{not json"), "meta is not valid JSON"),
    (lambda t, m: m.update(model_config="[1, 2]"), "model_config is not a JSON dict"),
    (lambda t, m: m.update(vocab=json.dumps(sorted(set(TEXT))[:-1])), "vocabulary has .* but the embedding"),
    (lambda t, m: m.update(vocab='"abc"'), "invalid vocabulary"),
    (lambda t, m: m.update(model_config=json.dumps({**json.loads(m["model_config"]), "cell": "mystery"})),
     "cell 'mystery', which is not registered"),
    (lambda t, m: m.update(model_config=json.dumps({**json.loads(m["model_config"]), "hidden": -3})),
     "invalid model config"),
    (lambda t, m: t.update({"optimizer.head.bias.exp_avg": np.zeros(5, np.float32)}), "optimizer tensor"),
    (lambda t, m: t.update({"optimizer.nothing.exp_avg": np.zeros(5, np.float32)}), "unknown parameter"),
], ids=["missing", "extra", "shape", "dtype", "meta-json", "config-type", "vocab-size", "vocab-json",
        "unknown-cell", "bad-config", "optimizer-shape", "optimizer-name"])
def test_inconsistent_checkpoints_name_the_problem(saved, edit, message):
    path = edited(saved[0], edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_config_declaring_a_huge_model_is_refused_before_allocating(saved):
    def huge(tensors, metadata):
        config = json.loads(metadata["model_config"])
        config.update(hidden=10 ** 9, embed=10 ** 9)
        metadata["model_config"] = json.dumps(config)

    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(edited(saved[0], huge))


# ---- PyTorch reads the same file ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_checkpoint_loads_into_pytorch_with_the_same_eval_loss(tmp_path, dtype):
    torch = torch_or_skip()
    text = TEXT * 30
    assert len(text) > EVAL_CHUNK  # evaluation streams two chunks, carrying the state between them
    model, vocab = tiny_model(dtype=dtype, hidden=16)
    one_adam_step(model, vocab)
    path = save_checkpoint(tmp_path / "m.safetensors", model, one_adam_step(model, vocab), {"step": 2}, vocab=vocab)

    class TorchCharLM(torch.nn.Module):
        def __init__(self, vocab_size, embed, hidden, layers):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab_size, embed)
            self.rnn = torch.nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
            self.head = torch.nn.Linear(hidden, vocab_size)

    config = load_checkpoint(path).config
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    reference = TorchCharLM(config.vocab_size, config.embed, config.hidden, config.layers).to(torch_dtype)
    state = {name: torch.from_numpy(array) for name, array in load_file(str(path)).items()
             if not name.startswith(("optimizer.", "train_state."))}
    reference.load_state_dict(state, strict=True)

    ids = torch.from_numpy(vocab.encode(text).astype(np.int64))[None, :]
    with torch.no_grad():
        hidden, _ = reference.rnn(reference.embedding(ids[:, :-1]))
        torch_loss = torch.nn.functional.cross_entropy(reference.head(hidden)[0], ids[0, 1:]).item()
    result = evaluate(load_checkpoint(path).model, vocab, text)
    assert result["chars"] == len(text) - 1
    assert abs(result["loss_nats"] - torch_loss) < 1e-5
