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


def test_a_row_samples_the_same_whatever_shares_its_batch() -> None:
    """Row i draws from the stream (seed, i): chunks of 1, 3 or 8 rows, or a process holding rows 4-7 of
    a step, sample exactly what one batch of 8 does (what makes 2 processes equal to 1 in PPO/GRPO)."""
    loaded = load_model("tiny:0", dtype="fp32")
    prompts = [f"Prompt number {i} " * (1 + i % 3) for i in range(8)]
    whole = sample_texts(
        loaded.model, loaded.tokenizer, prompts, SamplingConfig(max_new_tokens=8, batch_size=8), seed=5
    )
    for batch_size in (1, 3):
        cfg = SamplingConfig(max_new_tokens=8, batch_size=batch_size)
        assert sample_texts(loaded.model, loaded.tokenizer, prompts, cfg, seed=5) == whole
    second_half = sample(
        loaded.model, loaded.tokenizer, prompts[4:], SamplingConfig(max_new_tokens=8), generator_seed=5, first_row=4
    )
    assert second_half.texts == [t[0] for t in whole[4:]]
    assert len({t[0] for t in whole}) > 1
    # Another seed, or the same rows at other positions, draw other numbers.
    other = sample_texts(
        loaded.model, loaded.tokenizer, prompts, SamplingConfig(max_new_tokens=8, batch_size=8), seed=6
    )
    assert other != whole


def test_row_generators_are_independent_streams() -> None:
    from rlhfkit.rollout.generate import row_generators

    draws = [torch.rand(1000, generator=g) for g in row_generators(1, range(3))]
    again = [torch.rand(1000, generator=g) for g in row_generators(1, range(1, 3))]
    assert torch.equal(draws[1], again[0]) and torch.equal(draws[2], again[1])
    # Neighbouring (seed, row) pairs are not shifted copies of each other.
    shifted = torch.rand(1001, generator=row_generators(2, range(1))[0])
    assert not any(torch.equal(shifted[k : k + 1000], draws[0]) for k in range(2))
    assert abs(float(torch.corrcoef(torch.stack(draws))[0, 1])) < 0.1


def test_repeated_prompts_share_one_prefill_and_sample_the_same(monkeypatch) -> None:
    """Rows repeating a prompt (a GRPO group) take its KV cache from one prefill per distinct prompt;
    the responses are token for token those of a prefill per row, through a LoRA wrapper too."""
    from peft import LoraConfig, get_peft_model

    from rlhfkit.rollout import generate

    loaded = load_model("tiny:0", dtype="fp32")
    lora = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    prompts = [p for p in ["Hello there friend", "A much longer prompt " * 3, "x"] for _ in range(4)]
    cfg = SamplingConfig(max_new_tokens=10, temperature=1.0)
    prefills: list[int] = []
    real = generate.shared_prompt_cache

    def counted(model, ids, mask):
        out = real(model, ids, mask)
        prefills.append(len(out))
        return out

    monkeypatch.setattr(generate, "shared_prompt_cache", counted)
    for model in (loaded.model, lora):
        shared = sample(model, loaded.tokenizer, prompts, cfg, generator_seed=3)
        monkeypatch.setattr(generate, "shared_prompt_cache", lambda *args: {})
        per_row = sample(model, loaded.tokenizer, prompts, cfg, generator_seed=3)
        monkeypatch.setattr(generate, "shared_prompt_cache", counted)
        assert torch.equal(shared.response_ids, per_row.response_ids) and shared.texts == per_row.texts
    assert prefills == [1, 1]  # the shared cache was built both times
    assert generate.shared_prompt_cache(loaded.model, *sample_prompt_rows(loaded, ["a", "b"])) == {}


def sample_prompt_rows(loaded, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    out = sample(loaded.model, loaded.tokenizer, prompts, SamplingConfig(max_new_tokens=1, temperature=0.0))
    return out.prompt_ids, out.prompt_mask
