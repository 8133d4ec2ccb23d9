"""`rlhfkit eval`: every judge of a policy-vs-baseline comparison in one table, and the command itself.

Evaluation owns the config, the sampling and the judges that need no app (`rm:`, `gold:`, `ai:`,
`rlhfkit.eval.compare`); the feedback app owns comparison projects
(`rlhfkit.feedback.comparisons`). Neither may import the other, so the ``app:DBURL#PROJECT`` judge
that needs both is composed here, at the top of the stack, next to the other two.
"""

from __future__ import annotations

import json
from typing import Any

from rlhfkit.data.projects import project_ref
from rlhfkit.eval.compare import JUDGES as EVAL_JUDGES
from rlhfkit.eval.compare import CompareConfig, JudgeFn, format_result, sample_both, verdicts_result
from rlhfkit.feedback.comparisons import Side, collect_verdicts, create_comparison_project, has_project
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.files import write_json_atomic


def _create(store: FeedbackStore, project: str, cfg: CompareConfig) -> int:
    """Sample both models and create the comparison project (the policy at position 0)."""
    prompts, policy, baseline = sample_both(cfg)
    return create_comparison_project(
        store,
        project,
        prompts,
        Side("policy", cfg.policy, policy),
        Side("baseline", cfg.baseline, baseline),
        overlap=cfg.overlap,
    )


def judge_app(cfg: CompareConfig, spec: str) -> dict[str, Any]:
    """People in the app: create the pairwise project once, then read its judgments back."""
    ref = project_ref(spec)
    store = FeedbackStore(ref.url)
    try:
        if not has_project(store, ref.project):
            if cfg.collect:
                raise ValueError(f"no project {ref.project!r} in {ref.url}: run without --collect first to create it")
            _create(store, ref.project, cfg)
        verdicts = collect_verdicts(store, ref.project)
    finally:
        store.close()
    return {**verdicts_result(cfg, verdicts.outcomes, verdicts.pending), "project": ref.project, "db": ref.url}


JUDGES: dict[str, JudgeFn] = {**EVAL_JUDGES, "app": judge_app}
"""Judge kind (the prefix of --judge) -> ``fn(cfg, rest of the spec) -> result``: every kind
`rlhfkit.eval.compare.JUDGE_KINDS` accepts."""


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """Sample, judge and return the result (also written to `cfg.output` when set)."""
    kind, spec = cfg.judge.split(":", 1)
    result = {"judge": cfg.judge, "policy": cfg.policy, "baseline": cfg.baseline, **JUDGES[kind](cfg, spec)}
    if cfg.output:
        write_json_atomic(cfg.output, result)
    return result


def compare_main(cfg: CompareConfig) -> str:
    """What the CLI prints: JSON or the table."""
    result = compare(cfg)
    return json.dumps(result, indent=2) if cfg.json else format_result(result)
