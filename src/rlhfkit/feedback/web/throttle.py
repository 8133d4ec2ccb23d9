"""Slow down password guessing: too many failed logins for one name -> 429 for a while."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from rlhfkit.feedback.errors import FeedbackError


class TooManyAttempts(FeedbackError):
    """Too many failed logins recently."""

    status = 429


@dataclass
class LoginThrottle:
    """In-memory sliding window of failed logins per account name (per server process)."""

    max_failures: int = 10
    """Failures allowed within `window_s`."""
    window_s: float = 300.0
    """Window length in seconds."""
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    """Name -> monotonic times of its recent failures."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards `_failures` (requests run in a thread pool)."""

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s > 0")

    def check(self, name: str) -> None:
        """Raise TooManyAttempts when `name` is locked out."""
        with self._lock:
            recent = self._recent(name)
            if len(recent) >= self.max_failures:
                raise TooManyAttempts("too many failed logins; wait a few minutes")

    def failed(self, name: str) -> None:
        with self._lock:
            self._recent(name).append(time.monotonic())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)

    def _recent(self, name: str) -> deque[float]:
        queue = self._failures.setdefault(name[:64], deque())
        cutoff = time.monotonic() - self.window_s
        while queue and queue[0] < cutoff:
            queue.popleft()
        return queue
