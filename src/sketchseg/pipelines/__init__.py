"""The project's Kedro pipelines, one package each: ``nodes.py`` (thin glue over the library, plain
Python: it imports without Kedro) and ``pipeline.py`` (``create_pipeline``, Kedro).
"""
