"""`rlhfkit eval`: win rate of one policy against a baseline on a prompt set, with a confidence interval.

Both models sample `samples_per_prompt` responses per prompt with the same seeds; each pair
(policy's response i, baseline's response i) is one comparison, judged by

* ``rm:DIR``: a reward model (its normalized mean score; higher wins, equal scores tie);
* ``gold:NAME``: a gold scorer of `rlhfkit.eval.gold` (``gold:sentiment``, ``gold:python:mod:fn``);
* ``app:DBURL#PROJECT``: people in the feedback app. The first call samples both models and creates
  PROJECT as pairwise tasks (the policy's and the baseline's response to the same prompt; the app
  shows them in a random order per annotator) and reports them pending. Once people have judged,
  running the same command again (or with ``--collect``, which never samples) reads the judgments
  back: per item, the majority of its judgments decides (ties and "both bad" count half), and items
  not judged yet are reported as pending.

The result has ``win_rate``, ``n``, ``ci_low``, ``ci_high`` (Wilson, or a percentile bootstrap with
``ci=bootstrap``), ``wins``/``losses``/``ties`` and, for the app, ``pending``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.config import require
from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.eval.winrate import CI_METHODS, WinRate, score_fn_from_gold, score_win_rate, win_rate_from_choices
from rlhfkit.rollout.generate import SamplingConfig

EVAL_ACCOUNT = "rlhfkit-eval"
"""Admin account (random password) under which `rlhfkit eval` creates comparison projects."""


@dataclass(frozen=True)
class CompareConfig:
    """`rlhfkit eval`: win rate of POLICY against BASELINE judged by a reward model, a gold scorer or people."""

    policy: str = ""
    """MODEL whose win rate is measured (a run directory, 'smollm2', a hub id)."""
    baseline: str = ""
    """MODEL it is compared with (e.g. the SFT model)."""
    prompts: str = ""
    """Prompts file (any format rlhfkit reads; each row's prompt is used)."""
    judge: str = ""
    """rm:DIR (a reward model), gold:NAME (a gold scorer) or app:DBURL#PROJECT (people in the feedback app)."""
    json: bool = False
    """Print the result as JSON instead of a table."""
    collect: bool = False
    """app judge only: read the judgments of an existing PROJECT without sampling anything."""
    samples_per_prompt: int = 1
    """Responses per prompt and model; comparisons = prompts x this."""
    limit: int = 0
    """Use only the first this many prompts (0 = all)."""
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=0.7)
    """How both models sample (the same settings and seeds on both sides)."""
    seed: int = 0
    """Sampling seed."""
    ci: str = "wilson"
    """Confidence interval: 'wilson' or 'bootstrap' (percentile, over comparisons)."""
    confidence: float = 0.95
    """Confidence level of the interval."""
    overlap: int = 1
    """app judge: people judging each pair."""
    output: str = ""
    """Also write the result as JSON to this file ('' = no file)."""
    progress: bool = True
    """Progress bars while sampling."""

    def __post_init__(self) -> None:
        require(bool(self.judge), "judge is required: rm:DIR, gold:NAME or app:DBURL#PROJECT")
        kind = self.judge.split(":", 1)[0]
        require(kind in JUDGES, f"judge must start with one of {', '.join(k + ':' for k in JUDGES)}, got {self.judge!r}")
        require(not self.collect or kind == "app", "collect applies to the app judge only")
        require(self.collect or bool(self.policy and self.baseline and self.prompts),
                "policy, baseline and prompts are required (except with collect)")
        require(self.samples_per_prompt >= 1 and self.limit >= 0, "samples_per_prompt >= 1 and limit >= 0")
        require(self.ci in CI_METHODS, f"ci must be one of {', '.join(CI_METHODS)}")
        require(0.0 < self.confidence < 1.0, "confidence must be in (0, 1)")
        require(1 <= self.overlap <= 100, "overlap must be in [1, 100]")


def sample_both(cfg: CompareConfig) -> tuple[list[PromptText], list[str], list[str]]:
    """(prompt of each comparison, policy responses, baseline responses), prompt-major, same seeds."""
    from tqdm import tqdm

    from rlhfkit.data.loaders import load_records
    from rlhfkit.models.loading import load_model
    from rlhfkit.rollout.generate import sample_texts

    prompts = [r.prompt for r in load_records(cfg.prompts, "prompts", limit=cfg.limit or None).records]
    sides = []
    for model_name in (cfg.policy, cfg.baseline):
        loaded = load_model(model_name, dtype="auto")
        bar = tqdm(total=len(prompts) * cfg.samples_per_prompt, desc=f"sample {Path(model_name).name}", unit="resp",
                   disable=not cfg.progress, dynamic_ncols=True)
        texts = sample_texts(loaded.model, loaded.tokenizer, prompts, cfg.sampling, n=cfg.samples_per_prompt,
                             seed=cfg.seed, on_batch=bar.update)
        bar.close()
        sides.append([t for row in texts for t in row])
        del loaded  # one model in memory at a time
    rows = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    return rows, sides[0], sides[1]


def _scored(cfg: CompareConfig, score: Callable[[list[str], list[str]], list[float]]) -> dict[str, Any]:
    prompts, policy, baseline = sample_both(cfg)
    texts = [prompt_text(p) for p in prompts]
    result = score_win_rate(texts, policy, baseline, score, ci=cfg.ci, confidence=cfg.confidence, seed=cfg.seed)
    return {**result.to_dict(), "pending": 0}


