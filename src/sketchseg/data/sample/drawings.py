"""Hand-drawn looking object routines of the synthetic sample, and its category table.

Each category is drawn by its own routine as several strokes (jittered position, scale, shape and
per-point noise), in the 256 x 256 FS-COCO stroke frame (y pointing down).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sketchseg.data.strokes import CANVAS

__all__ = ["CATEGORIES", "PLURALS", "MAX_COUNTS"]

_HI = CANVAS - 1e-3  # the largest coordinate a stroke point may take

Stroke = np.ndarray
Drawer = Callable[[np.random.Generator, float, float, float, bool], list[Stroke]]


# --------------------------------------------------------------------------------------------------
# stroke primitives (coordinates in the 256 frame, y pointing down)
# --------------------------------------------------------------------------------------------------
def _line(rng: np.random.Generator, pts: Sequence[Sequence[float]], *, step: float = 4.0,
          noise: float = 0.6, jitter: float = 1.2) -> Stroke:
    """Polyline through key points: key points jittered, densified every ``step`` px, per-point noise."""
    p = np.asarray(pts, dtype=np.float64)
    p = p + rng.normal(0.0, jitter, p.shape)
    seg = np.diff(p, axis=0)
    n = np.maximum((np.hypot(seg[:, 0], seg[:, 1]) / step).astype(int), 1)
    t = np.concatenate([np.arange(k) / k for k in n])
    idx = np.repeat(np.arange(len(seg)), n)
    q = np.vstack([p[idx] + seg[idx] * t[:, None], p[-1:]])
    q += rng.normal(0.0, noise, q.shape)
    return q


def _loop(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, *, bumps: int = 0,
          bump_depth: float = 0.18, wobble: float = 0.05, overshoot: float | None = None,
          noise: float = 0.5, step: float = 4.0, arc: float = 1.0) -> Stroke:
    """Hand-drawn closed loop (ellipse, or scalloped like a cloud with ``bumps`` > 0)."""
    if overshoot is None:
        overshoot = rng.uniform(0.0, 0.12)
    span = 2 * np.pi * (arc + (overshoot if arc >= 1.0 else 0.0))
    perim = np.pi * (rx + ry) * (arc + overshoot) * (1.0 + (0.6 if bumps else 0.0))
    n = max(int(perim / step), 6)
    th0 = rng.uniform(0, 2 * np.pi)
    th = th0 + np.linspace(0.0, span, n)
    ph = rng.uniform(0, 2 * np.pi, 2)
    r = 1.0 + wobble * (np.sin(2 * th + ph[0]) + 0.5 * np.sin(3 * th + ph[1]))
    if bumps:
        r = r * (1.0 - bump_depth + 2 * bump_depth * np.abs(np.sin(bumps * (th - th0) / 2)))
    q = np.stack([cx + rx * r * np.cos(th), cy + ry * r * np.sin(th)], axis=1)
    q += rng.normal(0.0, noise, q.shape)
    return q


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(rng.uniform(a, b))


# --------------------------------------------------------------------------------------------------
# category routines: (rng, x, y, size, flip) -> strokes; (x, y) is the anchor (bottom centre for
# ground objects, centre for sky objects); size is the object's main dimension in pixels
# --------------------------------------------------------------------------------------------------
def _tree(rng, x, y, h, flip):
    w = h * _u(rng, 0.08, 0.14)
    yt = y - h * _u(rng, 0.35, 0.5)
    s = [_line(rng, [(x - w / 2, y), (x - w / 2 + _u(rng, -1, 1), yt)]),
         _line(rng, [(x + w / 2, y), (x + w / 2 + _u(rng, -1, 1), yt)])]
    if rng.random() < 0.3:  # conifer
        top = y - h
        for k in range(int(rng.integers(2, 4))):
            yb = yt - k * (yt - top) / 3.2
            half = h * 0.3 * (1 - 0.25 * k)
            s.append(_line(rng, [(x - half, yb), (x, yb - (yb - top) * 0.7), (x + half, yb), (x - half, yb)]))
    else:
        rr = (yt - (y - h)) / 2
        cy = yt - rr * _u(rng, 0.8, 0.95)
        s.append(_loop(rng, x, cy, rr * _u(rng, 0.9, 1.3), rr, bumps=int(rng.integers(0, 9)),
                       bump_depth=_u(rng, 0.08, 0.2)))
        for _ in range(int(rng.integers(0, 3))):
            d = -1 if rng.random() < 0.5 else 1
            s.append(_line(rng, [(x, yt + 2), (x + d * rr * 0.5, yt - rr * 0.6)]))
    return s


def _sun(rng, x, y, r, flip):
    s = [_loop(rng, x, y, r, r * _u(rng, 0.9, 1.1))]
    if rng.random() < 0.85:
        n = int(rng.integers(6, 13))
        a0 = rng.uniform(0, 2 * np.pi)
        for k in range(n):
            a = a0 + 2 * np.pi * k / n + rng.normal(0, 0.08)
            r1, r2 = r * _u(rng, 1.2, 1.4), r * _u(rng, 1.6, 2.0)
            s.append(_line(rng, [(x + r1 * np.cos(a), y + r1 * np.sin(a)), (x + r2 * np.cos(a), y + r2 * np.sin(a))],
                           step=3.0, jitter=0.6))
    return s


def _house(rng, x, y, w, flip):
    h = w * _u(rng, 0.65, 1.0)
    l, r, t = x - w / 2, x + w / 2, y - h
    rh = w * _u(rng, 0.35, 0.6)
    ov = w * _u(rng, 0.0, 0.12)
    s = [_line(rng, [(l, t), (l, y), (r, y), (r, t), (l, t)]),
         _line(rng, [(l - ov, t), (x + _u(rng, -3, 3), t - rh), (r + ov, t)])]
    dw = w * _u(rng, 0.16, 0.24)
    dx = x + _u(rng, -0.25, 0.25) * w
    dh = h * _u(rng, 0.4, 0.6)
    s.append(_line(rng, [(dx - dw / 2, y), (dx - dw / 2, y - dh), (dx + dw / 2, y - dh), (dx + dw / 2, y)]))
    for wx in rng.choice([l + w * 0.22, r - w * 0.22], size=int(rng.integers(1, 3)), replace=False):
        if abs(wx - dx) < dw:
            continue
        ws = w * _u(rng, 0.12, 0.18)
        wy = t + h * 0.3
        s.append(_line(rng, [(wx - ws, wy - ws), (wx + ws, wy - ws), (wx + ws, wy + ws), (wx - ws, wy + ws),
                             (wx - ws, wy - ws)], step=3.0))
        if rng.random() < 0.5:
            s.append(_line(rng, [(wx, wy - ws), (wx, wy + ws)], step=3.0))
    if rng.random() < 0.4:
        cx = x + (w * 0.25 if not flip else -w * 0.25)
        s.append(_line(rng, [(cx - 4, t - rh * 0.35), (cx - 4, t - rh * 0.8), (cx + 4, t - rh * 0.8),
                             (cx + 4, t - rh * 0.3)], step=3.0))
    return s


def _car(rng, x, y, L, flip):
    d = -1 if flip else 1
    h = L * _u(rng, 0.3, 0.4)
    wr = L * _u(rng, 0.09, 0.12)
    yb = y - wr
    l, r = x - L / 2, x + L / 2
    c0, c1 = x - d * L * _u(rng, 0.25, 0.35), x + d * L * _u(rng, 0.1, 0.2)
    body = [(l, yb), (l, yb - h * 0.5), (min(c0, c1), yb - h * 0.5), (min(c0, c1) + 4, yb - h),
            (max(c0, c1) - 4, yb - h), (max(c0, c1), yb - h * 0.5), (r, yb - h * 0.45), (r, yb), (l, yb)]
    s = [_line(rng, body)]
    for wx in (l + L * 0.22, r - L * 0.22):
        s.append(_loop(rng, wx, yb, wr, wr, step=3.0))
    if rng.random() < 0.8:
        mid = (c0 + c1) / 2
        s.append(_line(rng, [(mid, yb - h * 0.5), (mid, yb - h * 0.92)], step=3.0))
    if rng.random() < 0.5:
        s.append(_loop(rng, r - 3 if d > 0 else l + 3, yb - h * 0.35, 2.5, 2.0, step=2.0))
    return s


def _cloud(rng, x, y, w, flip):
    s = [_loop(rng, x, y, w / 2, w * _u(rng, 0.2, 0.32), bumps=int(rng.integers(4, 9)),
               bump_depth=_u(rng, 0.12, 0.25), wobble=0.03)]
    if rng.random() < 0.3:
        s.append(_line(rng, [(x - w * 0.25, y + w * 0.05), (x, y + w * 0.1), (x + w * 0.2, y + w * 0.03)]))
    return s


def _giraffe(rng, x, y, H, flip):
    d = -1 if flip else 1
    bw, bh = H * _u(rng, 0.22, 0.3), H * _u(rng, 0.1, 0.14)
    by = y - H * _u(rng, 0.42, 0.5)
    s = [_loop(rng, x, by, bw, bh)]
    for lx in (x - bw * 0.7, x - bw * 0.45, x + bw * 0.45, x + bw * 0.7):
        s.append(_line(rng, [(lx, by + bh * 0.7), (lx + _u(rng, -3, 3), y)]))
    nx0 = x + d * bw * 0.7
    hx, hy = nx0 + d * H * _u(rng, 0.12, 0.25), y - H
    s.append(_line(rng, [(nx0 - d * 3, by - bh * 0.6), (hx - d * 3, hy + 8)]))
    s.append(_line(rng, [(nx0 + d * 5, by - bh * 0.2), (hx + d * 4, hy + 10)]))
    s.append(_loop(rng, hx + d * 4, hy + 4, H * 0.07, H * 0.04, step=2.5))
    s.append(_line(rng, [(hx, hy + 1), (hx - d * 1, hy - 6)], step=2.0, jitter=0.5))
    s.append(_line(rng, [(hx + d * 4, hy + 1), (hx + d * 4, hy - 6)], step=2.0, jitter=0.5))
    for _ in range(int(rng.integers(2, 6))):
        s.append(_loop(rng, x + _u(rng, -0.6, 0.6) * bw, by + _u(rng, -0.4, 0.4) * bh, 3.0, 2.5, step=1.5,
                       noise=0.3))
    s.append(_line(rng, [(x - d * bw, by), (x - d * (bw + 6), by + bh * 1.5)], step=2.5))
    return s


def _bird(rng, x, y, sz, flip):
    a = sz * _u(rng, 0.3, 0.5)
    if rng.random() < 0.7:
        return [_line(rng, [(x - sz, y), (x - sz / 2, y - a), (x, y), (x + sz / 2, y - a), (x + sz, y)],
                      step=2.0, jitter=0.5, noise=0.3)]
    return [_line(rng, [(x - sz, y - a * 0.3), (x - sz / 2, y - a), (x, y)], step=2.0, jitter=0.5, noise=0.3),
            _line(rng, [(x, y), (x + sz / 2, y - a), (x + sz, y - a * 0.3)], step=2.0, jitter=0.5, noise=0.3)]


def _fence(rng, x, y, W, flip):
    h = _u(rng, 18, 32)
    n = int(rng.integers(4, 9))
    l, r = x - W / 2, x + W / 2
    s = [_line(rng, [(l - 3, y - h * 0.7), (r + 3, y - h * 0.7)], step=6.0),
         _line(rng, [(l - 3, y - h * 0.3), (r + 3, y - h * 0.3)], step=6.0)]
    for px in np.linspace(l, r, n):
        s.append(_line(rng, [(px, y), (px, y - h), (px + 2, y - h - 3)] if rng.random() < 0.4 else [(px, y), (px, y - h)]))
    return s


def _mountain(rng, x, y, W, flip):
    H = W * _u(rng, 0.3, 0.5)
    n = int(rng.integers(1, 4))
    xs = np.sort(rng.uniform(x - W * 0.35, x + W * 0.35, n))
    pts = [(x - W / 2, y)]
    for k, px in enumerate(xs):
        pts.append((px, y - H * _u(rng, 0.6, 1.0)))
        if k < n - 1:
            pts.append(((px + xs[k + 1]) / 2, y - H * _u(rng, 0.25, 0.5)))
    pts.append((x + W / 2, y))
    s = [_line(rng, pts, step=5.0)]
    if rng.random() < 0.5:
        top = min(range(1, len(pts) - 1, 2), key=lambda i: pts[i][1])
        tx, ty = pts[top]
        s.append(_line(rng, [(tx - 10, ty + 9), (tx - 4, ty + 13), (tx + 2, ty + 8), (tx + 10, ty + 12)], step=3.0))
    return s


def _flower(rng, x, y, h, flip):
    hx, hy = x + _u(rng, -3, 3), y - h
    s = [_line(rng, [(x, y), (x + _u(rng, -2, 2), y - h / 2), (hx, hy)], step=3.0)]
    pr = h * _u(rng, 0.18, 0.28)
    if rng.random() < 0.5:
        s.append(_loop(rng, hx, hy, pr * 1.6, pr * 1.6, bumps=int(rng.integers(5, 8)), bump_depth=0.3, step=2.0))
    else:
        n = int(rng.integers(4, 7))
        for k in range(n):
            a = 2 * np.pi * k / n
            s.append(_loop(rng, hx + pr * 1.2 * np.cos(a), hy + pr * 1.2 * np.sin(a), pr * 0.7, pr * 0.5,
                           step=1.5, noise=0.3))
    s.append(_loop(rng, hx, hy, pr * 0.5, pr * 0.5, step=1.5, noise=0.3))
    if rng.random() < 0.5:
        d = -1 if flip else 1
        s.append(_line(rng, [(x, y - h * 0.35), (x + d * h * 0.25, y - h * 0.5), (x, y - h * 0.3)], step=2.0))
    return s


def _person(rng, x, y, H, flip):
    hr = H * _u(rng, 0.08, 0.11)
    neck, hip = y - H + 2 * hr, y - H * _u(rng, 0.4, 0.48)
    s = [_loop(rng, x, y - H + hr, hr, hr * 1.1, step=2.0, noise=0.3),
         _line(rng, [(x, neck), (x + _u(rng, -2, 2), hip)])]
    sh = neck + H * 0.08
    s.append(_line(rng, [(x - H * _u(rng, 0.2, 0.3), sh + H * _u(rng, -0.1, 0.25)), (x, sh),
                         (x + H * _u(rng, 0.2, 0.3), sh + H * _u(rng, -0.1, 0.25))]))
    stride = H * _u(rng, 0.08, 0.2)
    s.append(_line(rng, [(x, hip), (x - stride, y)]))
    s.append(_line(rng, [(x, hip), (x + stride, y)]))
    return s


def _boat(rng, x, y, L, flip):
    h = L * _u(rng, 0.18, 0.28)
    s = [_line(rng, [(x - L / 2, y - h), (x - L * 0.35, y), (x + L * 0.35, y), (x + L / 2, y - h), (x - L / 2, y - h)])]
    if rng.random() < 0.75:
        mh = L * _u(rng, 0.6, 0.9)
        mx = x + _u(rng, -0.1, 0.1) * L
        s.append(_line(rng, [(mx, y - h), (mx, y - h - mh)]))
        d = -1 if flip else 1
        s.append(_line(rng, [(mx + d * 2, y - h - mh), (mx + d * L * _u(rng, 0.3, 0.45), y - h - 4), (mx + d * 2, y - h - 4)]))
    else:
        s.append(_line(rng, [(x - L * 0.15, y - h), (x - L * 0.15, y - h * 2), (x + L * 0.2, y - h * 2), (x + L * 0.2, y - h)]))
    return s


def _dog(rng, x, y, L, flip):
    d = -1 if flip else 1
    bh = L * _u(rng, 0.18, 0.25)
    by = y - L * _u(rng, 0.35, 0.45)
    s = [_loop(rng, x, by, L * 0.35, bh)]
    hx, hy = x + d * L * 0.45, by - bh * 1.2
    s.append(_loop(rng, hx, hy, L * 0.13, L * 0.11, step=2.0))
    s.append(_line(rng, [(hx - d * 2, hy - L * 0.08), (hx - d * 5, hy + L * 0.05)], step=2.0, jitter=0.5))
    for lx in (x - L * 0.25, x - L * 0.15, x + L * 0.15, x + L * 0.25):
        s.append(_line(rng, [(lx, by + bh * 0.8), (lx + _u(rng, -2, 2), y)], step=3.0))
    s.append(_line(rng, [(x - d * L * 0.33, by - 2), (x - d * L * 0.45, by - bh * _u(rng, 0.8, 1.6))], step=2.0))
    return s


def _road(rng, x, y, W, flip):
    # (x, y) = vanishing end of the road; W = width at the bottom edge of the canvas
    wt = W * _u(rng, 0.08, 0.2)
    s = [_line(rng, [(x - wt / 2, y), (x - W / 2, _HI)], step=6.0),
         _line(rng, [(x + wt / 2, y), (x + W / 2, _HI)], step=6.0)]
    n = int(rng.integers(0, 6))
    for k in range(n):
        t0 = (k + 0.3) / (n + 0.5)
        t1 = t0 + 0.5 / (n + 0.5)
        s.append(_line(rng, [(x, y + (_HI - y) * t0), (x, y + (_HI - y) * t1)], step=3.0, jitter=0.6))
    return s


def _grass(rng, x, y, W, flip):
    s = []
    for tx in np.sort(rng.uniform(x - W / 2, x + W / 2, int(rng.integers(3, 8)))):
        h = _u(rng, 6, 14)
        pts = [(tx - 6, y)]
        for k in range(int(rng.integers(2, 4))):
            pts += [(tx - 4 + 4 * k, y - h * _u(rng, 0.7, 1.1)), (tx - 2 + 4 * k, y)]
        s.append(_line(rng, pts, step=2.0, jitter=0.6, noise=0.3))
    return s


def _kite(rng, x, y, sz, flip):
    w, h = sz * _u(rng, 0.35, 0.5), sz * _u(rng, 0.55, 0.7)
    top, bot = (x, y - h * 0.6), (x, y + h * 0.4)
    s = [_line(rng, [top, (x + w, y - h * 0.1), bot, (x - w, y - h * 0.1), top], step=3.0),
         _line(rng, [top, bot], step=3.0), _line(rng, [(x - w, y - h * 0.1), (x + w, y - h * 0.1)], step=3.0)]
    tail = [bot]
    for k in range(1, int(rng.integers(3, 6))):
        tail.append((x + (4 if k % 2 else -4) + _u(rng, -2, 2), bot[1] + 8 * k))
    s.append(_line(rng, tail, step=2.5))
    if rng.random() < 0.6:
        ex, ey = x + _u(rng, -40, 40), y + _u(rng, 50, 90)
        s.append(_line(rng, [bot, (ex, ey)], step=6.0, jitter=2.0))
    return s


def _traffic_light(rng, x, y, H, flip):
    bw, bh = H * _u(rng, 0.12, 0.16), H * _u(rng, 0.35, 0.42)
    top = y - H
    s = [_line(rng, [(x, y), (x, top + bh)], step=5.0),
         _line(rng, [(x - bw, top), (x + bw, top), (x + bw, top + bh), (x - bw, top + bh), (x - bw, top)], step=3.0)]
    for k in range(3):
        s.append(_loop(rng, x, top + bh * (k + 0.5) / 3, bw * 0.55, bw * 0.55, step=1.5, noise=0.3))
    return s


def _bench(rng, x, y, W, flip):
    h = W * _u(rng, 0.25, 0.35)
    l, r = x - W / 2, x + W / 2
    s = [_line(rng, [(l, y - h), (r, y - h)], step=5.0), _line(rng, [(l + 3, y - h + 4), (r - 3, y - h + 4)], step=5.0)]
    if rng.random() < 0.8:
        s.append(_line(rng, [(l + 2, y - h * 1.9), (r - 2, y - h * 1.9)], step=5.0))
        s.append(_line(rng, [(l + 4, y - h * 1.9), (l + 4, y - h)], step=3.0))
        s.append(_line(rng, [(r - 4, y - h * 1.9), (r - 4, y - h)], step=3.0))
    for lx in (l + 5, r - 5):
        s.append(_line(rng, [(lx, y - h + 4), (lx, y)], step=3.0))
    return s


def _airplane(rng, x, y, L, flip):
    d = -1 if flip else 1
    fh = L * _u(rng, 0.07, 0.1)
    s = [_loop(rng, x, y, L / 2, fh, wobble=0.02)]
    s.append(_line(rng, [(x + d * L * 0.05, y - fh * 0.5), (x - d * L * 0.15, y - L * 0.35), (x - d * L * 0.25, y - L * 0.35),
                         (x - d * L * 0.1, y - fh * 0.5)], step=3.0))
    s.append(_line(rng, [(x + d * L * 0.05, y + fh * 0.5), (x - d * L * 0.12, y + L * 0.25), (x - d * L * 0.2, y + L * 0.25),
                         (x - d * L * 0.1, y + fh * 0.5)], step=3.0))
    s.append(_line(rng, [(x - d * L * 0.4, y - fh * 0.6), (x - d * L * 0.5, y - L * 0.18), (x - d * L * 0.47, y - fh * 0.2)],
                   step=2.5))
    if rng.random() < 0.5:
        for k in range(int(rng.integers(2, 5))):
            wx = x + d * L * (0.25 - 0.08 * k)
            s.append(_loop(rng, wx, y - fh * 0.2, 1.5, 1.5, step=1.0, noise=0.2))
    return s


def _sheep(rng, x, y, L, flip):
    d = -1 if flip else 1
    bh = L * _u(rng, 0.25, 0.32)
    by = y - L * _u(rng, 0.4, 0.5)
    s = [_loop(rng, x, by, L * 0.38, bh, bumps=int(rng.integers(6, 11)), bump_depth=0.12, step=2.5)]
    s.append(_loop(rng, x + d * L * 0.45, by - bh * 0.5, L * 0.1, L * 0.14, step=2.0))
    for lx in (x - L * 0.22, x - L * 0.1, x + L * 0.1, x + L * 0.22):
        s.append(_line(rng, [(lx, by + bh * 0.9), (lx, y)], step=2.5, jitter=0.5))
    return s


@dataclass(frozen=True)
class _Category:
    name: str
    plural: str
    draw: Drawer
    x: tuple[float, float]  # anchor x range
    y: tuple[float, float]  # anchor y range
    size: tuple[float, float]
    max_count: int
    region: str  # "sky" | "mid" | "ground"
    colour: tuple[int, int, int]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...] = ()  # present participles used when the object is the subject
    weight: float = 1.0


_CATS: tuple[_Category, ...] = (
    _Category("tree", "trees", _tree, (20, 236), (150, 235), (60, 115), 3, "mid", (40, 120, 40),
              ("tall", "big", "small", "leafy", "large", "little")),
    _Category("sun", "suns", _sun, (25, 231), (22, 60), (10, 20), 1, "sky", (250, 210, 40),
              ("bright", "round", "hot")),
    _Category("house", "houses", _house, (40, 216), (160, 225), (50, 85), 2, "mid", (170, 90, 60),
              ("small", "big", "little", "old", "wooden", "tiny")),
    _Category("car", "cars", _car, (40, 216), (195, 240), (50, 80), 2, "mid", (200, 30, 30),
              ("small", "red", "old", "big", "blue"), ("parked", "driving")),
    _Category("cloud", "clouds", _cloud, (30, 226), (20, 70), (35, 70), 3, "sky", (235, 235, 245),
              ("fluffy", "big", "small", "white")),
    _Category("giraffe", "giraffes", _giraffe, (40, 216), (180, 235), (90, 130), 2, "mid", (210, 160, 70),
              ("tall", "young", "big"), ("standing", "walking")),
    _Category("bird", "birds", _bird, (20, 236), (20, 95), (6, 14), 4, "sky", (60, 60, 60),
              ("small", "little"), ("flying",)),
    _Category("fence", "fences", _fence, (60, 196), (195, 235), (80, 170), 1, "mid", (150, 110, 70),
              ("wooden", "long", "low")),
    _Category("mountain", "mountains", _mountain, (60, 196), (110, 150), (100, 190), 2, "mid", (110, 110, 130),
              ("high", "tall", "distant", "rocky")),
    _Category("flower", "flowers", _flower, (20, 236), (215, 248), (18, 36), 4, "mid", (230, 80, 160),
              ("small", "pretty", "little", "tall")),
    _Category("person", "persons", _person, (30, 226), (185, 240), (45, 75), 1, "mid", (70, 70, 200),
              ("young", "tall", "small"), ("walking", "standing", "running")),
    _Category("boat", "boats", _boat, (40, 216), (150, 205), (50, 85), 2, "mid", (120, 70, 30),
              ("small", "little", "old", "wooden"), ("floating", "sailing")),
    _Category("dog", "dogs", _dog, (30, 226), (205, 245), (30, 48), 2, "mid", (140, 100, 60),
              ("small", "little", "big", "brown"), ("running", "sitting", "playing")),
    _Category("road", "roads", _road, (90, 166), (135, 175), (150, 250), 1, "ground", (90, 90, 90),
              ("long", "empty", "narrow", "wide"), (), 0.8),
    _Category("grass", "grass", _grass, (60, 196), (238, 252), (90, 200), 1, "ground", (60, 170, 60),
              ("tall", "green", "long"), (), 0.8),
    _Category("kite", "kites", _kite, (30, 226), (25, 75), (25, 40), 2, "sky", (230, 60, 60),
              ("colourful", "big", "small"), ("flying",)),
    _Category("traffic light", "traffic lights", _traffic_light, (30, 226), (185, 235), (60, 95), 2, "mid",
              (40, 40, 40), ("tall",)),
    _Category("bench", "benches", _bench, (40, 216), (205, 240), (40, 65), 1, "mid", (130, 90, 50),
              ("wooden", "empty", "small")),
    _Category("airplane", "airplanes", _airplane, (50, 206), (25, 70), (45, 80), 1, "sky", (200, 200, 210),
              ("large", "small", "big"), ("flying",)),
    _Category("sheep", "sheep", _sheep, (30, 226), (200, 240), (30, 48), 3, "mid", (240, 240, 230),
              ("white", "fluffy", "little"), ("grazing", "standing")),
)
_BY_NAME = {c.name: c for c in _CATS}
CATEGORIES: tuple[str, ...] = tuple(c.name for c in _CATS)
PLURALS: dict[str, str] = {c.name: c.plural for c in _CATS}
MAX_COUNTS: dict[str, int] = {c.name: c.max_count for c in _CATS}  # most instances in a scene
