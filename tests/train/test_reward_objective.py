"""The reward objective: each kind's loss wired to the right function and arguments, ensembles,
bootstrap weights, centering, batching of rankings, and the feature cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlhfkit.algorithms.reward_losses import ordinal_thresholds, plackett_luce
from rlhfkit.train.reward.data import (
    RewardData,
    RewardExample,
    bootstrap_weights,
    collate,
)
from rlhfkit.train.reward.objective import (
    FeatureCache,
    LossParams,
    ObjectiveSpec,
    centering_penalty,
    objective,
    ordinal_classes,
    per_example_losses,
)

BT_1 = math.log1p(math.exp(-1.0))  # -log sigmoid(1) = 0.313262
BT_2 = math.log1p(math.exp(-2.0))  # -log sigmoid(2) = 0.126928
LN2, LN3 = math.log(2.0), math.log(3.0)


def make_data(examples: list[RewardExample], n_seqs: int) -> RewardData:
    # Sequence s has s + 1 tokens, so collate's longest-first order differs from the index order.
    return RewardData([[7] * (s + 1) for s in range(n_seqs)], [s + 1 for s in range(n_seqs)], examples)


def batch_rewards(data: RewardData, table: torch.Tensor):
    """Collate every example and look up the batch rows' rewards in `table` (N, K)."""
    batch = collate(data, list(range(len(data.examples))), pad_id=0)
    return batch, table[batch.seq_ids]


def pair(a: int, b: int, margin: float = 0.0, tie: bool = False) -> RewardExample:
    return RewardExample("pairs", 0, (a, b), margin=margin, tie=tie)


def test_bradley_terry_with_margins_per_head() -> None:
    data = make_data([pair(0, 1), pair(0, 1, margin=1.0)], 2)
    table = torch.tensor([[1.0, 2.0], [0.0, 0.0]])  # K = 2 heads
    batch, r = batch_rewards(data, table)
    losses = per_example_losses(r, batch, LossParams(2), ObjectiveSpec("bradley_terry"))
    # d = (1, 2) per head; row 1 subtracts margin 1 -> d = (0, 1)
    assert losses.flatten().tolist() == pytest.approx([BT_1, BT_2, LN2, BT_1], abs=1e-6)
    no_margin = per_example_losses(r, batch, LossParams(2), ObjectiveSpec("bradley_terry", use_margins=False))
    assert no_margin.flatten().tolist() == pytest.approx([BT_1, BT_2, BT_1, BT_2], abs=1e-6)


def test_ties_half_and_davidson() -> None:
    data = make_data([pair(0, 1), pair(0, 1, tie=True)], 2)
    table = torch.tensor([[1.0], [0.0]])
    batch, r = batch_rewards(data, table)
    half = per_example_losses(r, batch, LossParams(1), ObjectiveSpec("ties_half"))
    # win d=1: 0.313262; tie d=1: (0.313262 + 1.313262) / 2 = 0.813262
    assert half.flatten().tolist() == pytest.approx([BT_1, (BT_1 + BT_1 + 1.0) / 2], abs=1e-6)

    even = torch.zeros(2, 1)
    dav = per_example_losses(even[batch.seq_ids], batch, LossParams(1, davidson=True), ObjectiveSpec("davidson"))
    # r_a = r_b = 0, nu = 1: D = 1 + 1 + 1 = 3, P(a wins) = P(tie) = 1/3 -> both ln 3 = 1.098612
    assert dav.flatten().tolist() == pytest.approx([LN3, LN3], abs=1e-6)


def test_rankings_all_pairs_and_plackett_luce_with_ragged_lengths() -> None:
    exs = [RewardExample("rankings", 0, (0, 1, 2)), RewardExample("rankings", 1, (3, 4))]
    data = make_data(exs, 5)
    table = torch.tensor([[2.0], [1.0], [0.0], [5.0], [3.0]])
    batch, r = batch_rewards(data, table)
    assert batch.groups["rankings"]["mask"].tolist() == [[True, True, True], [True, True, False]]
    all_pairs = per_example_losses(r, batch, LossParams(1), ObjectiveSpec(ranking="all_pairs"))
    # row 0 pairs: d = 1, 2, 1 -> (0.313262 + 0.126928 + 0.313262) / 3 = 0.251151; row 1: d = 2 -> 0.126928
    assert all_pairs.flatten().tolist() == pytest.approx([(2 * BT_1 + BT_2) / 3, BT_2], abs=1e-6)
    pl = per_example_losses(r, batch, LossParams(1), ObjectiveSpec(ranking="plackett_luce"))
    # row 0: ln(1 + e^-1 + e^-2) + ln(1 + e^-1) = 0.407606 + 0.313262 = 0.720868; row 1 (K=2) is BT: 0.126928
    expected0 = math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(1 + math.exp(-1))
    assert pl.flatten().tolist() == pytest.approx([expected0, BT_2], abs=1e-6)


