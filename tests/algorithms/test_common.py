from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.algorithms.common import (
    entropy_from_logits,
    log1mexp,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    sequence_logps,
)

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)


def test_masked_sum_and_mean_hand_values() -> None:
    # valid entries: 1, 2 (row 0) and 4 (row 1)
    assert masked_sum(X, MASK).item() == pytest.approx(7.0)  # 1 + 2 + 4
    assert masked_mean(X, MASK).item() == pytest.approx(7.0 / 3.0)
    assert masked_sum(X, MASK, dim=1).tolist() == pytest.approx([3.0, 4.0])
    assert masked_mean(X, MASK, dim=1).tolist() == pytest.approx([1.5, 4.0])  # 3/2, 4/1


def test_float_mask_equals_bool_mask() -> None:
    assert torch.allclose(masked_mean(X, MASK.float(), dim=1), masked_mean(X, MASK, dim=1))


def test_masked_positions_may_hold_inf_and_nan() -> None:
    junk = X.clone()
    junk[0, 2] = float("inf")
    junk[1, 1] = float("nan")
    junk[1, 2] = float("-inf")
    assert masked_sum(junk, MASK).item() == pytest.approx(7.0)
    assert masked_mean(junk, MASK, dim=1).tolist() == pytest.approx([1.5, 4.0])


def test_empty_row_mean_is_zero_not_nan() -> None:
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    assert masked_mean(X, mask, dim=1).tolist() == pytest.approx([2.0, 0.0])


def test_mask_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        masked_mean(X, MASK[:, :2])


def test_masked_var_hand_values() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])
    mask = torch.tensor([1, 1, 1, 1, 0])
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; biased 5/4, unbiased 5/3
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)
    assert masked_var(x, mask).item() == pytest.approx(5.0 / 3.0)


def test_masked_var_matches_torch_var_on_valid_entries() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, generator=g)
    mask = torch.rand(4, 7, generator=g) > 0.4
    assert masked_var(x, mask).item() == pytest.approx(x[mask].var().item(), rel=1e-5)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(x[mask].var(unbiased=False).item(), rel=1e-5)


def test_masked_var_needs_two_values() -> None:
    with pytest.raises(ValueError):
        masked_var(torch.tensor([1.0, 2.0]), torch.tensor([1, 0]))


def test_masked_whiten_hand_values() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased var (1 + 0 + 1) / 2 = 1 -> (x - 2) / sqrt(1 + 1e-8); padding -> 0
    out = masked_whiten(x, mask)
    assert out.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    # shift_mean=False adds the mean back: [1, 2, 3]
    assert masked_whiten(x, mask, shift_mean=False).tolist()[0] == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)


def test_masked_whiten_matches_naive_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, generator=g) * 5 + 2
    mask = torch.rand(3, 8, generator=g) > 0.3
    out = masked_whiten(x, mask)
    valid = x[mask]
    naive = (valid - valid.mean()) / torch.sqrt(valid.var() + 1e-8)
    assert torch.allclose(out[mask], naive, atol=1e-5)
    assert out[mask].mean().abs().item() < 1e-5
    assert out[mask].std().item() == pytest.approx(1.0, abs=1e-5)
    changed = torch.where(mask, x, torch.full_like(x, 1e6))
    assert torch.equal(masked_whiten(changed, mask), out)


def test_log1mexp_matches_float64_reference_and_has_finite_grad() -> None:
    x = torch.tensor([-1e-6, -1e-3, -0.3, -0.69, -0.7, -2.0, -20.0, -80.0], dtype=torch.float64)
    expected = torch.log(1 - torch.exp(x))
    assert torch.allclose(log1mexp(x), expected, rtol=1e-9, atol=1e-12)
    x32 = x.float().requires_grad_(True)
    log1mexp(x32).sum().backward()
    assert torch.isfinite(x32.grad).all()


def _reference_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def test_logprobs_hand_value() -> None:
    # two equal logits -> each token has probability 1/2, log-prob -ln 2 = -0.693147
    logits = torch.zeros(1, 1, 2)
    assert logprobs_from_logits(logits, torch.tensor([[1]])).item() == pytest.approx(-math.log(2))


def test_logprobs_match_log_softmax_gather_fp32_with_grad() -> None:
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(3, 5, 11, generator=g) * 4).requires_grad_(True)
    labels = torch.randint(0, 11, (3, 5), generator=g)
    ours = logprobs_from_logits(logits, labels)
    ref = _reference_logps(logits, labels)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=1e-5)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    (grad_ref,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(grad_ours, grad_ref, atol=1e-6)


def test_logprobs_bf16_match_reference() -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 6, 50, generator=g) * 3).to(torch.bfloat16)
    labels = torch.randint(0, 50, (2, 6), generator=g)
    ours = logprobs_from_logits(logits, labels)
    # Exact against the float32 computation on the same bf16 values (we upcast row by row) ...
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, _reference_logps(logits.float(), labels), atol=1e-5)
    # ... and within bf16 rounding (8 mantissa bits) of the all-bf16 log_softmax.
    ref_bf16 = _reference_logps(logits, labels).float()
    assert torch.allclose(ours, ref_bf16, rtol=1e-2, atol=2e-2)


def test_logprobs_ignore_index_gives_zero() -> None:
    logits = torch.randn(1, 3, 4)
    labels = torch.tensor([[2, -100, 1]])
    out = logprobs_from_logits(logits, labels)
    assert out[0, 1].item() == 0.0
    assert out[0, 2].item() == pytest.approx(_reference_logps(logits, torch.tensor([[2, 0, 1]]))[0, 2].item())


def test_logprobs_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        logprobs_from_logits(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


def test_entropy_hand_values_and_naive_reference() -> None:
    # uniform over 4 tokens: H = ln 4 = 1.386294; a near one-hot row: H ~ 0
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    assert entropy_from_logits(logits).tolist()[0] == pytest.approx([math.log(4), 0.0], abs=1e-6)
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 9, generator=g) * 2
    logp = torch.log_softmax(logits, -1)
    naive = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(entropy_from_logits(logits), naive, atol=1e-5)
    assert torch.allclose(entropy_from_logits(logits.to(torch.bfloat16)), naive, atol=5e-2)


def test_sequence_logps_sum_and_average() -> None:
    token_logps = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert sequence_logps(token_logps, mask).tolist() == pytest.approx([-3.0, -0.5])  # -1-2, -0.5
    assert sequence_logps(token_logps, mask, average=True).tolist() == pytest.approx([-1.5, -0.5])
