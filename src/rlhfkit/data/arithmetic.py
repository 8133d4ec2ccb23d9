"""A verifiable-reward task shipped with rlhfkit: two-number addition and subtraction, in digits and in words.

``rlhfkit grpo --config configs/grpo_arithmetic.yaml`` trains on the shipped problems
(``fixtures/arithmetic_train.jsonl``) against :func:`reward` and evaluates on held-out ones
(``fixtures/arithmetic_test.jsonl``): no reward model, the answer is checked. Both files are written
by ``python -m rlhfkit.data.arithmetic`` (a seeded draw, so they never change by accident; a test
regenerates and compares them). A held-out problem never appears in training, in any phrasing.

Rows are conversational (``{"prompt": [{"role": "user", "content": ...}]}``), so an instruct model sees
them through its chat template whatever the trainer's rule for plain-text rows.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rlhfkit.data.records import PromptText

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_OPS = {"plus": "+", "minus": "-"}
_TEMPLATES = (
    "What is {a} {op} {b}? Answer with the number only.",
    "Compute {a} {op} {b}. Reply with just the result in digits.",
    "{A} {op} {b} equals what? Give only the number.",
)
MAX_OPERAND = 20
"""Operands are drawn from 0 .. MAX_OPERAND; a subtraction's first operand is the larger one. Small numbers
keep the task within reach of a 135M model: with operands up to 99 the bundled SmolLM2 answered 8% of 100
held-out problems greedily, too rarely right for a group of 8 samples to hold a correct one."""


def number_words(n: int) -> str:
    """0 .. 99 in English words: 42 -> 'forty-two'."""
    if not 0 <= n <= 99:
        raise ValueError(f"number_words covers 0..99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else f"-{_ONES[ones]}")


_WORD_VALUES = {number_words(n): n for n in range(100)}
_OPERAND = r"(\d+|[a-z]+(?:-[a-z]+)?)"
_PROBLEM = re.compile(rf"{_OPERAND} (plus|minus) {_OPERAND}", re.IGNORECASE)


class Problem(NamedTuple):
    """One problem: ``a op b``."""

    a: int
    op: str
    """'plus' or 'minus'."""
    b: int

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "plus" else self.a - self.b


def _operand(token: str) -> int:
    token = token.lower()
    return int(token) if token.isdigit() else _WORD_VALUES[token]


def parse_problem(prompt: PromptText) -> Problem:
    """The problem a prompt of this task asks (the last user turn of a conversation)."""
    text = prompt if isinstance(prompt, str) else [m["content"] for m in prompt if m["role"] == "user"][-1]
    match = _PROBLEM.search(text)
    if match is None:
        raise ValueError(f"not an arithmetic prompt of rlhfkit.data.arithmetic: {text[:80]!r}")
    return Problem(_operand(match.group(1)), match.group(2).lower(), _operand(match.group(3)))


_INTEGER = re.compile(r"-?\d+")


def answer_of(response: str) -> int | None:
    """The response's answer: its last integer (thousands separators removed), None when it has none."""
    found = _INTEGER.findall(response.replace(",", ""))
    return int(found[-1]) if found else None


def reward(prompts: Sequence[PromptText], responses: Sequence[str]) -> list[float]:
    """1.0 where the response's last integer is the right answer, else 0.0.
    ``--reward python:rlhfkit.data.arithmetic:reward``."""
    return [float(answer_of(r) == parse_problem(p).answer) for p, r in zip(prompts, responses, strict=True)]


def render(problem: Problem, template: int, in_words: bool) -> str:
    """The problem as a question, its operands in digits or in words."""
    a, b = (number_words(problem.a), number_words(problem.b)) if in_words else (str(problem.a), str(problem.b))
    return _TEMPLATES[template].format(a=a, A=a[:1].upper() + a[1:], op=problem.op, b=b)


def draw(seed: int = 0, n_test: int = 150) -> tuple[list[Problem], list[Problem]]:
    """Every problem (21 x 21 additions, the 231 subtractions with a >= b), shuffled by `seed`, split
    into training and the first `n_test` held out."""
    problems = [Problem(a, "plus", b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    problems += [Problem(a, "minus", b) for a in range(MAX_OPERAND + 1) for b in range(a + 1)]
    random.Random(seed).shuffle(problems)
    return problems[n_test:], problems[:n_test]


def rows(problems: list[Problem], seed: int) -> list[dict[str, object]]:
    """Conversational rows: each problem phrased by a seeded template, in words a third of the time."""
    rng = random.Random(seed)
    out = []
    for p in problems:
        text = render(p, rng.randrange(len(_TEMPLATES)), in_words=rng.random() < 1 / 3)
        out.append({"prompt": [{"role": "user", "content": text}], "answer": p.answer})
    return out


def write_files(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """``arithmetic_train.jsonl`` (522 problems) and ``arithmetic_test.jsonl`` (150) in `directory`."""
    from rlhfkit.data.loaders import write_jsonl

    train, test = draw(seed)
    paths = directory / "arithmetic_train.jsonl", directory / "arithmetic_test.jsonl"
    write_jsonl(paths[0], rows(train, seed + 1))
    write_jsonl(paths[1], rows(test, seed + 2))
    return paths


if __name__ == "__main__":  # python -m rlhfkit.data.arithmetic [DIRECTORY]
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "fixtures"
    print(*write_files(target), sep="\n")
