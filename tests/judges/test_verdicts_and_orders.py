"""Verdict readout and the both-orders rule, on hand-made cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rlhfkit.judges import Answer, Asker, BudgetExhausted, combine_pair, combine_ranking, flip_rate, load_templates
from rlhfkit.judges.base import read_verdict
from rlhfkit.judges.cache import JudgeCache
from rlhfkit.judges.questions import judge_pair, judge_ranking
from rlhfkit.judges.verdicts import expected_rating, probs_from_logprobs, probs_from_text


def test_logprobs_pool_spellings_and_renormalize_over_options() -> None:
    # " A" and "A" pool to 0.6 + 0.1 = 0.7; B has 0.1; "x" is no option: A = 0.7 / 0.8, B = 0.1 / 0.8.
    probs = probs_from_logprobs(
        {" A": math.log(0.6), "A": math.log(0.1), "B": math.log(0.1), "x": math.log(0.2)}, ("A", "B")
    )
    assert probs == pytest.approx({"A": 0.875, "B": 0.125})
    assert probs_from_logprobs({"x": 0.0}, ("A", "B")) is None


def test_text_readout_prefers_the_verdict_cue() -> None:
    assert probs_from_text("Answer: B", ("A", "B")) == {"A": 0.0, "B": 1.0}
    assert probs_from_text("Response A rambles. The better one is B.", ("A", "B")) == {"A": 0.0, "B": 1.0}
    assert probs_from_text("A", ("A", "B")) == {"A": 1.0, "B": 0.0}
    assert probs_from_text("I cannot tell.", ("A", "B")) is None  # "I" is no option
    assert expected_rating({"3": 0.5, "5": 0.5}) == 4.0


def test_readout_modes() -> None:
    answer = Answer("Answer: B", {"A": math.log(0.9), "B": math.log(0.1)})
    assert read_verdict(answer, ("A", "B"), "auto") == pytest.approx({"A": 0.9, "B": 0.1})
    assert read_verdict(answer, ("A", "B"), "text") == {"A": 0.0, "B": 1.0}
    assert read_verdict(Answer("Answer: B", None), ("A", "B"), "logprobs") is None
    assert read_verdict(Answer("Answer: B", None), ("A", "B"), "auto") == {"A": 0.0, "B": 1.0}


@pytest.mark.parametrize(
    ("forward", "reverse", "rule", "label", "flipped", "mean"),
    [
        (0.9, 0.7, "tie", "first", False, 0.8),  # both orders prefer the first
        (0.2, 0.4, "tie", "second", False, 0.3),  # both prefer the second
        (0.9, 0.1, "tie", "tie", True, 0.5),  # pure position bias: always the response shown first
        (0.9, 0.1, "unlabelled", None, True, 0.5),
        (0.9, 0.4, "tie", "tie", True, 0.65),  # a flip is a flip even when the mean leans one way
        (0.5, 0.7, "unlabelled", "first", False, 0.6),  # an undecided order flips nothing
        (0.5, 0.5, "tie", "tie", False, 0.5),
    ],
)
def test_both_orders_rule(
    forward: float, reverse: float, rule: str, label: str | None, flipped: bool, mean: float
) -> None:
    v = combine_pair(forward, reverse, rule)  # type: ignore[arg-type]
    assert (v.label, v.flipped) == (label, flipped) and v.p_first == pytest.approx(mean)


def test_ranking_orders_average_and_flip() -> None:
    # Means (0.4, 0.4, 0.2): the tie keeps canonical order; best was 0 forward and 1 reversed: a flip.
    v = combine_ranking([0.6, 0.3, 0.1], [0.2, 0.5, 0.3])
    assert v.order == (0, 1, 2) and v.flipped and v.p_best == pytest.approx((0.4, 0.4, 0.2))
    assert not combine_ranking([0.1, 0.7, 0.2], [0.2, 0.6, 0.2]).flipped
    assert flip_rate([True, False, False, False]) == 0.25 and flip_rate([]) is None


class ScriptedJudge:
    """Prefers the response holding "good"; or, when `biased`, whichever is shown first. Counts calls."""

    name = "scripted"

    def __init__(self, biased: bool = False) -> None:
        self.biased, self.calls = biased, 0

    def answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer:
        self.calls += 1
        text = messages[-1]["content"]
        parts = {o: text.split(f"Response {o}:\n", 1)[1].split("\n\n", 1)[0] for o in options}
        best = options[0] if self.biased else next((o for o in options if "good" in parts[o]), options[0])
        return Answer(f"Answer: {best}", {o: math.log(0.8 if o == best else 0.2 / (len(options) - 1)) for o in options})


def test_questions_map_both_orders_back_to_canonical() -> None:
    templates = load_templates()
    fair = Asker(ScriptedJudge())
    v = judge_pair(fair, templates, "Q", "bad", "good", on_flip="unlabelled")
    assert (v.label, v.flipped) == ("second", False) and v.p_first == pytest.approx(0.2)
    biased = Asker(ScriptedJudge(biased=True))
    assert judge_pair(biased, templates, "Q", "bad", "good", on_flip="unlabelled").label is None
    r = judge_ranking(fair, templates, "Q", ["meh", "good", "bad"])
    assert r.order[0] == 1 and not r.flipped
    assert judge_ranking(Asker(ScriptedJudge(biased=True)), templates, "Q", ["meh", "good", "bad"]).flipped


def test_cache_means_a_repeated_run_never_pays_twice_and_budget_stops(tmp_path: Path) -> None:
    templates, judge = load_templates(), ScriptedJudge()
    first = Asker(judge, JudgeCache(tmp_path / "c.sqlite"))
    judge_pair(first, templates, "Q", "good", "bad", on_flip="tie")
    assert (judge.calls, first.requests) == (2, 2)
    again = Asker(judge, JudgeCache(tmp_path / "c.sqlite"), max_requests=1)  # a restarted run, same file
    assert judge_pair(again, templates, "Q", "good", "bad", on_flip="tie").label == "first"
    assert (judge.calls, again.hits, again.requests) == (2, 2, 0)
    with pytest.raises(BudgetExhausted):
        judge_pair(again, templates, "Q2", "good", "bad", on_flip="tie")  # 1 request allowed, 2 needed
    assert judge.calls == 3


def test_templates_file_overrides_and_rejects_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("pairwise: 'Pick {options}. {prompt} {responses} {principle}'\n")
    messages, options = load_templates(str(path)).messages("pairwise", "Q", ["x", "y"])
    assert options == ("A", "B") and messages[1]["content"].startswith("Pick A or B. Q Response A:\nx")
    path.write_text("pairwize: x\n")
    with pytest.raises(ValueError, match="unknown template keys"):
        load_templates(str(path))
    path.write_text("rating: '{nope}'\n")
    with pytest.raises(ValueError, match="bad placeholder"):
        load_templates(str(path))
