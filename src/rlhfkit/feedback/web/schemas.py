"""Request and response bodies of the REST API (what /docs and /openapi.json describe)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Form, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rlhfkit.data.safejson import check_depth
from rlhfkit.feedback.entities import Progress, TaskView

MAX_ROW_ID = 2**31 - 1
"""Largest database id: the id columns are SQL INTEGER, 32-bit on PostgreSQL (SQLite's are 64-bit);
a larger int in a query overflows the driver or the server (a 500 before this bound)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="A database id (1 to 2**31-1)")]
"""A database id in a path. Pydantic parses only ASCII digits, so '²' or '١' is a 422, never
`int()`'s Unicode-digit surprise."""

NAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""`NAME_PATTERN` for pydantic and OpenAPI, whose `$` (Rust and ECMA regexes) is the end of the text."""

ProjectName = Annotated[str, Path(pattern=NAME_REGEX, description="A project name")]
"""A project name in a path, checked before any query (PostgreSQL refuses NUL bytes in text)."""

Overlap = Annotated[int, Form(ge=1, le=100)]
"""Judgments wanted per item (the project form)."""

LockTtlMinutes = Annotated[float, Form(ge=1 / 6, le=7 * 24 * 60, allow_inf_nan=False)]
"""Lock lifetime in minutes on the project forms (10 s to a week; 'nan' and 'inf' are 422s, not
`int(nan)`'s 500)."""

GoldRate = Annotated[float, Form(ge=0.0, le=1.0, allow_inf_nan=False)]
"""Share of gold items shown (the project forms)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(check_depth)]
"""A free-form JSON object from a client, nested at most `safejson.MAX_DEPTH` levels (422 deeper)."""

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A sampling seed (torch accepts 64 bits; 32 keep seed + batch well inside them)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(Strict):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginReply(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'")
    user: dict[str, Any]


class UserBody(Strict):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "annotator"]
    password: str = Field(min_length=8, max_length=1024)


class ActiveBody(Strict):
    active: bool


class ProjectBody(Strict):
    name: str = Field(min_length=1, max_length=64)
    task_type: str = Field(default="pairwise", max_length=16)
    title: str = Field(default="", max_length=200)
    guidelines: str = Field(default="", max_length=200_000)
    overlap: int = Field(default=3, ge=1, le=100)
    aspects: list[str] = Field(default_factory=list, max_length=8)
    lock_ttl_s: int = Field(default=1800, ge=10, le=7 * 24 * 3600)
    gold_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    members_only: bool = Field(default=False, description="Only members (PUT .../members/{user_id}) see it")


class ProjectPatch(Strict):
    title: str | None = Field(default=None, max_length=200)
    guidelines: str | None = Field(default=None, max_length=200_000)
    aspects: list[str] | None = Field(default=None, max_length=8)
    lock_ttl_s: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    gold_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    members_only: bool | None = None


class ItemsBody(Strict):
    items: list[JsonObject] = Field(
        min_length=1,
        max_length=10_000,
        description='Objects shaped like JSONL import lines: {"prompt", "responses"|"chosen"/"rejected", '
        '"task_type"?, "gold"?, "id"?, "models"?}',
    )


class GenerateBody(Strict):
    prompts: list[Any] = Field(min_length=1, max_length=100_000)
    model: str = Field(min_length=1, max_length=500)
    n: int = Field(default=2, ge=1, le=16)
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=1.0, gt=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: Seed = 0
    task_type: str | None = Field(default=None, max_length=16)


class SubmitBody(Strict):
    answer: JsonObject = Field(description="The task type's payload, responses named by id")
    duration_ms: int | None = Field(default=None, ge=0, le=7 * 24 * 3600 * 1000)


class SkipBody(Strict):
    reason: str = Field(min_length=1, max_length=1000)


class SubmitReply(BaseModel):
    judgment_id: int
    duplicate: bool = Field(description="True when an identical answer was already stored")


class NextReply(BaseModel):
    task: dict[str, Any] | None = Field(description="None when nothing is open for you right now")
    remaining: int | None = Field(
        description="When task is None: open items you have not seen yet. Items held by "
        "others may come back when their locks expire, so poll while this is > 0.",
    )


def task_json(task: TaskView) -> dict[str, Any]:
    return {
        "assignment_id": task.assignment_id,
        "item_id": task.item_id,
        "project": task.project,
        "task_type": task.task_type,
        "prompt": task.prompt,
        "aspects": list(task.aspects),
        "responses": [{"id": r.id, "label": r.label, "text": r.text} for r in task.responses],
        "expires_at": task.expires_at,
    }


def progress_json(progress: Progress) -> dict[str, Any]:
    return {
        "items": progress.items,
        "complete_items": progress.complete_items,
        "judgments": progress.judgments,
        "required_judgments": progress.required_judgments,
        "user_done": progress.user_done,
        "user_remaining": progress.user_remaining,
    }
