"""Reward-model data: every record becomes a group of token sequences plus its training targets.

Sequences are deduplicated across the data set: a (prompt, response) that appears in several
comparisons or rankings is tokenized once, run through the trunk once per batch, and, with a frozen
trunk, featurized once per run. A batch is a list of *examples* whose sequences stay together, so the
K(K-1)/2 pairs of a K-way ranking are all formed inside the batch that encodes its K responses once
(Ouyang et al. 2022, sec. 3.5: all pairs of a prompt in one batch element, against overfitting).
In the ``packed`` layout those responses also share one row, so their common prompt is encoded once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhfkit.data.chat import ChatTemplate, encode_pair
from rlhfkit.data.collate import pack_shared_prefix, pad_right
from rlhfkit.data.errors import DataError
from rlhfkit.data.formats import detect_format
from rlhfkit.data.projects import parse_project_ref
from rlhfkit.data.records import (
    Comparison,
    PromptText,
    Ranking,
    Rating,
    Record,
    RecordKind,
)
from rlhfkit.data.sources import open_rows
from rlhfkit.train.sources import load_training_records

TRAINABLE_KINDS: tuple[RecordKind, ...] = ("pairs", "rankings", "ratings")
"""Record kinds a reward model trains on."""


@dataclass(frozen=True)
class RewardExample:
    """One judgment over sequences of `RewardData.sequences`."""

    kind: RecordKind
    """'pairs', 'rankings' or 'ratings'."""
    prompt_id: int
    """Index of the example's prompt among the distinct prompts (ratings of one prompt form pairs in eval)."""
    seqs: tuple[int, ...]
    """Sequence indices: (chosen, rejected) for pairs, best first for rankings, (one,) for ratings."""
    margin: float = 0.0
    """Pairs: how much better the chosen one is (0 when the data gives none)."""
    tie: bool = False
    """Pairs: the two were judged equally good."""
    rating: float = 0.0
    """Ratings: the rating on its scale."""
    scale: tuple[float, float] = (0.0, 1.0)
    """Ratings: (low, high) of the rating's scale."""


@dataclass
class RewardData:
    """Tokenized examples over a shared pool of unique sequences."""

    sequences: list[list[int]]
    """Token ids of every unique (prompt, response + EOS), cut to the length limit."""
    response_lengths: list[int]
    """Response tokens of each sequence (for accuracy by length)."""
    examples: list[RewardExample]
    """The judgments, in data order."""
    truncated: int = 0
    """How many sequences had their prompt cut from the left."""

    def example_lengths(self) -> list[int]:
        """Padded token cost of each example (its sequences times the longest), for length grouping."""
        return [len(ex.seqs) * max(len(self.sequences[s]) for s in ex.seqs) for ex in self.examples]

    def kinds(self) -> list[RecordKind]:
        return [k for k in TRAINABLE_KINDS if any(ex.kind == k for ex in self.examples)]


Intern = Callable[[PromptText, str], int]


def _pair(rec: Comparison, intern: Intern, prompt_id: int) -> RewardExample:
    seqs = (intern(rec.prompt, rec.chosen), intern(rec.prompt, rec.rejected))
    return RewardExample("pairs", prompt_id, seqs, margin=float(rec.margin or 0.0), tie=rec.tie)


def _ranking(rec: Ranking, intern: Intern, prompt_id: int) -> RewardExample:
    return RewardExample("rankings", prompt_id, tuple(intern(rec.prompt, r) for r in rec.responses))


def _rating(rec: Rating, intern: Intern, prompt_id: int) -> RewardExample:
    seqs = (intern(rec.prompt, rec.response),)
    return RewardExample("ratings", prompt_id, seqs, rating=rec.rating, scale=rec.scale)


def prompt_key(prompt: PromptText) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


EXAMPLE_BUILDERS: dict[type, Callable[..., RewardExample]] = {Comparison: _pair, Ranking: _ranking, Rating: _rating}
"""Record type -> its example (records of other types cannot train a reward model)."""


def encode_records(
    tokenizer: PreTrainedTokenizerBase, records: list[Record], max_length: int, chat_template: ChatTemplate = "always"
) -> RewardData:
    """Tokenize `records` into examples over deduplicated sequences."""
    index: dict[tuple[str, str], int] = {}
    prompt_ids: dict[str, int] = {}
    data = RewardData([], [], [])

    def intern(prompt: PromptText, response: str) -> int:
        key = (prompt_key(prompt), response)
        if key not in index:
            enc = encode_pair(tokenizer, prompt, response, max_length=max_length, chat_template=chat_template)
            index[key] = len(data.sequences)
            data.sequences.append(enc.input_ids)
            data.response_lengths.append(len(enc.response_ids))
            data.truncated += enc.prompt_truncated
        return index[key]

    for rec in records:
        builder = EXAMPLE_BUILDERS.get(type(rec))
        if builder is None:
            raise ValueError(f"a {type(rec).__name__} record cannot train a reward model")
        prompt_id = prompt_ids.setdefault(prompt_key(rec.prompt), len(prompt_ids))
        data.examples.append(builder(rec, intern, prompt_id))
    return data


