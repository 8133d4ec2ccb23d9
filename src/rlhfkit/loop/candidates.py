"""Prompts of a loop and what the current policy writes for annotators each round.

* The prompts are split once into training prompts (candidates, PPO rollouts) and held-out prompts
  (evaluation only), deterministically by seed, and written to the loop directory.
* Each round uses `prompts_per_round` training prompts, rotating through a seeded order so that
  successive rounds see different prompts before any repeats.
* K candidates per prompt become one item of the app's project (a K-way ranking or a pair),
  identical candidates dropped. Items are named ``rRR-NNNN`` (external ids), so the project's whole
  history stays traceable to rounds.
* Gold items, for quality control, reuse the candidates of a set whose gold scores differ clearly
  (`clear_subset`): the known answer is their gold order, so an annotator's gold accuracy measures how well they follow the gold.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rlhfkit.data.loaders import load_records, split_records, write_jsonl
from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.eval.gold import GoldScorer
from rlhfkit.feedback.entities import NewItem
from rlhfkit.models.loading import load_model
from rlhfkit.rollout.generate import SamplingConfig, sample_texts

TRAIN_FILE = "prompts-train.jsonl"
EVAL_FILE = "prompts-eval.jsonl"

GOLD_GAP = 0.3
"""Smallest gold-score gap between neighbours for a candidate set to become a gold item (the known
answer must be clear, or careful annotators would "fail" it)."""


def load_prompts(spec: str) -> list[PromptText]:
    """The prompt of every row of a prompts source."""
    return [r.prompt for r in load_records(spec, "prompts").records]


def split_loop_prompts(loop_dir: Path, prompts_spec: str, eval_spec: str, fraction: float, seed: int) -> dict[str, Any]:
    """Write the training and held-out prompt files; returns their paths and sizes."""
    records = load_records(prompts_spec, "prompts").records
    if eval_spec:
        train, held = list(records), load_records(eval_spec, "prompts").records
    else:
        train, held = split_records(records, fraction, seed)
    if len(train) < 2 or not held:
        raise ValueError(
            f"{prompts_spec}: need at least 2 training and 1 held-out prompt, got {len(train)} and {len(held)}"
        )
    write_jsonl(loop_dir / TRAIN_FILE, ({"prompt": r.prompt} for r in train))
    write_jsonl(loop_dir / EVAL_FILE, ({"prompt": r.prompt} for r in held))
    return {
        "train": str(loop_dir / TRAIN_FILE),
        "eval": str(loop_dir / EVAL_FILE),
        "n_train": len(train),
        "n_eval": len(held),
    }


def round_prompts(prompts: list[PromptText], round_index: int, per_round: int, seed: int) -> list[PromptText]:
    """Round r's share of the training prompts: a window sliding over one seeded order (0 = all)."""
    if per_round <= 0 or per_round >= len(prompts):
        return list(prompts)
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    start = ((round_index - 1) * per_round) % len(prompts)
    picked = [order[(start + i) % len(prompts)] for i in range(per_round)]
    return [prompts[i] for i in picked]


def sample_candidates(
    model_name: str, prompts: list[PromptText], k: int, sampling: SamplingConfig, seed: int, progress: bool
) -> list[list[str]]:
    """K sampled responses per prompt from `model_name`, with a progress bar over responses."""
    loaded = load_model(model_name, dtype="auto")
    bar = tqdm(total=len(prompts) * k, desc="candidates", unit="resp", disable=not progress, dynamic_ncols=True)
    try:
        return sample_texts(loaded.model, loaded.tokenizer, prompts, sampling, n=k, seed=seed, on_batch=bar.update)
    finally:
        bar.close()


def distinct(responses: list[str]) -> list[str]:
    """Responses without exact repeats (first occurrence kept) and without empty ones."""
    seen: set[str] = set()
    out = []
    for r in responses:
        if r.strip() and r not in seen:
            seen.add(r)
            out.append(r)
    return out


