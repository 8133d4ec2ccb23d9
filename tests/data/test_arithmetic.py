"""The shipped arithmetic task: the verifier, the phrasings, and files that are what the generator writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.data import arithmetic
from rlhfkit.data.fixtures import fixture_path


def test_number_words_and_parsing_both_forms() -> None:
    assert [arithmetic.number_words(n) for n in (0, 13, 20, 42, 99)] == [
        "zero",
        "thirteen",
        "twenty",
        "forty-two",
        "ninety-nine",
    ]
    assert arithmetic.parse_problem("What is forty-two minus 7? Answer with the number only.") == (42, "minus", 7)
    convo = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Seventeen plus three equals what?"},
    ]
    assert arithmetic.parse_problem(convo).answer == 20
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        arithmetic.parse_problem("Write a poem.")


@pytest.mark.parametrize(
    "response, score",
    [
        ("12", 1.0),
        ("The answer is 12.", 1.0),
        ("5 + 7 = 12", 1.0),
        ("12 apples, not 13", 0.0),
        ("twelve", 0.0),
        ("", 0.0),
    ],
)
def test_reward_reads_the_last_integer(response: str, score: float) -> None:
    assert arithmetic.reward(["What is 5 plus 7?"], [response]) == [score]


def test_negative_and_separated_answers() -> None:
    assert arithmetic.answer_of("It is -3") == -3 and arithmetic.answer_of("1,024") == 1024


def test_shipped_files_are_the_generators_and_held_out_problems_are_unseen(tmp_path: Path) -> None:
    train, test = arithmetic.write_files(tmp_path)
    for path in (train, test):
        assert path.read_bytes() == fixture_path(path.name).read_bytes(), f"regenerate {path.name}"

    def problems(path: Path) -> set[arithmetic.Problem]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert all(arithmetic.parse_problem(r["prompt"]).answer == r["answer"] for r in rows)
        return {arithmetic.parse_problem(r["prompt"]) for r in rows}

    seen, held_out = problems(train), problems(test)
    assert len(held_out) == 150 and not seen & held_out
    assert len(seen) + len(held_out) == 21 * 21 + 21 * 22 // 2  # every problem, once
    texts = [json.loads(line)["prompt"][0]["content"] for line in test.read_text().splitlines()]
    assert any(t[0].isdigit() for t in texts) and any("-" in t.split("?")[0] or "teen" in t for t in texts)
