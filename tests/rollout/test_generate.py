"""Generation: stop-token truncation, shapes, determinism, candidates files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rlhfkit.models.loading import load_model
from rlhfkit.rollout.generate import SamplingConfig, sample, sample_texts, truncate_at_stop


def test_truncate_at_stop_masks_everything_after_the_first_stop() -> None:
    ids = torch.tensor([[5, 9, 6, 9], [5, 6, 7, 8]])
    out, mask, ended = truncate_at_stop(ids, stops=[9], pad_id=0)
    assert out.tolist() == [[5, 9, 0, 0], [5, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert ended.tolist() == [True, False]


def test_sample_shapes_and_seeded_determinism() -> None:
    loaded = load_model("tiny:0", dtype="fp32")
    cfg = SamplingConfig(max_new_tokens=12, temperature=1.0, max_prompt_length=48)
    prompts = ["Hello there", "A much longer prompt " * 5]
    a = sample(loaded.model, loaded.tokenizer, prompts, cfg, generator_seed=3)
    b = sample(loaded.model, loaded.tokenizer, prompts, cfg, generator_seed=3)
    assert a.prompt_ids.shape == (2, 48)
    assert a.prompts_truncated == 1
    assert a.response_ids.shape[1] <= 12 and a.response_mask.shape == a.response_ids.shape
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    # The short prompt is left-padded, so both responses start at column 48.
    assert a.prompt_mask[0, 0] == 0 and a.prompt_mask[0, -1] == 1 and a.prompt_mask[1].all()


def test_sample_texts_gives_n_per_prompt() -> None:
    loaded = load_model("tiny:0", dtype="fp32")
    out = sample_texts(
        loaded.model, loaded.tokenizer, ["a", "b", "c"], SamplingConfig(max_new_tokens=4, batch_size=2), n=3
    )
    assert [len(x) for x in out] == [3, 3, 3]


def test_generate_command_writes_candidates(tmp_path: Path) -> None:
    from rlhfkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"prompt": [{"role": "user", "content": "Yo"}]}\n')
    out = tmp_path / "c.jsonl"
    assert (
        main(
            [
                "generate",
                "--model",
                "tiny",
                "--prompts",
                str(prompts),
                "--output",
                str(out),
                "n=2",
                "sampling.max_new_tokens=5",
                "progress=false",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["candidates"]) for r in rows] == [2, 2] and rows[1]["prompt"][0]["content"] == "Yo"


def test_draw_tokens_follows_the_tempered_softmax() -> None:
    from rlhfkit.rollout.generate import draw_tokens

    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, -30.0]]).expand(40_000, 4)
    counts = torch.bincount(draw_tokens(logits, 0.5), minlength=4).double() / 40_000
    # softmax([0, 2, 4, -60]) = [e^0, e^2, e^4, ~0] / (1 + 7.389 + 54.598) = [0.0159, 0.1173, 0.8668, 0]
    expected = torch.softmax(torch.tensor([0.0, 2.0, 4.0, -60.0], dtype=torch.float64), 0)
    torch.testing.assert_close(counts, expected, atol=0.006, rtol=0)  # 4 std errors of the largest share
    assert counts[3] == 0


def test_draw_tokens_top_k_and_top_p_keep_only_the_nucleus() -> None:
    from rlhfkit.rollout.generate import draw_tokens

    torch.manual_seed(1)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(20_000, 4)
    # top_p 0.75: token 0 (0.5) does not reach it, tokens 0-1 (0.8) do: keep 0 and 1, renormalized to 5/8, 3/8
    counts = torch.bincount(draw_tokens(logits, 1.0, top_p=0.75), minlength=4).double() / 20_000
    torch.testing.assert_close(counts, torch.tensor([0.625, 0.375, 0.0, 0.0], dtype=torch.float64), atol=0.015, rtol=0)
    # top_k 3: renormalized 0.5, 0.3, 0.15 over 0.95
    counts = torch.bincount(draw_tokens(logits, 1.0, top_k=3), minlength=4).double() / 20_000
    torch.testing.assert_close(
        counts, torch.tensor([0.5, 0.3, 0.15, 0.0], dtype=torch.float64) / 0.95, atol=0.015, rtol=0
    )
    torch.manual_seed(2)
    a = draw_tokens(logits[:50], 1.0)
    torch.manual_seed(2)
    assert torch.equal(draw_tokens(logits[:50], 1.0), a)


def test_sampling_draws_without_multinomial(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("torch.multinomial called")

    monkeypatch.setattr(torch, "multinomial", refuse)
    loaded = load_model("tiny:0", dtype="fp32")
    out = sample(
        loaded.model,
        loaded.tokenizer,
        ["Hello there"] * 8,
        SamplingConfig(max_new_tokens=6, temperature=1.0),
        generator_seed=0,
    )
    assert len(set(out.texts)) > 1  # the rows differ: sampled, not greedy
