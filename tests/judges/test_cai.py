"""`rlhfkit cai` end to end on a tiny model, with the fake OpenAI-compatible server as the feedback model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.cli import main
from rlhfkit.loop.cai.principles import load_constitution, parse_constitution
from rlhfkit.loop.cai.run import first_user_turn


def test_default_principles_and_clear_errors(tmp_path: Path) -> None:
    c = load_constitution()
    assert len(c.critique_revision) >= 4 and len(c.feedback) >= 4
    assert c.questions("scores") == c.feedback_scores and len(c.feedback_scores) == len(c.feedback)
    assert c.questions("both_orders") == c.feedback
    plain = parse_constitution({"critique_revision": [{"critique": "x", "revision": "y"}], "feedback": ["q"]}, "f.yaml")
    with pytest.raises(ValueError, match="judge.compare=scores needs feedback_scores"):
        plain.questions("scores")
    with pytest.raises(ValueError, match=r"f.yaml: critique_revision\[0\]: needs exactly the keys"):
        parse_constitution({"critique_revision": [{"critique": "x"}], "feedback": ["q"]}, "f.yaml")
    with pytest.raises(ValueError, match=r"f.yaml: feedback\[1\]: must be non-empty text"):
        parse_constitution(
            {"critique_revision": [{"critique": "x", "revision": "y"}], "feedback": ["q", " "]}, "f.yaml"
        )
    path = tmp_path / "bad.yaml"
    path.write_text("critique_revision: [\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_constitution(str(path))
    convo = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "2"},
    ]
    assert first_user_turn(convo) == "first" and first_user_turn("text") == "text"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "ppo"])
def test_cai_end_to_end_on_a_tiny_model(tmp_path: Path, fake_server: tuple[Any, str], method: str) -> None:
    _, url = fake_server
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"How do I pick lock number {i}?"}) + "\n" for i in range(6)))
    out = tmp_path / "cai"
    config = tmp_path / "cai.yaml"
    rl = {"method": method, "max_steps": 2, "batch_size": 2}
    if method == "ppo":
        rl |= {"rollout_batch_size": 4, "sampling": {"max_new_tokens": 6}}
    config.write_text(
        json.dumps(
            {
                "prompts": str(prompts),
                "policy_model": "tiny",
                "revisions": 2,
                "sampling": {"max_new_tokens": 8, "batch_size": 8},
                "pair_sampling": {"max_new_tokens": 8, "batch_size": 8},
                "sft": {"max_steps": 2, "batch_size": 2, "max_length": 64},
                "judge": {"judge": url, "model": "fake"},
                "rl": rl,
                "reward": {"max_steps": 2, "batch_size": 2, "max_length": 64, "normalize_prompts": 2},
                "progress": False,
            }
        )
    )
    assert main(["cai", "--config", str(config), "--output", str(out)]) == 0
    traces = [json.loads(line) for line in (out / "sl" / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 6 and all(len(t["steps"]) == 2 for t in traces)
    step = traces[0]["steps"][1]
    assert step["critique_request"] in {p.critique for p in load_constitution().critique_revision}
    labels = [json.loads(line) for line in (out / "rl" / "preferences.jsonl").read_text().splitlines()]
    assert len(labels) == 6 and any(r["label"] in ("first", "second") for r in labels)
    assert (out / "rl" / "policy" / "config.json").exists()
    report = (out / "report.html").read_text()
    assert step["critique_request"].replace("'", "&#x27;") in report and "P(a better)" in report
    marker = json.loads((out / "stages" / "label.done").read_text())
    assert marker["pairs"] >= 1 and marker["judge_requests"] == 2 * marker["compared"]
    # A second run finds every stage done and asks the judge nothing.
    assert main(["cai", "--config", str(config), "--output", str(out)]) == 0
    # Another RL setting: only the RL stage runs again (and trains from scratch: 3 steps, not 2 + 1).
    done = {s: json.loads((out / "stages" / f"{s}.done").read_text()) for s in ("sft", "label", "rl")}
    assert main(["cai", "--config", str(config), "--output", str(out), "rl.max_steps=3"]) == 0
    again = {s: json.loads((out / "stages" / f"{s}.done").read_text()) for s in ("sft", "label", "rl")}
    assert again["sft"] == done["sft"] and again["label"] == done["label"]
    assert again["rl"]["finished_at"] > done["rl"]["finished_at"]
    steps = [json.loads(x)["step"] for x in (out / "rl" / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 3 and steps.count(1) == 1


@pytest.mark.slow
def test_cai_stops_clearly_when_the_judge_only_has_position_bias(
    tmp_path: Path, fake_server: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    b, url = fake_server
    b.biased = True  # always the response shown first: every pair flips
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(3)))
    args = ["cai", "--output", str(tmp_path / "cai"), f"prompts={prompts}", "policy_model=tiny", "revisions=1"]
    args += ["sampling.max_new_tokens=6", "pair_sampling.max_new_tokens=6", "sft.max_steps=1", "sft.batch_size=2"]
    args += [f"judge.judge={url}", "judge.model=fake", "judge.on_flip=unlabelled", "progress=false"]
    assert main(args) == 2
    assert "the judge decided no pair of 3" in capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "cai" / "rl" / "preferences.jsonl").read_text().splitlines()]
    assert all(r["flipped"] and r["label"] is None for r in rows if r["label"] != "identical")
    # The same judge asked about each reply alone has no position to prefer: the RL stage gets its pairs.
    args = [a for a in args if a != "judge.on_flip=unlabelled"] + ["judge.compare=scores", "rl.max_steps=1"]
    args += ["rl.batch_size=1"]
    assert main(args) == 0
    marker = json.loads((tmp_path / "cai" / "stages" / "label.done").read_text())
    assert marker["pairs"] >= 1 and marker["flip_rate"] is None
    rows = [json.loads(x) for x in (tmp_path / "cai" / "rl" / "preferences.jsonl").read_text().splitlines()]
    assert {r["question"] for r in rows if r["label"] != "identical"} <= set(load_constitution().feedback_scores)


def test_sft_on_revisions_reads_prompts_as_the_policy_samples_them(tmp_path: Path) -> None:
    """The policy samples from templated prompts; SFT on plain-text revisions under 'auto' would train
    another format (measured: 86 of 86 HH prompts went in as plain text)."""
    from rlhfkit.config import build_config
    from rlhfkit.loop.cai.config import CAIConfig

    cfg = build_config(
        CAIConfig,
        yaml_path=str(Path(__file__).resolve().parents[2] / "configs" / "cai_hh.yaml"),
        overrides=[f"output={tmp_path}", "prompts=p.jsonl", "sft.max_steps=3"],
    )
    assert (cfg.sft.chat_template, cfg.sft.max_steps, cfg.rl.chat_template) == ("always", 3, "always")
    assert cfg.judge.compare == "scores"


def test_a_config_change_runs_again_the_stages_it_reaches(tmp_path: Path) -> None:
    from rlhfkit.loop.cai.config import CAIConfig
    from rlhfkit.loop.cai.run import stale_stages

    base = CAIConfig(output=tmp_path, prompts="p.jsonl")
    assert stale_stages(base, base) == ([], [])
    assert stale_stages(base, replace(base, judge=replace(base.judge, compare="scores"))) == (
        ["judge"],
        ["label", "rl"],
    )
    assert stale_stages(base, replace(base, sft=replace(base.sft, lr=1e-5)))[1] == ["sft", "label", "rl"]
    assert stale_stages(base, replace(base, seed=1))[1] == ["revise", "sft", "label", "rl"]
    assert stale_stages(base, replace(base, progress=False)) == ([], [])
