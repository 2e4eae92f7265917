"""benchmarks/bench_model.py runs at CI size and reports both paths side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_model.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_model")


def test_quick_benchmark_reports_fast_and_reference(bench, tmp_path, capsys):
    out, js = tmp_path / "bench.md", tmp_path / "bench.json"
    result = bench.main(["--quick", "--device", "cpu", "--only", "fast -batched_categories",
                         "--out", str(out), "--json", str(js)])
    names = [r["variant"] for r in result["rows"]]
    assert names == ["reference", "fast", "fast -batched_categories"]
    for row in result["rows"]:
        for key in ("train_samples_per_s", "train_ms_per_step", "infer_sketches_per_s", "infer_ms_per_sketch",
                    "train_cpu_s_per_step", "infer_cpu_ms_per_sketch"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["variant"], key)
        assert row["train_peak_mib"] >= 0 and row["infer_peak_mib"] >= 0
        assert row["infer_ms_per_sketch"] == pytest.approx(1000.0 / row["infer_sketches_per_s"])
    s = result["summary"]
    assert s["train_speedup"] == pytest.approx(result["rows"][1]["train_samples_per_s"]
                                               / result["rows"][0]["train_samples_per_s"])
    assert s["fscoco_20_epochs_min_fast"] > 0 and s["fscoco_20_epochs_min_reference"] > 0
    env = result["environment"]
    assert {"date", "torch", "open_clip", "python", "cpu"} <= set(env)
    assert result["device"] == "cpu" and result["args"]["model"] == "sketchseg-tiny"
    text = out.read_text()
    assert text.startswith("# Model benchmarks") and "| reference |" in text and "Fast / reference" in text
    assert "train CPU-s/step" in text  # the CPU-time table of CPU runs
    assert json.loads(js.read_text())["rows"][0]["variant"] == "reference"
    assert "bench_model train_speedup=" in capsys.readouterr().out


def test_variant_list_and_estimate(bench):
    import torch

    names = [v.name for v in bench.variants(torch.device("cuda"), with_compile=True, with_levers=True)]
    assert names[:3] == ["reference", "fast", "fast +compile"] and "fast -bf16" in names
    assert "fast -sdpa" in names and "fast +host sync per step" in names
    cpu = bench.variants(torch.device("cpu"), with_compile=False, with_levers=False)
    assert [v.name for v in cpu] == ["reference", "fast"] and not cpu[1].bf16  # training runs fp32 on CPU
    # 9025 sketches at 100/s + 475 at 475/s = 91.25 s per epoch -> 20 epochs = 30.4 min
    assert bench.estimate_minutes({"train_samples_per_s": 100.0, "infer_sketches_per_s": 475.0}) == pytest.approx(
        20 * 91.25 / 60)
