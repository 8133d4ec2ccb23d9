"""`rlhfkit reward train | eval | score` end to end on a tiny model, and bad input from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.cli import main as cli
from rlhfkit.config import field_docs
from rlhfkit.data.errors import DataError
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.train.reward import RewardConfig
from rlhfkit.train.reward.data import load_reward_records


@pytest.mark.slow
def test_train_eval_score_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "rm.yaml"
    config.write_text(
        "batch_size: 4\nlr: 3.0e-3\nn_heads: 2\nnormalize_prompts: 4\nnormalize_sampling:\n"
        "  max_new_tokens: 4\nprogress: false\n"
    )
    pairs = fixture_path("pairs_small.jsonl")
    out = tmp_path / "rm"
    assert (
        cli(
            [
                "reward",
                "train",
                "--model",
                "tiny",
                "--data",
                str(pairs),
                "--output",
                str(out),
                "--config",
                str(config),
                "max_steps=3",
                "eval_fraction=0.25",
            ]
        )
        == 0
    )
    assert json.loads((out / "reward.json").read_text())["n_heads"] == 2
    capsys.readouterr()

    assert (
        cli(["reward", "eval", "--model", str(out), "--data", str(fixture_path("rankings_small.jsonl")), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n"] > 0 and 0.0 <= result["accuracy"] <= 1.0 and "by_length" in result
    assert cli(["reward", "eval", "--model", str(out), "--data", str(pairs)]) == 0
    assert "accuracy" in capsys.readouterr().out

    scored = tmp_path / "scored.jsonl"
    assert (
        cli(
            [
                "reward",
                "score",
                "--model",
                str(out),
                "--data",
                str(fixture_path("ratings_small.jsonl")),
                "--output",
                str(scored),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert len(rows) == 32 and all({"score", "score_std", "score_per_head", "rating"} <= set(r) for r in rows)


def test_train_help_lists_every_config_field(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli(["reward", "train", "--help"])
    text = capsys.readouterr().out
    for name in field_docs(RewardConfig):
        assert name in text


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_identical_pairs_fail_with_file_and_line_unless_skipped(tmp_path: Path, capsys) -> None:
    data = _write(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "Hi?", "chosen": "Hello there.", "rejected": "Go away."},
            {"prompt": "Hi?", "chosen": "Same.", "rejected": "Same."},
            {"prompt": "Yo?", "chosen": "Hey, how are you?", "rejected": "What."},
        ],
    )
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: field 'rejected': identical chosen and rejected"):
        load_reward_records(str(data), "auto", skip_invalid=False)
    assert len(load_reward_records(str(data), "auto", skip_invalid=True)) == 2
    argv = [
        "reward",
        "train",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "r"),
        "max_steps=1",
        "progress=false",
        "normalize=false",
        "eval_fraction=0",
    ]
    assert cli(argv) == 2
    assert "pairs.jsonl:2" in capsys.readouterr().err
    assert cli([*argv, "skip_invalid=true"]) == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "Hi?", "responses": ["A.", "B.", "A."]}, r"rankings\.jsonl:2: field 'responses\[2\]': duplicate"),
        ({"prompt": "Hi?", "responses": ["A."]}, r"rankings\.jsonl:2: field 'responses': a ranking needs at least two"),
    ],
)
def test_bad_rankings_fail_with_file_and_line(tmp_path: Path, row: dict, message: str) -> None:
    data = _write(tmp_path / "rankings.jsonl", [{"prompt": "Ok?", "responses": ["Yes.", "No."]}, row])
    with pytest.raises(DataError, match=message):
        load_reward_records(str(data), "auto", skip_invalid=False)


def test_ratings_outside_the_scale_fail(tmp_path: Path, capsys) -> None:
    data = _write(tmp_path / "ratings.jsonl", [{"prompt": "Hi?", "response": "Yo.", "rating": 9, "scale": [1, 7]}])
    with pytest.raises(DataError, match=r"ratings\.jsonl:1: field 'rating': rating 9 outside the scale \[1, 7\]"):
        load_reward_records(str(data), "auto", skip_invalid=False)
    assert cli(["reward", "eval", "--model", "nowhere", "--data", str(data)]) == 2  # no such model dir


def test_demonstrations_cannot_train_a_reward_model(tmp_path: Path) -> None:
    data = _write(tmp_path / "demos.jsonl", [{"prompt": "Hi?", "response": "Yo."}])
    with pytest.raises(DataError, match="cannot train a reward model"):
        load_reward_records(str(data), "auto", skip_invalid=False)
