"""Preference data for DPO: prompts with ranked responses, batched so each is encoded once.

A *group* is one prompt with n >= 2 responses, best first: a comparison is a group of 2, a K-way
ranking a group of K. Two layouts put a batch of groups through ONE forward pass:

- ``rows``: every (prompt, response) is its own row, all groups' rows concatenated along the batch
  (the chosen-and-rejected-in-one-forward layout of TRL's DPOTrainer);
- ``packed``: one row per group, ``prompt | response_1 | ... | response_n``, with a block attention
  mask (each response sees the prompt and itself, never another response) and position ids that
  restart after the prompt, so every response is scored exactly as in its own row while the shared
  prompt is encoded once. HH-RLHF prompts are about three quarters of a pair's tokens, so this cuts
  the work of a step by roughly a third.

Either way the output head is applied only at the positions that predict a response token, and the
forward returns each response's summed log-prob and length. Reference log-probs are computed once,
before training, cached in memory and in the run directory (``reference_logps.safetensors``), so a
resumed run reads them instead of recomputing them and training holds one model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from rlhfkit.data.chat import ChatTemplate, encode_prompt
from rlhfkit.data.collate import pack_shared_prefix
from rlhfkit.data.records import Comparison, PromptText, Ranking, Record
from rlhfkit.files import write_atomic
from rlhfkit.models.lm import hidden_states, output_head, through_root


@dataclass(frozen=True)
class PreferenceGroup:
    """One tokenized prompt and its n >= 2 responses, best first (each response ends with EOS)."""

    prompt_ids: tuple[int, ...]
    """Rendered prompt tokens, shared by every response of the group."""
    responses: tuple[tuple[int, ...], ...]
    """Response tokens, best first."""
    prompt_truncated: bool
    """Whether the prompt was cut from the left to fit."""

    @property
    def packed_length(self) -> int:
        """Tokens of the group in the packed layout: prompt once plus every response."""
        return len(self.prompt_ids) + sum(len(r) for r in self.responses)


def record_texts(records: Sequence[Record]) -> tuple[list[tuple[PromptText, tuple[str, ...]]], int]:
    """(prompt, responses best first) of each comparison or ranking, and how many ties were dropped.

    A tie says neither response is better, which no preference loss here can use.
    """
    out: list[tuple[PromptText, tuple[str, ...]]] = []
    ties = 0
    for rec in records:
        if isinstance(rec, Comparison):
            if rec.tie:
                ties += 1
                continue
            out.append((rec.prompt, (rec.chosen, rec.rejected)))
        elif isinstance(rec, Ranking):
            out.append((rec.prompt, tuple(rec.responses)))
        else:
            raise TypeError(f"DPO trains on comparisons or rankings, got {type(rec).__name__}")
    return out, ties


def given_reference_logps(records: Sequence[Record]) -> Tensor | None:
    """(n_responses,) reference log-probs the data carries (TRL's ``ref_chosen_logps`` / ``ref_rejected_logps``),
    in the flat response order of `record_texts`; None unless every comparison that trains has them."""
    values: list[float] = []
    for rec in records:
        if isinstance(rec, Comparison) and rec.tie:
            continue  # dropped by record_texts
        ref = rec.ref_logps if isinstance(rec, Comparison) else None
        if ref is None:
            return None
        values.extend(ref)
    return torch.tensor(values, dtype=torch.float32)


def encode_group(
    tokenizer: PreTrainedTokenizerBase,
    prompt: PromptText,
    responses: Sequence[str],
    *,
    max_length: int,
    max_prompt_length: int,
    chat_template: ChatTemplate = "always",
) -> PreferenceGroup:
    """Tokenize a prompt once and each response + EOS, so that prompt + any response <= `max_length`.

    The rule of `rlhfkit.data.chat.encode_pair`, applied to the group as a whole so that every
    response keeps the very same prompt tokens: only when the longest response would not fit is the
    prompt cut from the left to `max_prompt_length`, then responses are cut from the right.
    """
    prompt_ids, _ = encode_prompt(tokenizer, prompt, chat_template=chat_template)
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(r, add_special_tokens=False)["input_ids"] + [eos] for r in responses]
    truncated = False
    if len(prompt_ids) + max(len(r) for r in encoded) > max_length:
        if len(prompt_ids) > max_prompt_length:
            prompt_ids, truncated = prompt_ids[len(prompt_ids) - max_prompt_length :], True
        room = max(1, max_length - len(prompt_ids))
        encoded = [r[:room] for r in encoded]
    return PreferenceGroup(tuple(prompt_ids), tuple(tuple(r) for r in encoded), truncated)


def pair_indices(sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Every (better, worse) pair within each group, as indices into the flat response order.

    Groups of sizes ``[2, 3]`` hold responses 0-1 and 2-4; the pairs are (0,1), (2,3), (2,4), (3,4):
    a ranking of K gives K(K-1)/2 pairs while each response is still encoded once.
    """
    better, worse, offset = [], [], 0
    for n in sizes:
        for i in range(n):
            for j in range(i + 1, n):
                better.append(offset + i)
                worse.append(offset + j)
        offset += n
    return torch.tensor(better, dtype=torch.long), torch.tensor(worse, dtype=torch.long)


@dataclass
class PreferenceBatch:
    """A batch of groups laid out for one forward pass. R rows, T columns, N scored tokens."""

    input_ids: Tensor
    """(R, T) token ids, right-padded."""
    attention_mask: Tensor
    """(R, T) padding mask (rows layout) or (R, 1, T, T) boolean block mask (packed layout)."""
    position_ids: Tensor | None
    """(R, T) positions (packed layout: each response continues from the end of the prompt)."""
    source: Tensor
    """(N,) flat index ``row * T + column`` of the hidden state that predicts each response token."""
    target: Tensor
    """(N,) the response token predicted there."""
    response: Tensor
    """(N,) which response (flat, group by group, best first) each scored token belongs to."""
    sizes: list[int]
    """Responses per group."""

    @property
    def n_responses(self) -> int:
        return sum(self.sizes)

    def to(self, device: torch.device) -> PreferenceBatch:
        position_ids = None if self.position_ids is None else self.position_ids.to(device)
        return PreferenceBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            position_ids,
            self.source.to(device),
            self.target.to(device),
            self.response.to(device),
            self.sizes,
        )


