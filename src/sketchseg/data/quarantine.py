"""The ingestion's quarantine table: what was left out of the manifest, and why."""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import pandas as pd

__all__ = ["QUARANTINE_COLUMNS", "Quarantine", "outside_reason", "outside_root", "printable", "quarantine_counts"]

QUARANTINE_COLUMNS = ["path", "sketch_id", "participant_id", "reason", "kind"]


def printable(text: Any) -> str:
    """``text`` as valid UTF-8: bytes of a file name that is not UTF-8 (held by Python as surrogate
    escapes) are spelled ``\\xNN``, so that the quarantine table can name the file."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def outside_root(path: str | os.PathLike, root_real: str) -> str | None:
    """Where ``path`` really is when it resolves outside the data root ``root_real`` (already
    ``os.path.realpath``'d), e.g. a symlink to a system file; None when it stays inside."""
    real = os.path.realpath(path)
    return None if real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep) else real


def outside_reason(real: str) -> str:
    """The quarantine reason of a file that resolves to ``real``, outside the data root."""
    return f"points outside the data root: resolves to {printable(real)}"


class Quarantine:
    """The rows of the ingestion's quarantine table, collected as problems are found."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, path: Any, sketch_id: int | None, participant_id: int | None, reason: str, kind: str) -> None:
        self.rows.append({"path": printable(path), "sketch_id": sketch_id, "participant_id": participant_id,
                          "reason": printable(reason), "kind": kind})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS)
        df["path"] = df["path"].astype(str)
        df["reason"] = df["reason"].astype(str)
        df["kind"] = df["kind"].astype(str)
        for col in ("sketch_id", "participant_id"):
            df[col] = pd.array([None if r[col] is None else int(r[col]) for r in self.rows], dtype="Int64")
        return df.sort_values(["kind", "path", "reason"], kind="stable").reset_index(drop=True)


def quarantine_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Counts per quarantine kind and per reason class (the text before any ':' or file detail)."""
    counts: Counter[str] = Counter()
    for kind, reason in zip(quarantine.get("kind", ["sketch"] * len(quarantine)), quarantine["reason"]):
        counts[f"quarantine_{kind}"] += 1
        for part in str(reason).split("; "):
            text = re.split(r":| in | as | also in ", part, maxsplit=1)[0]  # the reason, not the file or id
            head = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
            head = re.sub(r"_\d+(_\d+)*", "", head)[:80]  # "label count 12 != 13" -> "label_count"
            counts[f"reason.{head}"] += 1
    return dict(counts)
