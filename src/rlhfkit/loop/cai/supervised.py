"""The supervised stage of Constitutional AI (Bai et al. 2022, sec. 3.1).

For every red-team prompt the policy answers; then, k times, it is asked to critique its last reply
under a randomly drawn principle and to rewrite the reply to fix what the critique found. The final
revisions are the demonstrations the SFT stage trains on. The conversation the model sees at each
step is the paper's: the prompt, its reply, the critique request, its critique, the revision request.
Every step is batched over all prompts (one `sample_texts` call per step).
"""

from __future__ import annotations

import random
from typing import Any

from rlhfkit.data.chat import as_messages
from rlhfkit.data.records import PromptText
from rlhfkit.loop.cai.principles import Constitution
from rlhfkit.rollout.generate import SamplingConfig, sample_texts


def critique_messages(prompt: PromptText, reply: str, critique_request: str) -> list[dict[str, str]]:
    """The conversation that asks for a critique of `reply`."""
    return [
        *as_messages(prompt),
        {"role": "assistant", "content": reply},
        {"role": "user", "content": critique_request},
    ]


def revision_messages(
    prompt: PromptText, reply: str, critique_request: str, critique: str, revision_request: str
) -> list[dict[str, str]]:
    """The conversation that asks for a revision of `reply` after its critique."""
    return [
        *critique_messages(prompt, reply, critique_request),
        {"role": "assistant", "content": critique},
        {"role": "user", "content": revision_request},
    ]


def critique_and_revise(
    model: Any,
    tokenizer: Any,
    prompts: list[PromptText],
    constitution: Constitution,
    k: int,
    sampling: SamplingConfig,
    seed: int,
) -> list[dict[str, Any]]:
    """One trace per prompt: ``{prompt, response, steps: [{principle, critique_request, critique,
    revision_request, revision}], final}``. An empty revision keeps the previous reply (and says so)."""
    rng = random.Random(seed)
    replies = [t[0] for t in sample_texts(model, tokenizer, prompts, sampling, seed=seed)]
    traces: list[dict[str, Any]] = [
        {"prompt": p, "response": r, "steps": []} for p, r in zip(prompts, replies, strict=True)
    ]
    for step in range(k):
        drawn = [rng.randrange(len(constitution.critique_revision)) for _ in prompts]
        asks = [constitution.critique_revision[i] for i in drawn]
        critiques = sample_texts(
            model,
            tokenizer,
            [critique_messages(p, r, a.critique) for p, r, a in zip(prompts, replies, asks, strict=True)],
            sampling,
            seed=seed + 1_000 * (2 * step + 1),
        )
        revisions = sample_texts(
            model,
            tokenizer,
            [
                revision_messages(p, r, a.critique, c[0], a.revision)
                for p, r, a, c in zip(prompts, replies, asks, critiques, strict=True)
            ],
            sampling,
            seed=seed + 1_000 * (2 * step + 2),
        )
        for trace, index, ask, critique, revision in zip(traces, drawn, asks, critiques, revisions, strict=True):
            kept = revision[0] if revision[0].strip() else None
            trace["steps"].append(
                {
                    "principle": index,
                    "critique_request": ask.critique,
                    "critique": critique[0],
                    "revision_request": ask.revision,
                    "revision": revision[0],
                    "kept_previous": kept is None,
                }
            )
        replies = [
            r if t["steps"][-1]["kept_previous"] else t["steps"][-1]["revision"]
            for t, r in zip(traces, replies, strict=True)
        ]
    for trace, reply in zip(traces, replies, strict=True):
        trace["final"] = reply
    return traces


def demonstrations(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SFT rows ``{prompt, response}`` from the final revisions (empty ones left out)."""
    return [{"prompt": t["prompt"], "response": t["final"]} for t in traces if t["final"].strip()]
