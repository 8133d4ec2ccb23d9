"""Evaluating one round's policy on the held-out prompts, against the round-0 policy.

For every held-out prompt the policy samples `samples_per_prompt` responses with the same seeds as
the round-0 policy did (common random numbers: the two sides of each comparison differ only by the
policy). Per sample it records:

* ``kl``: ``sum_t log pi(y_t | .) - log pi_0(y_t | .)`` over the sampled tokens at the sampling
  temperature: the k1 estimate of KL(pi || pi_0) in nats, unbiased for samples of pi (Schulman 2020);
  pi_0 is the round-0 (initial, e.g. SFT) policy, so the KL is measured from the start of the loop;
* ``gold``: the gold scorer (when there is one), ``proxy`` and ``proxy_std``: the round's reward model
  (mean and ensemble std over its heads), and the same reward model's score of the round-0 response
  with the same seed (``baseline_proxy``), so win rates by the proxy compare like with like;
* length and distinct-2, the drift signals.

Results go to ``round-RR/eval/samples.jsonl`` and ``round-RR/eval/summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rlhfkit.data.loaders import write_jsonl
from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.eval.gold import GoldScorer, repetition_stats
from rlhfkit.eval.winrate import win_rate
from rlhfkit.files import write_json_atomic
from rlhfkit.models.lm import response_logprobs
from rlhfkit.models.loading import load_model
from rlhfkit.rollout.generate import SamplingConfig, sample

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"


@torch.no_grad()
def sample_with_kl(
    policy: str,
    reference: str | None,
    prompts: list[PromptText],
    sampling: SamplingConfig,
    n: int,
    seed: int,
    progress: bool,
) -> tuple[list[PromptText], list[str], list[float]]:
    """`n` samples per prompt from `policy` and their KL estimates against `reference` (None: zeros).

    Returns (prompt of each sample, response texts, per-sample KL in nats); rows are prompt-major:
    sample j of prompt i is row ``i * n + j``.
    """
    loaded = load_model(policy, dtype="fp32")
    model, tokenizer = loaded.model, loaded.tokenizer
    ref_model = load_model(reference, dtype="fp32").model if reference is not None else None
    rows = [p for p in prompts for _ in range(n)]
    texts: list[str] = []
    kls: list[float] = []
    bar = tqdm(total=len(rows), desc="evaluate", unit="resp", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(rows), sampling.batch_size):
        batch = rows[start : start + sampling.batch_size]
        out = sample(model, tokenizer, batch, sampling, generator_seed=seed, first_row=start)
        texts += out.texts
        if ref_model is None:
            kls += [0.0] * len(batch)
        else:
            ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
            mask = torch.cat([out.prompt_mask, out.response_mask], dim=1)
            start_col = out.prompt_ids.shape[1]
            logp, _ = response_logprobs(model, ids, mask, start_col, temperature=sampling.temperature)
            ref_logp, _ = response_logprobs(ref_model, ids, mask, start_col, temperature=sampling.temperature)
            kls += ((logp - ref_logp) * out.response_mask).sum(dim=1).tolist()
        bar.update(len(batch))
    bar.close()
    return rows, texts, kls


def proxy_scores(
    reward_model: Any, prompts: list[PromptText], responses: list[str]
) -> tuple[list[float], list[float] | None]:
    """Normalized reward-model scores (mean over heads) and the heads' std (None for one head)."""
    scores = reward_model.score(list(prompts), list(responses), batch_size=16)
    std = None if scores.std is None else scores.std.tolist()
    return scores.mean.tolist(), std


def _mean(values: list[float] | None) -> float | None:
    return None if not values else float(np.mean(values))


def read_samples(eval_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (eval_dir / SAMPLES_FILE).read_text(encoding="utf-8").splitlines() if line]


SUMMARY_SCORES = {
    "gold": "gold",
    "proxy": "proxy",
    "ensemble_std": "proxy_std",
    "baseline_proxy": "baseline_proxy",
    "baseline_ensemble_std": "baseline_proxy_std",
}
"""Summary key -> the per-sample score it averages."""


def _sample_rows(
    rows: list[PromptText],
    texts: list[str],
    kls: list[float],
    stats: list[dict[str, Any]],
    scores: dict[str, list[float] | None],
    n: int,
) -> list[dict[str, Any]]:
    """One row per sample: prompt, response, its KL, length and distinct-2, and every score it has."""
    out = []
    for i, (p, t) in enumerate(zip(rows, texts, strict=True)):
        row: dict[str, Any] = {
            "prompt": p,
            "sample": i % n,
            "response": t,
            "kl": kls[i],
            "length": stats[i]["n_tokens"],
            "distinct2": stats[i]["distinct2"],
        }
        row.update({key: values[i] for key, values in scores.items() if values is not None})
        out.append(row)
    return out


def evaluate_policy(
    *,
    round_index: int,
    policy: str,
    initial_policy: str,
    reward_dir: Path | None,
    prompts: list[PromptText],
    gold: GoldScorer | None,
    sampling: SamplingConfig,
    n: int,
    seed: int,
    out_dir: Path,
    baseline_dir: Path | None,
    progress: bool,
) -> dict[str, Any]:
    """Evaluate `policy` (round `round_index`) and write its samples and summary into `out_dir`.

    `baseline_dir` is the round-0 evaluation directory (None when this *is* round 0): win rates
    against it are computed by gold and, when `reward_dir` is given, by the reward model.
    """
    reference = None if round_index == 0 else initial_policy
    rows, texts, kls = sample_with_kl(policy, reference, prompts, sampling, n, seed, progress)
    golds = [float(gold(prompt_text(p), t)) for p, t in zip(rows, texts, strict=True)] if gold is not None else None
    proxy = proxy_std = baseline_proxy = baseline_std = None
    baseline = read_samples(baseline_dir) if baseline_dir is not None else None
    if reward_dir is not None:
        from rlhfkit.models.reward import load_reward_model

        reward_model = load_reward_model(reward_dir)
        proxy, proxy_std = proxy_scores(reward_model, rows, texts)
        if baseline is not None:
            baseline_proxy, baseline_std = proxy_scores(
                reward_model, [b["prompt"] for b in baseline], [b["response"] for b in baseline]
            )
    stats = [repetition_stats(t) for t in texts]
    scores = {
        "gold": golds,
        "proxy": proxy,
        "proxy_std": proxy_std,
        "baseline_proxy": baseline_proxy,
        "baseline_proxy_std": baseline_std,
    }
    write_jsonl(out_dir / SAMPLES_FILE, _sample_rows(rows, texts, kls, stats, scores, n))
    summary: dict[str, Any] = {
        "round": round_index,
        "policy": policy,
        "n": len(texts),
        "kl": _mean(kls),
        **{key: _mean(scores[name]) for key, name in SUMMARY_SCORES.items()},
        "length": _mean([s["n_tokens"] for s in stats]),
        "distinct2": _mean([s["distinct2"] for s in stats]),
        "win_rate": {},
    }
    if baseline is not None and golds is not None:
        summary["win_rate"]["gold"] = win_rate(golds, [b["gold"] for b in baseline]).to_dict()
    if baseline_proxy is not None and proxy is not None:
        summary["win_rate"]["proxy"] = win_rate(proxy, baseline_proxy).to_dict()
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary
