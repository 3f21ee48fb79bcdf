"""The reference `online_softmax_attention` (loaded from solutions/, not copied) agrees with PyTorch's SDPA, and
the assignment's hidden tests, run in-process, pass every correct variant and fail every simulated mistake
exactly where expected (the same submissions tests/test_autograde_class.py grades with nbgrader)."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT
from submissions import efficient_attention as subs

from attention_course import notebooks as nbt
from attention_course.checks import LargestIntermediate

NOTEBOOK = ROOT / "solutions" / "efficient-attention" / "efficient-attention.ipynb"
ref = nbt.load_module(NOTEBOOK)


@pytest.mark.parametrize(
    "B,n_q,n_k,d,d_v", [(2, 5, 13, 8, 3), (3, 17, 4, 16, 6), (1, 1, 1, 2, 2), (2, 64, 200, 32, 32)]
)
@pytest.mark.parametrize("block_size", [1, 3, 4, 64, 500])
def test_equals_sdpa(B, n_q, n_k, d, d_v, block_size):
    torch.manual_seed(n_q * 31 + block_size)
    q, k, v = torch.randn(B, n_q, d), torch.randn(B, n_k, d), torch.randn(B, n_k, d_v)
    torch.testing.assert_close(
        ref.online_softmax_attention(q, k, v, block_size=block_size), F.scaled_dot_product_attention(q, k, v)
    )


@pytest.mark.parametrize("n,block_size", [(1, 1), (9, 2), (16, 16), (50, 7), (33, 64)])
def test_causal_equals_sdpa_is_causal(n, block_size):
    torch.manual_seed(n)
    q, k, v = torch.randn(2, n, 8), torch.randn(2, n, 8), torch.randn(2, n, 5)
    torch.testing.assert_close(
        ref.online_softmax_attention(q, k, v, block_size=block_size, causal=True),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


def test_causal_top_left_alignment_when_n_q_differs_from_n_k():
    """Ungraded, documented: query i sees keys j <= i (top-left), as SDPA's is_causal, for any n_q, n_k."""
    torch.manual_seed(0)
    for n_q, n_k in [(4, 9), (9, 4)]:
        q, k, v = torch.randn(2, n_q, 8), torch.randn(2, n_k, 8), torch.randn(2, n_k, 3)
        mask = torch.ones(n_q, n_k, dtype=torch.bool).tril()
        torch.testing.assert_close(
            ref.online_softmax_attention(q, k, v, block_size=3, causal=True),
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        )


def test_gradients_flow_like_sdpa():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 12, 8, requires_grad=True) for _ in range(3))
    ref.online_softmax_attention(q, k, v, block_size=5).square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v).square().sum().backward()
    for mine, theirs in zip(grads, (q.grad, k.grad, v.grad)):
        torch.testing.assert_close(mine, theirs)


def test_holds_one_block_of_scores():
    q, k, v = torch.randn(2, 512, 4), torch.randn(2, 2048, 4), torch.randn(2, 2048, 4)
    with LargestIntermediate() as largest:
        ref.online_softmax_attention(q, k, v, block_size=16)
    assert largest.numel <= max(2 * 512 * 16, k.numel()), (largest.op, largest.numel)


def _grade_in_process(answer_source):
    """Run the notebook's test cells (hidden parts included) against an answer; returns the failing cells."""
    nb = nbt.read(NOTEBOOK)
    namespace = {}
    for cell in nb.cells:
        if nbt.is_setup(cell):
            exec(cell.source, namespace)
    exec(answer_source, namespace)
    failed = set()
    for grade_id, cell in nbt.test_cells(nb).items():
        try:
            exec(cell.source, dict(namespace))
        except Exception:
            failed.add(grade_id)
    return failed


CORRECT = {
    "reference": nbt.reference_answers(nbt.read(NOTEBOOK))["online_softmax_attention"],
    "CORRECT": subs.CORRECT["online_softmax_attention"],
    **subs.MORE_CORRECT,
}


@pytest.mark.parametrize("name", CORRECT)
def test_hidden_tests_pass_correct_variants(name):
    torch.set_num_threads(1)  # small tensors in a loop: threads only add contention
    assert _grade_in_process(CORRECT[name]) == set()


@pytest.mark.parametrize("name", subs.WRONG)
def test_hidden_tests_catch_mistake(name):
    torch.set_num_threads(1)
    _, source, losing = subs.WRONG[name]
    assert _grade_in_process(source) == set(losing)


def test_the_scaling_is_one_over_sqrt_d():
    q, k, v = torch.ones(1, 1, 4), torch.tensor([[[1.0] * 4, [0.0] * 4]]), torch.tensor([[[1.0], [0.0]]])
    w = 1 / (1 + math.exp(-4 / 2))
    torch.testing.assert_close(ref.online_softmax_attention(q, k, v, block_size=1), torch.tensor([[[w]]]))
