"""Continue training a minigrad-rnn checkpoint in PyTorch, on many processes, and write a
checkpoint that `minigrad-rnn sample / eval / info` read.

    # 2 processes on this machine's CPU (gloo); on a GPU machine, one process per GPU (nccl)
    torchrun --standalone --nproc_per_node 2 examples/continue_in_pytorch.py \\
        runs/mine/latest.safetensors input.txt --steps 1000 --out runs/mine/pytorch.safetensors
    minigrad-rnn eval runs/mine/pytorch.safetensors input.txt

A checkpoint's tensors are named for the PyTorch module Embedding -> nn.LSTM / nn.GRU /
nn.RNN (batch_first=True) -> Linear, so they load as they are (`load_state_dict`, strict).
Training here is DistributedDataParallel: every process reads its own contiguous share of
the text as `--batch-size` streams, carrying the hidden state across windows of
`--seq-len` characters (truncated BPTT, as `minigrad-rnn train` does), and the gradients
are averaged over the processes at each step. Adam with a constant learning rate and
gradient-norm clipping; the optimizer starts afresh (PyTorch's Adam state is not
minigrad-rnn's).

The checkpoint written keeps the source checkpoint's metadata (format, model config,
vocabulary, train config) and records the steps taken here; it holds no optimizer or
data position, so `minigrad-rnn train --resume` does not continue it (train it on with
this script). Started without torchrun it runs as a single process.

What this file must not do: change anything in the source checkpoint or its run folder.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rnn.checkpoint.format import CheckpointError, load_checkpoint, save_checkpoint
from rnn.data.text import TextError

# minigrad-rnn's built-in cells that PyTorch has, with the same equations and weight layout.
TORCH_CELLS = {
    "lstm": lambda **sizes: nn.LSTM(**sizes),
    "gru": lambda **sizes: nn.GRU(**sizes),
    "rnn": lambda **sizes: nn.RNN(nonlinearity="tanh", **sizes),
    "rnn_relu": lambda **sizes: nn.RNN(nonlinearity="relu", **sizes),
}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class CharLM(nn.Module):
    """PyTorch's twin of rnn.model.charlm.CharLM: the same parameter names, the same forward."""

    def __init__(self, config):
        super().__init__()
        if config.cell not in TORCH_CELLS:
            raise ValueError(f"the cell {config.cell!r} has no PyTorch module; "
                             f"this script handles {', '.join(TORCH_CELLS)}")
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.rnn = TORCH_CELLS[config.cell](input_size=config.embed, hidden_size=config.hidden,
                                            num_layers=config.layers, batch_first=True,
                                            dropout=config.dropout if config.layers > 1 else 0.0)
        self.output_dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, ids, state=None):
        hidden, state = self.rnn(self.embedding(ids), state)
        return self.head(self.output_dropout(hidden)), state


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a minigrad-rnn checkpoint (.safetensors)")
    parser.add_argument("text", help="UTF-8 text to train on (its characters must be in the checkpoint's vocabulary)")
    parser.add_argument("--out", required=True, help="the checkpoint to write")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32, help="streams per process")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--grad-clip", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                        help="default: nccl on GPUs, gloo on CPUs")
    return parser.parse_args(argv)


def check_out(out, source) -> None:
    """SystemExit (one line) before any training if the checkpoint cannot or must not be written
    to `out`: the source itself, a file of the source's run folder, a folder, an unwritable place."""
    from rnn.runs.folder import RUN_FILES

    out, source = os.path.realpath(out), os.path.realpath(source)
    if out == source:
        sys.exit(f"error: --out {out} is the source checkpoint: this script never changes its source; "
                 f"choose another file")
    if os.path.dirname(out) == os.path.dirname(source) and os.path.basename(out) in RUN_FILES:
        sys.exit(f"error: --out {out} is a file of the source's run folder: choose another name")
    if os.path.isdir(out):
        sys.exit(f"error: --out {out} is a folder: give the checkpoint file to write")
    probe = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.{os.getpid()}.write-test")
    try:  # the folder must exist and take a new file, as the atomic write at the end needs
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as error:
        sys.exit(f"error: cannot write --out {out}: {error.strerror or error}")


