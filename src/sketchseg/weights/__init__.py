"""Weights from elsewhere: ``python -m sketchseg.weights convert-authors IN OUT`` turns the authors'
released checkpoint into a sketchseg checkpoint (``authors.py``)."""
