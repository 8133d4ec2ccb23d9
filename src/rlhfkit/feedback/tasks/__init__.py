"""Task types: what an annotator is asked, what a valid answer looks like, and what it is used for.

==========  ===============================================================  ===================
type        payload                                                          QC
==========  ===============================================================  ===================
pairwise    ``{"choice": id | "tie" | "both_bad"}`` (exactly 2 responses)    nominal
ranking     ``{"ranking": [id_best, ..., id_worst]}`` (all K responses)       ordinal + interval
likert      ``{"ratings": {"id": {"overall": 1..7, aspect: 1..7}}}``          ordinal + interval
critique    ``{"critiques": {"id": text}}`` (at least one)                    --
rewrite     ``{"response_id": id, "text": rewritten}``                        --
demo        ``{"text": demonstration}`` (responses optional)                  --
harm        ``{"flags": {"id": [label, ...]}}`` (empty list = harmless)       nominal
==========  ===============================================================  ===================

Any payload may also carry harm ``"flags"`` (as in ``harm``) and a free-text ``"comment"``.

Each type is one module of this package holding all of it (validation, the HTML form reader, the
export builders, the simulated panel's answer, quality-control units, templates; see
`rlhfkit.feedback.tasks.base.TaskType`). The store, the web forms, the exporter, quality control and
the loop's simulated panel all read `TASK_TYPES`. Adding a task type is one module, one line below,
and its two templates (``task_NAME.html`` and ``_shortcuts_NAME.html``).
"""

from __future__ import annotations

from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tasks.base import TaskType
from rlhfkit.feedback.tasks.critique import CRITIQUE
from rlhfkit.feedback.tasks.demo import DEMO
from rlhfkit.feedback.tasks.harm import HARM
from rlhfkit.feedback.tasks.likert import LIKERT
from rlhfkit.feedback.tasks.pairwise import PAIRWISE
from rlhfkit.feedback.tasks.ranking import RANKING
from rlhfkit.feedback.tasks.rewrite import REWRITE

TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (PAIRWISE, RANKING, LIKERT, CRITIQUE, REWRITE, DEMO, HARM)}
"""Task type name -> definition (in the order pages list them)."""


def task_type(name: str) -> TaskType:
    """Look up a task type, with the list of valid names in the error."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise Invalid(f"unknown task type {name!r}; choose one of {sorted(TASK_TYPES)}") from None


__all__ = ["TASK_TYPES", "TaskType", "task_type"]
