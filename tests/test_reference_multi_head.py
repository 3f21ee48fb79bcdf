"""The reference answers of multi-head (loaded from solutions/, not copied) agree with d2l and PyTorch.

Weights are copied by attribute (after one forward pass, the layers being lazy), never by load_state_dict or seeds.
"""

import pytest
import torch
from d2l import torch as d2l
from helpers import ROOT
from torch import nn

from attention_course import notebooks as nbt

ref = nbt.load_module(ROOT / "solutions" / "multi-head" / "multi-head.ipynb")

SHAPES = [(2, 4, 6, 100, 5), (3, 5, 2, 12, 3), (4, 1, 7, 16, 4), (2, 6, 6, 8, 8), (2, 3, 9, 24, 1)]


def lens_for(B, n_q, n_k, kind):
    if kind == "none":
        return None
    lens = torch.randint(1, n_k + 1, (B,) if kind == "1d" else (B, n_q))
    lens[0], lens[-1] = n_k, 1
    return lens


def copy_weights_by_attribute(ours, theirs):
    with torch.no_grad():
        for layer in ("W_q", "W_k", "W_v", "W_o"):
            getattr(theirs, layer).weight.copy_(getattr(ours, layer).weight)
            if getattr(ours, layer).bias is not None:
                getattr(theirs, layer).bias.copy_(getattr(ours, layer).bias)


def torch_mha_from(ours, num_hiddens, num_heads, bias):
    """nn.MultiheadAttention holding our weights: W_q, W_k, W_v stacked into in_proj_weight, W_o = out_proj."""
    theirs = nn.MultiheadAttention(num_hiddens, num_heads, dropout=0.0, bias=bias, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
        if bias:
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.bias.copy_(ours.W_o.bias)
    return theirs.eval()


@pytest.mark.parametrize("B,n,_,num_hiddens,h", SHAPES)
def test_transposes_equal_d2l_and_invert_each_other(B, n, _, num_hiddens, h):
    X = torch.randn(B, n, num_hiddens)
    d2l_mha = d2l.MultiHeadAttention(num_hiddens, h, 0.0)
    torch.testing.assert_close(ref.transpose_qkv(X, h), d2l_mha.transpose_qkv(X), rtol=0, atol=0)
    heads = torch.randn(B * h, n, num_hiddens // h)
    torch.testing.assert_close(ref.transpose_output(heads, h), d2l_mha.transpose_output(heads), rtol=0, atol=0)
    torch.testing.assert_close(ref.transpose_output(ref.transpose_qkv(X, h), h), X, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["none", "1d", "2d"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("B,n_q,n_k,num_hiddens,h", SHAPES)
def test_module_equals_d2l_and_torch(B, n_q, n_k, num_hiddens, h, bias, kind):
    torch.manual_seed(B * 100 + n_q * 10 + n_k)
    ours = ref.MultiHeadAttention(num_hiddens, h, dropout=0.3, bias=bias).eval()
    q = torch.randn(B, n_q, num_hiddens)
    k, v = torch.randn(B, n_k, num_hiddens), torch.randn(B, n_k, num_hiddens)
    lens = lens_for(B, n_q, n_k, kind)
    got = ours(q, k, v, lens)
    assert got.shape == (B, n_q, num_hiddens)

    theirs = d2l.MultiHeadAttention(num_hiddens, h, dropout=0.3, bias=bias).eval()
    theirs(q, k, v, lens)  # materialise the lazy layers, then copy ours in
    copy_weights_by_attribute(ours, theirs)
    torch.testing.assert_close(got, theirs(q, k, v, lens))
    torch.testing.assert_close(ours.attention_weights, theirs.attention.attention_weights)

    pytorch = torch_mha_from(ours, num_hiddens, h, bias)
    positions = torch.arange(n_k)
    if kind == "none":
        want = pytorch(q, k, v)[0]
    elif kind == "1d":  # key_padding_mask: True = ignore this key
        want = pytorch(q, k, v, key_padding_mask=positions >= lens[:, None])[0]
    else:  # one length per query: a 3-D attn_mask (B*h, n_q, n_k), True = not allowed, batch-major like ours
        mask = (positions >= lens[:, :, None]).repeat_interleave(h, dim=0)
        want = pytorch(q, k, v, attn_mask=mask)[0]
    torch.testing.assert_close(got, want)


def test_dropout_acts_in_training_only():
    ours = ref.MultiHeadAttention(16, 4, dropout=0.5)
    q = torch.randn(2, 3, 16)
    ours.eval()
    torch.testing.assert_close(ours(q, q, q), ours(q, q, q))
    ours.train()
    torch.manual_seed(0)
    a = ours(q, q, q)
    torch.manual_seed(1)
    assert not torch.allclose(a, ours(q, q, q)), "dropout should change the output in training mode"
    zero = ref.MultiHeadAttention(16, 4, dropout=0.0).train()
    torch.testing.assert_close(zero(q, q, q), zero.eval()(q, q, q))


def test_d2l_shape_check():
    attention = ref.MultiHeadAttention(100, 5, 0.5).eval()
    X, Y = torch.ones(2, 4, 100), torch.ones(2, 6, 100)
    assert attention(X, Y, Y, torch.tensor([3, 2])).shape == (2, 4, 100)
    assert attention.attention_weights.shape == (10, 4, 6)


def test_provided_attention_equals_d2l_dot_product_attention():
    """The locked helper of the assignment is d2l's DotProductAttention (up to -inf vs -1e6 masking)."""
    theirs = d2l.DotProductAttention(0.0).eval()
    for lens in (None, torch.tensor([2, 5, 1]), torch.randint(1, 6, (3, 4))):
        q, k, v = torch.randn(3, 4, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 6)
        out, weights = ref.dot_product_attention(q, k, v, lens)
        torch.testing.assert_close(out, theirs(q, k, v, lens))
        torch.testing.assert_close(weights, theirs.attention_weights)


def test_simulated_correct_answers_equal_the_reference():
    """The simulated submissions' correct answers (and the base of their wrong ones) compute the reference's
    function, so the autograde test judges the mistakes, not the bases. Weights copied by attribute."""
    from submissions import multi_head as sub

    def namespace(*sources):
        ns = {
            "torch": torch,
            "nn": nn,
            "math": __import__("math"),
            "transpose_qkv": ref.transpose_qkv,
            "transpose_output": ref.transpose_output,
        }
        for source in sources:
            exec(source, ns)
        return ns

    correct = namespace(sub.CORRECT["transpose_qkv"], sub.CORRECT["transpose_output"])
    X = torch.randn(3, 4, 12)
    torch.testing.assert_close(correct["transpose_qkv"](X, 3), ref.transpose_qkv(X, 3), rtol=0, atol=0)
    Y = torch.randn(6, 4, 5)
    torch.testing.assert_close(correct["transpose_output"](Y, 2), ref.transpose_output(Y, 2), rtol=0, atol=0)
    for source in (sub.CORRECT["MultiHeadAttention"], sub._STUDENT_MHA):
        cls = namespace(source)["MultiHeadAttention"]
        for bias, lens in [(False, torch.tensor([5, 1, 3])), (True, torch.randint(1, 6, (3, 4))), (True, None)]:
            theirs = cls(12, 3, 0.5, bias=bias).eval()
            ours = ref.MultiHeadAttention(12, 3, 0.5, bias=bias).eval()
            q, kv = torch.randn(3, 4, 12), torch.randn(3, 5, 12)
            ours(q, kv, kv, lens)
            copy_weights_by_attribute(ours, theirs)
            torch.testing.assert_close(theirs(q, kv, kv, lens), ours(q, kv, kv, lens))
