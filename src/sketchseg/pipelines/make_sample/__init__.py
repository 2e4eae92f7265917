"""make_sample pipeline: ``nodes.py`` (plain Python) and ``pipeline.py`` (Kedro)."""
