"""What DPO measures on held-out data: the loss and implicit-reward statistics of held-out
preferences, and KL(policy || reference) on fresh samples of held-out prompts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from rlhfkit.algorithms.kl import KL_ESTIMATORS
from rlhfkit.data.records import PromptText
from rlhfkit.models.adapters import is_peft
from rlhfkit.models.lm import response_logprobs, through_root
from rlhfkit.models.loading import load_model
from rlhfkit.rollout.generate import SamplingConfig, sample
from rlhfkit.train.dpo.batches import (
    LAYOUTS,
    PreferenceGroup,
    gather_responses,
    response_logps,
    response_offsets,
)
from rlhfkit.train.dpo.config import DPOConfig
from rlhfkit.train.dpo.terms import RANKING_MODES, MetricSums
from rlhfkit.train.engine import Engine


def as_reference(model: nn.Module) -> contextlib.AbstractContextManager:
    """LoRA: the base with the adapter disabled. Full fine-tuning: the model before any update."""
    return model.disable_adapter() if is_peft(model) else contextlib.nullcontext()  # type: ignore[operator]


@contextlib.contextmanager
def reference_model(cfg: DPOConfig, model: nn.Module, engine: Engine) -> Iterator[nn.Module]:
    """The reference for fresh samples: the adapter-disabled base (LoRA), else the initial weights
    loaded for the moment (training keeps one model; this one lives only while the KL is measured)."""
    if is_peft(model):
        with model.disable_adapter():  # type: ignore[operator]
            yield model
        return
    ref = load_model(cfg.model, dtype="fp32", device=engine.device).model
    ref.eval()
    try:
        yield ref
    finally:
        del ref


@torch.no_grad()
def evaluate(
    cfg: DPOConfig,
    engine: Engine,
    model: nn.Module,
    groups: list[PreferenceGroup],
    batches: list[list[int]],
    ref: Tensor | None,
    pad: int,
) -> dict[str, float]:
    """Loss, reward accuracy and margin, rewards and log-probs on held-out preferences."""
    model.eval()
    offsets = response_offsets(groups)
    sums = MetricSums()
    for idx in batches:
        batch = LAYOUTS[cfg.layout]([groups[i] for i in idx], pad).to(engine.device)
        ref_b = None if ref is None else gather_responses(ref, offsets, idx).to(engine.device)
        with engine.autocast():
            logps, lengths = response_logps(model, batch)
            sums.add(RANKING_MODES[cfg.rankings_as].terms(logps.float(), lengths, ref_b, batch.sizes, cfg))
    return sums.means("eval")


@torch.no_grad()
def sampled_kl(
    cfg: DPOConfig, engine: Engine, model: nn.Module, tokenizer, prompts: list[PromptText], seed: int
) -> tuple[float, list[str]]:
    """Mean over sampled responses of the summed per-token KL(policy || reference) estimate.

    Responses are sampled from the policy at temperature 1 with no truncation, so they come from the
    very distribution whose KL to the reference is estimated (Schulman 2020, k1/k2/k3).
    """
    policy = engine.unwrap(model)
    policy.eval()
    scfg = SamplingConfig(
        max_new_tokens=cfg.kl_max_new_tokens,
        temperature=1.0,
        max_prompt_length=cfg.prompt_limit,
        batch_size=len(prompts),
    )
    # sharded (FSDP on CPU), the sampler's calls of the decoder and generate's of the model run inside
    # one forward of the root, which gathers the root's weights (torch: run generate as a forward)
    out = through_root(sample)(policy, tokenizer, prompts, scfg, generator_seed=seed)
    ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
    mask = torch.cat([out.prompt_mask, out.response_mask], dim=1)
    start = out.prompt_ids.shape[1]
    with engine.autocast():
        logp, _ = response_logprobs(policy, ids, mask, start)
    with reference_model(cfg, policy, engine) as ref, engine.autocast():
        ref_logp, _ = response_logprobs(ref, ids, mask, start)
    per_token = KL_ESTIMATORS[cfg.kl_estimator](logp.float(), ref_logp.float())
    kl = (per_token * out.response_mask).sum(dim=1)  # (B,) summed over each response
    return float(kl.mean()), out.texts
