"""Real-browser tests: Playwright drives Debian's Chromium against a live uvicorn server.

The first test is the issue's "done when" story: an admin creates a project, imports candidates
and creates two annotators in the browser; both annotators work at the same time in two browser
contexts (one with the keyboard, one with the mouse); the dashboard shows their agreement; the
export is valid training data. The second test does ranking (drag and keys), Likert ratings
(keys and mouse) and a rewrite (keys). Screenshots land in the test's tmp dir.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.loadtest import free_port
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tables import Judgment
from rlhfkit.feedback.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium (apt-get install chromium)"),
]
PASSWORD = "correct horse battery"


@pytest.fixture
def live_server(store: FeedbackStore) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread of this process (so it shares the store)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store=store), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def _page(browser, base: str, problems: list[str]):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    # A CSP violation or a JavaScript error shows up here: the pages must run clean.
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return page


def _take(page, project: str) -> None:  # type: ignore[no-untyped-def]
    """Open a project's task page and press "Take a task" (a GET never takes one)."""
    page.goto(f"/projects/{project}/task")
    with page.expect_navigation():
        page.click("button:text-is('Take a task')")


def _login(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def _response_texts(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        t.strip() for t in page.locator("#answer-form .response .text, #answer-form .rank-item .text").all_inner_texts()
    ]


def test_admin_setup_two_annotators_at_once_dashboard_and_export(store, live_server, browser, tmp_path: Path) -> None:
    store.create_user("root", "admin", PASSWORD)  # the first admin comes from the CLI
    problems: list[str] = []
    admin = _page(browser, live_server, problems)
    _login(admin, "root")
    admin.goto("/admin")
    admin.fill("input[name=name]", "helpful")
    admin.fill("input[name=title]", "Helpfulness <v1>")
    admin.select_option("select[name=task_type]", "pairwise")
    admin.fill("input[name=overlap]", "2")
    admin.fill("textarea[name=guidelines]", "## Rules\n\nPrefer the **helpful** answer. <script>alert(1)</script>")
    with admin.expect_navigation():
        admin.click("button:text-is('Create project')")
    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(
            json.dumps(
                {
                    "prompt": f"Question {i}: how do I <b>boil</b> an egg?",
                    "responses": [f"good answer {i}", f"bad answer {i}"],
                }
            )
            for i in range(4)
        )
    )
    admin.set_input_files("input[type=file][name=file] >> nth=0", str(items))
    with admin.expect_navigation():
        admin.click("button:text-is('Import')")
    assert "Imported 4 items" in admin.inner_text(".notice")
    for name in ("ann1", "ann2"):
        admin.goto("/admin/users")
        admin.fill("input[name=name]", name)
        admin.fill("input[name=password]", PASSWORD)
        with admin.expect_navigation():
            admin.click("button:text-is('Create user')")
    admin.screenshot(path=str(tmp_path / "admin-users.png"), full_page=True)

    keyboard, mouse = _page(browser, live_server, problems), _page(browser, live_server, problems)
    _login(keyboard, "ann1")
    _login(mouse, "ann2")
    _take(keyboard, "helpful")
    _take(mouse, "helpful")  # both hold a task at the same time
    assert "Prefer the" in keyboard.inner_text("#guidelines") and "<script>" in keyboard.inner_text("#guidelines")
    keyboard.screenshot(path=str(tmp_path / "pairwise-task.png"), full_page=True)
    keys = ["1", "ArrowLeft", "a"]
    for step in range(4):
        for page in (keyboard, mouse):
            a_text, _ = _response_texts(page)
            a_is_good = a_text.startswith("good")
            with page.expect_navigation():
                if page is keyboard:
                    page.keyboard.press(keys[step % 3] if a_is_good else ("2", "ArrowRight", "b")[step % 3])
                else:
                    page.click("button[name=choice] >> text=" + ("A is better" if a_is_good else "B is better"))
    for page in (keyboard, mouse):
        assert "Nothing left for you" in page.inner_text("main")

    admin.goto("/admin/projects/helpful/dashboard")
    table = admin.inner_text("#annotator-table")
    assert "ann1" in table and "ann2" in table and table.count("100%") == 2
    assert "pairwise" in admin.inner_text("#alpha-table")
    admin.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    admin.goto("/admin/projects/helpful")
    with admin.expect_download() as download:
        admin.click("button:text-is('Download')")
    rows = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert len(rows) == 4 and all(r["chosen"].startswith("good") and r["rejected"].startswith("bad") for r in rows)
    assert problems == []


