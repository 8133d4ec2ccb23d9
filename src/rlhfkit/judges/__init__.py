"""AI judges (RLAIF): one interface for a model rlhfkit loads and for an OpenAI-compatible endpoint.

* `base.py`: the `Judge` protocol and `Asker` (cache, request budget, verdict readout);
* `model.py`: a model judge (verdicts from the option tokens' logits);
* `http.py`: an OpenAI-compatible chat-completions judge (httpx; retries with backoff by tenacity;
  the API key from an environment variable);
* `templates.py`: the pairwise, ranking, rating and score questions, editable in YAML;
* `verdicts.py`: option probabilities from log-probs or from the answer text;
* `combine.py`: both orders of every question, the flip rules, the flip rate;
* `questions.py`: a pair or K responses compared (both orders, or each scored alone), a rating;
* `cache.py`: answers keyed by (judge, rendered question) in a SQLite file of the run directory;
* `config.py`: `JudgeSettings` and the builders.

The judges sit above `rlhfkit.rollout` and below the trainers, the feedback app and evaluation; the
loop composes them with the app (`rlhfkit.loop.judge`) and with training (`rlhfkit.loop.cai`).
"""

from rlhfkit.judges.base import Answer, Asker, BudgetExhausted, Judge
from rlhfkit.judges.combine import FLIP_RULES, PairVerdict, RankVerdict, combine_pair, combine_ranking, flip_rate
from rlhfkit.judges.config import JudgeSettings, build_asker, build_judge
from rlhfkit.judges.questions import judge_pair, judge_ranking, judge_rating
from rlhfkit.judges.templates import Templates, load_templates

__all__ = [
    "FLIP_RULES",
    "Answer",
    "Asker",
    "BudgetExhausted",
    "Judge",
    "JudgeSettings",
    "PairVerdict",
    "RankVerdict",
    "Templates",
    "build_asker",
    "build_judge",
    "combine_pair",
    "combine_ranking",
    "flip_rate",
    "judge_pair",
    "judge_ranking",
    "judge_rating",
    "load_templates",
]
