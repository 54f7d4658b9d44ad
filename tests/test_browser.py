"""Open a real report in headless Chromium: no console errors, every image loads, the page is not blank, and a
prompt holding a script tag is shown as text and never runs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fixtures_runs import XSS, write_study

from sdprobe.report import ReportOptions, make_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
MIN_PIXEL_STD = 5.0  # a blank (single-colour) screenshot has a pixel standard deviation of 0
NAV_TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}; install it with "
                                                     "`apt-get install -y chromium` to run browser tests"),
]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    root = tmp_path_factory.mktemp("browser")
    out = make_report([write_study(root / "study", partial=True)], root / "report.html",
                      opts=ReportOptions(n_boot=100, dpi=50))
    events = {"console": [], "dialogs": [], "page_errors": [], "requests": []}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport=VIEWPORT)
            pg.on("console", lambda m: events["console"].append((m.type, m.text)))
            pg.on("pageerror", lambda e: events["page_errors"].append(str(e)))
            pg.on("request", lambda r: events["requests"].append(r.url))

            def on_dialog(d):
                events["dialogs"].append(d.message)
                d.dismiss()

            pg.on("dialog", on_dialog)
            pg.goto(out.resolve().as_uri(), wait_until="load", timeout=NAV_TIMEOUT_MS)
            pg.wait_for_load_state("networkidle", timeout=NAV_TIMEOUT_MS)
            state = {
                "images": pg.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])"),
                "scripts": pg.evaluate("document.scripts.length"),
                "text": pg.inner_text("body"),
                "banner": pg.inner_text("#partial-banner"),
                "screenshot": pg.screenshot(full_page=False),
                "dialogs_on_load": list(events["dialogs"]),
                "findings_box": pg.locator("#findings").bounding_box(),
                "findings_items": [li.inner_text() for li in pg.locator("#findings li").all() if li.is_visible()],
                "reproduction_folded": not pg.locator("#reproduction table").first.is_visible(),
            }
            pg.click("#reproduction summary")
            state["reproduction_opens"] = pg.locator("#reproduction table").first.is_visible()
            pg.evaluate("alert('listener check')")  # proves that the dialog listener would see an alert
        finally:
            browser.close()
    return {**state, **events, "url": out.resolve().as_uri()}


def test_no_console_errors(page):
    assert [m for m in page["console"] if m[0] in ("error", "warning")] == []
    assert page["page_errors"] == []


def test_every_image_loads(page):
    assert len(page["images"]) > 10
    assert all(complete and width > 0 for complete, width in page["images"])


def test_screenshot_is_not_blank(page):
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(page["screenshot"])).convert("L"), dtype=float)
    assert pixels.std() > MIN_PIXEL_STD


def test_script_in_a_prompt_shows_as_text_and_never_runs(page):
    assert page["dialogs_on_load"] == []
    assert page["dialogs"] == ["listener check"]
    assert page["scripts"] == 0
    assert XSS in page["text"]


def test_the_findings_summary_is_on_the_first_screen(page):
    from PIL import Image

    box = page["findings_box"]
    assert box is not None and box["y"] < VIEWPORT["height"] / 2  # it starts in the upper half of the first screen
    assert any(item.startswith("te-magnitude (") and "sudden at" in item for item in page["findings_items"])
    shot = Image.open(io.BytesIO(page["screenshot"])).convert("L")
    region = shot.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                        int(min(box["y"] + box["height"], VIEWPORT["height"]))))
    assert np.asarray(region, dtype=float).std() > MIN_PIXEL_STD  # text is drawn there, not an empty box


def test_the_reproduction_section_is_folded_until_opened(page):
    assert page["reproduction_folded"] and page["reproduction_opens"]


def test_partial_banner_is_visible(page):
    assert page["banner"].startswith("PARTIAL")


def test_nothing_is_fetched_from_outside(page):
    assert [u for u in page["requests"] if not u.startswith(("file://", "data:"))] == []
