"""The README quotes only numbers that a generated page holds (``benchmarks/regenerate_docs.py``).

A measured number in README.md (a decimal, a percentage, a duration in s / min) must appear in
one of the generated pages (``regenerate_docs.GENERATED_DOCS``), rounded as the README rounds it,
or be a setting or a published number: conf/, the paper, the notes on the authors' code,
the pinned versions. A number typed by hand into the README that no script regenerates turns
this red.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

#: a measured-looking number: a decimal (40.3), a percentage (67 %), a duration (298 s, 5 min)
_DECIMAL = re.compile(r"(?<![\w.\-/])(\d+\.\d+)(?![\w.]*\d)(?!\.\d)")
_UNIT = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?)\s?(%|s\b|min\b|seconds\b|minutes\b)")
_ANY = re.compile(r"(?<![\w])(\d+(?:\.\d+)?)")


def quoted_numbers(text: str) -> list[str]:
    """The measured-looking numbers of a markdown text, outside code blocks and inline code."""
    prose = re.sub(r"```.*?```", " ", text, flags=re.S)
    prose = re.sub(r"`[^`]*`", " ", prose)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    found = [m.group(1) for m in _DECIMAL.finditer(prose)] + [m.group(1) for m in _UNIT.finditer(prose)]
    return sorted(set(found), key=float)


def _rounds_to(source: str, quoted: str) -> bool:
    places = len(quoted.split(".")[1]) if "." in quoted else 0
    exp = Decimal(1).scaleb(-places)
    value = Decimal(source)
    return any(value.quantize(exp, rounding=r) == Decimal(quoted) for r in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def available_numbers(texts: list[str]) -> set[str]:
    return {m.group(1) for t in texts for m in _ANY.finditer(t)}


def unsourced(quoted: list[str], sources: set[str]) -> list[str]:
    """The quoted numbers that no source number equals or rounds to."""
    return [q for q in quoted if not any(_rounds_to(s, q) for s in sources)]


def _source_texts() -> list[str]:
    rd = load_benchmark("regenerate_docs")
    texts = []
    for name in rd.GENERATED_DOCS:
        text = (REPO / name).read_text(encoding="utf-8") if (REPO / name).is_file() else ""
        if rd.GRID_BEGIN in text:  # a page written partly by hand: only its generated section counts
            text = text.split(rd.GRID_BEGIN, 1)[1].split(rd.GRID_END, 1)[0]
        if name in rd.HAND_WRITTEN:  # the hand-written tail of a generated page is not regenerated
            text = text.split(rd.HAND_WRITTEN[name], 1)[0]
        texts.append(text)
    paths = sorted((REPO / "conf").rglob("*.yml")) + [REPO / "requirements.lock", REPO / "pyproject.toml"]
    paths += sorted((SHARED / "paper").glob("*.txt")) + [SHARED / "reference" / "official-code-notes.md"]
    return texts + [p.read_text(encoding="utf-8") for p in paths if p.is_file()]


def test_quoted_numbers_hand_case():
    text = ("Test mIoU 40.3, Acc@P 62.4 % in 298 s (5.3 min); `kedro run --params x=0.5` and\n"
            "```bash\nrun 12.5\n```\nversion 2.14.1 and [link](docs/a-1.5.md) stay out.")
    assert quoted_numbers(text) == ["5.3", "40.3", "62.4", "298"]


def test_rounding_is_the_readmes():
    assert _rounds_to("40.33", "40.3") and _rounds_to("67.70", "67.7") and _rounds_to("298", "298")
    assert not _rounds_to("40.36", "40.3") and not _rounds_to("45.95", "40.3")


def test_a_hand_typed_number_is_caught():
    sources = available_numbers(["| test | trained | 40.33 | 62.39 |", "took 298 s"])
    assert unsourced(["40.3", "62.4", "298"], sources) == []
    assert unsourced(["40.3", "45.95", "18.8"], sources) == ["45.95", "18.8"]


@pytest.mark.skipif(not (SHARED / "paper").is_dir(), reason="needs ../shared/paper (the paper's numbers)")
def test_every_number_in_the_readme_comes_from_a_generated_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = unsourced(quoted_numbers(readme), available_numbers(_source_texts()))
    assert not missing, (f"README.md quotes {missing}, which no generated page (benchmarks/regenerate_docs.py "
                         "GENERATED_DOCS), conf/ file or the paper holds: regenerate the docs or quote them")
