"""Prompt splits and rotation, candidate items (dedup) and gold items (clear gold order only)."""

from __future__ import annotations

import json
from pathlib import Path

from rlhfkit.loop.candidates import (
    GOLD_GAP,
    candidate_items,
    clear_subset,
    distinct,
    gold_items,
    items_from_json,
    items_to_json,
    round_prompts,
    split_loop_prompts,
)


def _first_word_gold(prompt: str, response: str) -> float:
    return float(response.split()[0])


def test_round_prompts_slide_over_one_seeded_order() -> None:
    prompts = [f"p{i}" for i in range(10)]
    rounds = [round_prompts(prompts, r, 4, seed=3) for r in (1, 2, 3)]
    # Rounds 1 and 2 take disjoint windows of 4; round 3 wraps around: 2 new + 2 from round 1.
    assert not set(rounds[0]) & set(rounds[1])
    assert len(set(rounds[0]) | set(rounds[1]) | set(rounds[2])) == 10
    assert round_prompts(prompts, 1, 4, seed=3) == rounds[0]  # deterministic
    assert round_prompts(prompts, 5, 0, seed=3) == prompts  # 0 = all


def test_distinct_and_candidate_items() -> None:
    assert distinct(["a", "b", "a", " ", "c", "b"]) == ["a", "b", "c"]
    items = candidate_items(
        ["x", "y", "z"], [["1 a", "1 a", "2 b"], ["same", "same"], ["1", "2", "3"]], round_index=2, model="m", k=2
    )
    # "y" has one distinct candidate: no item; "z" is cut to k = 2.
    assert [it.external_id for it in items] == ["r02-0000", "r02-0002"]
    assert items[0].responses == ("1 a", "2 b") and items[1].responses == ("1", "2")
    assert items[0].models == ("m", "m")


def test_gold_items_need_a_clear_order() -> None:
    items = candidate_items(["clear", "close"], [["0.9 a", "0.1 b", "0.5 c"], ["0.5 a", "0.45 b"]], 1, "m", 3)
    gold = gold_items(items, _first_word_gold, n=5, round_index=1, task_type="ranking", seed=0)
    # "clear": gaps 0.4 and 0.4 >= GOLD_GAP; "close": gap 0.05 < GOLD_GAP.
    assert GOLD_GAP <= 0.4
    assert len(gold) == 1 and gold[0].prompt == "clear"
    assert gold[0].gold == {"ranking": [0, 2, 1]}  # positions best first: 0.9, 0.5, 0.1
    pair = gold_items(candidate_items(["p"], [["0.1 x", "0.9 y"]], 1, "m", 2), _first_word_gold, 1, 1, "pairwise", 0)
    assert pair[0].gold == {"choice": 1}
    assert items_from_json(items_to_json(gold)) == gold


def test_split_writes_disjoint_files(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(20)))
    info = split_loop_prompts(tmp_path, str(src), "", 0.25, seed=0)
    train = [json.loads(x)["prompt"] for x in Path(info["train"]).read_text().splitlines()]
    held = [json.loads(x)["prompt"] for x in Path(info["eval"]).read_text().splitlines()]
    assert (info["n_train"], info["n_eval"]) == (15, 5)  # round(0.25 * 20) = 5
    assert not set(train) & set(held) and len(set(train) | set(held)) == 20


def test_a_set_that_is_not_clear_as_a_whole_gives_its_clear_subset() -> None:
    # Eight candidates 0.1 apart (the demo's case: no set of K = 8 is clear as a whole): walking down
    # from the best, keep those at least GOLD_GAP = 0.3 below the last kept: 0.8, 0.5, 0.2.
    scores = [0.1 * i + 0.1 for i in range(8)]  # 0.1 .. 0.8, in this order
    assert clear_subset(scores) == [7, 4, 1]
    items = candidate_items(["p"], [[f"{s:.1f} r{i}" for i, s in enumerate(scores)]], 1, "m", 8)
    (gold,) = gold_items(items, _first_word_gold, n=4, round_index=1, task_type="ranking", seed=0)
    assert gold.responses == ("0.2 r1", "0.5 r4", "0.8 r7") and gold.models == ("m",) * 3
    assert gold.gold == {"ranking": [2, 1, 0]}
    close_pair = candidate_items(["q"], [["0.5 a", "0.4 b", "0.1 c"]], 1, "m", 3)
    assert gold_items(close_pair, _first_word_gold, 1, 1, "pairwise", 0) == []  # pairwise keeps both or none