def candidate_items(
    prompts: list[PromptText], candidates: list[list[str]], round_index: int, model: str, k: int
) -> list[NewItem]:
    """One item per prompt with at least 2 distinct candidates (at most `k`)."""
    items = []
    for i, (prompt, responses) in enumerate(zip(prompts, candidates, strict=True)):
        unique = distinct(responses)[:k]
        if len(unique) >= 2:
            items.append(
                NewItem(
                    prompt=prompt,
                    responses=tuple(unique),
                    external_id=f"r{round_index:02d}-{i:04d}",
                    models=(model,) * len(unique),
                )
            )
    return items


def gold_shortfall(asked: int, made: int, sets: int) -> str | None:
    """Why a round has fewer gold items than `asked` (None when it has them all)."""
    if made >= asked:
        return None
    return (
        f"asked for {asked} gold items, made {made}: only {made} of {sets} candidate sets have two or more responses "
        f"at least GOLD_GAP={GOLD_GAP} apart in gold score (a gold item's known answer must be clear); "
        "more candidates (candidates.per_prompt, candidates.prompts_per_round) give more chances"
    )


def _gold_answer(task_type: str, order: list[int]) -> dict[str, Any]:
    """The known answer in the task type's payload, responses named by position."""
    return {"choice": order[0]} if task_type == "pairwise" else {"ranking": order}


def clear_subset(scores: list[float]) -> list[int]:
    """Indices of the responses whose gold order is clear, best first: walking down from the best,
    each kept response scores at least `GOLD_GAP` below the last one kept.

    A whole candidate set is rarely clear: eight sentiment scores in [-1, 1] cannot all be 0.3 apart
    (seven gaps need 2.1), so the demo asked for gold items and got none. The clear subset can be."""
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if not kept or scores[kept[-1]] - scores[i] >= GOLD_GAP:
            kept.append(i)
    return kept


def gold_items(
    items: list[NewItem], gold: GoldScorer, n: int, round_index: int, task_type: str, seed: int
) -> list[NewItem]:
    """Up to `n` gold items: each candidate set cut to its `clear_subset` (at least two responses, in their
    original order; a pairwise item keeps both or is skipped), with the gold order as the known answer."""
    scored: list[tuple[NewItem, list[int]]] = []
    for item in items:
        scores = [gold(prompt_text(item.prompt), r) for r in item.responses]
        best_first = clear_subset(scores)
        if len(best_first) >= 2 and (task_type != "pairwise" or len(best_first) == len(scores)):
            scored.append((item, best_first))
    random.Random(seed * 31 + round_index).shuffle(scored)
    out = []
    for i, (item, best_first) in enumerate(scored[:n]):
        keep = sorted(best_first)  # the responses in their original order; the answer names their positions
        out.append(
            NewItem(
                prompt=item.prompt,
                responses=tuple(item.responses[j] for j in keep),
                gold=_gold_answer(task_type, [keep.index(j) for j in best_first]),
                external_id=f"r{round_index:02d}-gold-{i:03d}",
                models=tuple(item.models[j] for j in keep) if item.models else item.models,
            )
        )
    return out


def items_to_json(items: list[NewItem]) -> list[dict[str, Any]]:
    """Items as JSON rows (the round's ``candidates.jsonl``)."""
    return [
        {
            "id": it.external_id,
            "prompt": it.prompt,
            "responses": list(it.responses),
            "models": list(it.models),
            **({"gold": it.gold} if it.gold is not None else {}),
        }
        for it in items
    ]


def items_from_json(rows: list[dict[str, Any]]) -> list[NewItem]:
    return [
        NewItem(
            prompt=r["prompt"],
            responses=tuple(r["responses"]),
            external_id=r["id"],
            models=tuple(r.get("models", ())),
            gold=r.get("gold"),
        )
        for r in rows
    ]
