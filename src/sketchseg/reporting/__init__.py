"""Report figures and analyses of a trained model (plain numpy / pandas / matplotlib, no Kedro).

* :mod:`sketchseg.reporting.analysis` - Eq. 5 correlation, per-category frequencies, seen vs
  unseen categories (S2.2), the single-category threshold sweep (S4.3, Fig. S14).
* :mod:`sketchseg.reporting.overlays` - coloured label maps, error maps, the Fig. S9-like grid.
* :mod:`sketchseg.reporting.figures` - histogram (Fig. 7), per-category bars (Fig. S11), seen vs
  unseen bars, threshold sweep curves (Fig. S14), per-epoch validation curves.
* :mod:`sketchseg.reporting.predict` - the model passes the report needs (torch, no Kedro).
"""
