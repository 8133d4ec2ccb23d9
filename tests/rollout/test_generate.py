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
    out = sample_texts(loaded.model, loaded.tokenizer, ["a", "b", "c"], SamplingConfig(max_new_tokens=4, batch_size=2), n=3)
    assert [len(x) for x in out] == [3, 3, 3]


def test_generate_command_writes_candidates(tmp_path: Path) -> None:
    from rlhfkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"prompt": [{"role": "user", "content": "Yo"}]}\n')
    out = tmp_path / "c.jsonl"
    assert main(["generate", "--model", "tiny", "--prompts", str(prompts), "--output", str(out), "n=2",
                 "sampling.max_new_tokens=5", "progress=false"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["candidates"]) for r in rows] == [2, 2] and rows[1]["prompt"][0]["content"] == "Yo"
