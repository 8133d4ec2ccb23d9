"""Batching: dynamic padding, length-grouped order, and rows that share a prefix.

Dynamic padding pads a batch only to its own longest row. Grouping rows of similar length into the
same batch (as TRL's ``group_by_length`` does) cuts the padding further; the order stays a pure
function of (seed, epoch), so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlhfkit.data.chat import IGNORE


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """(B, T_max) long tensor of `rows`, right-padded with `value`."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@dataclass(frozen=True)
class PackedRows:
    """Rows that each hold a prefix once and then several continuations of it (see `pack_shared_prefix`)."""

    input_ids: torch.Tensor
    """(R, T) token ids, right-padded."""
    position_ids: torch.Tensor
    """(R, T) positions: each continuation's continue from the end of its row's prefix."""
    segment: torch.Tensor
    """(R, T) what each column holds: 0 the prefix, j >= 1 the j-th continuation, -1 padding."""
    starts: list[list[int]]
    """Per row, the column where each continuation begins."""

    @property
    def attention_mask(self) -> torch.Tensor:
        return shared_prefix_mask(self.segment)


def pack_shared_prefix(rows: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int) -> PackedRows:
    """One row per (prefix, continuations): ``prefix | c_1 | ... | c_n``, the prefix encoded once.

    With `shared_prefix_mask` and these positions every continuation gets exactly the hidden states
    it would get in a row ``prefix + c_j`` of its own.
    """
    width = max(len(prefix) + sum(len(c) for c in conts) for prefix, conts in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -1, dtype=torch.long)
    starts: list[list[int]] = []
    for r, (prefix, conts) in enumerate(rows):
        p = len(prefix)
        ids[r, :p] = torch.tensor(list(prefix), dtype=torch.long)
        positions[r, :p] = torch.arange(p)
        segment[r, :p] = 0
        starts.append([])
        start = p
        for j, cont in enumerate(conts, start=1):
            end = start + len(cont)
            ids[r, start:end] = torch.tensor(list(cont), dtype=torch.long)
            positions[r, start:end] = torch.arange(p, p + len(cont))
            segment[r, start:end] = j
            starts[-1].append(start)
            start = end
    return PackedRows(ids, positions, segment, starts)


def shared_prefix_mask(segment: torch.Tensor) -> torch.Tensor:
    """(R, 1, T, T) boolean attention mask of packed rows, from each column's segment (R, T).

    Segment 0 is a prefix every other segment shares, j >= 1 one continuation, -1 padding: a query
    sees, causally, the prefix and its own segment, never another continuation. A padding query sees
    only itself, so its softmax stays finite (its output is never read).
    """
    width = segment.shape[1]
    q, k = segment[:, :, None], segment[:, None, :]  # query and key segments, (R, T, 1) and (R, 1, T)
    causal = torch.ones(width, width, dtype=torch.bool, device=segment.device).tril()
    visible = causal & (k != -1) & ((k == 0) | (k == q))
    visible |= torch.eye(width, dtype=torch.bool, device=segment.device)
    return visible[:, None]


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

    With `group_by_length`, a random permutation is cut into mega-batches of 32 batches; each is
    sorted by length and cut into batches, and the batches are shuffled (the longest first). Batches
    hold rows of similar length, yet the epoch is no long-to-short curriculum and its order still
    depends on the seed when the whole data set fits in one mega-batch.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return order
    mega = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    # Only the last mega-batch can end in a short batch; it stays last, so that every batch boundary
    # of the stream (which takes `batch_size` indices at a time) falls between two sorted batches.
    tail = batches.pop() if batches and len(batches[-1]) < batch_size else []
    batches = [batches[b] for b in torch.randperm(len(batches), generator=g).tolist()]
    # The longest batch goes first (as in HF's LengthGroupedSampler): an out-of-memory shows at step 1,
    # and the allocator sizes its blocks once. Growing batches later fragment the heap: shuffled
    # without this, the SFT benchmark's peak RSS rose from 4.1 to 4.9 GiB.
    if batches:
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])  # each batch is sorted
        batches.insert(0, batches.pop(longest))
    return [i for b in batches for i in b] + tail
