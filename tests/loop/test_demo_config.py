"""The demo's config: budget defaults, --serve turning the panel into people, the people's account."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rlhfkit.config import build_config
from rlhfkit.loop.demo import HUMAN_ACCOUNT, DemoConfig, loop_config, open_human_account


def test_overrides_reach_the_loop_and_keep_the_demo_defaults(tmp_path: Path) -> None:
    cfg = build_config(
        DemoConfig,
        values={"output": str(tmp_path)},
        overrides=["loop.policy.max_steps=3", "loop.candidates.sampling.max_new_tokens=8"],
    )
    loop = loop_config(cfg, "sft-dir")
    assert loop.policy.max_steps == 3 and loop.policy_model == "sft-dir" and loop.output == tmp_path
    # A partial override of a nested sampling config keeps the demo's other sampling choices.
    assert loop.candidates.sampling.max_new_tokens == 8 and loop.candidates.sampling.temperature == 0.8
    assert loop.feedback.source == "panel" and loop.prompts.endswith("sentiment_prompts.jsonl")


def test_serve_hands_the_feedback_to_people(tmp_path: Path) -> None:
    cfg = DemoConfig(output=tmp_path, serve=True, port=8123, serve_prompts=5)
    loop = loop_config(cfg, "sft-dir")
    fb = loop.feedback
    assert (fb.source, fb.serve, fb.port, fb.overlap, fb.gold_items) == ("app", True, 8123, 1, 0)
    assert loop.candidates.prompts_per_round == 5


def test_people_account_gets_a_fresh_random_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.feedback.store import FeedbackStore

    loop = loop_config(DemoConfig(output=tmp_path, serve=True), "sft-dir")
    tmp_path.mkdir(exist_ok=True)
    passwords = []
    for _ in range(2):
        open_human_account(loop)
        printed = capsys.readouterr().out
        passwords.append(re.search(rf"log in as '{HUMAN_ACCOUNT}' with password (\S+)", printed).group(1))
    assert passwords[0] != passwords[1] and min(map(len, passwords)) >= 32
    store = FeedbackStore(loop.db_url(), migrate=False)
    try:
        store.login(HUMAN_ACCOUNT, passwords[1])  # the latest password works ...
        from rlhfkit.feedback.errors import Unauthorized

        with pytest.raises(Unauthorized):
            store.login(HUMAN_ACCOUNT, passwords[0])  # ... the previous one no longer does
    finally:
        store.close()
