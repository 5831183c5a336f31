"""The character-level language model: embedding -> recurrent stack -> linear head.

Tensor names are the checkpoint's and PyTorch's: `embedding.weight` (vocab, embed),
`rnn.weight_ih_l0` ... (as nn.LSTM/GRU/RNN with batch_first=True), `head.weight`
(vocab, hidden), `head.bias`. A checkpoint therefore loads into the PyTorch module
Embedding -> nn.LSTM -> Linear with `load_state_dict(strict=True)`.
"""

import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np

import minigrad as mg
from minigrad import ops
from minigrad.nn import Dropout, Embedding, Linear, LockedDropout, Module, keep_mask

from rnn.cells.registry import get_cell
from rnn.model.options import DTYPE_NAMES, ENGINES
from rnn.model.layers import Recurrent

DTYPES = {name: getattr(np, name) for name in DTYPE_NAMES}  # name -> numpy type


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    dtype: str = "float32"
    engine: str = "fused"
    # Regularisers of AWD-LSTM (Merity et al. 2017), all off by default; see CharLM.
    weight_drop: float = 0.0  # DropConnect on each layer's W_hh, one mask per window
    locked_dropout: bool = False  # `dropout` with one mask per sequence for all its steps
    embed_dropout: float = 0.0  # drops whole rows of the embedding table, one mask per window

    def validate(self, check_cell=True):
        """Raise ValueError for an impossible value; CellError for a cell that is not registered
        (unless `check_cell` is False: describing a checkpoint needs no cell's code)."""
        if check_cell or not isinstance(self.cell, str):
            get_cell(self.cell)  # raises CellError naming the available cells
        for name in ("vocab_size", "embed", "hidden", "layers"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "weight_drop", "embed_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.locked_dropout, bool):
            raise ValueError(f"locked_dropout must be true or false, got {self.locked_dropout!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, check_cell=True) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**data).validate(check_cell)


class CharLM(Module):
    """forward(ids (B,T) ints, state) -> (logits (B,T,V), state).

    In training, the config's regularisers draw their masks from minigrad's generator at
    every call (one call: one window), in this order: the embedding rows (embed_dropout),
    then for each layer k its W_hh (weight_drop, see Recurrent) and the dropout of its output
    (into layer k+1, or the head). In eval mode none of them is drawn or applied.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        dtype = DTYPES[config.dtype]
        self.embedding = Embedding(config.vocab_size, config.embed, dtype=dtype)
        self.rnn = Recurrent(config.cell, config.embed, config.hidden, config.layers,
                             dropout=config.dropout, engine=config.engine, dtype=dtype,
                             weight_drop=config.weight_drop, locked_dropout=config.locked_dropout)
        self.output_dropout = (LockedDropout if config.locked_dropout else Dropout)(config.dropout)
        self.head = Linear(config.hidden, config.vocab_size, dtype=dtype)

    def forward(self, ids, state=None):
        ids = np.asarray(ids.data if isinstance(ids, mg.Tensor) else ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be (batch, steps), got shape {ids.shape}")
        ids = ops.check_indices(ids, self.config.vocab_size, "embedding", "id")
        table = self.embedding_table()
        if self.folds_embedding(ids.size):
            hidden, state = self.rnn.forward_projected(self.projected_embedding(table), state, ids=ids)
        else:
            hidden, state = self.rnn(mg.embedding(table, ids), state)
        return self.head(self.output_dropout(hidden)), state

    def folds_embedding(self, rows: int) -> bool:
        """True if a window of `rows` characters (batch x steps) reads layer 0's input
        projection from projected_embedding() rather than projecting its embedding rows.

        Both give the same values and gradients (no dropout sits between the embedding and
        layer 0: embed_dropout drops rows of the table itself); the fold projects the V rows of the vocabulary instead of the window's
        rows, so it saves work only if V <= rows. Training windows of an alphabet do (65 <=
        32 x 64); a vast vocabulary read a few rows at a time does not (evaluation of a
        100,000-character checkpoint, 20 rows a call, would project and hold all 100,000).
        """
        return self.config.vocab_size <= rows

    def set_dropout(self, p: float):
        """Change the dropout (between layers and before the head) of this model."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.config.dropout = p
        self.rnn.between_layers.p = p
        self.output_dropout.p = p

    def embedding_table(self):
        """The embedding table this window reads: in training with embed_dropout, the table
        with whole rows (characters) zeroed with that probability and the others scaled by
        1/(1-p), one mask over the vocabulary (AWD-LSTM's embedding dropout); else the table."""
        weight = self.embedding.weight
        if not self.training or not self.config.embed_dropout:
            return weight
        return weight * keep_mask((weight.shape[0], 1), self.config.embed_dropout, weight.dtype)

    def projected_embedding(self, table=None):
        """Layer 0's input projection of every character: W_ih0 e_c + b_ih0 for each row e_c
        of `table` (default: the embedding's weight).

        The first layer only ever sees embedding rows, so projecting the V rows of the table
        and then picking rows by id equals embedding then projecting B*T rows -- with a
        (V, E) @ (E, G*H) product instead of a (B*T, E) one (65 rows instead of 2048 for
        tiny-shakespeare at batch 32 x 64 steps), in backward too. The fused layer picks
        the rows inside its loop over the steps, and adds the gradients of the steps into
        their characters' rows (rnn.fused.recurrence.FusedRecurrence); this linear node's backward
        then makes d W_ih, d b_ih and d embedding from those V rows. Used when it is the
        smaller product (folds_embedding).
        """
        return self.rnn.input_projection(0, self.embedding.weight if table is None else table)

    def loss(self, ids, targets, state=None):
        """Mean cross-entropy (nats per character) of predicting `targets` (B,T) from `ids` (B,T)."""
        logits, state = self(ids, state)
        batch, steps, vocab = logits.shape
        return mg.cross_entropy(logits.reshape(batch * steps, vocab), np.asarray(targets).reshape(-1)), state

    def initial_state(self, batch_size):
        return self.rnn.initial_state(batch_size)


def detach_state(state):
    """The same state values cut from the graph (truncated BPTT carries values, not gradients)."""
    return [tuple(s.detach() for s in layer) for layer in state]
