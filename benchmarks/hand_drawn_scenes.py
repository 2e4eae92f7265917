"""Hand-drawn-looking test scenes for the sample's demo model, drawn apart from its generator.

``benchmarks/demo_model.py`` scores the sample model on these. Nothing in ``src/`` imports this
file: the sample generator (``sketchseg.data.sample``) draws every training and pre-training
sketch as noisy polylines in the 256 x 256 FS-COCO stroke frame, rendered with 3-px lines; these
scenes are drawn with PIL's own primitives (rectangles, ellipses, polygons, arcs, thick lines) on
canvases of other sizes and aspect ratios, with pen widths of 2 to 9 px, objects of other
proportions and sizes, placed by a layout routine of their own, in one of two styles
("clean": exact primitives; "wobbly": every outline traced by a shaky polyline).

Each object is drawn on its own layer, so every ink pixel's category is known: the ground truth is
the category of the one layer that inked the pixel; pixels inked by two layers are ``AMBIGUOUS``
(left out of the score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["AMBIGUOUS", "PAPER", "HandScene", "SCENE_SPECS", "hand_drawn_scenes", "draw_scene", "DRAWERS"]

PAPER, AMBIGUOUS = -1, -2
SEED = 20261206

# (categories, canvas (width, height)): 13 scenes of 2-4 categories, every category of the sample
# but one in at least one scene; the first is the house, tree and sun
SCENE_SPECS: tuple[tuple[tuple[str, ...], tuple[int, int]], ...] = (
    (("house", "tree", "sun"), (400, 300)),
    (("car", "road", "tree"), (512, 384)),
    (("mountain", "sun", "cloud"), (480, 320)),
    (("boat", "cloud", "bird"), (360, 360)),
    (("person", "dog", "tree"), (400, 400)),
    (("fence", "flower", "sun"), (420, 280)),
    (("giraffe", "tree", "cloud"), (300, 400)),
    (("house", "car", "cloud"), (640, 480)),
    (("airplane", "mountain", "cloud"), (500, 300)),
    (("bench", "tree", "person"), (450, 340)),
    (("kite", "person", "grass"), (380, 420)),
    (("traffic light", "car", "house"), (520, 400)),
    (("sheep", "grass", "fence", "sun"), (600, 400)),
)


@dataclass
class HandScene:
    """One scene: grey image (H, W) uint8 (255 = paper), ground truth (H, W) int (index into
    ``categories``, ``PAPER`` or ``AMBIGUOUS``), its style and pen width."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    categories: list[str]
    style: str
    pen: int


