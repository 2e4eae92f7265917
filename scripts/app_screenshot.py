"""Take the README's screenshot of the web app (docs/images/app.png) in headless chromium.

    python scripts/app_screenshot.py [--checkpoint data/06_models/sample/ours-sample/best.safetensors] [--out docs/images/app.png]

Run from the project root after `bash scripts/demo.sh` (the sample's model); needs playwright
(pip) and Debian's chromium (`apt-get install -y chromium`). It starts the app, draws a house, a
tree and a sun with the mouse, segments them with "house, tree, sun", isolates the sun, and saves
the page as a palette PNG.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
from pathlib import Path

from PIL import Image

from sketchseg.app.checkpoints import SAMPLE_CHECKPOINT
from sketchseg.app.cli import launch, parse_args

logger = logging.getLogger("app_screenshot")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stroke(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=3)
    page.mouse.up()


def draw_scene(page) -> None:
    """A house (walls, roof, door), a tree (trunk, crown) and a sun (disc, rays) with the mouse."""
    page.get_by_role("button", name="Brush").click()
    box = page.locator("#drawing canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    ring = [(math.cos(t * math.pi / 8), math.sin(t * math.pi / 8)) for t in range(17)]
    walls = [(-120, 20), (-40, 20), (-40, 110), (-120, 110), (-120, 20)]
    _stroke(page, [(cx + x, cy + y) for x, y in walls])
    _stroke(page, [(cx - 132, cy + 22), (cx - 80, cy - 30), (cx - 28, cy + 22)])
    _stroke(page, [(cx - 90, cy + 110), (cx - 90, cy + 70), (cx - 70, cy + 70), (cx - 70, cy + 110)])
    _stroke(page, [(cx + 55, cy + 110), (cx + 55, cy + 45)])
    _stroke(page, [(cx + 55 + 36 * c, cy + 10 + 32 * s) for c, s in ring])
    _stroke(page, [(cx + 80 + 22 * c, cy - 95 + 22 * s) for c, s in ring])
    for k in range(8):
        a = k * math.pi / 4
        _stroke(page, [(cx + 80 + 30 * math.cos(a), cy - 95 + 30 * math.sin(a)),
                       (cx + 80 + 42 * math.cos(a), cy - 95 + 42 * math.sin(a))])


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(SAMPLE_CHECKPOINT))
    ap.add_argument("--out", default="docs/images/app.png")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    page_app, url = launch(parse_args(["--checkpoint", args.checkpoint, "--port", str(_free_port())]), block=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route(lambda u: not u.startswith(("http://127.0.0.1", "data:", "blob:")), lambda r: r.abort())
            page.goto(url)
            page.wait_for_selector("#drawing canvas", timeout=30_000)
            draw_scene(page)
            page.locator("#categories textarea").fill("house, tree, sun")
            page.locator("#isolate input").fill("sun")
            page.locator("#segment").click()
            page.wait_for_selector("#legend table", timeout=60_000)
            page.wait_for_timeout(500)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        page_app.close()
    shot = Image.open(out).convert("RGB")
    shot = shot.resize((shot.width * 3 // 4, shot.height * 3 // 4), Image.Resampling.LANCZOS)
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    logger.info("wrote %s (%d kB)", out, out.stat().st_size // 1024)


if __name__ == "__main__":
    main()
