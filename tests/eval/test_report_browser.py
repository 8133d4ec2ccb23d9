"""The report in a real browser: Debian's Chromium through Playwright renders plots and examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def test_report_renders_plots_and_examples(full_run: Path, nasty: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    report = full_run / "report.html"
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(report.as_uri())

            panels = page.locator("figure.panel")
            assert panels.count() == 11
            for i in range(panels.count()):
                svg = panels.nth(i).locator("svg")
                assert svg.count() == 1
                box = svg.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 100, panels.nth(i).get_attribute("id")
                assert svg.is_visible()

            examples = page.locator("tr.example")
            assert examples.count() == 3
            # The markup in a response is shown as text, not executed or rendered.
            assert nasty in examples.nth(2).inner_text()
            assert page.locator("#examples b").count() == 0
            assert page.locator("#warnings li").count() >= 1
            assert page.locator("#warnings").is_visible()
            assert errors == []

            shot = Path(os.environ.get("RLHFKIT_SCREENSHOT_DIR", tmp_path)) / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    # Self-contained: the only thing loaded is the file itself.
    assert requests == [report.as_uri()]