def test_rankings_with_several_heads_match_a_per_head_loop() -> None:
    exs = [RewardExample("rankings", 0, (0, 1, 2, 3)), RewardExample("rankings", 1, (4, 5))]
    data = make_data(exs, 6)
    table = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    batch, r = batch_rewards(data, table)
    got = per_example_losses(r, batch, LossParams(3), ObjectiveSpec(ranking="plackett_luce"))
    for i, ex in enumerate(exs):
        for k in range(3):
            want = plackett_luce(table[list(ex.seqs), k][None, :])[0]
            assert got[i, k].item() == pytest.approx(want.item(), abs=1e-6)


def test_rating_regression_and_ordinal() -> None:
    exs = [
        RewardExample("ratings", 0, (0,), rating=5.0, scale=(1.0, 7.0)),
        RewardExample("ratings", 1, (1,), rating=1.0, scale=(0.0, 2.0)),
    ]
    data = make_data(exs, 2)
    table = torch.tensor([[1.0], [0.0]])
    batch, r = batch_rewards(data, table)
    reg = per_example_losses(r, batch, LossParams(1), ObjectiveSpec(rating="regression"))
    # row 0: target (5-1)/6 = 2/3, (1 - 2/3)^2 = 0.111111; row 1: target 1/2, (0 - 1/2)^2 = 0.25
    assert reg.flatten().tolist() == pytest.approx([1 / 9, 0.25], abs=1e-6)

    exs = [RewardExample("ratings", 0, (0,), rating=r_, scale=(1.0, 3.0)) for r_ in (1.0, 2.0, 3.0)]
    data = RewardData(
        [[7] * (s + 1) for s in range(3)],
        [1, 2, 3],
        [RewardExample("ratings", i, (i,), rating=e.rating, scale=e.scale) for i, e in enumerate(exs)],
    )
    assert ordinal_classes(data) == 3
    params = LossParams(2, n_classes=3)
    table = torch.tensor([[0.3, -1.0], [0.0, 0.5], [2.0, 0.1]])
    batch, r = batch_rewards(data, table)
    got = per_example_losses(r, batch, params, ObjectiveSpec(rating="ordinal"))
    from rlhfkit.algorithms.reward_losses import increasing_thresholds

    for k in range(2):
        want = ordinal_thresholds(table[:, k], torch.tensor([0, 1, 2]), increasing_thresholds(params.thresholds_raw[k]))
        assert got[:, k].tolist() == pytest.approx(want.tolist(), abs=1e-6)
    # initial thresholds sit 1 apart and centred on 0: (-0.5, 0.5) for 3 classes
    assert increasing_thresholds(params.thresholds_raw[0]).tolist() == pytest.approx([-0.5, 0.5], abs=1e-6)


def test_ordinal_refuses_fractional_ratings() -> None:
    data = make_data([RewardExample("ratings", 0, (0,), rating=2.5, scale=(1.0, 7.0))], 1)
    with pytest.raises(ValueError, match="whole-number"):
        ordinal_classes(data)


def test_mixed_kinds_land_in_their_batch_slots() -> None:
    exs = [
        RewardExample("ratings", 0, (2,), rating=7.0, scale=(1.0, 7.0)),
        pair(0, 1),
        RewardExample("rankings", 1, (3, 0, 1)),
    ]
    data = make_data(exs, 4)
    table = torch.tensor([[1.0], [0.0], [0.5], [3.0]])
    batch, r = batch_rewards(data, table)
    losses = per_example_losses(r, batch, LossParams(1), ObjectiveSpec()).flatten()
    # slot 0: rating 7 -> target 1, pred 0.5 -> 0.25; slot 1: BT d=1; slot 2: pairs d = 2, 3, 1
    expected_rank = (BT_2 + math.log1p(math.exp(-3.0)) + BT_1) / 3
    assert losses.tolist() == pytest.approx([0.25, BT_1, expected_rank], abs=1e-6)


def test_objective_weights_each_head_by_its_bootstrap_counts() -> None:
    data = make_data([pair(0, 1), pair(1, 0)], 2)
    table = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    batch, r = batch_rewards(data, table)
    weights = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    loss, metrics = objective(r, batch, weights, LossParams(2), ObjectiveSpec())
    # per example: [BT(1), BT(-1)] = [0.313262, 1.313262] for both heads
    # head 0: (2 * 0.313262 + 0) / 2 = 0.313262; head 1: (0 + 1.313262) / 2 = 0.656631; mean 0.484947
    assert loss.item() == pytest.approx((BT_1 + (BT_1 + 1.0) / 2) / 2, abs=1e-6)
    assert metrics["train/accuracy"] == 0.5
    naive = (
        sum(
            weights[i, k] * per_example_losses(r, batch, LossParams(2), ObjectiveSpec())[i, k]
            for i in range(2)
            for k in range(2)
        )
        / 4
    )
    assert loss.item() == pytest.approx(float(naive), abs=1e-6)


