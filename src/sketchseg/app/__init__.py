"""``sketchseg app``: an interactive web page (Gradio) to draw or upload a sketch and segment it.

Top layer: a thin UI over ``sketchseg.api``. ``inputs`` checks what the page sends (categories,
captions, drawings, uploads), ``results`` turns one segmentation into what the page shows,
``checkpoints`` finds and loads models; none of them needs gradio. ``ui`` builds the page and
``cli`` starts it (``sketchseg app``, ``python -m sketchseg.app``).
"""
