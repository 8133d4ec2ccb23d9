"""Loop-level summary: PPO training points with gold, round points, gold-judged battles."""

from __future__ import annotations

import json
from pathlib import Path

from rlhfkit.eval.leaderboard import Battle
from rlhfkit.loop.summary import ppo_points, round_battles, round_point


def _first_word_gold(prompt: str, response: str) -> float:
    return float(response.split()[0])


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_ppo_points_put_gold_of_each_rollout_next_to_proxy_and_kl(tmp_path: Path) -> None:
    _write(
        tmp_path / "metrics.jsonl",
        [
            {"step": 1, "ppo/score": 0.1, "ppo/kl": 0.0, "ppo/reward_std": 0.3, "ppo/beta": 0.05},
            {"step": 2, "ppo/score": 0.5, "ppo/kl": 1.5, "ppo/beta": 0.05},
            {"step": 2, "train/other": 1.0},  # rows without PPO numbers are ignored
        ],
    )
    _write(
        tmp_path / "samples.jsonl",
        [
            {"step": 1, "prompt": "p", "response": "0.2 a b c", "score": 0.1},
            {"step": 1, "prompt": "p", "response": "0.4 a", "score": 0.1},
            {"step": 2, "prompt": "p", "response": "1.0 x x x", "score": 0.5},
        ],
    )
    points, rows = ppo_points(tmp_path, _first_word_gold, step_offset=10, kl_offset=2.0)
    assert [p.step for p in points] == [11, 12]
    # Step 1: gold mean (0.2 + 0.4) / 2 = 0.3; word tokens "0 2 a b c" (5) and "0 4 a" (3) -> 4;
    # KL 0 + offset 2.
    assert abs(points[0].gold - 0.3) < 1e-12 and points[0].length == 4.0 and points[0].kl == 2.0
    assert points[0].ensemble_std == 0.3 and points[1].ensemble_std is None
    # Step 2: "1.0 x x x": bigrams (1 0)(0 x)(x x)(x x) -> 3 distinct of 4 = 0.75.
    assert points[1].gold == 1.0 and points[1].distinct2 == 0.75 and points[1].kl == 3.5
    assert rows[1] == {"step": 12, "ppo/score": 0.5, "ppo/kl": 3.5, "gold/score": 1.0, "ppo/beta": 0.05}


def test_round_zero_takes_its_proxy_from_round_one() -> None:
    r0 = {"round": 0, "kl": 0.0, "proxy": None, "gold": 0.2, "ensemble_std": None, "length": 10.0, "distinct2": 1.0}
    r1 = {
        "round": 1,
        "kl": 2.0,
        "proxy": 0.8,
        "gold": 0.5,
        "ensemble_std": 0.1,
        "baseline_proxy": -0.1,
        "baseline_ensemble_std": 0.05,
        "length": 12.0,
        "distinct2": 0.9,
    }
    p0 = round_point(r0, 0, r1)
    assert (p0.proxy, p0.ensemble_std, p0.gold) == (-0.1, 0.05, 0.2)
    p1 = round_point(r1, 12, r1)
    assert (p1.proxy, p1.kl, p1.step) == (0.8, 2.0, 12)


def test_round_battles_by_gold_sample_by_sample() -> None:
    samples = {
        0: [{"gold": 0.1}, {"gold": 0.5}, {"gold": 0.3}],
        1: [{"gold": 0.4}, {"gold": 0.5}, {"gold": 0.2}],
        2: [{"gold": 0.9}, {"gold": 0.0}, {"gold": 0.2}],
    }
    battles = round_battles(samples)
    names = {0: "round-0 (initial)", 1: "round-1", 2: "round-2"}
    expected = []
    for a, b in ((0, 1), (0, 2), (1, 2)):  # a naive reference: explicit loops over pairs and samples
        for sa, sb in zip(samples[a], samples[b], strict=True):
            winner = "tie" if sa["gold"] == sb["gold"] else ("a" if sa["gold"] > sb["gold"] else "b")
            expected.append(Battle(names[a], names[b], winner))
    assert battles == expected
    assert round_battles({0: [{"proxy": 1.0}], 1: [{"proxy": 2.0}]}) == []  # no gold: no gold battles