def test_centering_penalty_on_pairs_and_single_rewards() -> None:
    data = make_data([pair(0, 1)], 2)
    batch, r = batch_rewards(data, torch.tensor([[1.0], [2.0]]))
    # coef * mean((r_c + r_r)^2) = 0.01 * 9 = 0.09
    assert centering_penalty(r, batch, 0.01).item() == pytest.approx(0.09)
    data = make_data([RewardExample("rankings", 0, (0, 1))], 2)
    batch, r = batch_rewards(data, torch.tensor([[1.0], [3.0]]))
    # coef * mean(r^2) = 0.01 * (1 + 9) / 2 = 0.05
    assert centering_penalty(r, batch, 0.01).item() == pytest.approx(0.05)
    loss, _ = objective(r, batch, torch.ones(1, 1), LossParams(1), ObjectiveSpec(center_coef=0.01))
    assert loss.item() == pytest.approx(math.log1p(math.exp(2.0)) + 0.05, abs=1e-6)  # best-first d = 1 - 3


def test_collate_encodes_each_distinct_sequence_once() -> None:
    # A ranking of 4 and a pair reusing two of its responses: 4 distinct sequences, 6 + 1 pairs.
    exs = [RewardExample("rankings", 0, (0, 1, 2, 3)), pair(1, 3)]
    data = make_data(exs, 4)
    batch = collate(data, [0, 1], pad_id=0)
    assert batch.input_ids.shape[0] == 4
    assert sorted(batch.seq_ids.tolist()) == [0, 1, 2, 3]
    lengths = batch.attention_mask.sum(dim=1).tolist()
    assert lengths == sorted(lengths, reverse=True)  # longest first


def test_bootstrap_weights() -> None:
    w = bootstrap_weights(50, 3, seed=0)
    assert w.shape == (50, 3)
    assert w.sum(dim=0).tolist() == [50.0, 50.0, 50.0]  # each head resamples N examples
    assert not torch.equal(w[:, 0], w[:, 1]) and not torch.equal(w[:, 1], w[:, 2])
    assert bool((w == 0).any())  # some examples are out of a head's resample
    assert torch.equal(w, bootstrap_weights(50, 3, seed=0))
    assert not torch.equal(w, bootstrap_weights(50, 3, seed=1))
    assert torch.equal(bootstrap_weights(50, 1, seed=0), torch.ones(50, 1))
    assert torch.equal(bootstrap_weights(50, 3, seed=0, enabled=False), torch.ones(50, 3))


def test_feature_cache_computes_each_sequence_once_and_persists(tmp_path: Path) -> None:
    data = make_data([pair(0, 1), pair(1, 2)], 3)
    calls: list[int] = []

    def compute(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(len(ids))
        assert int(mask.sum(dim=1).max()) == ids.shape[1]  # no all-padding columns
        return mask.sum(dim=1, keepdim=True).float().repeat(1, 4)  # feature = length

    cache = FeatureCache(3, 4, "fp")
    first = cache.lookup(collate(data, [0], 0), compute)
    second = cache.lookup(collate(data, [0, 1], 0), compute)
    assert calls == [2, 1]  # sequences 0, 1, then only 2
    assert (cache.hits, cache.misses) == (2, 3)
    assert second[:, 0].tolist() == [3.0, 2.0, 1.0] and first[:, 0].tolist() == [2.0, 1.0]
    cache.save(tmp_path / "f.safetensors")
    fresh = FeatureCache(3, 4, "fp")
    assert fresh.load(tmp_path / "f.safetensors")
    assert torch.equal(fresh.features, cache.features) and bool(fresh.filled.all())
    assert not FeatureCache(3, 4, "other").load(tmp_path / "f.safetensors")


def test_bradley_terry_mean_equals_trl_formula_on_a_batch() -> None:
    g = torch.Generator().manual_seed(1)
    table = torch.randn(16, 1, generator=g) * 3
    exs = [pair(2 * i, 2 * i + 1, margin=float(i % 3)) for i in range(8)]
    batch, r = batch_rewards(make_data(exs, 16), table)
    loss, _ = objective(r, batch, torch.ones(8, 1), LossParams(1), ObjectiveSpec())
    rc, rr = table[0::2, 0], table[1::2, 0]
    margin = torch.tensor([float(i % 3) for i in range(8)])
    trl = -F.logsigmoid(rc - rr - margin).mean()  # TRL RewardTrainer's loss with margins
    assert loss.item() == pytest.approx(trl.item(), abs=1e-6)
