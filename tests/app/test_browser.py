"""The page in a real headless browser (Debian's chromium driven by Playwright): draw strokes on the
canvas with the mouse, type categories, segment, and read the rendered result and legend."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*:DeprecationWarning:gradio.queueing")]

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)


@pytest.fixture(scope="module")
def browser_page():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            # offline machines: fail requests to other hosts (web fonts) at once instead of waiting
            page.route(lambda url: not url.startswith(("http://127.0.0.1", "data:", "blob:")),
                       lambda route: route.abort())
            yield page
        finally:
            browser.close()


def _stroke(page, points):
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=2)  # few events: each is a round trip to the browser
    page.mouse.up()


def draw_house_tree_sun(page) -> None:
    """Mouse strokes around the middle of the canvas (the 512 px paper is shown scaled there)."""
    page.get_by_role("button", name="Brush").click()
    box = page.locator("#drawing canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    walls = [(-110, 30), (-50, 30), (-50, 100), (-110, 100), (-110, 30)]
    _stroke(page, [(cx + x, cy + y) for x, y in walls])
    _stroke(page, [(cx - 120, cy + 30), (cx - 80, cy - 10), (cx - 40, cy + 30)])
    circle = [(math.cos(t * math.pi / 4), math.sin(t * math.pi / 4)) for t in range(9)]
    _stroke(page, [(cx + 80 + 28 * c, cy - 80 + 28 * s) for c, s in circle])
    _stroke(page, [(cx + 50, cy + 100), (cx + 50, cy + 40)])
    _stroke(page, [(cx + 50 + 30 * c, cy + 15 + 25 * s) for c, s in circle])


def test_draw_segment_and_read_the_legend(served_app, browser_page):
    page = browser_page
    page.goto(served_app)
    page.wait_for_selector("#drawing canvas", timeout=20_000)
    assert "giraffe" in page.inner_text("body")                    # the sample model's vocabulary is listed
    draw_house_tree_sun(page)
    page.locator("#categories textarea").fill("house, tree; sun")
    page.locator("#isolate input").fill("sun")
    page.locator("#segment").click()
    page.wait_for_selector("#legend table", timeout=30_000)
    message = page.locator("#message").inner_text()
    assert "Segmented a 512×512 px sketch into 3 categories (typed: house, tree, sun)" in message, message
    legend = page.locator("#legend")
    rows = legend.locator("tbody tr")
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())] == ["house", "tree", "sun"]
    shares = [float(rows.nth(i).locator("td").nth(2).inner_text().rstrip("%")) for i in range(3)]
    assert abs(sum(shares) - 100.0) < 0.2                          # the strokes are ink, all of it labelled
    assert "Isolated sun" in legend.inner_text()
    overlay = page.locator("#overlay img")
    overlay.wait_for(timeout=10_000)
    assert page.evaluate("img => img.complete && img.naturalWidth", overlay.element_handle()) == 512
    # the rendered overlay: the strokes in the legend's colours (tints of them on anti-aliased
    # edges), never the neutral grey of the isolation picture's other strokes
    shown = _rgb(page, overlay)
    colours = [rows.nth(i).locator("span").get_attribute("style") for i in range(3)]
    for colour, share in zip(colours, shares):
        hex_ = colour.split("background:")[1][1:7]
        rgb = tuple(int(hex_[k:k + 2], 16) for k in (0, 2, 4))
        if share >= 1.0:  # a category with ink has fully dark stroke centres in its exact colour
            assert (shown == rgb).all(axis=-1).any(), (rgb, share)
    neutral = (shown[..., 0] == shown[..., 1]) & (shown[..., 1] == shown[..., 2]) & (shown[..., 0] < 250)
    assert not neutral.any()
    isolated = _rgb(page, page.locator("#isolated img"))
    assert isolated.shape == (512, 512, 3) and ((isolated == (200, 200, 200)).all(axis=-1)).any()


def _rgb(page, img_locator) -> np.ndarray:
    """The pixels of a rendered <img>, fetched from the URL the page shows."""
    body = page.request.get(img_locator.get_attribute("src")).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def test_empty_canvas_shows_a_message(served_app, browser_page):
    page = browser_page
    page.goto(served_app)
    page.wait_for_selector("#drawing canvas", timeout=20_000)
    page.locator("#categories textarea").fill("house")
    page.locator("#segment").click()
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('Problem')", timeout=30_000)
    assert "No sketch" in page.locator("#message").inner_text() or "empty" in page.locator("#message").inner_text()
    assert page.locator("#legend table").count() == 0
