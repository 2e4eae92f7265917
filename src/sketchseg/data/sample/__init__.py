"""Seeded generator of a small synthetic dataset in the exact FS-COCO + FS-COCO-seg layout.

- :mod:`.drawings`: the object-drawing routines and the category table (``CATEGORIES``, ``PLURALS``,
  ``MAX_COUNTS``);
- :mod:`.scenes`: scenes of 2-5 categories (``make_scene``, ``draw_object``) and their captions
  (``make_caption``);
- :mod:`.writer`: the FS-COCO + FS-COCO-seg files (``generate_sample``).
"""

from __future__ import annotations

from sketchseg.data.sample.drawings import CATEGORIES, MAX_COUNTS, PLURALS
from sketchseg.data.sample.scenes import Scene, draw_object, make_caption, make_scene, pick_categories
from sketchseg.data.sample.writer import SAMPLE_MARKER, generate_sample

__all__ = ["generate_sample", "make_scene", "pick_categories", "make_caption", "draw_object", "Scene", "CATEGORIES", "PLURALS",
           "MAX_COUNTS", "SAMPLE_MARKER"]
