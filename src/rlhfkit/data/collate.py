"""Batching: dynamic padding and length-grouped order.

Dynamic padding pads a batch only to its own longest row. Grouping rows of similar length into the
same batch (as TRL's ``group_by_length`` does) cuts the padding further; the order stays a pure
function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlhfkit.data.chat import IGNORE


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """(B, T_max) long tensor of `rows`, right-padded with `value`."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def pad_left(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """(B, T_max) long tensor of `rows`, left-padded with `value` (for generation)."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
    return out


def collate_lm(
    input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (B, T), right-padded; padding carries no loss."""
    ids = pad_right(input_ids, pad_id)
    mask = pad_right([[1] * len(r) for r in input_ids], 0)
    lab = pad_right(labels, IGNORE)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def epoch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[int]:
    """The order of examples in one epoch.

    With `group_by_length`, a random permutation is cut into mega-batches of 32 batches, each sorted
    by length (longest first), so that batches hold rows of similar length while the epoch stays
    shuffled.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return order
    mega = batch_size * 32
    out: list[int] = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        out.extend(sorted(chunk, key=lambda i: -lengths[i]))
    return out
