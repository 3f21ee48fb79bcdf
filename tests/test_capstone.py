"""The capstone: its modules (d2l's) equal the course contract's definitions and PyTorch's, and the model trained
by `attention_course.capstone` (the code the capstone pages run) reverses held-out sequences with >= 99%
exact-match accuracy. The training time is printed, never asserted."""

import math
import re
from pathlib import Path

import pytest
import torch
from d2l import torch as d2l
from torch import nn

from attention_course import capstone


def test_d2l_positional_encoding_is_the_contract_formula():
    num_steps, num_hiddens = 50, 32
    i = torch.arange(num_steps, dtype=torch.float32)[:, None]
    two_j = torch.arange(0, num_hiddens, 2, dtype=torch.float32)
    P = torch.zeros(num_steps, num_hiddens)
    P[:, 0::2] = torch.sin(i / 10000 ** (two_j / num_hiddens))
    P[:, 1::2] = torch.cos(i / 10000 ** (two_j / num_hiddens))
    encoding = d2l.PositionalEncoding(num_hiddens, dropout=0.5).eval()
    X = torch.randn(3, num_steps, num_hiddens)
    torch.testing.assert_close(encoding(X), X + P, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("B,n_q,n_k,num_hiddens,num_heads", [(2, 5, 7, 16, 4), (3, 8, 8, 32, 2)])
def test_d2l_multihead_attention_equals_torch(B, n_q, n_k, num_hiddens, num_heads):
    """Same weights copied by attribute: d2l.MultiHeadAttention == nn.MultiheadAttention (the contract's claim)."""
    torch.manual_seed(B)
    ours = d2l.MultiHeadAttention(num_hiddens, num_heads, dropout=0.0).eval()
    q, k, v = torch.randn(B, n_q, num_hiddens), torch.randn(B, n_k, num_hiddens), torch.randn(B, n_k, num_hiddens)
    out = ours(q, k, v, None)
    theirs = nn.MultiheadAttention(num_hiddens, num_heads, bias=False, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
    expected, _ = theirs(q, k, v, need_weights=False)
    torch.testing.assert_close(out, expected)
    # and each head is softmax(QK^T/sqrt(d_h))V: the weights d2l keeps sum to 1 per query
    torch.testing.assert_close(ours.attention.attention_weights.sum(-1), torch.ones(B * num_heads, n_q))


def test_d2l_addnorm_and_ffn_are_what_the_page_says():
    torch.manual_seed(0)
    addnorm = d2l.AddNorm(16, dropout=0.3).eval()
    X, Y = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    torch.testing.assert_close(addnorm(X, Y), nn.functional.layer_norm(X + Y, (16,)))
    ffn = d2l.PositionWiseFFN(32, 16)
    out = ffn(X)
    torch.testing.assert_close(out, ffn.dense2(torch.relu(ffn.dense1(X))))
    torch.testing.assert_close(ffn(X[:, :1]), out[:, :1])  # position-wise: no mixing across positions


def test_held_out_sequences_are_unseen():
    config = capstone.Config()
    (X_train, Y_train), (X_test, Y_test) = capstone.reversal_data(config)
    assert len(X_test) == config.test_size and X_train.shape == (config.train_size, config.seq_len)
    assert not {tuple(r) for r in X_test.tolist()} & {tuple(r) for r in X_train.tolist()}
    assert torch.equal(Y_test, X_test.flip(-1))


@pytest.mark.slow
def test_the_model_learns_to_reverse(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))  # train here, never reuse a cached model
    result = capstone.train(capstone.Config(), progress=False)
    print(f"\ncapstone: trained in {result.seconds:.1f} s, exact match {result.accuracy:.4f}, losses {result.losses}")
    assert result.accuracy >= 0.99, f"exact-match accuracy {result.accuracy:.4f} < 0.99"
    # the learned attention shows the reversal: in some layer the mirrored key gets most of the weight
    X = capstone.reversal_data(result.config)[1][0][:200]
    with torch.no_grad():
        result.model.eval()(X)
    n = result.config.seq_len
    mirror = torch.arange(n - 1, -1, -1)
    on_mirror = [w.mean(dim=(0, 1))[torch.arange(n), mirror].mean().item() for w in result.model.attention_weights()]
    assert max(on_mirror) > 0.5, on_mirror


@pytest.mark.slow
def test_training_is_seeded():
    config = capstone.Config(train_size=512, test_size=64, epochs=1)
    a, b = capstone.train(config, progress=False), capstone.train(config, progress=False)
    assert a.losses == b.losses
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.slow
def test_save_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_CACHE", str(tmp_path))
    config = capstone.Config(train_size=256, test_size=32, epochs=1)
    with pytest.raises(FileNotFoundError, match="training.md trains it"):
        capstone.load(config)  # nothing trained yet: load never trains, it says which page does
    first = capstone.train(config, progress=False)
    assert capstone.save(first) == capstone.saved_path(config) and capstone.saved_path(config).is_file()
    again = capstone.load(config)
    assert math.isclose(first.accuracy, again.accuracy) and first.losses == again.losses
    X = capstone.reversal_data(config)[1][0]
    with torch.no_grad():
        torch.testing.assert_close(first.model.eval()(X), again.model.eval()(X))
    with pytest.raises(FileNotFoundError):
        capstone.load(capstone.Config(train_size=256, test_size=32, epochs=2))  # another config: another run


def test_the_capstone_is_trained_once_on_its_training_page():
    """Only book/capstone/training.md trains (and saves); the pages after it load that run, and the book
    executes pages in the order of the table of contents, so the training page runs first."""
    from sitebuild import toc_pages

    from attention_course.sphinx_fixes import toc_order

    root = Path(__file__).resolve().parents[1]
    pages = toc_pages(root)
    training = capstone.TRAINING_PAGE.removesuffix(".md")
    trains = [p for p in pages if re.search(r"capstone\.(train|trained)\(", (root / f"{p}.md").read_text())]
    assert trains == [training], trains
    assert "capstone.save(result)" in (root / capstone.TRAINING_PAGE).read_text()
    loads = [p for p in pages if "capstone.load(" in (root / f"{p}.md").read_text()]
    assert loads == ["book/capstone/attention-maps"], loads
    order = toc_order(root / "_toc.yml")
    assert order == pages  # read in toc order: attention-maps sorts before training by name, not here
    assert all(order.index(training) < order.index(p) for p in loads)
    assert sorted(order).index("book/capstone/attention-maps") < sorted(order).index(training)  # why it matters
