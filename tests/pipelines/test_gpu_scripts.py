"""The GPU session's scripts (benchmarks/gpu_prepare.py, gpu_check.py, bench_fit.py) work end to end
at CI size on CPU, on a generated sample, so that a session with a lent GPU spends its minutes
measuring, not debugging."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import load_benchmark
from tests.pipelines.kedro_utils import TINY, nested, run


@pytest.fixture(scope="module")
def scripts():
    return {name: load_benchmark(name) for name in ("bench_model", "gpu_check", "gpu_prepare", "bench_fit")}


def test_node_modules_import_without_kedro():
    """The GPU image has no Kedro: the node functions must import without it."""
    code = ("import sys; sys.modules['kedro'] = None; "
            "import sketchseg.pipelines.training.nodes, sketchseg.pipelines.evaluation.nodes; "
            "from sketchseg.pipelines.training.pipeline import create_pipeline; "
            "create_pipeline()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "kedro" in proc.stderr  # only create_pipeline needs Kedro ...
    ok = subprocess.run([sys.executable, "-c", code.rsplit(";", 2)[0]], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr  # ... the nodes do not


def test_repeat_rows_and_estimate(scripts):
    fit = scripts["bench_fit"]
    table = pd.DataFrame({"sketch_id": [1, 2, 3], "x": ["a", "b", "c"]})
    out = fit.repeat_rows(table, 7)
    assert out["x"].tolist() == ["a", "b", "c", "a", "b", "c", "a"]
    assert out["sketch_id"].tolist() == [1, 2, 3, 1 + 10**9, 2 + 10**9, 3 + 10**9, 1 + 2 * 10**9]
    with pytest.raises(ValueError, match="pipelines=data"):
        fit.repeat_rows(table.head(0), 3)
    # epoch 0 (validation) 6 s, epoch 1 (warm-up) 30 s, steady epochs 20 and 22 s -> 6 + 30 + 19 * 21
    assert fit.estimate_20([6.0, 30.0, 20.0, 22.0]) == pytest.approx((6 + 30 + 19 * 21) / 60)
    assert fit.estimate_20([6.0, 30.0]) == pytest.approx((6 + 20 * 30) / 60)
    with pytest.raises(ValueError):
        fit.estimate_20([6.0])


def test_report_verdicts(scripts):
    report = scripts["gpu_check"].Report()
    report.add("c", "small error", 1e-5, 1e-4)
    assert report.ok
    report.add("c", "agreement", 0.5, 0.97, at_least=True)
    assert not report.ok and "**FAIL**" in report.markdown()
    nan = scripts["gpu_check"].Report()
    nan.add("c", "NaN never passes", float("nan"), 1.0)
    assert not nan.ok


def test_gpu_check_catches_a_broken_bf16_path(scripts, monkeypatch):
    """A fast path that loses the visual prompts' gradient under autocast must fail the check."""
    # (the visual prompts carry ~30 % of the tiny model's gradient norm; LayerNorms most of the rest)
    gc = scripts["gpu_check"]
    real = gc.losses_and_grads

    def broken(model, batch, device, bf16):
        losses, grads = real(model, batch, device, bf16)
        if bf16 and model.levers.sdpa:  # the fast path only
            grads = {n: g * 0.0 if "prompt" in n else g for n, g in grads.items()}
        return losses, grads

    monkeypatch.setattr(gc, "losses_and_grads", broken)
    result = gc.run(gc._parse(["--quick", "--train-steps", "3"]))
    failed = {r["measure"] for r in result["rows"] if not r["ok"]}
    assert not result["ok"] and any("gradients rel. error" in m for m in failed)


@pytest.mark.slow
def test_gpu_session_scripts_on_the_sample(kedro_project, scripts):
    run(kedro_project, "make_sample")
    run(kedro_project, "train")  # TINY: random tiny CLIP, 1 epoch; writes test_metrics.json
    spec = scripts["gpu_prepare"].sample_spec(kedro_project, "sample", runtime_params=nested(TINY))
    assert spec["params"]["model"]["clip_model"] == "sketchseg-tiny" and spec["params"]["training"]["epochs"] == 1
    assert {".gpu", "data/01_raw/sample", "data/03_primary", "data/04_feature"} <= set(spec["carry"])
    spec_path = kedro_project / ".gpu" / "sample.json"
    spec_path.parent.mkdir()
    spec_path.write_text(json.dumps(spec), encoding="utf-8")

    result = scripts["gpu_check"].main(["--quick", "--sample", str(spec_path), "--num-workers", "0",
                                        "--json", str(kedro_project / "gc.json")])
    rows = {(r["check"], r["measure"]): r for r in result["rows"]}
    for check in ("fp32", "bf16", "train", "checkpoint"):
        tagged = [r for (c, _), r in rows.items() if c == f"{check} sketchseg-tiny"]
        assert tagged and all(r["ok"] for r in tagged), tagged
    # on CPU the nodes run fp32 whatever training.precision says: the recorded CPU results come back exactly
    for name in ("val mIoU", "test mIoU", "test Acc@P"):
        row = rows[("sample", f"abs. difference {name} to CPU fp32 (points)")]
        assert row["value"] == pytest.approx(0.0, abs=1e-4), row
    assert json.loads((kedro_project / "gc.json").read_text())["details"]["sample"]["history"]

    fit = scripts["bench_fit"].main(["--quick", "--train", "24", "--val", "4", "--epochs", "2",
                                     "--out", str(kedro_project / "fit.md")])
    s = fit["summary"]
    assert len(s["epoch_seconds"]) == 3 and all(t > 0 for t in s["epoch_seconds"])
    assert math.isfinite(s["estimated_20_epochs_min"]) and s["loader_sketches_per_s"] > 0
    assert [h["epoch"] for h in fit["history"]] == [0, 1, 2] and all("val_miou" in h for h in fit["history"])
    assert "Estimated 20 epochs" in (kedro_project / "fit.md").read_text()

    # the data-loading levers: one row per loader setting, and the stroke-rendered source differs from
    # the raster source in the image only
    levers = scripts["bench_fit"].main(["--quick", "--loader-only", "--train", "16", "--loader-workers", "0", "1",
                                        "--out", str(kedro_project / "loader.md")])
    rows = [(r["source"].split()[0], r["workers"], r["pin_memory"]) for r in levers["loader_levers"]]
    assert rows == [("raster", 0, False), ("raster", 1, False), ("rendered", 0, False), ("rendered", 1, False)]
    assert all(r["sketches_per_s"] > 0 for r in levers["loader_levers"]) and levers["history"] == []
    assert "| rendered from strokes | 1 | no |" in (kedro_project / "loader.md").read_text()
    splits = pd.read_parquet(kedro_project / "data/03_primary/sketch_splits.parquet")
    prompts = pd.read_parquet(kedro_project / "data/04_feature/sketch_prompts.parquet")
    table = scripts["bench_fit"].training_table(splits, prompts).head(2)
    kw = {"image_size": 32, "max_categories": 3, "seed": 0}
    raster = scripts["bench_fit"].TrainSketches(table, **kw)[1]
    drawn = scripts["bench_fit"].StrokeRenderedSketches(table, **kw)[1]
    assert {k: v for k, v in raster.items() if k != "image"} == {k: v for k, v in drawn.items() if k != "image"}
    assert drawn["image"].shape == raster["image"].shape == (3, 32, 32)
    # the same picture, up to JPEG artefacts
    assert (drawn["image"] < 0.5).any() and (drawn["image"] - raster["image"]).abs().mean() < 0.005
