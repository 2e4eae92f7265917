"""benchmarks/regenerate_docs.py: the one command behind every measured number of the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rd():
    return load_benchmark("regenerate_docs")


def test_splice_replaces_only_the_generated_section(rd, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# hand\n\nwritten\n\n{rd.GRID_BEGIN}\nold table\n{rd.GRID_END}\n\nmore hand text\n")
    rd.splice(page, "| new | table |\n")
    assert page.read_text() == f"# hand\n\nwritten\n\n{rd.GRID_BEGIN}\n| new | table |\n{rd.GRID_END}\n\nmore hand text\n"
    rd.splice(page, "again")  # idempotent on its own output
    assert page.read_text().count(rd.GRID_BEGIN) == 1 and "again" in page.read_text()


def test_splice_refuses_a_page_without_the_markers(rd, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="no .* section to fill"):
        rd.splice(page, "x")


def test_the_grid_section_sits_under_the_pages_headings(rd, tmp_path):
    md = tmp_path / "comparison.md"
    md.write_text("# Variant comparison\n\n| a |\n|---|\n| 1 |\n")
    section = rd.grid_section(md, "python -m sketchseg.experiments grid ...")
    assert "#### Variant comparison" in section and "\n# " not in section and "| 1 |" in section


def test_every_generated_page_exists_and_experiments_has_its_section(rd):
    for name in rd.GENERATED_DOCS:
        assert (REPO / name).is_file(), name
    text = (REPO / "docs/experiments.md").read_text(encoding="utf-8")
    assert text.count(rd.GRID_BEGIN) == 1 and text.count(rd.GRID_END) == 1


def test_unknown_steps_are_refused(rd):
    with pytest.raises(SystemExit):
        rd.main(["--only", "results,nonsense"])


def test_the_hand_written_headings_are_the_scripts_own(rd):
    assert rd.HAND_WRITTEN["docs/demo-timing.md"] == load_benchmark("demo_timing").HAND_WRITTEN
    assert rd.HAND_WRITTEN["docs/sample-results.md"] == load_benchmark("sample_learning").HAND_WRITTEN
    assert rd.HAND_WRITTEN["docs/demo-model.md"] == load_benchmark("demo_model").HAND_WRITTEN
