"""prompts pipeline: ``nodes.py`` (plain Python) and ``pipeline.py`` (Kedro)."""
