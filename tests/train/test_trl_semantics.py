"""TRL's data semantics: plain-text prompts used as text, conversations templated (`chat_template`),
TRL conversational rows imported by the feedback app, DPO from `max_length` alone, and TRL's
precomputed reference log-probs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.data.chat import describe_templating, encode_pair, render_prompt
from rlhfkit.data.errors import DataError
from rlhfkit.data.fields import RowContext
from rlhfkit.data.formats import parse_row
from rlhfkit.data.records import Comparison, Source, to_json
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.importing import TextLimits, item_from_json
from rlhfkit.models.reward import build_reward_model, load_reward_model, save_reward_model
from rlhfkit.models.tiny import byte_tokenizer
from rlhfkit.train.dpo import DPOConfig, dpo
from rlhfkit.train.dpo import trainer as dpo_module

CHAT = [{"role": "user", "content": "Hi"}]
CTX = RowContext(Source("t.jsonl", 1))


def test_auto_uses_plain_prompts_as_text_and_templates_conversations() -> None:
    tok = byte_tokenizer()
    templated = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tok, "Hi", "auto") == "Hi"  # TRL standard: the text as it is
    assert render_prompt(tok, CHAT, "auto") == templated  # TRL conversational: templated
    assert render_prompt(tok, "Hi", "always") == templated  # rlhfkit before: one user turn
    assert render_prompt(tok, CHAT, "never") == "\n\nHuman: Hi\n\nAssistant:"
    ids = encode_pair(tok, "Q: 2+2? A:", " 4", max_length=64, chat_template="auto").input_ids
    assert ids == tok("Q: 2+2? A: 4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    line = describe_templating(["a", CHAT, "b"], "auto")
    assert line.startswith("chat_template=auto: 1 of 3 prompts through the chat template, 2 as plain text")


def test_a_reward_model_scores_with_the_template_rule_it_trained_with(tmp_path: Path) -> None:
    model = build_reward_model("tiny", max_length=64, chat_template="auto")
    tok = model.tokenizer
    assert model.encode(["Q?"], [" A"])[0] == tok("Q? A", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    save_reward_model(model, tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / "reward.json").read_text())["chat_template"] == "auto"
    assert load_reward_model(tmp_path / "rm").encode(["Q?"], [" A"]) == model.encode(["Q?"], [" A"])


def test_dpo_with_only_max_length_set() -> None:
    cfg = DPOConfig(
        model="tiny", data="x.jsonl", output=Path("/tmp/x"), max_length=64
    )  # before: max_prompt_length 256 > 64
    assert cfg.prompt_limit == 32
    with pytest.raises(ConfigError, match="max_prompt_length must be in"):
        DPOConfig(model="tiny", data="x.jsonl", output=Path("/tmp/x"), max_length=64, max_prompt_length=64)


def test_trl_reference_columns_parse_round_trip_and_must_come_in_pairs() -> None:
    row = {"prompt": "p", "chosen": "a", "rejected": "b", "ref_chosen_logps": -3.5, "ref_rejected_logps": -7.0}
    rec = parse_row(row, "pairs", CTX)
    assert isinstance(rec, Comparison) and rec.ref_logps == (-3.5, -7.0)
    assert to_json(rec) == row
    with pytest.raises(DataError, match="ref_rejected_logps.*missing field"):
        parse_row({"prompt": "p", "chosen": "a", "rejected": "b", "ref_chosen_logps": -1.0}, "pairs", CTX)


def test_dpo_uses_precomputed_reference_logps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    rows = [
        {
            "prompt": f"Q{i}?",
            "chosen": f"yes {i}",
            "rejected": "no",
            "ref_chosen_logps": 100.0,
            "ref_rejected_logps": -100.0,
        }
        for i in range(12)
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls: list[int] = []
    monkeypatch.setattr(dpo_module, "compute_reference_logps", lambda *a, **k: calls.append(1))
    cfg = DPOConfig(
        model="tiny", data=str(data), output=tmp_path / "run", max_steps=1, batch_size=4, kl_prompts=0,
        progress=False, warmup_steps=0, save_every=0,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        run = dpo(cfg)
    assert calls == [] and not (run / dpo_module.REFERENCE_CACHE).exists()
    assert "read from the data (ref_chosen_logps / ref_rejected_logps)" in caplog.text
    assert "chat_template=auto: 0 of" in caplog.text  # plain prompts: used as text
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    # beta (0.1) times the policy log-ratio (a few nats) minus the given reference margin (200): about -20.
    assert first.get("eval/reward_margin", first.get("train/reward_margin")) < -15.0


def test_the_feedback_app_imports_trl_conversational_rows_as_the_trainers_read_them() -> None:
    limits = TextLimits()
    explicit = {
        "prompt": [{"role": "user", "content": "Name a fish."}],
        "chosen": [{"role": "assistant", "content": "Salmon."}],
        "rejected": [{"role": "assistant", "content": "A cat."}],
    }
    item = item_from_json(explicit, limits)
    assert item.prompt == explicit["prompt"] and item.responses == ("Salmon.", "A cat.")
    assert item.task_type == "pairwise"
    implicit = {
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
    }
    item = item_from_json(implicit, limits)
    assert item.prompt == CHAT and item.responses == ("Hello!", "Go away.")
    with pytest.raises(Invalid, match="expected exactly one assistant message"):
        item_from_json({**explicit, "chosen": [{"role": "user", "content": "x"}]}, limits)
