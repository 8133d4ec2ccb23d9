"""The demo's loop report in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def test_demo_report_renders_plots_and_examples(tiny_demo: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    report = tiny_demo / "report.html"
    requests: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(report.as_uri())

            # The loop's own plots: reward (proxy and gold) and KL over steps, win rates, the leaderboard,
            # proxy vs gold over KL, drift, annotator agreement.
            for key in ("reward-curve", "kl-curve", "win-rate", "leaderboard", "proxy-gold", "drift", "agreement"):
                svg = page.locator(f"figure.panel#{key} svg")
                assert svg.count() == 1, key
                box = svg.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 100, key
                assert svg.is_visible(), key
            assert "win rate" in page.title()

            examples = page.locator("tr.example")
            assert examples.count() >= 2  # held-out prompts, before (SFT) and after (PPO)
            assert page.locator("#win-rate-table tr").count() >= 2
            assert page.locator("#agreement-table tr").count() >= 4
            assert errors == []
        finally:
            browser.close()
    assert requests == [report.as_uri()]  # self-contained
