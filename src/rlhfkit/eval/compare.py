"""`rlhfkit eval`: win rate of one policy against a baseline on a prompt set, with a confidence interval.

Both models sample `samples_per_prompt` responses per prompt with the same seeds; each pair
(policy's response i, baseline's response i) is one comparison, judged by

* ``rm:DIR``: a reward model (its normalized mean score; higher wins, equal scores tie);
* ``gold:NAME``: a gold scorer of `rlhfkit.eval.gold` (``gold:sentiment``, ``gold:python:mod:fn``);
* ``ai:MODEL|URL``: an AI judge of `rlhfkit.judges` (a model rlhfkit loads, or an OpenAI-compatible
  endpoint), asked as ``ai_judge`` says: both orders per pair, or each response scored alone; a pair
  it leaves unlabelled (a flip under ``ai_judge.on_flip=unlabelled``) is not counted;
* ``app:DBURL#PROJECT``: people in the feedback app. The first call samples both models and creates
  PROJECT as pairwise tasks (the policy's and the baseline's response to the same prompt; the app
  shows them in a random order per annotator) and reports them pending. Once people have judged,
  running the same command again (or with ``--collect``, which never samples) reads the judgments
  back: per item, the majority of its judgments decides (ties and "both bad" count half), and items
  not judged yet are reported as pending.

This module holds the config, the sampling and the judges evaluation owns (`JUDGES`: rm, gold and
ai). The app judge needs the feedback app, which evaluation may not import; `rlhfkit.loop.compare`
adds it and runs the command.

The result has ``win_rate``, ``n``, ``ci_low``, ``ci_high`` (Wilson, or a percentile bootstrap with
``ci=bootstrap``), ``wins``/``losses``/``ties`` and, for the app, ``pending``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from rlhfkit.config import require
from rlhfkit.data.records import Choice, PromptText, prompt_text
from rlhfkit.eval.winrate import (
    CI_METHODS,
    CiMethod,
    WinRate,
    score_fn_from_gold,
    score_win_rate,
    win_rate_from_choices,
)
from rlhfkit.judges.config import JudgeSettings
from rlhfkit.rollout.generate import SamplingConfig

JUDGE_KINDS = ("rm", "gold", "ai", "app")
"""Judge kinds `--judge` accepts (its prefix): `JUDGES` here, and ``app`` in `rlhfkit.loop.compare`."""


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
    """rm:DIR (a reward model), gold:NAME (a gold scorer), ai:MODEL|URL (an AI judge) or app:DBURL#PROJECT
    (people in the feedback app)."""
    ai_judge: JudgeSettings = JudgeSettings()
    """ai: judge: how it is asked (compare, criterion, score_labels, on_flip; model and api_key_env for a URL);
    its `judge` is the spec after 'ai:'."""
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
    ci: CiMethod = "wilson"
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
        require(bool(self.judge), "judge is required: rm:DIR, gold:NAME, ai:MODEL|URL or app:DBURL#PROJECT")
        kind = self.judge.split(":", 1)[0]
        require(
            kind in JUDGE_KINDS,
            f"judge must start with one of {', '.join(k + ':' for k in JUDGE_KINDS)}, got {self.judge!r}",
        )
        require(not self.collect or kind == "app", "collect applies to the app judge only")
        require(
            self.collect or bool(self.policy and self.baseline and self.prompts),
            "policy, baseline and prompts are required (except with collect)",
        )
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
        bar = tqdm(
            total=len(prompts) * cfg.samples_per_prompt,
            desc=f"sample {Path(model_name).name}",
            unit="resp",
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        texts = sample_texts(
            loaded.model,
            loaded.tokenizer,
            prompts,
            cfg.sampling,
            n=cfg.samples_per_prompt,
            seed=cfg.seed,
            on_batch=bar.update,
        )
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
        texts: list[PromptText] = list(prompts)  # RewardModel.score also takes conversations
        return model.score(texts, responses).mean.tolist()

    return _scored(cfg, score)


def judge_gold(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """Gold-scorer judge."""
    from rlhfkit.eval.gold import resolve_gold

    return _scored(cfg, score_fn_from_gold(resolve_gold(spec)))


def verdicts_result(cfg: CompareConfig, outcomes: Sequence[Choice], pending: int) -> dict[str, Any]:
    """The result of judges that hand back verdicts (people): a win rate over the judged pairs, or no
    win rate while nothing is judged; ``pending`` = comparisons still without a verdict."""
    if not outcomes:
        return {
            "win_rate": None,
            "n": 0,
            "ci_low": None,
            "ci_high": None,
            "wins": 0,
            "losses": 0,
            "ties": 0,
            "pending": pending,
        }
    result: WinRate = win_rate_from_choices(outcomes, ci=cfg.ci, confidence=cfg.confidence, seed=cfg.seed)
    return {**result.to_dict(), "pending": pending}


def judge_ai(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """AI judge: every pair asked as `cfg.ai_judge` says (first = the policy's response); answers cached
    beside `cfg.output` when it is set, so a repeated evaluation asks nothing."""
    from dataclasses import replace

    from rlhfkit.judges import build_asker, load_templates
    from rlhfkit.judges.questions import compare_pair

    settings = replace(cfg.ai_judge, judge=spec)
    prompts, policy, baseline = sample_both(cfg)
    asker = build_asker(settings, Path(cfg.output).parent if cfg.output else None)
    templates, how = load_templates(settings.templates), settings.asking()
    verdicts = [
        compare_pair(asker, templates, prompt_text(p), a, b, how, settings.criterion)
        for p, a, b in zip(prompts, policy, baseline, strict=True)
    ]
    side: dict[str | None, Choice] = {"first": "a", "second": "b", "tie": "tie"}
    choices = [side[v.label] for v in verdicts if v.label is not None]
    flips = [v.flipped for v in verdicts] if how.compare == "both_orders" else []
    return {
        **verdicts_result(cfg, choices, 0),
        "unlabelled": len(verdicts) - len(choices),
        "flip_rate": sum(flips) / len(flips) if flips else None,
        "judge_requests": asker.requests,
    }


JudgeFn: TypeAlias = Callable[[CompareConfig, str], dict[str, Any]]
"""``fn(cfg, the spec after the judge kind's colon) -> result``."""

JUDGES: dict[str, JudgeFn] = {"rm": judge_rm, "gold": judge_gold, "ai": judge_ai}
"""Judge kind (the prefix of --judge) -> judge, for the judges evaluation owns."""


def format_result(result: dict[str, Any]) -> str:
    """A small table of a result."""
    lines = [
        f"{'judge':<12} {result['judge']}",
        f"{'policy':<12} {result['policy']}",
        f"{'baseline':<12} {result['baseline']}",
        f"{'n':<12} {result['n']}",
    ]
    if result.get("win_rate") is not None:
        lines.append(
            f"{'win rate':<12} {result['win_rate']:.3f}  (CI {result['ci_low']:.3f} - {result['ci_high']:.3f})"
        )
        lines.append(f"{'w / t / l':<12} {result['wins']} / {result['ties']} / {result['losses']}")
    else:
        lines.append(f"{'win rate':<12} - (nothing judged yet)")
    if result.get("pending"):
        lines.append(
            f"{'pending':<12} {result['pending']} pairs await judgments in project {result.get('project')!r}; "
            f"run the same command again (or with --collect) later"
        )
    return "\n".join(lines)
