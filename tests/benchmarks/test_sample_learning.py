"""benchmarks/sample_learning.py: the paired per-sketch comparison behind docs/sample-results.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sample_learning.py"


@pytest.fixture(scope="module")
def sl():
    return load_benchmark("sample_learning")


def test_paired_difference_hand_case(sl):
    before = pd.Series([10.0, 20.0, 30.0, 40.0], index=["a", "b", "c", "d"])
    after = pd.Series([45.0, 30.0, 20.0, 10.0], index=["d", "c", "b", "a"])  # other order: matched by id
    d = sl.paired_difference(before, after, n_boot=2000, seed=1)
    # differences a..d: 0, 0, 0, +5 -> mean 1.25; one better, none worse, three equal
    assert d["mean"] == pytest.approx(1.25)
    assert (d["better"], d["worse"], d["equal"]) == (1, 0, 3)
    assert 0.0 <= d["ci_low"] <= d["mean"] <= d["ci_high"] <= 5.0


def test_paired_difference_constant_shift_has_a_point_interval(sl):
    before = pd.Series([1.0, 2.0, 3.0], index=[1, 2, 3])
    d = sl.paired_difference(before, before - 2.0)
    assert d["mean"] == d["ci_low"] == d["ci_high"] == pytest.approx(-2.0)
    assert (d["better"], d["worse"], d["equal"]) == (0, 3, 0)


def test_paired_difference_needs_the_same_sketches(sl):
    with pytest.raises(ValueError, match="same sketches"):
        sl.paired_difference(pd.Series([1.0], index=["a"]), pd.Series([1.0], index=["b"]))


def test_rewriting_the_report_keeps_the_hand_written_section(sl, tmp_path):
    out = tmp_path / "results.md"
    sl.write_report(out, "# generated v1\n")
    assert out.read_text() == "# generated v1\n"
    out.write_text(out.read_text() + f"\n{sl.HAND_WRITTEN} (notes)\n\n- a person's note\n")
    sl.write_report(out, "# generated v2\n\n| table |\n")
    assert out.read_text() == f"# generated v2\n\n| table |\n\n{sl.HAND_WRITTEN} (notes)\n\n- a person's note\n"


def test_reading_of_the_untrained_rows_follows_the_pretraining(sl):
    caption_only = sl.pretraining_text({"patch_label_loss_weight": 0.0})
    assert "patch tokens segment at chance level" in caption_only and "stroke labels" not in caption_only
    assert sl.pretraining_text({}) == caption_only  # conf without the key: the caption-only pre-training
    dense = sl.pretraining_text({"patch_label_loss_weight": 1.0})
    assert "stroke labels" in dense and "keeps rather than raises" in dense and "at chance level" not in dense
