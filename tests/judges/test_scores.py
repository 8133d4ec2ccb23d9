"""Comparing by scores: each response asked about alone, compared by the judge's log-odds."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.judges import Answer, Asker, JudgeSettings, load_templates
from rlhfkit.judges.model import load_model_judge
from rlhfkit.judges.questions import Asking, compare_pair, compare_ranking, score_pair, score_ranking
from rlhfkit.loop.judge import run_judge


class PositionOrScoreJudge:
    """Side by side it always names the response shown first (pure position bias); asked about one
    response, its P(good label) is the number the response starts with."""

    name = "position-or-score"

    def __init__(self) -> None:
        self.questions: list[str] = []

    def answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer:
        text = messages[-1]["content"]
        self.questions.append(text)
        if "Response A:" in text:
            return Answer("A", {o: math.log(0.9 if o == "A" else 0.1 / (len(options) - 1)) for o in options})
        p = float(re.search(r"Response:\n([0-9.]+)", text).group(1))  # type: ignore[union-attr]
        return Answer(options[0], {options[0]: math.log(p), options[1]: math.log(1 - p)})


def test_score_pair_is_bradley_terry_on_the_log_odds() -> None:
    # sigma(logit .9 - logit .6) = .9 * .4 / (.9 * .4 + .6 * .1) = .36 / .42
    v = score_pair(Asker(PositionOrScoreJudge()), load_templates(), "Q", "0.9 x", "0.6 y", labels=("yes", "no"))
    assert v.p_first == pytest.approx(0.36 / 0.42) and (v.label, v.flipped) == ("first", False)
    assert v.p_forward == v.p_reverse == v.p_first
    same = score_pair(Asker(PositionOrScoreJudge()), load_templates(), "Q", "0.7 x", "0.7 y", labels=("yes", "no"))
    assert (same.p_first, same.label) == (0.5, "tie")


def test_score_ranking_is_plackett_luce_p_best() -> None:
    # odds 1, 4, 1/4: P(best) = odds / 5.25, best first: 1, 0, 2
    r = score_ranking(
        Asker(PositionOrScoreJudge()), load_templates(), "Q", ["0.5 a", "0.8 b", "0.2 c"], labels=("y", "n")
    )
    assert r.p_best == pytest.approx((1 / 5.25, 4 / 5.25, 0.25 / 5.25))
    assert r.order == (1, 0, 2) and not r.flipped


def test_scores_recover_what_a_position_biased_comparison_hides() -> None:
    templates = load_templates()
    asker = Asker(PositionOrScoreJudge())
    both = compare_pair(asker, templates, "Q", "0.2 bad", "0.8 good", Asking("both_orders", on_flip="tie"))
    assert (both.label, both.flipped) == ("tie", True)
    scored = compare_pair(
        asker, templates, "Q", "0.2 bad", "0.8 good", Asking("scores", labels=("positive", "negative"))
    )
    assert (scored.label, scored.flipped) == ("second", False)
    ranking = compare_ranking(asker, templates, "Q", ["0.3 a", "0.1 b", "0.9 c"], Asking("scores"))
    assert ranking.order == (2, 0, 1)


def test_score_question_names_the_labels_and_the_question() -> None:
    messages, options = load_templates().messages(
        "score", "Write a review.", ["Great film."], "Is the review positive or negative?", ("positive", "negative")
    )
    assert options == ("positive", "negative")
    text = messages[-1]["content"]
    assert "Response:\nGreat film." in text and "Is the review positive or negative?" in text
    assert "positive or negative.\nAnswer:" in text
    default, _ = load_templates().messages("score", "Q", ["r"])
    assert "Is the response helpful, honest and harmless? Answer with one word, yes or no." in default[-1]["content"]


def test_a_response_met_twice_is_asked_about_once(tmp_path: Path) -> None:
    from rlhfkit.judges.cache import JudgeCache

    judge = PositionOrScoreJudge()
    asker = Asker(judge, JudgeCache(tmp_path / "c.sqlite"))
    compare_pair(asker, load_templates(), "Q", "0.4 a", "0.6 b", Asking("scores"))
    compare_pair(asker, load_templates(), "Q", "0.4 a", "0.9 c", Asking("scores"))
    assert (asker.requests, asker.hits) == (3, 1)


def test_run_judge_by_scores_labels_every_item_and_reports_no_flip_rate(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.create_project(ProjectSpec(name="p", task_type="pairwise", overlap=1))
    pairs = [("0.9 a", "0.2 b"), ("0.1 a", "0.6 b"), ("0.7 a", "0.3 b"), ("0.4 a", "0.5 b")]
    store.add_items("p", [NewItem(prompt=f"Q{i}", responses=pair) for i, pair in enumerate(pairs)])
    asker = Asker(PositionOrScoreJudge())
    run = run_judge(store, "p", asker, load_templates(), account="ai-s", how=Asking("scores"))
    assert (run.submitted, run.questions, run.flip_rate) == (4, 0, None)
    chosen = []
    for j in store.judgments("p"):
        item = store.item(j["item_id"])
        chosen.append(next(r["text"] for r in item["responses"] if r["id"] == j["payload"]["choice"]))
    assert sorted(chosen) == ["0.5 b", "0.6 b", "0.7 a", "0.9 a"]  # the higher score of each item
    store.close()


def test_settings_check_the_labels() -> None:
    assert JudgeSettings(compare="scores", score_labels=("positive", "negative")).asking() == Asking(
        "scores", "tie", ("positive", "negative")
    )
    with pytest.raises(ConfigError, match="score_labels"):
        JudgeSettings(score_labels=("Yes", "yes"))


def test_a_model_judge_refuses_labels_it_cannot_read_in_one_token() -> None:
    judge = load_model_judge("tiny")
    assert judge.option_tokens(("A", "B"))["A"]
    with pytest.raises(ConfigError, match="several tokens"):
        judge.option_tokens(("unquestionably", "B"))
