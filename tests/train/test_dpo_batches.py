"""Preference batching: groups, pair expansion, both layouts against separate forwards, the cache."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from rlhfkit.data.records import Comparison, Ranking
from rlhfkit.models.tiny import byte_tokenizer, tiny_model
from rlhfkit.train.dpo.batches import (
    LAYOUTS,
    PreferenceGroup,
    compute_reference_logps,
    encode_group,
    fingerprint,
    gather_responses,
    load_reference_cache,
    pair_indices,
    record_texts,
    response_logps,
    response_offsets,
    save_reference_cache,
)

PAD = 256


def test_pair_indices_expand_each_group_into_all_its_ordered_pairs() -> None:
    # sizes [2, 3]: responses 0-1 and 2-4 -> (0,1); (2,3), (2,4), (3,4)
    better, worse = pair_indices([2, 3])
    assert better.tolist() == [0, 2, 2, 3]
    assert worse.tolist() == [1, 3, 4, 4]
    # A ranking of 4 gives 4*3/2 = 6 pairs.
    assert len(pair_indices([4])[0]) == 6


def test_record_texts_drops_ties_and_keeps_rankings_best_first() -> None:
    recs = [Comparison("p", "a", "b"), Comparison("q", "c", "d", tie=True), Ranking("r", ("x", "y", "z"))]
    texts, ties = record_texts(recs)
    assert ties == 1
    assert texts == [("p", ("a", "b")), ("r", ("x", "y", "z"))]


def test_encode_group_cuts_the_shared_prompt_only_when_the_longest_response_does_not_fit() -> None:
    tok = byte_tokenizer()
    # ChatML prompt "<|im_start|>user\n" + 40 x 'p' + "<|im_end|>\n<|im_start|>assistant\n":
    # 1 + 5 + 40 + 1 + 1 + 1 + 10 = 59 tokens (byte tokenizer: one token per byte, specials one each).
    prompt = "p" * 40
    fits = encode_group(tok, prompt, ["ab", "abcd"], max_length=64, max_prompt_length=20)
    assert len(fits.prompt_ids) == 59 and not fits.prompt_truncated
    assert [len(r) for r in fits.responses] == [3, 5]  # + EOS
    # 59 + 5 > 62: the prompt is cut from the left to 20, then responses to 62 - 20 = 42 tokens.
    cut = encode_group(tok, prompt, ["ab", "x" * 60], max_length=62, max_prompt_length=20)
    assert cut.prompt_truncated and cut.prompt_ids == fits.prompt_ids[-20:]
    assert [len(r) for r in cut.responses] == [3, 42]
    assert cut.responses[1][-1] != tok.eos_token_id  # the long one lost its end


def _groups() -> list[PreferenceGroup]:
    tok = byte_tokenizer()
    rows = [
        ("Hi there", ["Hello! Nice to meet you.", "Go away."]),
        ("Rank these", ["The best answer, long.", "Middle.", "Bad"]),
        ("A much longer prompt about cooking pasta well", ["Boil water, add salt.", "No."]),
    ]
    return [encode_group(tok, p, r, max_length=128, max_prompt_length=64) for p, r in rows]


@torch.no_grad()
def _separate_logps(model: torch.nn.Module, groups: list[PreferenceGroup]) -> list[float]:
    """Naive reference: one full forward per (prompt, response), logits of the whole vocabulary."""
    out = []
    for g in groups:
        for resp in g.responses:
            ids = torch.tensor([list(g.prompt_ids) + list(resp)])
            logits = model(input_ids=ids).logits[0].double()
            logps = torch.log_softmax(logits, dim=-1)
            p = len(g.prompt_ids)
            out.append(sum(float(logps[p - 1 + t, tok]) for t, tok in enumerate(resp)))
    return out


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_one_forward_over_all_responses_equals_separate_forwards(layout: str) -> None:
    model = tiny_model(3).eval()
    groups = _groups()
    calls = []
    model.model.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        logps, lengths = response_logps(model, LAYOUTS[layout](groups, PAD))
    assert len(calls) == 1  # chosen, rejected (and every ranked response) in ONE decoder pass
    assert lengths.tolist() == [len(r) for g in groups for r in g.responses]
    expected = _separate_logps(model, groups)
    torch.testing.assert_close(logps.double(), torch.tensor(expected, dtype=torch.float64), atol=2e-4, rtol=1e-5)


def test_packed_and_rows_give_the_same_gradients() -> None:
    groups = _groups()
    grads = []
    for layout in ("packed", "rows"):
        model = tiny_model(4)
        logps, _ = response_logps(model, LAYOUTS[layout](groups, PAD))
        (logps * torch.arange(1.0, len(logps) + 1)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_reference_logps_come_back_in_response_order_and_round_trip_the_cache(tmp_path: Path) -> None:
    model = tiny_model(5)
    groups = _groups()
    ref = compute_reference_logps(
        model,
        groups,
        layout="packed",
        pad_id=PAD,
        batch_size=2,
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
    )
    expected = torch.tensor(_separate_logps(model.eval(), groups), dtype=torch.float32)
    torch.testing.assert_close(ref, expected, atol=2e-4, rtol=1e-5)
    offsets = response_offsets(groups)
    assert offsets == [0, 2, 5, 7]
    assert gather_responses(ref, offsets, [2, 0]).tolist() == [
        ref[5].item(),
        ref[6].item(),
        ref[0].item(),
        ref[1].item(),
    ]
    key = fingerprint("tiny", "fp32", {"train": groups})
    path = tmp_path / "ref.safetensors"
    save_reference_cache(path, key, {"train": ref})
    assert torch.equal(load_reference_cache(path, key)["train"], ref)
    # Other tokens (or model) -> another fingerprint -> no cache hit.
    assert load_reference_cache(path, fingerprint("tiny", "fp32", {"train": groups[:2]})) is None
    assert load_reference_cache(path, fingerprint("tiny:1", "fp32", {"train": groups})) is None
