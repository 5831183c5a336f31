"""The PyTorch twin of `minigrad-rnn train`, for end-to-end timing (bench_cli.py runs it).

    python benchmarks/torch_charlm.py TEXT --steps 100 --layers 2 --hidden 256 --batch-size 32
    python benchmarks/torch_charlm.py TEXT --time-budget 300 --optimizer adam --lr 2e-3 --schedule constant

The same model and training step as minigrad-rnn's defaults: Embedding(V, embed) ->
nn.LSTM / nn.GRU (batch_first) -> Linear(hidden, V); cross-entropy; AdamW (peak lr
5 / max(hidden, 256) when --lr is not given, minigrad-rnn's rnn.training.recipe.lr_for;
betas 0.9/0.99, weight decay 0.1), linear warmup over 100 steps then cosine; gradient
norm clipped to 5; B contiguous streams of the first 90% of the text, windows of
seq-len characters, hidden state carried and detached between windows. At the end the
held-out 10% is scored once as one stream, like the CLI's final evaluation. Prints one
JSON line: steps, seconds (the training loop only), val_loss_nats. With --time-budget it
trains until that many seconds of training have passed (the cosine schedule then follows
the clock, as minigrad-rnn's does): the quality anchor of the README's held-out protocol.
Not a product file: torch is the benchmark's reference, never a dependency.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # minigrad-rnn from a checkout, installed or not
from rnn.training.recipe import lr_for  # noqa: E402  (light: the settings alone, no numpy, no minigrad)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text")
    limit = parser.add_mutually_exclusive_group(required=True)
    limit.add_argument("--steps", type=int)
    limit.add_argument("--time-budget", type=float, metavar="SECONDS")
    parser.add_argument("--optimizer", choices=("adamw", "adam"), default="adamw",
                        help="adamw: betas 0.9/0.99, weight decay 0.1 (minigrad-rnn's); adam: PyTorch's defaults")
    parser.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 5 / max(hidden, 256))")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--save", metavar="PATH", help="write the trained model as a minigrad-rnn checkpoint, so that "
                        "`minigrad-rnn eval PATH TEXT` (with --windows too) scores it the way it scores its own")
    return parser.parse_args()


class CharLM(torch.nn.Module):
    def __init__(self, vocab, cell, layers, hidden, embed):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embed)
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](embed, hidden, layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        output, state = self.rnn(self.embedding(ids), state)
        return self.head(output), state


def detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1234)
    with open(args.text, encoding="utf-8") as file:
        text = file.read()
    chars = sorted(set(text))
    lookup = {c: k for k, c in enumerate(chars)}
    ids = torch.tensor([lookup[c] for c in text], dtype=torch.int64)
    split = len(ids) - int(len(ids) * 0.1)
    train_ids, val_ids = ids[:split], ids[split:]
    stream_length = len(train_ids) // args.batch_size
    streams = train_ids[:args.batch_size * stream_length].view(args.batch_size, stream_length)
    windows = (stream_length - 1) // args.seq_len

    model = CharLM(len(chars), args.cell, args.layers, args.hidden, args.embed)
    if args.lr is None:  # minigrad-rnn's own choice for the width
        args.lr = lr_for(args.optimizer, args.hidden)
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.1)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    def progress(step, seconds):  # the fraction of the run done, by its limit
        if args.steps is not None:
            return (step - args.warmup) / max(1, args.steps - args.warmup)
        return seconds / args.time_budget

    def learning_rate(step, seconds):  # warmup, then cosine to 0 over the run (or constant)
        if step < args.warmup:
            return (step + 1) / args.warmup
        if args.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress(step, seconds))))

    state = None
    started = time.perf_counter()
    step = 0
    while (step < args.steps) if args.steps is not None else (time.perf_counter() - started < args.time_budget):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * learning_rate(step, time.perf_counter() - started)
        window = step % windows
        if window == 0:
            state = None  # the streams wrapped: the carried state belongs to their end
        block = streams[:, window * args.seq_len: window * args.seq_len + args.seq_len + 1]
        logits, state = model(block[:, :-1], state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(chars)), block[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        state = detached(state)
        step += 1
    seconds = time.perf_counter() - started

    model.eval()
    with torch.no_grad():  # the held-out text as one stream, state carried, in chunks
        total, state = 0.0, None
        for start in range(0, len(val_ids) - 1, 4096):
            chunk = val_ids[start:min(start + 4097, len(val_ids))]
            logits, state = model(chunk[:-1].unsqueeze(0), state)
            total += torch.nn.functional.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
    if args.save:
        save_as_minigrad_checkpoint(args.save, model, chars, args, step)
    print(json.dumps({"steps": step, "seconds": seconds, "val_loss_nats": total / (len(val_ids) - 1)}))


def save_as_minigrad_checkpoint(path, model, chars, args, steps):
    """The model's tensors in a minigrad-rnn checkpoint: their names are already minigrad-rnn's
    (Embedding -> nn.LSTM/nn.GRU -> Linear), so they load into its CharLM unchanged."""
    from rnn.checkpoint.format import save_checkpoint
    from rnn.model.charlm import CharLM as MinigradCharLM, ModelConfig

    config = ModelConfig(vocab_size=len(chars), cell=args.cell, embed=args.embed, hidden=args.hidden,
                         layers=args.layers)
    twin = MinigradCharLM(config)
    twin.load_state_dict({name: tensor.detach().numpy() for name, tensor in model.state_dict().items()})
    save_checkpoint(path, twin, meta={"step": steps, "pytorch": {"script": "benchmarks/torch_charlm.py",
                                                                 "torch": torch.__version__}}, vocab=chars)


if __name__ == "__main__":
    sys.exit(main())
