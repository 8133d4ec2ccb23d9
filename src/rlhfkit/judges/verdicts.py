"""Verdicts: option probabilities read from a judge's answer text or from its option-token log-probs.

A question offers labelled options ("A", "B" for a pair; "A".."H" for a K-way ranking; "1".."7" for a
rating). The verdict is a probability per option. Where the judge exposes log-probabilities (a model
run in-process always does; an OpenAI-compatible server when it returns ``logprobs``) they are the
verdict: the judge's own uncertainty, which averages cleanly over the two orders (Zheng et al. 2023,
"Judging LLM-as-a-judge", sec. 3.4, ask both orders; Lee et al. 2023, RLAIF, sec. 2.1, read the
preference from the option tokens' probabilities). Otherwise the first option named in the text gets
probability one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

OptionProbs = dict[str, float]
"""Option label -> probability (sums to one over the offered options)."""


def probs_from_logprobs(logprobs: Mapping[str, float], options: Sequence[str]) -> OptionProbs | None:
    """Renormalized probabilities of the options among candidate first tokens.

    `logprobs` maps token strings (as the tokenizer or the server spells them: ``" A"``, ``"A"``,
    ``"a"``) to log-probabilities; tokens that spell the same option after stripping blanks and case
    are pooled (log-sum-exp). None when no option appears at all.
    """
    wanted = {o.strip().lower(): o for o in options}
    pooled: dict[str, list[float]] = {}
    for token, lp in logprobs.items():
        option = wanted.get(token.strip().lower())
        if option is not None and math.isfinite(lp):
            pooled.setdefault(option, []).append(lp)
    if not pooled:
        return None
    mass = {o: math.exp(_logsumexp(lps)) for o, lps in pooled.items()}
    total = sum(mass.values())
    return {o: mass.get(o, 0.0) / total for o in options}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def probs_from_text(text: str, options: Sequence[str]) -> OptionProbs | None:
    """One-hot on the option the answer names: the first standalone option label after a verdict
    cue ("answer", "verdict", "better", "rating", "best"), else the first standalone label at all.
    None when the text names no option."""
    alternatives = "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True))
    label = rf"(?<![\w])({alternatives})(?![\w])"
    cue = re.search(rf"(?:answer|verdict|better|rating|best|choice)[^.\n]{{0,24}}?{label}", text, re.IGNORECASE)
    found = cue or re.search(label, text)
    if found is None:
        return None
    named = found.group(1)
    match = next(o for o in options if o.lower() == named.lower())
    return {o: float(o == match) for o in options}


def expected_rating(probs: OptionProbs) -> float:
    """The mean rating under `probs` (options are integer labels such as "1".."7")."""
    return sum(int(o) * p for o, p in probs.items())
