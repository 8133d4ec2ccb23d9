"""One base model for policy, reference and value: the shared trunk, the reference per mode, value init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlhfkit.models.actor_critic import build_actor_critic
from rlhfkit.models.adapters import LoRAConfig, decoder_layers
from rlhfkit.models.lm import base_model, hidden_states, response_logprobs
from rlhfkit.models.tiny import tiny_model
from rlhfkit.models.value import ValueHead, make_value_head, value_head_from_reward


def _batch() -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two rows: left-padded 4-column prompts, 3-column right-padded responses."""
    ids = torch.tensor([[256, 72, 105, 33, 97, 98, 99], [10, 11, 12, 13, 100, 101, 256]])
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]])
    return ids, mask, 4


def _actor_critic(mode: str):
    head = ValueHead(64)
    with torch.no_grad():
        head.weight.normal_()
    return build_actor_critic(tiny_model(0), head, mode, lora=LoRAConfig(r=4), train_layers=1, value_trunk_grad=True)


def test_one_trunk_pass_gives_logprobs_and_values() -> None:
    ac = _actor_critic("lora")
    ids, mask, start = _batch()
    calls = []
    decoder = base_model(ac.policy).get_decoder()
    handle = decoder.register_forward_hook(lambda *a: calls.append(1))
    out = ac(ids, mask, start, temperature=0.7, with_entropy=True)
    handle.remove()
    assert len(calls) == 1
    expected_logps, expected_entropy = response_logprobs(
        ac.policy, ids, mask, start, temperature=0.7, with_entropy=True
    )
    torch.testing.assert_close(out.logps, expected_logps)
    torch.testing.assert_close(out.entropy, expected_entropy)
    h = hidden_states(ac.policy, ids, mask)[:, start - 1 : -1]
    torch.testing.assert_close(out.values, h @ ac.value_head.weight + ac.value_head.bias)
    assert out.logps.shape == out.values.shape == (2, 3)


@pytest.mark.parametrize("mode", ["lora", "top_layers", "full"])
def test_reference_is_the_untouched_base_whatever_trains(mode: str) -> None:
    ac = _actor_critic(mode)
    ids, mask, start = _batch()
    base_logps, _ = response_logprobs(tiny_model(0).eval(), ids, mask, start, temperature=0.7)
    torch.testing.assert_close(ac.reference_logps(ids, mask, start, temperature=0.7), base_logps)
    with torch.no_grad():  # "train": move every trainable weight
        for p in ac.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    policy_before = ac(ids, mask, start, temperature=0.7).logps
    assert not torch.allclose(policy_before, base_logps, atol=1e-3)
    torch.testing.assert_close(ac.reference_logps(ids, mask, start, temperature=0.7), base_logps)
    # ... and computing the reference left the policy as it was (adapters back on, layers swapped back).
    torch.testing.assert_close(ac(ids, mask, start, temperature=0.7).logps, policy_before)


def test_top_layers_mode_trains_and_copies_only_the_top_blocks() -> None:
    ac = _actor_critic("top_layers")
    layers = decoder_layers(ac.policy)
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not ac.policy.get_input_embeddings().weight.requires_grad
    assert len(ac.reference_layers) == 1 and not any(p.requires_grad for p in ac.reference_layers.parameters())


def test_zero_value_head_gives_zero_values() -> None:
    head = make_value_head("zero", 8)
    assert torch.equal(head(torch.randn(2, 3, 8)), torch.zeros(2, 3))


def test_value_head_from_a_reward_model_folds_its_normalization(tmp_path: Path) -> None:
    from rlhfkit.models.reward import Normalization, build_reward_model, save_reward_model

    rm = build_reward_model("tiny", n_heads=3, seed=2)
    with torch.no_grad():
        rm.head.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    rm.set_normalization(Normalization(gain=(2.0, 0.5, 1.0), bias=(0.1, -0.2, 0.3)))
    path = save_reward_model(rm, tmp_path / "rm")
    head = value_head_from_reward(64, str(path))
    h = torch.randn(2, 5, 64)
    expected = rm.normalize(rm.head(h.view(-1, 64))).mean(dim=1).view(2, 5)  # the RM's normalized mean reward
    torch.testing.assert_close(head(h), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="hidden size is 64 but the policy's is 32"):
        value_head_from_reward(32, str(path))


def _cached(mode: str, **kw) -> ActorCritic:  # noqa: F821
    head = ValueHead(64)
    with torch.no_grad():
        head.weight.normal_()
    return build_actor_critic(
        tiny_model(0), head, mode, lora=LoRAConfig(r=4, layers=1), train_layers=1, value_trunk_grad=True, **kw
    )