@dataclass
class RewardBatch:
    """A collated batch of S unique sequences and B examples; the targets index the S sequences.

    Layout ``rows``: one right-padded row per sequence (R = S). Layout ``packed``: the sequences of
    one example share a row, ``prefix | rest_1 | rest_2 ...``, with their common token prefix (the
    prompt) encoded once (R < S); see `pack_rows`.
    """

    seq_ids: Tensor
    """(S,) long: global sequence indices (keys of the feature cache)."""
    input_ids: Tensor
    """(R, T) right-padded token ids."""
    attention_mask: Tensor
    """(R, T) 1 on real tokens (rows), or (R, 1, T, T) boolean: which column each query may attend to (packed)."""
    example_ids: Tensor
    """(B,) long: global example indices (rows of the bootstrap weights)."""
    groups: dict[RecordKind, dict[str, Tensor]]
    """Per kind present: 'slot' (n,) positions of its examples in the batch and its targets."""
    position_ids: Tensor | None = None
    """(R, T) positions (packed: each rest continues from the end of the shared prefix); None = 0..T-1."""
    row: Tensor | None = None
    """(S,) long: the row holding each sequence (packed only)."""
    seq_mask: Tensor | None = None
    """(S, T): 1 on the columns of row `row[s]` that make up sequence s (packed only)."""
    n_tokens: int = 0
    """Tokens the trunk encodes (padding excluded)."""

    def to(self, device: torch.device | str) -> RewardBatch:
        """The batch on `device` (``seq_ids`` stay on the CPU: they index the CPU feature cache)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        groups = {kind: {k: v.to(device) for k, v in t.items()} for kind, t in self.groups.items()}
        return RewardBatch(
            self.seq_ids,
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.example_ids,
            groups,
            move(self.position_ids),
            move(self.row),
            move(self.seq_mask),
            self.n_tokens,
        )

    def trunk_inputs(self) -> dict[str, Tensor | None]:
        """Keyword arguments of `RewardModel.forward` / `features` for this batch's layout."""
        return {"position_ids": self.position_ids, "row": self.row, "seq_mask": self.seq_mask}


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all `seqs`, leaving each at least its last token."""
    n = min(len(s) for s in seqs) - 1
    for i in range(max(n, 0)):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return max(n, 0)


def pack_rows(seqs: list[list[int]], partition: list[list[int]], pad_id: int) -> dict:
    """Pack sequences into rows, ``prefix | rest_1 | ... | rest_m`` per part of `partition`.

    The prefix is the part's common token prefix; `data.collate.pack_shared_prefix` lays the rows out,
    so every sequence gets exactly the hidden states it would get in a row of its own while the
    prefix is encoded once. HH-RLHF's chosen and rejected share their prompt (unless truncation cut
    it differently): 28% of a pair's tokens at max_length 128, 37% at 512.
    """
    shared = [common_prefix([seqs[i] for i in part]) if len(part) > 1 else 0 for part in partition]
    packed = pack_shared_prefix(
        [(seqs[part[0]][:p], [seqs[i][p:] for i in part]) for part, p in zip(partition, shared, strict=True)], pad_id
    )
    row_of = torch.zeros(len(seqs), dtype=torch.long)  # the row and segment of each sequence
    seg_of = torch.zeros(len(seqs), dtype=torch.long)
    for r, part in enumerate(partition):
        for j, i in enumerate(part, start=1):
            row_of[i], seg_of[i] = r, j
    own = packed.segment[row_of]  # (S, T) segments of each sequence's row
    seq_mask = ((own == 0) | (own == seg_of[:, None])).long()
    return {
        "input_ids": packed.input_ids,
        "attention_mask": packed.attention_mask,
        "position_ids": packed.position_ids,
        "row": row_of,
        "seq_mask": seq_mask,
        "n_tokens": int((packed.segment != -1).sum()),
    }


def _rows_layout(seqs: list[list[int]], partition: list[list[int]], pad_id: int) -> dict:
    return {
        "input_ids": pad_right(seqs, pad_id),
        "attention_mask": pad_right([[1] * len(s) for s in seqs], 0),
        "n_tokens": sum(len(s) for s in seqs),
    }


Layout = Literal["packed", "rows"]
"""The keys of `LAYOUTS`, as a type for config fields."""

LAYOUTS: dict[str, Callable[[list[list[int]], list[list[int]], int], dict]] = {
    "packed": pack_rows,
    "rows": _rows_layout,
}
"""Batch layout name -> ``fn(sequences, partition by example, pad_id) -> RewardBatch fields``."""


def _pair_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    return {
        "rows": torch.tensor([[pos[e.seqs[0]], pos[e.seqs[1]]] for e in exs]),
        "margin": torch.tensor([e.margin for e in exs], dtype=torch.float32),
        "tie": torch.tensor([e.tie for e in exs]),
    }


def _ranking_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    rows = pad_right([[pos[s] for s in e.seqs] for e in exs], 0)  # padded slots are masked out
    mask = pad_right([[1] * len(e.seqs) for e in exs], 0).bool()
    return {"rows": rows, "mask": mask}


def _rating_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    return {
        "rows": torch.tensor([pos[e.seqs[0]] for e in exs]),
        "rating": torch.tensor([e.rating for e in exs], dtype=torch.float64),
        "low": torch.tensor([e.scale[0] for e in exs], dtype=torch.float64),
        "high": torch.tensor([e.scale[1] for e in exs], dtype=torch.float64),
    }


TARGETS: dict[RecordKind, Callable[[list[RewardExample], dict[int, int]], dict[str, Tensor]]] = {
    "pairs": _pair_targets,
    "rankings": _ranking_targets,
    "ratings": _rating_targets,
}
"""Kind -> the tensors its loss needs, from its examples and the batch row of each sequence."""


def collate(data: RewardData, example_ids: list[int], pad_id: int, layout: str = "rows") -> RewardBatch:
    """Batch the examples `example_ids`; each distinct sequence is encoded once, longest first.

    With `layout` 'packed' the sequences an example brings to the batch share one row (see `pack_rows`).
    """
    exs = [data.examples[i] for i in example_ids]
    unique = sorted({s for e in exs for s in e.seqs}, key=lambda s: (-len(data.sequences[s]), s))
    pos = {s: i for i, s in enumerate(unique)}
    partition: list[list[int]] = []
    placed: set[int] = set()
    for e in exs:  # each sequence joins the row of the first example that brings it
        part = [pos[s] for s in dict.fromkeys(e.seqs) if s not in placed]
        placed.update(e.seqs)
        if part:
            partition.append(part)
    groups: dict[RecordKind, dict[str, Tensor]] = {}
    for kind, build in TARGETS.items():
        slots = [i for i, e in enumerate(exs) if e.kind == kind]
        if slots:
            groups[kind] = {"slot": torch.tensor(slots), **build([exs[i] for i in slots], pos)}
    fields = LAYOUTS[layout]([data.sequences[s] for s in unique], partition, pad_id)
    return RewardBatch(seq_ids=torch.tensor(unique), example_ids=torch.tensor(example_ids), groups=groups, **fields)


def bootstrap_weights(n_examples: int, n_heads: int, seed: int, enabled: bool = True) -> Tensor:
    """(N, K) per-head bootstrap counts: how often each example is drawn in head k's resample.

    Each head trains on its own resample of the N examples with replacement (Efron 1979), the
    classical way to make ensemble members disagree where data is thin (Lakshminarayanan et al. 2017;
    Coste et al. 2024 for reward-model ensembles). Counts average 1, so a loss weighted by them keeps
    its scale. One head, or `enabled` False: all ones.
    """
    if n_heads == 1 or not enabled:
        return torch.ones(n_examples, n_heads)
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    cols = [
        torch.bincount(torch.randint(0, n_examples, (n_examples,), generator=g), minlength=n_examples)
        for _ in range(n_heads)
    ]
    return torch.stack(cols, dim=1).float()


def detect_kind(spec: str) -> RecordKind:
    """The native kind (pairs, rankings or ratings) of a data source's first readable row."""
    for _, row in open_rows(spec):
        if isinstance(row, DataError):
            continue
        fmt = detect_format(row)
        if fmt is not None and fmt.kinds and fmt.kinds[0] in TRAINABLE_KINDS:
            return fmt.kinds[0]
        kinds = ", ".join(fmt.kinds) if fmt is not None else "no known format"
        raise DataError(
            spec,
            0,
            "<source>",
            f"rows look like {fmt.name if fmt else kinds}, which cannot "
            "train a reward model; expected pairs, rankings or ratings",
            reason="wrong kind",
        )
    raise DataError(spec, 0, "<source>", "no readable rows", reason="empty source")


def load_reward_records(spec: str, kind: str, skip_invalid: bool) -> list[Record]:
    """Records of one source; `kind` 'auto' detects it (for a feedback project: the first kind it has)."""
    if kind != "auto":
        return load_training_records(spec, kind, skip_invalid=skip_invalid)  # type: ignore[arg-type]
    if parse_project_ref(spec) is None:  # a file or dataset: its rows say their kind
        return load_training_records(spec, detect_kind(spec), skip_invalid=skip_invalid)
    errors = []
    for candidate in TRAINABLE_KINDS:
        try:
            return load_training_records(spec, candidate, skip_invalid=skip_invalid)
        except ValueError as err:  # DataError and "no usable rows" are ValueErrors
            errors.append(f"{candidate}: {err}")
    raise DataError(spec, 0, "<source>", "no pairs, rankings or ratings: " + "; ".join(errors), reason="empty source")
