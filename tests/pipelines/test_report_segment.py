"""report and segment pipelines through Kedro's runner, after make_sample + train on the tiny sample."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from tests.pipelines.kedro_utils import run

REPORT_FIGURES = (
    "segmentation_overlays.png", "accuracy_histogram.png", "category_accuracy.png", "seen_unseen.png",
    "threshold_sweep.png", "val_curves.png",
)


def draw_user_sketches(folder) -> dict[str, tuple[int, int]]:
    """Sketches the test draws itself (sizes and modes a user would bring), a broken file, a note."""
    folder.mkdir(parents=True, exist_ok=True)
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    d = ImageDraw.Draw(rgba)
    d.ellipse([20, 20, 120, 120], outline=(0, 0, 0, 255), width=4)
    d.rectangle([170, 90, 280, 180], outline=(0, 0, 0, 255), width=4)
    rgba.save(folder / "tree_house.png")
    grey = Image.new("L", (257, 131), 255)
    ImageDraw.Draw(grey).line([(5, 120), (250, 20)], fill=0, width=5)
    grey.convert("RGB").save(folder / "road.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-- not a png --")
    (folder / "notes.txt").write_text("not a sketch", encoding="utf-8")
    return {"tree_house": (300, 200), "road": (257, 131)}


@pytest.mark.slow
def test_report_and_segment_after_training(kedro_project):
    run(kedro_project, "make_sample")
    run(kedro_project, "train")

    # ---------------------------------------------------------------- re-scoring the chosen checkpoint
    metrics_file = kedro_project / "data/08_reporting/sample/ours-sample/test_metrics.json"
    paper = json.loads(metrics_file.read_text())
    authors = {"model.inference_prompts": "ensemble", "model.inference_normalization": "minmax"}
    run(kedro_project, "evaluation", params=authors)
    rescored = json.loads(metrics_file.read_text())
    assert rescored["checkpoint_epoch"] == paper["checkpoint_epoch"]  # the same checkpoint, scored otherwise
    assert rescored["test_miou"] != paper["test_miou"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{kedro_project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sketchseg-sample")
    latest = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert latest.data.params["model.inference_prompts"] == "ensemble"
    assert latest.data.metrics["test_miou"] == pytest.approx(rescored["test_miou"])

    # ---------------------------------------------------------------- report
    report_params = {"report.n_overlay_sketches": 3, "report.min_category_count": 0}
    with pytest.raises(Exception, match=r"model\.inference_prompts: tables 'ensemble', now 'template'"):
        run(kedro_project, "report", params=report_params)  # would mix two scoring setups in one report
    # refused before any node wrote a file
    assert not (kedro_project / "data/08_reporting/sample/ours-sample/report").exists()
    run(kedro_project, "report", params={**report_params, **authors})
    out = kedro_project / "data/08_reporting/sample/ours-sample/report"
    for name in REPORT_FIGURES:
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.width > 300 and im.height > 200, name
    sweep = pd.read_csv(out / "threshold_sweep.csv")
    assert set(sweep["split"]) == {"val", "test"} and len(sweep) == 2 * 66
    assert sweep["pixel_acc"].between(0, 100).all() and (sweep["n_pairs"] > 0).all()
    categories = pd.read_csv(out / "category_report.csv")
    assert len(categories) > 0 and categories["shown"].all()
    assert {"pixel_acc", "train_frequency", "test_frequency", "seen"} <= set(categories.columns)
    summary = json.loads((out / "report_summary.json").read_text())
    assert summary["n_test_sketches"] == 6
    assert 0.30 <= summary["best_threshold_val"] <= 0.95 and 0.30 <= summary["best_threshold_test"] <= 0.95
    assert summary["n_seen_categories"] + summary["n_unseen_categories"] == len(categories)
    assert summary["corr_train_frequency"] is None or -1.0 <= summary["corr_train_frequency"] <= 1.0

    runs = [r for r in client.search_runs([exp.experiment_id]) if "report_best_threshold_test" in r.data.metrics]
    assert len(runs) == 1
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "report")}
    assert {f"report/{name}" for name in REPORT_FIGURES} <= artifacts
    assert "report/report_summary.json" in artifacts

    # ---------------------------------------------------------------- segment, one list for all
    sketches = draw_user_sketches(kedro_project / "data/01_raw/user_sketches")
    run(kedro_project, "segment", params={"segment.categories": ["tree", "house", "road"],
                                          "segment.isolate_category": "tree"})
    seg = kedro_project / "data/07_model_output/segmentation"
    table = pd.read_csv(seg / "segmentation.csv").set_index("file")
    assert table["status"].to_dict() == {"broken.png": "failed", "notes.txt": "skipped", "road.jpg": "ok",
                                         "tree_house.png": "ok"}
    assert "broken.png" in table.loc["broken.png", "reason"] and "unreadable" in table.loc["broken.png", "reason"]
    for stem, size in sketches.items():
        with Image.open(seg / "label_maps" / f"{stem}.png") as im:
            assert im.size == size and im.mode == "P"
            values = np.asarray(im)
        assert values.max() <= 3 and (values == 0).any() and (values > 0).any()
        with Image.open(seg / "overlays" / f"{stem}.png") as im:
            assert im.height >= size[1] and im.width > size[0]
        with Image.open(seg / "masks" / f"{stem}.png") as im:
            assert im.size == size
    assert not (seg / "label_maps" / "broken.png").exists()

    # ---------------------------------------------------------------- per-sketch lists, other folder
    (kedro_project / "cats.json").write_text(json.dumps({"tree_house.png": ["tree", "house"], "road": "road;car"}))
    (kedro_project / "data/01_raw/user_sketches/extra.png").write_bytes(
        (kedro_project / "data/01_raw/user_sketches/tree_house.png").read_bytes()
    )
    run(kedro_project, "segment", params={"segment.categories_file": "cats.json", "segment.output_dir": "out/seg"})
    table = pd.read_csv(kedro_project / "out/seg/segmentation.csv").set_index("file")
    assert table.loc["tree_house.png", "categories"] == "tree;house"
    assert table.loc["road.jpg", "categories"] == "road;car"
    assert table.loc["extra.png", "status"] == "failed" and "no category list" in table.loc["extra.png", "reason"]
    assert sorted(p.name for p in (kedro_project / "out/seg/label_maps").iterdir()) == ["road.png", "tree_house.png"]
    masks = kedro_project / "out/seg/masks"
    assert not masks.exists() or not any(masks.glob("*.png"))  # no isolation asked for


def test_segment_missing_folder_fails_with_the_path(kedro_project):
    with pytest.raises(Exception) as info:
        run(kedro_project, "segment", params={"segment.categories": ["tree"], "segment.input_dir": "no/such/folder"})
    assert "no/such/folder" in str(info.value) and "does not exist" in str(info.value)