def judge_rm(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """Reward-model judge: the normalized mean score over its heads."""
    from rlhfkit.models.reward import load_reward_model

    model = load_reward_model(spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return model.score(prompts, responses).mean.tolist()

    return _scored(cfg, score)


def judge_gold(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """Gold-scorer judge."""
    from rlhfkit.eval.gold import resolve_gold

    return _scored(cfg, score_fn_from_gold(resolve_gold(spec)))


def judge_app(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """People in the app: create the pairwise project once, then read its judgments back."""
    from rlhfkit.feedback.errors import NotFound
    from rlhfkit.feedback.export import split_data_url
    from rlhfkit.feedback.store import FeedbackStore

    url, project = split_data_url(spec)
    store = FeedbackStore(url)
    try:
        try:
            store.project(project)
        except NotFound:
            if cfg.collect:
                raise ValueError(f"no project {project!r} in {url}: run without --collect first to create it") from None
            create_comparison_project(store, project, cfg)
        return {**collect_app_judgments(store, project, cfg), "project": project, "db": url}
    finally:
        store.close()


def _admin_id(store: Any) -> int:
    """The id of `EVAL_ACCOUNT`, created with a random password (never used to log in) if missing."""
    import secrets

    from rlhfkit.feedback.errors import NotFound

    try:
        return store.user(EVAL_ACCOUNT).id
    except NotFound:
        return store.create_user(EVAL_ACCOUNT, "admin", secrets.token_urlsafe(24)).id


def create_comparison_project(store: Any, project: str, cfg: CompareConfig) -> int:
    """Sample both models and add one pairwise item per comparison (policy at position 0)."""
    from rlhfkit.feedback.entities import NewItem, ProjectSpec

    prompts, policy, baseline = sample_both(cfg)
    admin_id = _admin_id(store)
    guidelines = "Which response answers the prompt better? Choose tie if they are equally good."
    store.create_project(ProjectSpec(name=project, task_type="pairwise", overlap=cfg.overlap, guidelines=guidelines,
                                     title=f"{cfg.policy} vs {cfg.baseline}"), by_user=admin_id)
    items = [NewItem(prompt=p, responses=(a, b), external_id=f"cmp-{i:05d}",
                     models=(f"policy:{cfg.policy}", f"baseline:{cfg.baseline}"))
             for i, (p, a, b) in enumerate(zip(prompts, policy, baseline, strict=True))]
    return len(store.add_items(project, items, by_user=admin_id, source="eval"))


def item_outcome(choices: list[Any], policy_id: int, baseline_id: int) -> str:
    """Majority of an item's pairwise answers as "a" (policy), "b" (baseline) or "tie" (tie, both bad, split)."""
    votes = Counter("a" if c == policy_id else "b" if c == baseline_id else "tie" for c in choices)
    if votes["a"] > votes["b"]:
        return "a"
    return "b" if votes["b"] > votes["a"] else "tie"


def collect_app_judgments(store: Any, project: str, cfg: CompareConfig) -> dict[str, Any]:
    """Win rate over the items judged so far; ``pending`` = items still without a judgment."""
    by_item: dict[int, list[Any]] = {}
    for j in store.judgments(project):
        if not j["gold"]:
            by_item.setdefault(j["item_id"], []).append(j["payload"].get("choice"))
    progress = store.progress(project)
    outcomes = []
    for item_id, choices in sorted(by_item.items()):
        responses = sorted(store.item(item_id)["responses"], key=lambda r: r["position"])
        outcomes.append(item_outcome(choices, responses[0]["id"], responses[1]["id"]))
    pending = progress.items - len(outcomes)
    if not outcomes:
        return {"win_rate": None, "n": 0, "ci_low": None, "ci_high": None, "wins": 0, "losses": 0, "ties": 0,
                "pending": pending}
    result: WinRate = win_rate_from_choices(outcomes, ci=cfg.ci, confidence=cfg.confidence, seed=cfg.seed)
    return {**result.to_dict(), "pending": pending}


JUDGES: dict[str, Callable[[CompareConfig, str], dict[str, Any]]] = {"rm": judge_rm, "gold": judge_gold, "app": judge_app}
"""Judge kind (the prefix of --judge) -> ``fn(cfg, rest of the spec) -> result``."""


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Sample, judge and return the result (also written to `cfg.output` when set)."""
    kind, spec = cfg.judge.split(":", 1)
    result = {"judge": cfg.judge, "policy": cfg.policy, "baseline": cfg.baseline, **JUDGES[kind](cfg, spec)}
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    """A small table of a result."""
    lines = [f"{'judge':<12} {result['judge']}", f"{'policy':<12} {result['policy']}",
             f"{'baseline':<12} {result['baseline']}", f"{'n':<12} {result['n']}"]
    if result.get("win_rate") is not None:
        lines.append(f"{'win rate':<12} {result['win_rate']:.3f}  (CI {result['ci_low']:.3f} - {result['ci_high']:.3f})")
        lines.append(f"{'w / t / l':<12} {result['wins']} / {result['ties']} / {result['losses']}")
    else:
        lines.append(f"{'win rate':<12} - (nothing judged yet)")
    if result.get("pending"):
        lines.append(f"{'pending':<12} {result['pending']} pairs await judgments in project {result.get('project')!r}; "
                     f"run the same command again (or with --collect) later")
    return "\n".join(lines)


def compare_main(cfg: CompareConfig) -> str:
    """What the CLI prints: JSON or the table."""
    result = compare(cfg)
    return json.dumps(result, indent=2) if cfg.json else format_result(result)
