"""The capstone: a small Transformer-style encoder, built from d2l's equivalents of the course's modules, learns
to reverse a sequence of digits on the CPU.

Used by the capstone pages (`book/capstone/`) and by `tests/test_capstone.py`, which trains the same model and
asserts its exact-match accuracy on held-out sequences. The modules are d2l's (`d2l.PositionalEncoding`,
`d2l.MultiHeadAttention`, `d2l.PositionWiseFFN`, `d2l.AddNorm`), which the tests prove equal to the contract's
definitions and to PyTorch's `nn.MultiheadAttention`; the instructor's reference answers are never imported.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm


def _d2l():
    from d2l import torch as d2l  # imported on first use: it costs seconds

    return d2l


@dataclass(frozen=True)
class Config:
    """Everything that determines a training run (same config + same seed = same model, on the CPU)."""

    seq_len: int = 8  # digits per sequence
    vocab_size: int = 10  # digits 0..9
    num_hiddens: int = 32
    num_heads: int = 4
    num_layers: int = 2
    ffn_hiddens: int = 64
    dropout: float = 0.0
    train_size: int = 20000  # distinct training sequences
    test_size: int = 2000  # held-out sequences, none of them in the training set
    batch_size: int = 128
    epochs: int = 4
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1  # torch.set_num_threads while training: one thread is fastest for a model this small

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def reversal_data(config: Config) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((X_train, Y_train), (X_test, Y_test)): random digit sequences `X` (n, seq_len) and their reversals `Y`.

    The test sequences are drawn after the training ones and every sequence that also occurs in the training set
    is dropped, so the accuracy is measured on sequences the model has never seen.
    """
    g = torch.Generator().manual_seed(config.seed)
    X = torch.randint(0, config.vocab_size, (config.train_size + 2 * config.test_size, config.seq_len), generator=g)
    X_train = X[: config.train_size]
    seen = {tuple(row) for row in X_train.tolist()}
    held_out = [i for i, row in enumerate(X[config.train_size :].tolist()) if tuple(row) not in seen]
    X_test = X[config.train_size :][held_out[: config.test_size]]
    return (X_train, X_train.flip(-1)), (X_test, X_test.flip(-1))


class EncoderBlock(nn.Module):
    """Multi-head self-attention and a position-wise feed-forward layer, each
    followed by residual + layer norm (the post-norm block of
    {cite}`vaswani2017attention`), from d2l's modules."""

    def __init__(self, num_hiddens, num_heads, ffn_hiddens, dropout):
        super().__init__()
        d2l = _d2l()
        self.attention = d2l.MultiHeadAttention(
            num_hiddens,
            num_heads,
            dropout,
        )
        self.addnorm1 = d2l.AddNorm(num_hiddens, dropout)
        self.ffn = d2l.PositionWiseFFN(ffn_hiddens, num_hiddens)
        self.addnorm2 = d2l.AddNorm(num_hiddens, dropout)

    def forward(self, X):  # X: (batch, steps, num_hiddens)
        # self-attention: queries = keys = values = X
        Y = self.addnorm1(X, self.attention(X, X, X, None))
        return self.addnorm2(Y, self.ffn(Y))


class PreNormBlock(nn.Module):
    """The pre-norm variant of `EncoderBlock` (GPT-2, Llama and most models
    since): layer norm *inside* each residual branch, before the sublayer, so
    the residual path from input to output is a plain sum. A stack of them
    ends with one more `nn.LayerNorm`. Same d2l modules as `EncoderBlock`."""

    def __init__(self, num_hiddens, num_heads, ffn_hiddens, dropout):
        super().__init__()
        d2l = _d2l()
        self.norm1 = nn.LayerNorm(num_hiddens)
        self.attention = d2l.MultiHeadAttention(
            num_hiddens,
            num_heads,
            dropout,
        )
        self.norm2 = nn.LayerNorm(num_hiddens)
        self.ffn = d2l.PositionWiseFFN(ffn_hiddens, num_hiddens)
        self.dropout = nn.Dropout(dropout)

    def forward(self, X):  # X: (batch, steps, num_hiddens)
        H = self.norm1(X)
        X = X + self.dropout(self.attention(H, H, H, None))
        return X + self.dropout(self.ffn(self.norm2(X)))


