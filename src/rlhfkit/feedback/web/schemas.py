"""Request and response bodies of the REST API (what /docs and /openapi.json describe)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlhfkit.feedback.entities import Progress, TaskView


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


class ProjectPatch(Strict):
    title: str | None = Field(default=None, max_length=200)
    guidelines: str | None = Field(default=None, max_length=200_000)
    aspects: list[str] | None = Field(default=None, max_length=8)
    lock_ttl_s: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    gold_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class ItemsBody(Strict):
    items: list[dict[str, Any]] = Field(
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
    seed: int = 0
    task_type: str | None = Field(default=None, max_length=16)


class SubmitBody(Strict):
    answer: dict[str, Any] = Field(description="The task type's payload, responses named by id")
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