def _scored(row: int, width: int, start: int, prev: int, tokens: Sequence[int]) -> list[int]:
    """Flat sources of a response placed at columns ``start..``: its first token is predicted by
    column `prev` (the last prompt token), each later one by the column before it."""
    cols = [prev, *range(start, start + len(tokens) - 1)]
    return [row * width + c for c in cols]


def collate_rows(groups: Sequence[PreferenceGroup], pad_id: int) -> PreferenceBatch:
    """One row per (prompt, response), all groups' rows stacked along the batch."""
    rows = [(g.prompt_ids, r) for g in groups for r in g.responses]
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    source: list[int] = []
    target: list[int] = []
    response: list[int] = []
    for i, (prompt, resp) in enumerate(rows):
        n = len(prompt) + len(resp)
        ids[i, :n] = torch.tensor(prompt + resp)
        mask[i, :n] = 1
        source += _scored(i, width, len(prompt), len(prompt) - 1, resp)
        target += resp
        response += [i] * len(resp)
    return PreferenceBatch(
        ids,
        mask,
        None,
        torch.tensor(source),
        torch.tensor(target),
        torch.tensor(response),
        [len(g.responses) for g in groups],
    )


def collate_packed(groups: Sequence[PreferenceGroup], pad_id: int) -> PreferenceBatch:
    """One row per group: ``prompt | r_1 | ... | r_n``; a response attends to the prompt and itself."""
    packed = pack_shared_prefix([(g.prompt_ids, g.responses) for g in groups], pad_id)
    width = packed.input_ids.shape[1]
    source: list[int] = []
    target: list[int] = []
    response: list[int] = []
    flat = 0
    for row, (g, starts) in enumerate(zip(groups, packed.starts, strict=True)):
        for start, resp in zip(starts, g.responses, strict=True):
            source += _scored(row, width, start, len(g.prompt_ids) - 1, resp)
            target += resp
            response += [flat] * len(resp)
            flat += 1
    return PreferenceBatch(
        packed.input_ids,
        packed.attention_mask,
        packed.position_ids,
        torch.tensor(source),
        torch.tensor(target),
        torch.tensor(response),
        [len(g.responses) for g in groups],
    )