class ReversalModel(nn.Module):
    """Embedding + positional encoding, `num_layers` encoder blocks, a linear read-out per position."""

    def __init__(self, config: Config):
        super().__init__()
        d2l = _d2l()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.num_hiddens)
        self.pos_encoding = d2l.PositionalEncoding(config.num_hiddens, config.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(config.num_hiddens, config.num_heads, config.ffn_hiddens, config.dropout)
            for _ in range(config.num_layers)
        )
        self.head = nn.Linear(config.num_hiddens, config.vocab_size)
        with torch.no_grad():  # d2l's layers are lazy: one forward pass gives them their shapes
            self(torch.zeros(1, config.seq_len, dtype=torch.long))

    def forward(self, X):  # X: (batch, steps) digits
        # d2l scales the embedding by sqrt(num_hiddens) before adding
        # positions; we do not, so that positions (which this task is all
        # about) are as loud as the digits: training escapes its plateau
        H = self.pos_encoding(self.embedding(X))  # (batch, steps, hiddens)
        for block in self.blocks:
            H = block(H)  # (batch, steps, num_hiddens)
        return self.head(H)  # (batch, steps, vocab_size) logits

    def attention_weights(self) -> list[torch.Tensor]:
        """Per layer, the last forward pass's weights as (batch, heads, queries, keys)."""
        heads = self.config.num_heads
        out = []
        for block in self.blocks:
            w = block.attention.attention.attention_weights  # (batch * heads, n_q, n_k), head-major
            out.append(w.reshape(-1, heads, *w.shape[-2:]).detach())
        return out


@torch.no_grad()
def exact_match(model: ReversalModel, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The fraction of sequences whose every position is predicted right."""
    model.eval()
    return (model(X).argmax(-1) == Y).all(dim=-1).float().mean().item()


@dataclass
class Result:
    model: ReversalModel
    config: Config
    accuracy: float  # exact-match on the held-out sequences
    seconds: float  # training time (printed, never asserted)
    losses: list[float]  # mean training loss per epoch
    step_losses: list[float]  # training loss of every step


def train(config: Config = Config(), progress: bool = True) -> Result:
    """Train a `ReversalModel` on `reversal_data(config)` with Adam and cross-entropy; seeded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        (X_train, Y_train), (X_test, Y_test) = reversal_data(config)
        torch.manual_seed(config.seed)
        model = ReversalModel(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps_per_epoch = math.ceil(len(X_train) / config.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, pct_start=0.2, total_steps=config.epochs * steps_per_epoch
        )
        loss_fn = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(config.seed + 1)
        losses, step_losses = [], []
        start = time.perf_counter()
        for _ in tqdm(range(config.epochs), desc="epochs", disable=not progress, mininterval=1.0):
            model.train()
            order = torch.randperm(len(X_train), generator=g)
            total = 0.0
            for i in range(0, len(X_train), config.batch_size):
                idx = order[i : i + config.batch_size]
                logits = model(X_train[idx])  # (batch, steps, vocab)
                loss = loss_fn(logits.reshape(-1, config.vocab_size), Y_train[idx].reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
                step_losses.append(loss.item())
            losses.append(total / len(X_train))
        seconds = time.perf_counter() - start
        return Result(model, config, exact_match(model, X_test, Y_test), seconds, losses, step_losses)
    finally:
        torch.set_num_threads(threads)


TRAINING_PAGE = "book/capstone/training.md"


def cache_dir() -> Path:
    """Where the training page leaves the trained model for the pages after it (`CAPSTONE_CACHE` overrides)."""
    return Path(os.environ.get("CAPSTONE_CACHE", Path(__file__).resolve().parents[1] / "_build" / "capstone"))


def saved_path(config: Config) -> Path:
    return cache_dir() / f"reversal-{config.key()}.pt"


def save(result: Result) -> Path:
    """Write the trained weights and the run's figures to `saved_path(result.config)`; returns the path.

    The training page calls this after `train`: the capstone is trained once, there, and the pages after it
    `load` that run (the book executes pages in the order of the table of contents: `sphinx_fixes`).
    """
    path = saved_path(result.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "state_dict": copy.deepcopy(result.model.state_dict()),
            "accuracy": result.accuracy,
            "seconds": result.seconds,
            "losses": result.losses,
            "step_losses": result.step_losses,
        },
        tmp,
    )
    tmp.replace(path)
    return path


def load(config: Config = Config()) -> Result:
    """The model that the training page trained and `save`d with this config; never trains.

    Raises FileNotFoundError, saying what to do, when the training page has not run in this build tree.
    """
    path = saved_path(config)
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained capstone model at {path}: {TRAINING_PAGE} trains it and saves it there when it executes. "
            "Build the book (it executes that page first), or, if the build cached that page's outputs but the "
            "file is gone, remove _build/.jupyter_cache and build again."
        )
    saved = torch.load(path, weights_only=False)
    model = ReversalModel(config)
    model.load_state_dict(saved["state_dict"])
    return Result(model.eval(), config, saved["accuracy"], saved["seconds"], saved["losses"], saved["step_losses"])
