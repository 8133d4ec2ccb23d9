"""The RL stage's labels (Bai et al. 2022, sec. 4.1): the AI compares two responses of the SFT policy.

For every prompt the SFT policy samples two responses; a feedback principle is drawn and the judge is
asked which response is better under it, in both orders, or (``judge.compare=scores``) about each
response alone under the principle's one-reply form (`rlhfkit.judges.questions.compare_pair`).
Decided pairs become DPO / reward-model pairs; ties, flips left unlabelled and identical samples do
not, and are counted.
"""

from __future__ import annotations

import random
from typing import Any

from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.judges import Asker, Templates
from rlhfkit.judges.questions import Asking, compare_pair
from rlhfkit.loop.cai.principles import Constitution
from rlhfkit.rollout.generate import SamplingConfig, sample_texts


def ai_preferences(
    model: Any,
    tokenizer: Any,
    prompts: list[PromptText],
    asker: Asker,
    templates: Templates,
    constitution: Constitution,
    sampling: SamplingConfig,
    *,
    how: Asking,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per prompt: ``{prompt, a, b, principle, question, p_forward, p_reverse, p_first,
    flipped, label}`` (label ``first``/``second``/``tie``/None; ``identical`` when a == b)."""
    rng = random.Random(seed)
    questions = constitution.questions(how.compare)
    rows = []
    for prompt, (a, b) in zip(prompts, sample_texts(model, tokenizer, prompts, sampling, n=2, seed=seed), strict=True):
        index = rng.randrange(len(questions))
        row: dict[str, Any] = {"prompt": prompt, "a": a, "b": b, "principle": index}
        if a.strip() == b.strip():
            rows.append(row | {"label": "identical"})
            continue
        question = questions[index]
        v = compare_pair(asker, templates, prompt_text(prompt), a, b, how, question)
        rows.append(row | {"question": question, **v._asdict()})
    return rows


def preference_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{prompt, chosen, rejected}`` rows of the decided comparisons."""
    out = []
    for r in rows:
        if r["label"] == "first":
            out.append({"prompt": r["prompt"], "chosen": r["a"], "rejected": r["b"]})
        elif r["label"] == "second":
            out.append({"prompt": r["prompt"], "chosen": r["b"], "rejected": r["a"]})
    return out