Layout = Literal["packed", "rows"]
"""The keys of `LAYOUTS`, as a type for config fields."""

LAYOUTS: dict[str, Callable[[Sequence[PreferenceGroup], int], PreferenceBatch]] = {
    "packed": collate_packed,
    "rows": collate_rows,
}
"""Batch layouts by name: ``fn(groups, pad_id) -> PreferenceBatch``; both give the same log-probs."""


@through_root  # sharded (FSDP on CPU), the output head is the root's: gathered only in a root forward
def response_logps(model: nn.Module, batch: PreferenceBatch) -> tuple[Tensor, Tensor]:
    """Summed log-prob (n_responses,) and token count (n_responses,) of every response of `batch`.

    One decoder pass over all rows; the output head runs only on the N hidden states that predict a
    response token, and the vocabulary-sized logits are reduced to log-probs at once (fused in
    cross-entropy, in float32).
    """
    h = hidden_states(model, batch.input_ids, batch.attention_mask, position_ids=batch.position_ids)  # (R, T, H)
    picked = h.reshape(-1, h.shape[-1])[batch.source]  # (N, H)
    logits = output_head(model)(picked).float()  # (N, V)
    token_logps = -F.cross_entropy(logits, batch.target, reduction="none")  # (N,)
    n = batch.n_responses
    logps = torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device).index_add(0, batch.response, token_logps)
    lengths = torch.bincount(batch.response, minlength=n)
    return logps, lengths


def response_offsets(groups: Sequence[PreferenceGroup]) -> list[int]:
    """Start of each group's responses in the flat response order (length len(groups) + 1)."""
    offsets = [0]
    for g in groups:
        offsets.append(offsets[-1] + len(g.responses))
    return offsets


def gather_responses(values: Tensor, offsets: Sequence[int], group_idx: Sequence[int]) -> Tensor:
    """The flat per-response `values` of the groups `group_idx`, in batch order."""
    picks = [i for g in group_idx for i in range(offsets[g], offsets[g + 1])]
    return values[torch.tensor(picks, dtype=torch.long)]


@torch.no_grad()
def compute_reference_logps(
    model: nn.Module,
    groups: Sequence[PreferenceGroup],
    *,
    layout: str,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], object],
) -> Tensor:
    """Summed log-probs (n_responses,) of every response under `model`, in flat response order.

    Groups go through in order of length so that batches carry little padding; `autocast` is the
    training loop's, so the reference is computed at the same precision as the policy.
    """
    was_training = model.training
    model.eval()
    offsets = response_offsets(groups)
    out = torch.zeros(offsets[-1], dtype=torch.float32)
    order = sorted(range(len(groups)), key=lambda i: groups[i].packed_length)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = LAYOUTS[layout]([groups[i] for i in idx], pad_id).to(device)
        with autocast():  # type: ignore[attr-defined]
            logps, _ = response_logps(model, batch)
        picks = torch.tensor([j for i in idx for j in range(offsets[i], offsets[i + 1])])
        out[picks] = logps.float().cpu()
    model.train(was_training)
    return out


def fingerprint(model_name: str, dtype: str, splits: Mapping[str, Sequence[PreferenceGroup]]) -> str:
    """A hash of what reference log-probs depend on: the model, the precision and every token."""
    h = hashlib.sha256(f"{model_name}\0{dtype}".encode())
    for name in sorted(splits):
        h.update(name.encode())
        for g in splits[name]:
            h.update(json.dumps([g.prompt_ids, g.responses]).encode())
    return h.hexdigest()


def load_reference_cache(path: Path, key: str) -> dict[str, Tensor] | None:
    """The cached reference log-probs ``{split: (n_responses,)}`` when `path` holds them for `key`."""
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("fingerprint") != key:
            return None
        return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)


def save_reference_cache(path: Path, key: str, tensors: dict[str, Tensor]) -> None:
    """Write the cache atomically (a crash leaves either no file or a complete one)."""
    plain = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(plain, str(tmp), metadata={"fingerprint": key}))
