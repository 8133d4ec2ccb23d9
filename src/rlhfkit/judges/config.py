"""`JudgeSettings`: which judge, how its verdicts are read, what a flip becomes, and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfkit.config import Config, require
from rlhfkit.judges.base import Asker, Judge, Readout
from rlhfkit.judges.cache import JudgeCache
from rlhfkit.judges.combine import FlipRule
from rlhfkit.judges.questions import Asking, Comparison
from rlhfkit.judges.templates import SCORE_LABELS

CACHE_FILE = "judge-cache.sqlite"
"""The cache's file name in a run directory."""


@dataclass(frozen=True)
class JudgeSettings(Config):
    """An AI judge (RLAIF): a model rlhfkit loads, or an OpenAI-compatible endpoint."""

    judge: str = "smollm2"
    """MODEL (bundled name, directory, hub id, tiny) or URL of an OpenAI-compatible API (http://HOST:PORT/v1)."""
    model: str = ""
    """URL judges: the server's model name."""
    api_key_env: str = ""
    """URL judges: the environment variable holding the API key ('' = none). Never a key itself."""
    readout: Readout = "auto"
    """Verdicts from option-token log-probs where available ('auto'), only log-probs, or only the text."""
    compare: Comparison = "both_orders"
    """How pairs and rankings are judged: 'both_orders' (side by side, asked in both orders; a position bias
    shows as flips) or 'scores' (each response asked about alone, answered with score_labels; no position to
    prefer: the mode for a small judge such as the bundled model, see bench/results/aif_demo.md)."""
    on_flip: FlipRule = "tie"
    """A pairwise question whose two orders disagree becomes a 'tie' or stays 'unlabelled' (given back)."""
    criterion: str = ""
    """What the judge is asked: for both_orders a comparison ('Which review is more positive?'), for scores a
    question about one response that score_labels answer ('Is the sentiment of this review positive or
    negative?'); '' = helpful, honest and harmless."""
    score_labels: tuple[str, str] = SCORE_LABELS
    """compare=scores: the two answers, good first (e.g. positive, negative); each one token for a model judge."""
    templates: str = ""
    """YAML file overriding the question templates ('' = the defaults of rlhfkit.judges.templates)."""
    max_requests: int = 0
    """Request budget of one run (0 = unlimited); cached answers are free."""
    attempts: int = 5
    """URL judges: tries per question before giving up (retries back off exponentially)."""
    timeout_s: float = 60.0
    """URL judges: per-request timeout in seconds."""
    top_logprobs: int = 5
    """URL judges: alternatives per token to ask for (0 = do not ask for log-probs)."""
    device: str = "cpu"
    """Model judges: device."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.judge), "judge (a model or a URL) is required")
        require(not self.is_url or bool(self.model), "a URL judge needs judge.model (the server's model name)")
        require(self.max_requests >= 0 and self.attempts >= 1, "max_requests >= 0 and attempts >= 1")
        require(self.timeout_s > 0 and self.top_logprobs >= 0, "timeout_s > 0 and top_logprobs >= 0")
        require(not self.api_key_env.startswith(("sk-", "Bearer")), "api_key_env names a variable, not a key")
        labels = [label.strip().lower() for label in self.score_labels]
        require(all(labels) and labels[0] != labels[1], "score_labels are two different non-empty answers")

    def asking(self) -> Asking:
        """How comparisons are put to the judge."""
        return Asking(self.compare, self.on_flip, self.score_labels)

    @property
    def is_url(self) -> bool:
        return self.judge.startswith(("http://", "https://"))


def build_judge(settings: JudgeSettings) -> Judge:
    """The judge `settings` names (a model is loaded here)."""
    if settings.is_url:
        from rlhfkit.judges.http import HTTPJudge

        return HTTPJudge(
            settings.judge,
            settings.model,
            key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
            attempts=settings.attempts,
            top_logprobs=settings.top_logprobs,
        )
    from rlhfkit.judges.model import load_model_judge

    return load_model_judge(settings.judge, device=settings.device)


def build_asker(settings: JudgeSettings, run_dir: Path | None, judge: Judge | None = None) -> Asker:
    """The judge behind its cache (``run_dir/judge-cache.sqlite``; none without a run dir) and budget."""
    cache = JudgeCache(Path(run_dir) / CACHE_FILE) if run_dir is not None else None
    return Asker(judge or build_judge(settings), cache, settings.max_requests, settings.readout)
