"""The feedback app served from inside a loop, and waiting for people's judgments.

`AppServer` runs uvicorn in a daemon thread over the loop's own `FeedbackStore`, so that people
judge the very items the loop created while the loop waits; `wait_for_judgments` polls the
project's progress and shows it as a progress bar until every item has its judgments.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from rlhfkit.feedback.store import FeedbackStore

log = logging.getLogger("rlhfkit")

START_TIMEOUT_S = 20.0
"""How long the app may take to start listening."""


@dataclass
class AppServer:
    """uvicorn serving the feedback app in a background thread (stop it with `stop`)."""

    store: FeedbackStore
    """The store the app serves (shared with the loop)."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8000
    """Port to listen on."""
    _server: Any = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> AppServer:
        """Start listening (returns once the socket is bound; raises if it cannot be)."""
        import uvicorn

        from rlhfkit.feedback.web.app import create_app

        config = uvicorn.Config(
            create_app(store=self.store), host=self.host, port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="rlhfkit-feedback-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the feedback app could not listen on {self.url} (port in use?)")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_judgments(
    store: FeedbackStore,
    project: str,
    *,
    poll_seconds: float,
    timeout: float = 0.0,
    progress: bool = True,
    url: str = "",
) -> int:
    """Block until every (non-gold) item of `project` has all its judgments; returns the judgment count.

    Raises TimeoutError after `timeout` seconds (0 = wait for ever); the items stay in the app, and
    a restarted loop resumes waiting for the same items.
    """
    state = store.progress(project)
    if state.complete_items >= state.items:
        return state.judgments
    if url:
        log.info("waiting for judgments in project %r: open %s and log in as an annotator", project, url)
    bar = tqdm(
        total=state.required_judgments,
        initial=state.judgments,
        desc=f"judgments ({project})",
        unit="judgment",
        disable=not progress,
        dynamic_ncols=True,
    )
    start = time.monotonic()
    try:
        while state.complete_items < state.items:
            if timeout and time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"{state.items - state.complete_items} of {state.items} items of {project!r} still lack "
                    f"judgments after {timeout:.0f} s; run the loop again to keep waiting"
                )
            time.sleep(poll_seconds)
            state = store.progress(project)
            bar.total = state.required_judgments
            bar.n = state.judgments
            bar.refresh()
    finally:
        bar.close()
    return state.judgments
