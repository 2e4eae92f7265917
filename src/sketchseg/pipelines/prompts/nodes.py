"""Caption nouns -> "A sketch of <noun>" category prompts (paper §3.2)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from sketchseg.text.nltk_setup import ensure_nltk_data
from sketchseg.text.nouns import extract_table
from sketchseg.tracking import as_metric_items

logger = logging.getLogger(__name__)


def build_prompts(splits_table: pd.DataFrame, prompts: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Extract the categories of every caption and turn them into prompts."""
    ensure_nltk_data(prompts.get("nltk_data_path"), allow_download=bool(prompts.get("allow_download", True)))
    table, _ = extract_table(
        splits_table[[c for c in ("sketch_id", "participant_id", "caption") if c in splits_table.columns]],
        template=prompts["template"],
        stop_words=prompts["stop_words"],
        compounds=prompts.get("compounds") or (),
        no_noun_fallback=prompts["no_noun_fallback"],
    )
    table = table.merge(splits_table[["sketch_id", "split"]], on="sketch_id", how="left")
    # vocabulary over the training captions: what the model is taught
    train = table[table["split"] == "train"]
    vocab = (
        train.explode("categories")
        .dropna(subset=["categories"])
        .groupby("categories")
        .size()
        .rename("count")
        .reset_index()
        .rename(columns={"categories": "category"})
        .sort_values(["count", "category"], ascending=[False, True])
        .reset_index(drop=True)
    )
    counts = {
        "n_sketches": len(table),
        "n_no_noun": int(table["no_noun"].sum()),
        "mean_categories": float(table["n_categories"].mean()) if len(table) else 0.0,
        "vocabulary_size": len(vocab),
    }
    if counts["n_no_noun"]:
        logger.warning("%d captions have no noun (fallback: %s)", counts["n_no_noun"], prompts["no_noun_fallback"])
    logger.info("prompts: %s", counts)
    return table, vocab, as_metric_items(counts)


def plot_vocabulary(vocab: pd.DataFrame, top: int = 40) -> Figure:
    """Bar chart of the most frequent training categories (a pyplot-free figure: no GUI backend)."""
    head = vocab.head(top)
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    ax.bar(head["category"], head["count"], color="#4C72B0")
    ax.set_ylabel("training sketches")
    ax.set_title(f"Caption categories (top {len(head)} of {len(vocab)})")
    ax.tick_params(axis="x", rotation=70, labelsize=8)
    fig.tight_layout()
    return fig