@pytest.mark.parametrize("mode", ["lora", "top_layers"])
def test_cached_frozen_trunk_gives_the_same_numbers_without_rerunning_the_bottom_block(mode: str) -> None:
    ac = _cached(mode, cache_frozen_trunk=True)
    assert ac.frozen_blocks == 1  # the tiny model has 2 blocks; only the top one trains
    with torch.no_grad():  # "train": the policy must now differ from the reference above the frozen block
        for p in ac.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    ids, mask, start = _batch()
    full = ac(ids, mask, start, temperature=0.7, with_entropy=True)
    full_ref = ac.reference_logps(ids, mask, start, temperature=0.7)
    layers = decoder_layers(ac.policy)
    blocks, norm = list(layers), base_model(ac.policy).get_decoder().norm
    calls = {0: 0, 1: 0}
    hooks = [layers[i].register_forward_hook(lambda *a, i=i: calls.__setitem__(i, calls[i] + 1)) for i in (0, 1)]
    trunk = ac.trunk(ids, mask)
    assert calls == {0: 1, 1: 0} and trunk.shape == (2, 7, 64)
    cached = ac(ids, mask, start, temperature=0.7, with_entropy=True, trunk=trunk)
    cached_ref = ac.reference_logps(ids, mask, start, temperature=0.7, trunk=trunk)
    for h in hooks:
        h.remove()
    # the bottom block ran once in all; the top block ran for the policy (and, in lora mode, the reference:
    # top_layers swaps the original block in, which the hook on the trained block does not see)
    assert calls[0] == 1 and calls[1] == (2 if mode == "lora" else 1)
    torch.testing.assert_close(cached.logps, full.logps)
    torch.testing.assert_close(cached.values, full.values)
    torch.testing.assert_close(cached.entropy, full.entropy)
    torch.testing.assert_close(cached_ref, full_ref)
    assert not torch.allclose(cached_ref, cached.logps, atol=1e-3)
    # the decoder got its blocks and final norm back
    assert list(decoder_layers(ac.policy)) == blocks and base_model(ac.policy).get_decoder().norm is norm


def test_nothing_is_cached_when_the_bottom_block_trains_or_caching_is_off() -> None:
    assert _cached("full", cache_frozen_trunk=True).frozen_blocks == 0  # the embeddings train
    assert _cached("lora", cache_frozen_trunk=False).frozen_blocks == 0
    head = ValueHead(64)
    every_block = build_actor_critic(
        tiny_model(0),
        head,
        "lora",
        lora=LoRAConfig(r=4),
        train_layers=1,
        value_trunk_grad=True,
        cache_frozen_trunk=True,
    )
    assert every_block.frozen_blocks == 0
    ids, mask, _ = _batch()
    assert every_block.trunk(ids, mask) is None


def test_a_decoder_that_transforms_its_input_is_not_resumed_from_a_cache() -> None:
    """A decoder that, like Gemma, scales what enters its blocks would double-apply that to a cached
    residual stream: the self-check must catch it and leave every block running."""
    from rlhfkit.models.lm import prefix_is_exact

    model = tiny_model(0)
    decoder = model.get_decoder()

    def scale_input(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            kwargs["inputs_embeds"] = kwargs["inputs_embeds"] * 2.0
        return args, kwargs

    assert prefix_is_exact(model, 1)
    decoder.register_forward_pre_hook(scale_input, with_kwargs=True)
    assert not prefix_is_exact(model, 1)
    ac = build_actor_critic(
        model,
        ValueHead(64),
        "lora",
        lora=LoRAConfig(r=4, layers=1),
        train_layers=1,
        value_trunk_grad=True,
        cache_frozen_trunk=True,
    )
    assert ac.frozen_blocks == 0


def test_a_groups_prompt_runs_once_through_the_frozen_trunk() -> None:
    """Rows repeating a prompt (2 prompts x 3 responses, one prompt left-padded) share its columns' pass
    through the frozen blocks: the bottom block sees 2 x P + 6 x R token positions, not 6 x (P + R), and
    every number the update reads is the full pass's."""
    ac = _cached("lora", cache_frozen_trunk=True)
    with torch.no_grad():
        for p in ac.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, 200, (2, 5), generator=g)
    ids = torch.cat([prompts.repeat_interleave(3, dim=0), torch.randint(3, 200, (6, 4), generator=g)], dim=1)
    mask = torch.ones_like(ids)
    mask[3:, :2] = 0  # the second prompt is 3 tokens, left-padded
    mask[0, -1] = 0  # one response ended early
    start = 5
    positions: list[int] = []
    hook = decoder_layers(ac.policy)[0].register_forward_hook(
        lambda module, args, out: positions.append(args[0].shape[0] * args[0].shape[1])
    )
    shared = ac.trunk(ids, mask, shared_columns=start)
    hook.remove()
    assert positions == [2 * 5, 6 * 4]
    full = ac.trunk(ids, mask)
    keep = mask.bool()
    torch.testing.assert_close(shared[keep], full[keep], atol=1e-5, rtol=1e-5)
    # The trained top block shares the prompt's columns too: the same log-probs, values, reference and
    # gradients (summed over the group through the cache's copies) as the full pass. The decoder in
    # float64, where the order of the group's sums leaves little rounding (in float32 the largest
    # gradients differ by ~3e-4 relative; the log-softmax stays float32 here, hence 1e-6).
    ac.policy.double()
    outputs, grads = [], []
    for columns, share in ((0, False), (start, True)):
        trunk = ac.trunk(ids, mask, shared_columns=columns)
        out = ac(ids, mask, start, temperature=0.7, trunk=trunk, share_prompt=share)
        ref = ac.reference_logps(ids, mask, start, temperature=0.7, trunk=trunk, share_prompt=share)
        (out.logps * mask[:, start:]).sum().backward()
        outputs.append([t * mask[:, start:] for t in (out.logps, out.values, ref)])
        grads.append([p.grad.clone() for p in ac.policy.parameters() if p.grad is not None])
        ac.zero_grad(set_to_none=True)
    for a, b in zip(*outputs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(grads[0]) > 4
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # No prompt repeats: the plain pass.
    assert ac.trunk(ids[[0, 3]], mask[[0, 3]], shared_columns=start).shape == (2, 9, 64)