def batches(ids, rank, world_size, batch_size, seq_len):
    """(inputs, targets) windows over this process's share of the text, B streams side by
    side, forever; `True` with the first window of each pass (the carried state is reset)."""
    share = len(ids) // world_size
    mine = ids[rank * share:(rank + 1) * share]
    stream_length = len(mine) // batch_size
    windows = (stream_length - 1) // seq_len
    if windows < 1:
        raise ValueError(f"the text is too short for {world_size} process(es) x {batch_size} streams of "
                         f"{seq_len + 1} characters")
    streams = torch.from_numpy(np.asarray(mine[:batch_size * stream_length], np.int64)).view(batch_size, -1)
    while True:
        for window in range(windows):
            block = streams[:, window * seq_len:window * seq_len + seq_len + 1]
            yield window == 0, block[:, :-1], block[:, 1:]


def main(argv=None):
    args = parse_args(argv)
    check_out(args.out, args.checkpoint)  # before the training, which a bad --out would lose
    distributed = "WORLD_SIZE" in os.environ  # started by torchrun
    use_cuda = torch.cuda.is_available() and args.backend != "gloo"
    if distributed:
        dist.init_process_group(args.backend or ("nccl" if use_cuda else "gloo"))
    rank = dist.get_rank() if distributed else 0
    world_size = dist.get_world_size() if distributed else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    try:
        source = load_checkpoint(args.checkpoint)
        with open(args.text, encoding="utf-8") as file:
            ids = source.vocab.encode(file.read())
    except (CheckpointError, TextError, OSError, UnicodeDecodeError) as error:
        sys.exit(f"error: {error}")

    torch.manual_seed(args.seed + rank)  # dropout masks differ between processes
    model = CharLM(source.config).to(device=device, dtype=TORCH_DTYPES[source.config.dtype])
    model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in source.model.state_dict().items()})
    trained = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None) if distributed else model
    trained.train()
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.lr)
    loss_function = nn.CrossEntropyLoss()
    state = None
    windows = batches(ids, rank, world_size, args.batch_size, args.seq_len)
    for step in range(1, args.steps + 1):
        restart, inputs, targets = next(windows)
        if restart:
            state = None
        logits, state = trained(inputs.to(device), state)
        loss = loss_function(logits.reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1))
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients over the processes here
        if args.grad_clip:
            nn.utils.clip_grad_norm_(trained.parameters(), args.grad_clip)
        optimizer.step()
        state = detach(state)
        if rank == 0 and (step % 10 == 0 or step == args.steps):
            print(f"step {step}/{args.steps}: train loss {loss.item():.4f} (process 0 of {world_size})", flush=True)

    if rank == 0:
        # Back into minigrad-rnn's model and checkpoint format: the source's metadata, updated.
        source.model.load_state_dict({name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()})
        meta = dict(source.meta)
        for stale in ("rng_state", "data_position", "last_val_loss", "best_val_loss"):
            meta.pop(stale, None)  # they describe the source run, not these weights
        meta["step"] = (meta.get("step") if isinstance(meta.get("step"), int) else 0) + args.steps
        meta["pytorch"] = {"source": str(args.checkpoint), "text": str(args.text), "steps": args.steps,
                           "world_size": world_size, "batch_size_per_process": args.batch_size,
                           "seq_len": args.seq_len, "lr": args.lr, "torch": torch.__version__}
        try:
            save_checkpoint(args.out, source.model, meta=meta, vocab=source.vocab)
        except CheckpointError as error:  # e.g. the disk filled up while training
            sys.exit(f"error: {error}")
        print(f"wrote {args.out} (step {meta['step']})", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
