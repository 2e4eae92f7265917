"""Scenes of the synthetic sample (2-5 categories placed where they belong) and their captions:
short natural English sentences naming the objects with the category words (or their plurals)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sketchseg.data.sample.drawings import _BY_NAME, _CATS, _HI, CATEGORIES, _u

__all__ = ["Scene", "make_scene", "make_caption", "draw_object"]

_UNCOUNTABLE = {"grass"}
_UNIQUE = {"sun", "road"}  # "the sun", "the road"


# --------------------------------------------------------------------------------------------------
# scenes and captions
# --------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One synthetic sketch: strokes (256 frame), per-stroke labels, caption and object boxes."""

    strokes: list[np.ndarray]
    labels: list[str]
    caption: str
    objects: list[tuple[str, tuple[float, float, float, float]]]  # (category, (x0, y0, x1, y1))


def pick_categories(rng: np.random.Generator) -> list[tuple[str, int]]:
    k = int(rng.choice([2, 3, 4, 5], p=[0.25, 0.35, 0.25, 0.15]))
    mids = [c for c in _CATS if c.region == "mid"]
    w = np.array([c.weight for c in mids])
    first = mids[int(rng.choice(len(mids), p=w / w.sum()))]
    chosen = [first]
    rest = [c for c in _CATS if c is not first]
    w = np.array([c.weight for c in rest])
    for i in rng.choice(len(rest), size=k - 1, replace=False, p=w / w.sum()):
        chosen.append(rest[int(i)])
    out = []
    for c in chosen:
        n = 1 if c.max_count == 1 or rng.random() < 0.6 else int(rng.integers(2, c.max_count + 1))
        out.append((c.name, n))
    return out


def _np(rng: np.random.Generator, name: str, n: int, *, adj_p: float = 0.45) -> str:
    """Noun phrase: 'a tall tree', 'two trees', 'the sun', 'some grass'."""
    c = _BY_NAME[name]
    adj = f"{rng.choice(c.adjectives)} " if c.adjectives and rng.random() < adj_p else ""
    if name in _UNCOUNTABLE:
        return str(rng.choice(["some ", "the ", ""])) + adj + name
    if n == 1:
        if name in _UNIQUE and rng.random() < 0.7:
            return f"the {adj}{name}"
        art = "an" if (adj or name)[0] in "aeiou" else "a"
        return f"{art} {adj}{name}"
    num = {2: ["two", "two", "some", "a few"], 3: ["three", "three", "several", "some", "a few"],
           4: ["four", "several", "many", "some"]}[min(n, 4)]
    return f"{rng.choice(num)} {adj}{c.plural}"


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def make_caption(rng: np.random.Generator, objects: list[tuple[str, int]]) -> str:
    """A natural FS-COCO-style caption naming ``objects`` (category, count), subject first."""
    subj_name, subj_n = objects[0]
    subj = _BY_NAME[subj_name]
    mids = [o for o in objects[1:] if _BY_NAME[o[0]].region == "mid"]
    grounds = [o for o in objects[1:] if _BY_NAME[o[0]].region == "ground"]
    skies = [o for o in objects[1:] if _BY_NAME[o[0]].region == "sky"]

    head = _np(rng, subj_name, subj_n)
    if subj.verbs and rng.random() < 0.75:
        head += f" {rng.choice(subj.verbs)}"
    elif rng.random() < 0.25:
        head = ("there are " if subj_n > 1 else "there is ") + head
    parts = [head]
    if mids:
        rel = rng.choice(["next to", "in front of", "behind", "near", "by"])
        parts.append(f" {rel} {_join([_np(rng, m, n) for m, n in mids])}")
    for g, n in grounds:
        if g == "road":
            rel = "on" if subj_name in ("car", "person", "dog", "bench", "traffic light") else rng.choice(["near", "by", "along"])
            parts.append(f" {rel} {_np(rng, g, n)}")
        else:
            parts.append(f" {rng.choice(['on', 'in', 'among'])} {_np(rng, g, n)}")
    if skies:
        nps = [_np(rng, s, n) for s, n in skies]
        form = int(rng.integers(0, 3))
        if form == 0:
            parts.append(f" under {_join(nps)}")
        elif form == 1:
            parts.append(f" with {_join(nps)} above")
        else:
            plural = len(nps) > 1 or skies[0][1] > 1
            verb = "are" if plural else "is"
            tail = {"sun": "shining", "cloud": "floating", "bird": "flying", "kite": "flying",
                    "airplane": "flying"}[skies[0][0]] if len(skies) == 1 else "up above"
            parts.append(f", while {_join(nps)} {verb} {tail}" + (" above" if len(skies) == 1 else ""))
    if len(parts) > 2 and rng.random() < 0.2:  # move the last phrase to the front
        last = parts.pop().lstrip(", ").strip()
        if last.startswith("while "):
            last = last[len("while "):]
            parts = [f"{last}, "] + [parts[0]] + parts[1:]
        else:
            parts = [f"{last}, "] + parts
    text = "".join(parts).strip()
    text = " ".join(text.split())
    if rng.random() < 0.45:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.4:
        text += "."
    return text


def draw_object(rng: np.random.Generator, category: str, count: int = 1) -> list[list[np.ndarray]]:
    """Strokes of ``count`` instances of ``category``, placed and sized where scenes draw them
    (:func:`make_scene` draws every category with it; the tiny-CLIP pre-training its single
    objects); one list of float32 strokes (256 frame) per instance."""
    if category not in _BY_NAME:
        raise ValueError(f"unknown sample category {category!r}; known: {list(CATEGORIES)}")
    n = int(count)
    if n < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    c = _BY_NAME[category]
    lo, hi = c.x  # several instances: spread over the range so they overlap less
    xs = lo + (np.arange(n) + rng.uniform(0.15, 0.85, n)) * (hi - lo) / n
    out = []
    for k in range(n):
        sz = _u(rng, *c.size) * (0.85 if n > 1 else 1.0)
        obj = c.draw(rng, float(xs[k]), _u(rng, *c.y), sz, bool(rng.random() < 0.5))
        out.append([np.clip(s, 0.0, _HI).astype(np.float32) for s in obj if len(s)])
    return out


def make_scene(rng: np.random.Generator) -> Scene:
    """Compose a random scene of 2-5 categories, draw its strokes and write its caption."""
    picked = pick_categories(rng)
    strokes: list[np.ndarray] = []
    labels: list[str] = []
    boxes: list[tuple[str, tuple[float, float, float, float]]] = []
    # people often draw the sky and the ground first, but not always
    if rng.random() < 0.5:
        order = sorted(range(len(picked)), key=lambda i: _BY_NAME[picked[i][0]].region == "mid")
    else:
        order = [int(i) for i in rng.permutation(len(picked))]
    for i in order:
        name, n = picked[i]
        for obj in draw_object(rng, name, n):
            allp = np.concatenate(obj)
            boxes.append((name, (*allp.min(axis=0).tolist(), *allp.max(axis=0).tolist())))
            strokes += obj
            labels += [name] * len(obj)
    cap_objs = list(picked)
    if len(cap_objs) >= 2 and rng.random() < 0.15:  # captions sometimes leave an object out
        cap_objs.pop(int(rng.integers(1, len(cap_objs))))
    caption = make_caption(rng, cap_objs)
    return Scene(strokes=strokes, labels=labels, caption=caption, objects=boxes)
