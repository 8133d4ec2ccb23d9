"""Evaluating a reward model on held-out judgments, and scoring JSONL files with it.

Every kind of judgment is reduced to ordered pairs for evaluation: a comparison is one pair, a
K-way ranking its K(K-1)/2 pairs, and ratings of the same prompt form a pair whenever they differ
(equal ratings are ties). Metrics (ties excluded from all but the count):

* ``accuracy``: share of pairs whose preferred response scores higher (an exact tie of scores counts 1/2);
* ``mean_margin``: mean normalized score difference, preferred minus other;
* ``ece``: expected calibration error of P(preferred wins) = sigmoid(raw difference), the Bradley-Terry
  probability the model was trained to output (Guo et al. 2017, eq. 3, 10 equal-width bins);
* ``by_length``: accuracy per bucket of the longer response's token count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from rlhfkit.config import Config, require
from rlhfkit.data.errors import DataError
from rlhfkit.data.fields import RowContext
from rlhfkit.data.formats import detect_format, parse_row
from rlhfkit.data.loaders import DEFAULT_RATING_SCALE, iter_jsonl, write_jsonl
from rlhfkit.data.records import (
    Comparison,
    Demonstration,
    Ranking,
    Rating,
    Record,
    Source,
)
from rlhfkit.models.reward import RewardModel, RewardScores
from rlhfkit.train.reward.data import (
    RewardData,
    RewardExample,
    encode_records,
    load_reward_records,
)

LENGTH_EDGES: tuple[int, ...] = (0, 32, 64, 128, 256)
"""Lower edges of the response-length buckets, in tokens (the last bucket is open-ended)."""

EvalPair = tuple[int, int, bool]
"""(preferred sequence, other sequence, tie)."""


def _pairs_of_comparisons(exs: list[RewardExample]) -> list[EvalPair]:
    return [(e.seqs[0], e.seqs[1], e.tie) for e in exs]


def _pairs_of_rankings(exs: list[RewardExample]) -> list[EvalPair]:
    return [(e.seqs[i], e.seqs[j], False) for e in exs for i in range(len(e.seqs)) for j in range(i + 1, len(e.seqs))]


def _pairs_of_ratings(exs: list[RewardExample]) -> list[EvalPair]:
    by_prompt: dict[int, list[RewardExample]] = {}
    for e in exs:
        by_prompt.setdefault(e.prompt_id, []).append(e)
    out: list[EvalPair] = []
    for group in by_prompt.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                # Compare ratings on a common 0..1 scale, so rows with different scales still compare.
                ua = (a.rating - a.scale[0]) / (a.scale[1] - a.scale[0])
                ub = (b.rating - b.scale[0]) / (b.scale[1] - b.scale[0])
                hi, lo = (a, b) if ua >= ub else (b, a)
                out.append((hi.seqs[0], lo.seqs[0], ua == ub))
    return out


EVAL_PAIRS: dict[str, Callable[[list[RewardExample]], list[EvalPair]]] = {
    "pairs": _pairs_of_comparisons,
    "rankings": _pairs_of_rankings,
    "ratings": _pairs_of_ratings,
}
"""Kind -> the ordered pairs its judgments imply."""


def eval_pairs(data: RewardData) -> list[EvalPair]:
    return [p for kind, fn in EVAL_PAIRS.items() for p in fn([e for e in data.examples if e.kind == kind])]


def expected_calibration_error(prob: Tensor, n_bins: int = 10) -> float:
    """ECE of predictions P(first preferred) = `prob` (N,) when the first is always the preferred one.

    Confidence is ``max(p, 1 - p)`` and a prediction is right when ``p > 1/2``; with bins of
    confidence over [0.5, 1], ``ECE = sum_b |b|/N * |accuracy_b - confidence_b|`` (Guo et al. 2017, eq. 3).
    """
    if prob.numel() == 0:
        return float("nan")
    conf = torch.maximum(prob, 1 - prob)
    correct = (prob > 0.5).float() + 0.5 * (prob == 0.5).float()
    bins = ((conf - 0.5) * 2 * n_bins).long().clamp(0, n_bins - 1)
    ece = torch.zeros(())
    for b in range(n_bins):
        members = bins == b
        if bool(members.any()):
            ece += members.float().mean() * (correct[members].mean() - conf[members].mean()).abs()
    return float(ece)


def _accuracy(delta: Tensor) -> float:
    return float(((delta > 0).float() + 0.5 * (delta == 0).float()).mean()) if delta.numel() else float("nan")


def _bucket_name(i: int) -> str:
    hi = f"-{LENGTH_EDGES[i + 1] - 1}" if i + 1 < len(LENGTH_EDGES) else "+"
    return f"{LENGTH_EDGES[i]}{hi}"


def pair_metrics(raw: Tensor, normalized: Tensor, pairs: list[EvalPair], response_lengths: list[int]) -> dict[str, Any]:
    """Metrics of `pairs` from per-sequence raw and normalized head outputs, both (N, K)."""
    decided = [p for p in pairs if not p[2]]
    a = torch.tensor([p[0] for p in decided], dtype=torch.long)
    b = torch.tensor([p[1] for p in decided], dtype=torch.long)
    delta = normalized[a].mean(dim=1) - normalized[b].mean(dim=1)  # (n,) on the scale users score with
    raw_delta = raw[a].mean(dim=1) - raw[b].mean(dim=1)  # (n,) the scale sigmoid(.) was trained on
    longer = torch.tensor([max(response_lengths[i], response_lengths[j]) for i, j, _ in decided], dtype=torch.long)
    bucket = torch.bucketize(longer, torch.tensor(LENGTH_EDGES[1:]), right=True)
    by_length = {
        _bucket_name(i): {"n": int((bucket == i).sum()), "accuracy": _accuracy(delta[bucket == i])}
        for i in range(len(LENGTH_EDGES))
        if bool((bucket == i).any())
    }
    out: dict[str, Any] = {
        "accuracy": _accuracy(delta),
        "n": len(decided),
        "ties": len(pairs) - len(decided),
        "mean_margin": float(delta.mean()) if len(decided) else float("nan"),
        "ece": expected_calibration_error(torch.sigmoid(raw_delta)),
        "bt_loss": float(torch.nn.functional.softplus(-raw_delta).mean()) if len(decided) else float("nan"),
        "by_length": by_length,
    }
    if raw.shape[1] > 1:
        out["mean_head_std"] = float(normalized.std(dim=1).mean())
    return out


def evaluate_reward_model(
    model: RewardModel, data: RewardData, batch_size: int = 16, progress: bool = False
) -> dict[str, Any]:
    """Score every sequence of `data` once and compute the pair metrics."""
    raw = model.raw_scores(data.sequences, batch_size, progress)
    return pair_metrics(raw, model.normalize(raw), eval_pairs(data), data.response_lengths)


@dataclass(frozen=True)
class RewardEvalConfig(Config):
    """`rlhfkit reward eval`: metrics of a reward model on held-out judgments."""

    model: str = ""
    """Reward model directory (a finished `rlhfkit reward train` run)."""
    data: str = ""
    """Judgments to evaluate on: pairs, rankings or ratings (file, dataset directory or DBURL#PROJECT)."""
    kind: Literal["auto", "pairs", "rankings", "ratings"] = "auto"
    """Kind of judgments in `data`; 'auto' detects it."""
    skip_invalid: bool = False
    """Skip (and report) invalid rows instead of failing on the first."""
    batch_size: int = 16
    """Sequences per forward pass."""
    json: bool = False
    """Print JSON instead of a table."""
    progress: bool = True
    """Show a progress bar (on stderr) while scoring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.model), "model is required (a reward model directory)")
        require(bool(self.data), "data is required (pairs, rankings or ratings)")
        require(self.batch_size >= 1, "batch_size must be at least 1")


def evaluate_source(
    model: RewardModel,
    data: str,
    kind: str = "auto",
    skip_invalid: bool = False,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """`rlhfkit reward eval`: metrics of a reward model on every judgment of a data source."""
    records = load_reward_records(data, kind, skip_invalid)
    encoded = encode_records(model.tokenizer, records, model.meta.max_length, model.meta.chat_template)
    return evaluate_reward_model(model, encoded, batch_size, progress)


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table of `pair_metrics` output."""
    lines = [
        f"{'pairs':<14}{metrics['n']} ({metrics['ties']} ties excluded)",
        f"{'accuracy':<14}{metrics['accuracy']:.4f}",
        f"{'mean margin':<14}{metrics['mean_margin']:.4f}",
        f"{'ECE':<14}{metrics['ece']:.4f}",
        f"{'BT loss':<14}{metrics['bt_loss']:.4f}",
    ]
    if "mean_head_std" in metrics:
        lines.append(f"{'head std':<14}{metrics['mean_head_std']:.4f}")
    lines.append("accuracy by response length (tokens of the longer response):")
    for name, row in metrics["by_length"].items():
        lines.append(f"  {name:<12}{row['accuracy']:.4f}  (n={row['n']})")
    return "\n".join(lines)


# ---- scoring files ---------------------------------------------------------------------------


def _score_fields(prefix: str, scores: RewardScores, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {prefix: float(scores.mean[i])}
    if scores.std is not None:
        out[f"{prefix}_std"] = float(scores.std[i])
        out[f"{prefix}_per_head"] = [float(x) for x in scores.per_head[i]]
    return out


def _list_fields(prefix: str, scores: RewardScores, rows: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {prefix: [float(scores.mean[i]) for i in rows]}
    if scores.std is not None:
        out[f"{prefix}_std"] = [float(scores.std[i]) for i in rows]
        out[f"{prefix}_per_head"] = [[float(x) for x in scores.per_head[i]] for i in rows]
    return out


ScoreWriter = Callable[[RewardScores, list[int]], dict[str, Any]]

ROW_SCORERS: dict[type, tuple[Callable[[Any], list[str]], ScoreWriter]] = {
    Demonstration: (lambda r: [r.response], lambda s, rows: _score_fields("score", s, rows[0])),
    Rating: (lambda r: [r.response], lambda s, rows: _score_fields("score", s, rows[0])),
    Comparison: (
        lambda r: [r.chosen, r.rejected],
        lambda s, rows: {**_score_fields("chosen_score", s, rows[0]), **_score_fields("rejected_score", s, rows[1])},
    ),
    Ranking: (lambda r: list(r.responses), lambda s, rows: _list_fields("scores", s, rows)),
}
"""Record type -> (its responses to score, the fields added to its row from their scores)."""


def _parse_scorable(row: dict[str, Any], path: Path, line: int) -> Record:
    ctx = RowContext(Source(str(path), line), DEFAULT_RATING_SCALE)
    fmt = detect_format(row)
    kind = fmt.kinds[0] if fmt is not None and fmt.kinds else None
    if kind not in ("demos", "ratings", "pairs", "rankings"):
        raise ctx.error(
            "response",
            "nothing to score: expected prompt + response (or chosen/rejected, or responses)",
            "missing field",
        )
    return parse_row(row, kind, ctx)


@dataclass(frozen=True)
class RewardScoreConfig(Config):
    """`rlhfkit reward score`: add reward scores to every row of a JSONL file."""

    model: str = ""
    """Reward model directory (a finished `rlhfkit reward train` run)."""
    data: str = ""
    """JSONL rows with prompt + response (or chosen/rejected, or responses)."""
    output: str = ""
    """JSONL file the scored rows go to."""
    batch_size: int = 16
    """Sequences per forward pass."""
    progress: bool = True
    """Show a progress bar (on stderr) while scoring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.model), "model is required (a reward model directory)")
        require(bool(self.data), "data is required (a JSONL file)")
        require(bool(self.output), "output is required (a JSONL file)")
        require(self.batch_size >= 1, "batch_size must be at least 1")


def score_file(
    model: RewardModel, data: str | Path, output: str | Path, batch_size: int = 16, progress: bool = False
) -> int:
    """Add scores to every row of a JSONL file and write them to `output`; returns the row count.

    Rows with a ``response`` get ``score``; pairs get ``chosen_score``/``rejected_score``; rankings a
    ``scores`` list. With K > 1 heads each also gets ``*_std`` and ``*_per_head``. Scores are normalized.
    """
    path = Path(data)
    rows, records = [], []
    for line, row in iter_jsonl(path):
        rows.append(row)
        records.append(_parse_scorable(row, path, line))
    prompts: list[Any] = []
    responses: list[str] = []
    spans: list[list[int]] = []
    for rec in records:
        texts = ROW_SCORERS[type(rec)][0](rec)
        spans.append(list(range(len(responses), len(responses) + len(texts))))
        prompts.extend([rec.prompt] * len(texts))
        responses.extend(texts)
    if not rows:
        raise DataError(str(path), 0, "<source>", "no rows to score", reason="empty source")
    scores = model.score(prompts, responses, batch_size=batch_size, progress=progress)
    out = [
        {**row, **ROW_SCORERS[type(rec)][1](scores, span)} for row, rec, span in zip(rows, records, spans, strict=True)
    ]
    return write_jsonl(output, out)


def metrics_json(metrics: dict[str, Any]) -> str:
    """JSON text of the metrics; undefined values (NaN, e.g. accuracy of no pairs) become null."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return None if isinstance(v, float) and math.isnan(v) else v

    return json.dumps(clean(metrics), indent=2)