class _Pen:
    """Draws primitives on one layer, exactly ("clean") or as shaky polylines ("wobbly")."""

    def __init__(self, layer: Image.Image, rng: np.random.Generator, width: int, wobbly: bool) -> None:
        self.d = ImageDraw.Draw(layer)
        self.rng, self.w, self.wobbly = rng, int(width), wobbly

    def _shaky(self, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        amp = 0.8 + 0.25 * self.w
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            n = max(int(math.hypot(x1 - x0, y1 - y0) / 6.0), 1)
            phase = self.rng.uniform(0, 2 * math.pi)
            for k in range(n):
                t = k / n
                off = amp * math.sin(phase + 5.0 * t)
                nx, ny = -(y1 - y0), x1 - x0
                norm = math.hypot(nx, ny) or 1.0
                out.append((x0 + t * (x1 - x0) + off * nx / norm, y0 + t * (y1 - y0) + off * ny / norm))
        out.append(pts[-1])
        return out

    def line(self, pts: list[tuple[float, float]]) -> None:
        pts = [(float(x), float(y)) for x, y in pts]
        self.d.line(self._shaky(pts) if self.wobbly else pts, fill=255, width=self.w, joint="curve")

    def poly(self, pts: list[tuple[float, float]]) -> None:
        self.line(list(pts) + [pts[0]])

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 360.0) -> None:
        if not self.wobbly and a1 - a0 >= 360.0:
            self.d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=255, width=self.w)
            return
        n = max(int((a1 - a0) / 10.0), 4)
        th = np.radians(np.linspace(a0, a1, n + 1))
        self.line([(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in th])


# --------------------------------------------------------------------------------------------------
# objects: draw(pen, x, y, s) with (x, y) the bottom centre (ground objects) or the centre (sky
# objects, see _SKY) and s the object's size in pixels
# --------------------------------------------------------------------------------------------------
def _house(p: _Pen, x, y, s):
    w, h = s, 0.7 * s
    p.rect(x - w / 2, y - h, x + w / 2, y)
    p.poly([(x - 0.6 * w, y - h), (x, y - h - 0.55 * w), (x + 0.6 * w, y - h)])
    p.rect(x - 0.1 * w, y - 0.45 * h, x + 0.1 * w, y)
    p.rect(x + 0.2 * w, y - 0.75 * h, x + 0.38 * w, y - 0.55 * h)


def _tree(p: _Pen, x, y, s):
    p.line([(x - 0.07 * s, y), (x - 0.07 * s, y - 0.45 * s)])
    p.line([(x + 0.07 * s, y), (x + 0.07 * s, y - 0.45 * s)])
    p.ellipse(x, y - 0.7 * s, 0.3 * s, 0.3 * s)


def _sun(p: _Pen, x, y, s):
    r = 0.3 * s
    p.ellipse(x, y, r, r)
    for k in range(8):
        a = 2 * math.pi * k / 8
        p.line([(x + 1.3 * r * math.cos(a), y + 1.3 * r * math.sin(a)), (x + 1.75 * r * math.cos(a), y + 1.75 * r * math.sin(a))])


def _cloud(p: _Pen, x, y, s):
    p.ellipse(x - 0.25 * s, y, 0.22 * s, 0.15 * s, 90, 270)
    p.ellipse(x, y - 0.08 * s, 0.28 * s, 0.2 * s, 180, 360)
    p.ellipse(x + 0.25 * s, y, 0.22 * s, 0.15 * s, 270, 450)
    p.line([(x - 0.25 * s, y + 0.15 * s), (x + 0.25 * s, y + 0.15 * s)])


def _car(p: _Pen, x, y, s):
    w, r = s, 0.11 * s
    p.poly([(x - w / 2, y - r), (x - w / 2, y - 0.3 * w), (x - 0.25 * w, y - 0.3 * w), (x - 0.15 * w, y - 0.5 * w),
            (x + 0.2 * w, y - 0.5 * w), (x + 0.3 * w, y - 0.3 * w), (x + w / 2, y - 0.3 * w), (x + w / 2, y - r)])
    p.ellipse(x - 0.28 * w, y - r, r, r)
    p.ellipse(x + 0.28 * w, y - r, r, r)


def _road(p: _Pen, x, y, s):
    p.line([(x - 0.5 * s, y), (x - 0.1 * s, y - 0.3 * s)])
    p.line([(x + 0.5 * s, y), (x + 0.1 * s, y - 0.3 * s)])
    for k in range(3):
        t = 0.15 + 0.28 * k
        p.line([(x, y - t * 0.3 * s), (x, y - (t + 0.12) * 0.3 * s)])


def _mountain(p: _Pen, x, y, s):
    p.line([(x - 0.6 * s, y), (x - 0.25 * s, y - 0.55 * s), (x, y - 0.25 * s), (x + 0.25 * s, y - 0.7 * s), (x + 0.6 * s, y)])
    p.line([(x + 0.13 * s, y - 0.5 * s), (x + 0.25 * s, y - 0.45 * s), (x + 0.37 * s, y - 0.5 * s)])


def _boat(p: _Pen, x, y, s):
    p.poly([(x - 0.5 * s, y - 0.25 * s), (x + 0.5 * s, y - 0.25 * s), (x + 0.3 * s, y), (x - 0.3 * s, y)])
    p.line([(x, y - 0.25 * s), (x, y - s)])
    p.poly([(x + 0.05 * s, y - 0.95 * s), (x + 0.4 * s, y - 0.35 * s), (x + 0.05 * s, y - 0.35 * s)])


def _bird(p: _Pen, x, y, s):
    p.ellipse(x - 0.25 * s, y + 0.2 * s, 0.25 * s, 0.25 * s, 200, 340)
    p.ellipse(x + 0.25 * s, y + 0.2 * s, 0.25 * s, 0.25 * s, 200, 340)


def _person(p: _Pen, x, y, s):
    p.ellipse(x, y - 0.88 * s, 0.11 * s, 0.11 * s)
    p.line([(x, y - 0.77 * s), (x, y - 0.4 * s)])
    p.line([(x - 0.2 * s, y), (x, y - 0.4 * s), (x + 0.2 * s, y)])
    p.line([(x - 0.25 * s, y - 0.55 * s), (x, y - 0.68 * s), (x + 0.25 * s, y - 0.55 * s)])


def _dog(p: _Pen, x, y, s):
    p.ellipse(x, y - 0.45 * s, 0.35 * s, 0.15 * s)
    p.ellipse(x + 0.42 * s, y - 0.65 * s, 0.13 * s, 0.11 * s)
    for dx in (-0.25, -0.1, 0.12, 0.25):
        p.line([(x + dx * s, y - 0.33 * s), (x + dx * s, y)])
    p.line([(x - 0.35 * s, y - 0.5 * s), (x - 0.55 * s, y - 0.75 * s)])


def _fence(p: _Pen, x, y, s):
    for k in range(5):
        px = x - 0.5 * s + k * s / 4
        p.poly([(px - 0.04 * s, y), (px - 0.04 * s, y - 0.3 * s), (px, y - 0.36 * s), (px + 0.04 * s, y - 0.3 * s),
                (px + 0.04 * s, y)])
    p.line([(x - 0.55 * s, y - 0.22 * s), (x + 0.55 * s, y - 0.22 * s)])
    p.line([(x - 0.55 * s, y - 0.08 * s), (x + 0.55 * s, y - 0.08 * s)])


def _flower(p: _Pen, x, y, s):
    p.line([(x, y), (x, y - 0.6 * s)])
    p.ellipse(x, y - 0.75 * s, 0.08 * s, 0.08 * s)
    for k in range(5):
        a = 2 * math.pi * k / 5
        p.ellipse(x + 0.16 * s * math.cos(a), y - 0.75 * s + 0.16 * s * math.sin(a), 0.08 * s, 0.08 * s)
    p.ellipse(x + 0.1 * s, y - 0.3 * s, 0.1 * s, 0.04 * s)


def _giraffe(p: _Pen, x, y, s):
    p.ellipse(x - 0.05 * s, y - 0.45 * s, 0.25 * s, 0.1 * s)
    p.line([(x + 0.15 * s, y - 0.5 * s), (x + 0.28 * s, y - 0.95 * s)])
    p.line([(x + 0.08 * s, y - 0.45 * s), (x + 0.21 * s, y - 0.95 * s)])
    p.ellipse(x + 0.3 * s, y - s, 0.09 * s, 0.05 * s)
    for dx in (-0.22, -0.12, 0.05, 0.15):
        p.line([(x + dx * s, y - 0.37 * s), (x + dx * s, y)])
    for cx, cy in ((-0.1, -0.45), (0.05, -0.47), (0.2, -0.7)):
        p.ellipse(x + cx * s, y + cy * s, 0.03 * s, 0.03 * s)


def _airplane(p: _Pen, x, y, s):
    p.ellipse(x, y, 0.5 * s, 0.08 * s)
    p.poly([(x - 0.05 * s, y), (x - 0.2 * s, y - 0.35 * s), (x + 0.05 * s, y)])
    p.poly([(x - 0.05 * s, y), (x - 0.2 * s, y + 0.35 * s), (x + 0.05 * s, y)])
    p.line([(x - 0.45 * s, y), (x - 0.55 * s, y - 0.2 * s), (x - 0.38 * s, y - 0.05 * s)])


def _bench(p: _Pen, x, y, s):
    p.rect(x - 0.5 * s, y - 0.3 * s, x + 0.5 * s, y - 0.24 * s)
    p.rect(x - 0.5 * s, y - 0.6 * s, x + 0.5 * s, y - 0.45 * s)
    for dx in (-0.4, 0.4):
        p.line([(x + dx * s, y), (x + dx * s, y - 0.6 * s)])


def _kite(p: _Pen, x, y, s):
    p.poly([(x, y - 0.4 * s), (x + 0.22 * s, y - 0.05 * s), (x, y + 0.3 * s), (x - 0.22 * s, y - 0.05 * s)])
    p.line([(x, y - 0.4 * s), (x, y + 0.3 * s)])
    p.line([(x, y + 0.3 * s), (x + 0.1 * s, y + 0.45 * s), (x - 0.05 * s, y + 0.6 * s), (x + 0.08 * s, y + 0.8 * s)])


def _grass(p: _Pen, x, y, s):
    for k in range(9):
        px = x - 0.5 * s + k * s / 8
        p.line([(px - 0.03 * s, y), (px, y - 0.12 * s), (px + 0.03 * s, y)])


def _traffic_light(p: _Pen, x, y, s):
    p.line([(x, y), (x, y - 0.55 * s)])
    p.rect(x - 0.12 * s, y - s, x + 0.12 * s, y - 0.55 * s)
    for k in range(3):
        p.ellipse(x, y - 0.92 * s + k * 0.14 * s, 0.05 * s, 0.05 * s)


def _sheep(p: _Pen, x, y, s):
    p.ellipse(x, y - 0.45 * s, 0.38 * s, 0.22 * s)
    p.ellipse(x + 0.42 * s, y - 0.55 * s, 0.1 * s, 0.08 * s)
    for dx in (-0.2, -0.08, 0.1, 0.22):
        p.line([(x + dx * s, y - 0.25 * s), (x + dx * s, y)])


DRAWERS: dict[str, Callable[..., None]] = {
    "house": _house, "tree": _tree, "sun": _sun, "cloud": _cloud, "car": _car, "road": _road, "mountain": _mountain,
    "boat": _boat, "bird": _bird, "person": _person, "dog": _dog, "fence": _fence, "flower": _flower,
    "giraffe": _giraffe, "airplane": _airplane, "bench": _bench, "kite": _kite, "grass": _grass,
    "traffic light": _traffic_light, "sheep": _sheep,
}
_SKY = {"sun", "cloud", "bird", "kite", "airplane"}
_GROUND = {"road", "grass"}
# size relative to the canvas height, (low, high)
_SIZE = {"house": (0.3, 0.45), "tree": (0.35, 0.55), "sun": (0.12, 0.2), "cloud": (0.2, 0.3), "car": (0.22, 0.32),
         "road": (0.5, 0.7), "mountain": (0.45, 0.6), "boat": (0.3, 0.4), "bird": (0.06, 0.09), "person": (0.3, 0.45),
         "dog": (0.18, 0.25), "fence": (0.35, 0.5), "flower": (0.15, 0.25), "giraffe": (0.45, 0.6),
         "airplane": (0.25, 0.35), "bench": (0.2, 0.3), "kite": (0.15, 0.22), "grass": (0.4, 0.6),
         "traffic light": (0.3, 0.4), "sheep": (0.18, 0.25)}


def draw_scene(name: str, categories: tuple[str, ...], canvas: tuple[int, int], rng: np.random.Generator, *,
               style: str, pen: int) -> HandScene:
    """Lay ``categories`` out on a ``canvas`` (width, height) and draw each on its own layer."""
    w, h = canvas
    cats = list(categories)
    mids = [c for c in cats if c not in _SKY and c not in _GROUND]
    slots = rng.permutation(max(len(mids), 1))  # left-to-right order of the mid objects
    layers: list[np.ndarray] = []
    for k, cat in enumerate(cats):
        layer = Image.new("L", (w, h), 0)
        p = _Pen(layer, rng, pen, style == "wobbly")
        s = float(rng.uniform(*_SIZE[cat])) * h
        if cat in _SKY:
            x, y = rng.uniform(0.15, 0.85) * w, rng.uniform(0.12, 0.3) * h
        elif cat in _GROUND:
            x, y = rng.uniform(0.4, 0.6) * w, rng.uniform(0.93, 0.97) * h
        else:
            i = int(slots[mids.index(cat)])
            x = (i + rng.uniform(0.35, 0.65)) * w / len(mids)
            y = rng.uniform(0.7, 0.88) * h
            s = min(s, 0.9 * w / len(mids))
        DRAWERS[cat](p, x, y, s)
        layers.append(np.asarray(layer) > 127)
    stack = np.stack(layers)
    inked = stack.sum(axis=0)
    truth = np.where(inked == 1, stack.argmax(axis=0), np.where(inked > 1, AMBIGUOUS, PAPER)).astype(np.int64)
    image = np.where(inked > 0, 0, 255).astype(np.uint8)
    return HandScene(name, image, truth, cats, style, pen)


def hand_drawn_scenes(seed: int = SEED) -> list[HandScene]:
    """The 13 scenes of ``SCENE_SPECS``, styles alternating, pen widths 2-9 px (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (cats, canvas) in enumerate(SCENE_SPECS):
        style = "clean" if k % 2 == 0 else "wobbly"
        pen = int(rng.integers(2, 10))
        out.append(draw_scene(f"{k + 1:02d}-" + "-".join(c.replace(" ", "_") for c in cats), cats, canvas, rng,
                              style=style, pen=pen))
    return out
