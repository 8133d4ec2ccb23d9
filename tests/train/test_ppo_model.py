"""One base model for policy, reference and value: the shared trunk, the reference per mode, value init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlhfkit.models.adapters import LoRAConfig, decoder_layers
from rlhfkit.models.lm import base_model, hidden_states, response_logprobs
from rlhfkit.models.tiny import tiny_model
from rlhfkit.models.value import ValueHead, make_value_head, value_head_from_reward
from rlhfkit.train.ppo_model import build_actor_critic


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
    expected_logps, expected_entropy = response_logprobs(ac.policy, ids, mask, start, temperature=0.7, with_entropy=True)
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
