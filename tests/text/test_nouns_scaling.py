"""Issue #27 (held up under abuse): noun extraction is linear in the caption's length (a 900 KB
caption once ran for more than 15 minutes), and the API refuses captions over the length limit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sketchseg.errors import SketchSegDataError
from sketchseg.limits import MAX_CAPTION_CHARS
from sketchseg.text import nouns
from sketchseg.text.nltk_setup import ensure_nltk_data

NLTK_DIR = Path(__file__).resolve().parents[3] / "shared" / "nltk_data"
BASE = "A man walking his dog near a tall tree and a red car parked beside the house, kid flying kite "


@pytest.fixture(autouse=True, scope="module")
def _nltk_data() -> None:
    ensure_nltk_data(None if os.environ.get("NLTK_DATA") else str(NLTK_DIR), allow_download=False)


class _Counting(list):
    """The tagged tokens, counting every element the extraction reads."""

    reads = 0

    def __getitem__(self, i):
        item = super().__getitem__(i)
        _Counting.reads += len(item) if isinstance(i, slice) else 1
        return item

    def __iter__(self):
        for item in super().__iter__():
            _Counting.reads += 1
            yield item


def _reads(caption: str, monkeypatch) -> tuple[int, int]:
    tag = nouns.tag_caption
    monkeypatch.setattr(nouns, "tag_caption", lambda c, **k: _Counting(tag(c, **k)))
    _Counting.reads = 0
    n_tokens = len(tag(caption))
    nouns.extract_categories(caption)
    return _Counting.reads, n_tokens


def test_token_reads_grow_linearly_with_the_caption(monkeypatch):
    short, n_short = _reads(BASE * 10, monkeypatch)
    long, n_long = _reads(BASE * 100, monkeypatch)
    assert n_long >= 9 * n_short
    assert long < 20 * short, (short, long)        # 10x the caption: about 10x the reads, not 100x
    assert long / n_long < 100                       # a bounded number of reads per token


def test_a_ten_times_longer_caption_takes_less_than_twenty_times_as_long():
    nouns.extract_categories(BASE)  # warm the WordNet caches

    def best(caption: str) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            nouns.extract_categories(caption)
            times.append(time.perf_counter() - t0)
        return min(times)

    short, long = best(BASE * 30), best(BASE * 300)  # 2.8 KB and 28 KB (quadratic before: ~27x)
    assert long < 20 * short, (short, long)
    assert long < 3.0


def test_the_api_refuses_a_caption_over_the_limit_and_reads_a_short_one():
    from sketchseg.api import caption_categories

    assert caption_categories("Two dogs chasing a kite near a bench") == ["dog", "kite", "bench"]
    long = "a dog " * (MAX_CAPTION_CHARS // 6 + 1)
    with pytest.raises(SketchSegDataError, match=rf"caption: {len(long)} characters is too long; "
                                                 rf"a caption may have at most {MAX_CAPTION_CHARS} characters"):
        caption_categories(long)


def test_a_failing_caption_names_its_sketch(monkeypatch):
    import pandas as pd

    def boom(*a, **k):
        raise TimeoutError("regex timed out")

    monkeypatch.setattr(nouns, "extract_categories", boom)
    table = pd.DataFrame({"sketch_id": [7], "participant_id": [3], "caption": ["a dog"]})
    with pytest.raises(SketchSegDataError, match=r"sketch 7 \(participant 3\): noun extraction failed on its caption "
                                                 r"\(5 characters, 'a dog'...\): TimeoutError: regex timed out"):
        nouns.extract_table(table)