def _rank_order(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.strip() for t in page.locator(".rank-item .text").all_inner_texts()]


def test_ranking_likert_and_rewrite_with_mouse_and_keys(store, live_server, browser, tmp_path: Path) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    store.create_project(ProjectSpec(name="rank", task_type="ranking", overlap=1, guidelines="Best first."))
    store.add_items("rank", [NewItem(prompt=f"rank {i}", responses=("best", "middle", "worst")) for i in range(2)])
    store.create_project(ProjectSpec(name="rate", task_type="likert", overlap=1, aspects=("helpfulness",)))
    store.add_items("rate", [NewItem(prompt="rate these", responses=("great reply", "poor reply"))])
    store.create_project(ProjectSpec(name="fix", task_type="rewrite", overlap=1))
    store.add_items("fix", [NewItem(prompt="fix one", responses=("first draft", "second draft"))])
    problems: list[str] = []
    page = _page(browser, live_server, problems)
    _login(page, "ann")

    # Ranking 1: the mouse. Dragging up lands before the target, dragging down after it.
    _take(page, "rank")
    before = _rank_order(page)
    page.locator(".rank-item").last.drag_to(page.locator(".rank-item").first)
    assert _rank_order(page) == [before[2], before[0], before[1]]  # the drag really moved it
    page.locator(".rank-item", has_text="best").drag_to(page.locator(".rank-item").first)
    page.locator(".rank-item", has_text="worst").drag_to(page.locator(".rank-item").last)
    assert _rank_order(page) == ["best", "middle", "worst"]
    page.screenshot(path=str(tmp_path / "ranking-drag.png"), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Ranking 2: the keyboard only (the top response starts selected).
    for target, text in enumerate(("best", "middle")):
        position = _rank_order(page).index(text)
        for _ in range(position):
            page.keyboard.press("ArrowDown")  # select it
        for _ in range(position - target):
            page.keyboard.press("Shift+ArrowUp")  # carry it up to its place
        for _ in range(target):
            page.keyboard.press("ArrowUp")  # back to the top for the next one
    assert _rank_order(page) == ["best", "middle", "worst"]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Nothing left for you" in page.inner_text("main")

    # Likert: j/k and digits, then one correction with the mouse.
    _take(page, "rate")
    texts = _response_texts(page)
    for text in texts:  # rows: overall, helpfulness per response, in display order
        page.keyboard.press("7" if text.startswith("great") else "2")
        page.keyboard.press("6" if text.startswith("great") else "3")
    poor = texts.index("poor reply")
    page.locator(".response").nth(poor).locator(".scale-row").first.locator("label", has_text="1").first.click()
    page.screenshot(path=str(tmp_path / "likert.png"), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Rewrite: pick B with "2", edit with "e", submit with Ctrl+Enter.
    _take(page, "fix")
    chosen_text = _response_texts(page)[1]
    page.keyboard.press("2")
    page.keyboard.press("e")
    page.keyboard.press("Control+a")
    page.keyboard.type("a much better draft")
    page.screenshot(path=str(tmp_path / "rewrite.png"), full_page=True)
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")

    with store.db.read() as s:
        judgments = s.scalars(select(Judgment).order_by(Judgment.id)).all()
        answers = [(store.item(j.item_id), j.payload) for j in judgments]
    by_text = lambda item: {r["id"]: r["text"] for r in item["responses"]}  # noqa: E731
    rankings = [[by_text(item)[r] for r in p["ranking"]] for item, p in answers if "ranking" in p]
    assert rankings == [["best", "middle", "worst"]] * 2
    ((item, likert),) = [(i, p) for i, p in answers if "ratings" in p]
    rated = {by_text(item)[int(k)]: v for k, v in likert["ratings"].items()}
    assert rated == {"great reply": {"overall": 7, "helpfulness": 6}, "poor reply": {"overall": 1, "helpfulness": 3}}
    ((item, rewrite),) = [(i, p) for i, p in answers if "text" in p]
    assert by_text(item)[rewrite["response_id"]] == chosen_text and rewrite["text"] == "a much better draft"
    assert problems == []
