"""The road past one machine: examples/continue_in_pytorch.py continues a minigrad-rnn
checkpoint with DistributedDataParallel on 2 processes (gloo, loopback only), and the
checkpoint it writes is read by `minigrad-rnn eval / info / sample`; eval's loss equals
PyTorch's own evaluation of the same weights on the same text (computed here with plain
torch modules: one stream, state carried, mean cross-entropy in nats)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main

from rnn.checkpoint.format import load_checkpoint
from rnn.data.corpus import Corpus
from rnn.training.loop import TrainConfig, train

from cli_support import make_text, run_in_process

torch = pytest.importorskip("torch")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "continue_in_pytorch.py"


def loopback_only_environment() -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():
        environment["GLOO_SOCKET_IFNAME"] = "lo"  # gloo talks over loopback, not the machine's network
    return environment


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torch_loss_nats(checkpoint: Path, text: str, cell: str) -> float:
    """PyTorch's evaluation: the weights into Embedding -> nn.LSTM/nn.GRU -> Linear (strict),
    the whole text as one stream (one forward call carries the state), mean CE over the
    len(text) - 1 predictions, in nats."""
    from safetensors.torch import load_file

    loaded = load_checkpoint(checkpoint)
    config, vocab = loaded.config, loaded.vocab
    tensors = load_file(str(checkpoint))
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    modules = torch.nn.ModuleDict({
        "embedding": torch.nn.Embedding(config.vocab_size, config.embed),
        "rnn": recurrent(config.embed, config.hidden, num_layers=config.layers, batch_first=True),
        "head": torch.nn.Linear(config.hidden, config.vocab_size),
    })
    modules.load_state_dict(tensors, strict=True)
    ids = torch.from_numpy(vocab.encode(text).astype(np.int64))[None, :]
    with torch.no_grad():
        hidden, _ = modules["rnn"](modules["embedding"](ids[:, :-1]))
        logits = modules["head"](hidden)[0].double()
        return torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item()


@pytest.mark.slow
def test_continue_in_pytorch_on_two_processes_and_evaluate_with_minigrad_rnn(tmp_path, cell="lstm"):
    text = make_text(4000, seed=7)
    text_file = tmp_path / "input.txt"
    text_file.write_text(text, encoding="utf-8")
    config = TrainConfig(cell=cell, layers=2, hidden=16, embed=8, seq_len=16, batch_size=4, steps=3, eval_every=0,
                         sample_every=0)
    summary = train(config, Corpus.from_file(text_file), tmp_path / "run")
    source = Path(summary["checkpoint"])
    out = tmp_path / "pytorch.safetensors"

    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_loopback_port()),
               str(EXAMPLE), str(source), str(text_file), "--out", str(out),
               "--steps", "4", "--batch-size", "4", "--seq-len", "16", "--lr", "0.01"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=loopback_only_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {out} (step 7)" in result.stdout

    written, before = load_checkpoint(out), load_checkpoint(source)
    assert written.meta["step"] == 7 and written.meta["pytorch"]["world_size"] == 2
    assert written.meta["train_config"] == before.meta["train_config"]
    assert written.vocab == before.vocab and written.config == before.config
    changed = [name for name, value in written.model.state_dict().items()
               if not np.array_equal(value, before.model.state_dict()[name])]
    assert len(changed) == len(written.model.state_dict())  # every tensor was trained

    evaluated = json.loads(run_in_process("eval", out, text_file, "--json", check_exit=0).stdout)
    assert evaluated["chars"] == len(text) - 1
    assert abs(evaluated["loss_nats"] - torch_loss_nats(out, text, cell)) < 1e-5
    # info and sample in this process (the console script itself is exercised by eval above).
    info = CliRunner().invoke(main, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["step"] == 7 and json.loads(info.stdout)["model_config"]["cell"] == cell
    sampled = CliRunner().invoke(main, ["sample", str(out), "-n", "30", "--seed", "1"]).stdout
    assert len(sampled) == 31 and set(sampled[:-1]) <= set(written.vocab.chars)


def test_the_example_refuses_a_text_outside_the_vocabulary_in_one_line(tmp_path):
    text_file = tmp_path / "input.txt"
    text_file.write_text(make_text(2000), encoding="utf-8")
    config = TrainConfig(cell="lstm", layers=1, hidden=8, embed=4, seq_len=8, batch_size=2, steps=1, eval_every=0,
                         sample_every=0)
    source = train(config, Corpus.from_file(text_file), tmp_path / "run")["checkpoint"]
    other = tmp_path / "other.txt"
    other.write_text("Ω and more", encoding="utf-8")
    result = subprocess.run([sys.executable, str(EXAMPLE), source, str(other), "--out", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=300, env=loopback_only_environment())
    assert result.returncode == 1 and result.stderr.strip().startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "U+03A9" in result.stderr
    assert not (tmp_path / "x").exists()
