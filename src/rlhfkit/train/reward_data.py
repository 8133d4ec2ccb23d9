"""Reward-model data: every record becomes a group of token sequences plus its training targets.

Sequences are deduplicated across the data set: a (prompt, response) that appears in several
comparisons or rankings is tokenized once, run through the trunk once per batch, and, with a frozen
trunk, featurized once per run. A batch is a list of *examples* whose sequences stay together, so the
K(K-1)/2 pairs of a K-way ranking are all formed inside the batch that encodes its K responses once
(Ouyang et al. 2022, sec. 3.5: all pairs of a prompt in one batch element, against overfitting).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhfkit.data.chat import encode_pair
from rlhfkit.data.collate import pad_right
from rlhfkit.data.errors import DataError
from rlhfkit.data.formats import detect_format
from rlhfkit.data.records import Comparison, PromptText, Ranking, Rating, Record, RecordKind
from rlhfkit.data.sources import open_rows
from rlhfkit.train.sources import is_db_source, load_training_records

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


def encode_records(tokenizer: PreTrainedTokenizerBase, records: list[Record], max_length: int) -> RewardData:
    """Tokenize `records` into examples over deduplicated sequences."""
    index: dict[tuple[str, str], int] = {}
    prompt_ids: dict[str, int] = {}
    data = RewardData([], [], [])

    def intern(prompt: PromptText, response: str) -> int:
        key = (prompt_key(prompt), response)
        if key not in index:
            enc = encode_pair(tokenizer, prompt, response, max_length=max_length)
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
    """A collated batch. S unique sequences, B examples; positions index the S rows."""

    seq_ids: Tensor
    """(S,) long: global sequence indices of the rows (keys of the feature cache)."""
    input_ids: Tensor
    """(S, T) right-padded token ids."""
    attention_mask: Tensor
    """(S, T) 1 on real tokens."""
    example_ids: Tensor
    """(B,) long: global example indices (rows of the bootstrap weights)."""
    groups: dict[RecordKind, dict[str, Tensor]]
    """Per kind present: 'slot' (n,) positions of its examples in the batch and its targets."""

    def to(self, device: torch.device | str) -> RewardBatch:
        """The batch on `device` (``seq_ids`` stay on the CPU: they index the CPU feature cache)."""
        groups = {kind: {k: v.to(device) for k, v in t.items()} for kind, t in self.groups.items()}
        return RewardBatch(self.seq_ids, self.input_ids.to(device), self.attention_mask.to(device),
                           self.example_ids, groups)


def _pair_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    return {"rows": torch.tensor([[pos[e.seqs[0]], pos[e.seqs[1]]] for e in exs]),
            "margin": torch.tensor([e.margin for e in exs], dtype=torch.float32),
            "tie": torch.tensor([e.tie for e in exs])}


def _ranking_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    rows = pad_right([[pos[s] for s in e.seqs] for e in exs], 0)  # padded slots are masked out
    mask = pad_right([[1] * len(e.seqs) for e in exs], 0).bool()
    return {"rows": rows, "mask": mask}


def _rating_targets(exs: list[RewardExample], pos: dict[int, int]) -> dict[str, Tensor]:
    return {"rows": torch.tensor([pos[e.seqs[0]] for e in exs]),
            "rating": torch.tensor([e.rating for e in exs], dtype=torch.float64),
            "low": torch.tensor([e.scale[0] for e in exs], dtype=torch.float64),
            "high": torch.tensor([e.scale[1] for e in exs], dtype=torch.float64)}


TARGETS: dict[RecordKind, Callable[[list[RewardExample], dict[int, int]], dict[str, Tensor]]] = {
    "pairs": _pair_targets,
    "rankings": _ranking_targets,
    "ratings": _rating_targets,
}
"""Kind -> the tensors its loss needs, from its examples and the batch row of each sequence."""


def collate(data: RewardData, example_ids: list[int], pad_id: int) -> RewardBatch:
    """Batch the examples `example_ids`; each distinct sequence appears once, longest first."""
    exs = [data.examples[i] for i in example_ids]
    unique = sorted({s for e in exs for s in e.seqs}, key=lambda s: (-len(data.sequences[s]), s))
    pos = {s: i for i, s in enumerate(unique)}
    rows = [data.sequences[s] for s in unique]
    groups: dict[RecordKind, dict[str, Tensor]] = {}
    for kind, build in TARGETS.items():
        slots = [i for i, e in enumerate(exs) if e.kind == kind]
        if slots:
            groups[kind] = {"slot": torch.tensor(slots), **build([exs[i] for i in slots], pos)}
    return RewardBatch(
        seq_ids=torch.tensor(unique),
        input_ids=pad_right(rows, pad_id),
        attention_mask=pad_right([[1] * len(r) for r in rows], 0),
        example_ids=torch.tensor(example_ids),
        groups=groups,
    )


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
    cols = [torch.bincount(torch.randint(0, n_examples, (n_examples,), generator=g), minlength=n_examples)
            for _ in range(n_heads)]
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
        raise DataError(spec, 0, "<source>", f"rows look like {fmt.name if fmt else kinds}, which cannot "
                        "train a reward model; expected pairs, rankings or ratings", reason="wrong kind")
    raise DataError(spec, 0, "<source>", "no readable rows", reason="empty source")


def load_reward_records(spec: str, kind: str, skip_invalid: bool) -> list[Record]:
    """Records of one source; `kind` 'auto' detects it (for a feedback project: the first kind it has)."""
    if kind != "auto":
        return load_training_records(spec, kind, skip_invalid=skip_invalid)  # type: ignore[arg-type]
    if not is_db_source(spec):
        return load_training_records(spec, detect_kind(spec), skip_invalid=skip_invalid)
    errors = []
    for candidate in TRAINABLE_KINDS:
        try:
            return load_training_records(spec, candidate, skip_invalid=skip_invalid)
        except ValueError as err:  # DataError and "no usable rows" are ValueErrors
            errors.append(f"{candidate}: {err}")
    raise DataError(spec, 0, "<source>", "no pairs, rankings or ratings: " + "; ".join(errors), reason="empty source")
