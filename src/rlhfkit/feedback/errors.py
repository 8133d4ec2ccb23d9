"""Domain errors of the feedback app, each carrying the HTTP status the web layer answers with.

The store raises these; the web app maps them to clear 4xx answers (JSON under ``/api``, an error
page elsewhere), so that bad input never turns into a 500.
"""

from __future__ import annotations


class FeedbackError(Exception):
    """Base class: a client-side problem with a human-readable message."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(FeedbackError, ValueError):
    """The request is well-formed but its content is wrong (bad payload, bad JSONL line...)."""

    status = 422


class TooLarge(FeedbackError, ValueError):
    """A text or upload is bigger than the configured limit."""

    status = 413


class Unauthorized(FeedbackError):
    """Not logged in, or the credentials are wrong."""

    status = 401


class Forbidden(FeedbackError):
    """Logged in, but the role does not allow this action."""

    status = 403


class NotFound(FeedbackError):
    """An unknown id or name."""

    status = 404


class Conflict(FeedbackError):
    """The action collides with existing state (a different judgment already exists, lock lost)."""

    status = 409
