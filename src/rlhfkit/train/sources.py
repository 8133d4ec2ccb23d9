"""Where training data comes from: a file or dataset, or a project in the feedback app's database.

``--data`` is a path (JSONL, CSV, JSON, a saved dataset), ``hf:NAME[:split]``, or ``DBURL#PROJECT``
(``sqlite:///feedback.db#my-project``, ``postgresql://.../db#my-project``), in which case the
project's judgments are aggregated per item and used exactly as an exported file would be.
"""

from __future__ import annotations

from typing import Protocol

from rlhfkit.data.loaders import load_records, split_records
from rlhfkit.data.projects import parse_project_ref, read_project_records, redact_url
from rlhfkit.data.records import Record, RecordKind
from rlhfkit.train.run import log


def load_training_records(spec: str, kind: RecordKind, *, skip_invalid: bool = False) -> list[Record]:
    """Records of `kind` from `spec`; skipped rows (only with `skip_invalid`) are reported, never silent."""
    ref = parse_project_ref(spec)
    if ref is not None:
        records = read_project_records(ref, kind)
        where = redact_url(ref.url)
        log.info("%d %s from project %r in %s (aggregate=%s)", len(records), kind, ref.project, where, ref.aggregate)
    else:
        result = load_records(spec, kind, skip_invalid=skip_invalid)
        records = result.records
        log.info("%s: %s", spec, result.summary())
        for row in result.skipped[:20]:
            log.warning("skipped %s:%s field %r: %s", row.path, row.line, row.field, row.message)
    if not records:
        raise ValueError(f"{spec}: no usable {kind} rows")
    return records


class DataSettings(Protocol):
    """What a trainer's config says about its data (SFT's and DPO's have these fields)."""

    @property
    def data(self) -> str: ...

    @property
    def eval_data(self) -> str: ...

    @property
    def eval_fraction(self) -> float: ...

    @property
    def seed(self) -> int: ...

    @property
    def skip_invalid(self) -> bool: ...


def load_train_eval(cfg: DataSettings, kind: RecordKind) -> tuple[list[Record], list[Record]]:
    """(train, held-out) records of `cfg.data` (`load_training_records`, then `split_holdout`)."""
    records = load_training_records(cfg.data, kind, skip_invalid=cfg.skip_invalid)
    return split_holdout(records, cfg.eval_data, cfg.eval_fraction, cfg.seed, kind, cfg.skip_invalid)


def split_holdout(
    records: list[Record],
    eval_spec: str,
    fraction: float,
    seed: int,
    kind: RecordKind,
    skip_invalid: bool,
) -> tuple[list[Record], list[Record]]:
    """(train, eval): eval from `eval_spec` when given, else `hold_out(records, fraction, seed)`."""
    if eval_spec:
        return records, load_training_records(eval_spec, kind, skip_invalid=skip_invalid)
    return hold_out(records, fraction, seed)


def hold_out(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(train, held-out): a seeded `fraction` of `records`, by whole prompts (`split_records`); nothing
    is held out when `fraction` is 0 or there are fewer than two records to split."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    return split_records(records, fraction, seed)
