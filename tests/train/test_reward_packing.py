"""The packed reward batch: responses of one judgment share a row, and every reward stays the same."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.models.reward import build_reward_model
from rlhfkit.train.reward.data import (
    RewardData,
    RewardExample,
    collate,
    common_prefix,
    pack_rows,
)

PROMPT = [5, 9, 14, 3, 7, 21]


def test_common_prefix_leaves_every_sequence_its_last_token() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 9]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # not 3: the first would have no token of its own
    assert common_prefix([[7, 1], [8, 1]]) == 0
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 5, 6]]) == 1


def test_pack_rows_layout_by_hand() -> None:
    # Two sequences sharing [1, 2]: row = 1 2 | 3 4 | 5, positions 0 1 | 2 3 | 2.
    packed = pack_rows([[1, 2, 3, 4], [1, 2, 5]], [[0, 1]], pad_id=0)
    assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 5]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 2]]
    assert packed["row"].tolist() == [0, 0]
    assert packed["seq_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 1]]
    assert packed["n_tokens"] == 5
    visible = packed["attention_mask"][0, 0].int().tolist()
    assert visible[4] == [1, 1, 0, 0, 1]  # the second rest sees the prefix and itself, not the first rest
    assert visible[3] == [1, 1, 1, 1, 0]


def _data() -> RewardData:
    """A pair, a 3-way ranking, a rating, and a pair reusing a ranked response, over shared prompts."""
    seqs = [
        [*PROMPT, 30, 31, 2],
        [*PROMPT, 32, 2],
        [*PROMPT[:4], 40, 41, 42, 2],  # 2 starts elsewhere
        [11, 12, 33, 34, 35, 36, 2],
        [11, 12, 37, 2],
        [11, 12, 38, 39, 2],
        [50, 51, 52, 2],
    ]
    examples = [
        RewardExample("pairs", 0, (0, 1), margin=0.5),
        RewardExample("rankings", 1, (3, 4, 5)),
        RewardExample("ratings", 2, (6,), rating=0.7),
        RewardExample("pairs", 1, (4, 2)),
    ]
    return RewardData(seqs, [3] * len(seqs), examples)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_packed_rewards_equal_one_row_per_sequence(pooling: str) -> None:
    model = build_reward_model("tiny", n_heads=2, pooling=pooling).eval()
    data = _data()
    ids = list(range(len(data.examples)))
    rows, packed = collate(data, ids, pad_id=0), collate(data, ids, pad_id=0, layout="packed")
    assert packed.seq_ids.tolist() == rows.seq_ids.tolist()  # the targets index the same sequences
    assert packed.groups["pairs"]["rows"].tolist() == rows.groups["pairs"]["rows"].tolist()
    # Rows: the pair, the ranking, the rating, and the last pair's one new sequence (its other is ranked).
    assert packed.input_ids.shape[0] == 4
    assert packed.n_tokens < rows.n_tokens == sum(len(s) for s in data.sequences)
    with torch.no_grad():
        expected = model(rows.input_ids, rows.attention_mask)
        got = model(packed.input_ids, packed.attention_mask, **packed.trunk_inputs())
        # A naive reference: each sequence alone, unpadded.
        alone = torch.cat(
            [
                model(torch.tensor([data.sequences[s]]), torch.ones(1, len(data.sequences[s]), dtype=torch.long))
                for s in rows.seq_ids.tolist()
            ]
        )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)


def test_packed_gradients_equal_one_row_per_sequence() -> None:
    data = _data()
    ids = list(range(len(data.examples)))
    grads = []
    for layout in ("rows", "packed"):
        model = build_reward_model("tiny")
        batch = collate(data, ids, pad_id=0, layout=layout)
        model(batch.input_ids, batch.attention_mask, **batch.trunk_inputs()).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)
