"""sketchseg.reporting: Eq. 5, seen/unseen, threshold sweep, overlays and figures on hand-made data."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sketchseg.errors import SketchSegConfigError  # noqa: E402
from sketchseg.model.similarity import isolate  # noqa: E402
from sketchseg.reporting.analysis import (  # noqa: E402
    best_thresholds,
    caption_category_counts,
    category_frequency_table,
    frequency_correlations,
    pearson_correlation,
    seen_unseen_accuracy,
    single_category_accuracy,
    sketch_threshold_sweep,
    sweep_table,
    threshold_grid,
)
from sketchseg.reporting.figures import (  # noqa: E402
    accuracy_histogram,
    category_accuracy_figure,
    seen_unseen_figure,
    threshold_sweep_figure,
    selected_epoch,
    val_curves_figure,
)
from sketchseg.reporting.overlays import (  # noqa: E402
    CORRECT_RGB,
    ERROR_RGB,
    PAPER_RGB,
    OverlaySample,
    category_colors,
    colorize_labels,
    error_map,
    overlay_grid,
    palette_color,
    thicken,
)
from sketchseg.engine.metrics import pixel_accuracy, sketch_metrics  # noqa: E402
from sketchseg.reporting.predict import choose_indices  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------ Eq. 5
def test_pearson_hand_values():
    # N=5, Σx=15, Σy=20, Σxy=66, Σx²=55, Σy²=86: (330-300)/sqrt((275-225)(430-400)) = 30/sqrt(1500)
    assert pearson_correlation([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]) == pytest.approx(30 / math.sqrt(1500))
    assert pearson_correlation([1, 2, 3], [5, 7, 9]) == pytest.approx(1.0)
    assert pearson_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # N=4: x=[0,1,0,1], y=[0,0,1,1] -> Σxy=1, Σx=Σy=2, Σx²=Σy²=2: (4-4)/... = 0
    assert pearson_correlation([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0)
    # agrees with numpy's definition on arbitrary data
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson_correlation(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])


def test_pearson_edge_cases():
    assert math.isnan(pearson_correlation([1.0], [2.0]))
    assert math.isnan(pearson_correlation([1, 1, 1], [1, 2, 3]))        # constant x
    assert math.isnan(pearson_correlation([0.1, 0.1, 0.1], [1, 2, 3]))  # constant non-integers (rounding)
    # non-finite pairs are left out: N = 3 remaining pairs
    assert pearson_correlation([1, 2, np.nan, 3], [5, 7, 100, 9]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        pearson_correlation([1, 2], [1, 2, 3])


# ------------------------------------------------------------------------------------------ S2.2
@pytest.fixture()
def prompts_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sketch_id": [1, 2, 3, 4, 5],
            "categories": [["tree", "Tree", "house"], ["tree"], ["dog"], ["tree", "car"], ["cat"]],
            "split": ["train", "train", "train", "test", "val"],
        }
    )


@pytest.fixture()
def per_category() -> pd.DataFrame:
    # the evaluation's test_per_category: pixel_acc as fractions
    return pd.DataFrame(
        {
            "category": ["tree", "car", "traffic_light", "house"],
            "n_sketches": [4, 1, 2, 3],
            "gt_pixels": [100, 50, 200, 150],
            "pixel_acc": [0.9, 0.5, 0.25, 0.6],
            "iou": [0.8, 0.4, 0.2, 0.5],
        }
    )


def test_caption_counts_once_per_sketch(prompts_table):
    train = caption_category_counts(prompts_table, ["train"])
    assert train.to_dict() == {"dog": 1, "house": 1, "tree": 2}
    assert caption_category_counts(prompts_table).to_dict() == {"car": 1, "cat": 1, "dog": 1, "house": 1, "tree": 3}


def test_category_table_and_seen_unseen(prompts_table, per_category):
    table = category_frequency_table(
        per_category, caption_category_counts(prompts_table, ["train"]),
        caption_counts=caption_category_counts(prompts_table), min_category_count=1,
    )
    assert table["category"].tolist() == ["tree", "house", "car", "traffic light"]  # by Acc@P, descending
    rows = table.set_index("category")
    assert rows.loc["tree", "pixel_acc"] == pytest.approx(90.0) and rows.loc["tree", "correct_pixels"] == 90
    assert rows.loc["house", "train_frequency"] == 1 and rows.loc["car", "train_frequency"] == 0
    assert rows.loc["tree", "test_frequency"] == 4
    # seen = occurs among the TRAINING captions' categories (car only in a test caption: unseen)
    assert rows["seen"].to_dict() == {"tree": True, "house": True, "car": False, "traffic light": False}
    # shown = more than min_category_count caption occurrences over all splits
    assert rows["shown"].to_dict() == {"tree": True, "house": False, "car": False, "traffic light": False}

    groups = seen_unseen_accuracy(table).set_index("group")
    assert groups.loc["seen", "n_categories"] == 2 and groups.loc["unseen", "n_categories"] == 2
    assert groups.loc["seen", "pixel_acc"] == pytest.approx(100 * (90 + 90) / (100 + 150))   # pooled pixels
    assert groups.loc["unseen", "pixel_acc"] == pytest.approx(100 * (25 + 50) / (50 + 200))
    assert groups.loc["seen", "mean_category_acc"] == pytest.approx((90 + 60) / 2)

    corr = frequency_correlations(table)
    acc = table["pixel_acc"].to_numpy()
    assert corr["corr_train"] == pytest.approx(pearson_correlation(acc, table["train_frequency"]))
    assert corr["corr_test"] == pytest.approx(pearson_correlation(acc, table["test_frequency"]))
    assert corr["n_categories"] == 4 and corr["n_categories_shown"] == 1
    assert math.isnan(corr["corr_train_shown"])  # one shown category: N < 2


def test_seen_unseen_with_empty_group(per_category):
    table = category_frequency_table(per_category, {"tree": 3, "car": 1, "traffic light": 2, "house": 1})
    groups = seen_unseen_accuracy(table).set_index("group")
    assert groups.loc["unseen", "n_categories"] == 0 and math.isnan(groups.loc["unseen", "pixel_acc"])
    with pytest.raises(SketchSegConfigError):
        category_frequency_table(per_category, {}, min_category_count=-1)


# ------------------------------------------------------------------------------------------ Fig. S14
def test_threshold_grid():
    grid = threshold_grid({"start": 0.30, "stop": 0.95, "step": 0.01})
    assert len(grid) == 66 and grid[0] == 0.30 and grid[-1] == 0.95
    assert 0.71 in grid.tolist() and 0.79 in grid.tolist()
    assert threshold_grid([0.5, 0.2, 0.5]).tolist() == [0.2, 0.5]
    for bad in ({"start": 0.5, "stop": 0.2, "step": 0.1}, {"start": 0.1}, [1.5], []):
        with pytest.raises(SketchSegConfigError):
            threshold_grid(bad)


def test_single_category_accuracy_hand_values():
    scores = np.array([0.2, 0.5, 0.8, 0.9])
    is_cat = np.array([False, False, True, True])
    t = np.array([0.1, 0.5, 0.85, 0.95])
    # t=0.1: everything predicted -> 2/4; t=0.5: 0.5 is NOT above -> all right; t=0.85: 3/4; t=0.95: 2/4
    np.testing.assert_allclose(single_category_accuracy(scores, is_cat, t), [0.5, 1.0, 0.75, 0.5])
    assert np.isnan(single_category_accuracy(np.zeros(0), np.zeros(0, bool), t)).all()


def test_sketch_sweep_matches_isolate_and_ignores_paper():
    gt = np.array([[0, 0, -1], [1, 1, -1], [-1, 0, 1]])
    maps = np.stack([
        np.array([[0.9, 0.8, 1.0], [0.3, 0.6, 1.0], [1.0, 0.75, 0.1]]),
        np.array([[0.0, 0.2, 1.0], [0.95, 0.7, 0.0], [0.0, 0.3, 0.5]]),
        np.ones((3, 3)),  # a class absent from the ground truth: no pair
    ])
    t = threshold_grid({"start": 0.0, "stop": 1.0, "step": 0.05})
    present, acc = sketch_threshold_sweep(maps, gt, t)
    assert present == [0, 1] and acc.shape == (2, len(t))
    stroke = gt >= 0
    for row, c in enumerate(present):  # brute force with the model's own isolate()
        for j, thr in enumerate(t):
            pred = isolate(torch.from_numpy(maps[c]), float(thr)).numpy()
            expected = np.mean(pred[stroke] == (gt[stroke] == c))
            assert acc[row, j] == pytest.approx(expected)
    # class 0 at t=0.7: pred on strokes = [T,T,F,F,T(0.75),F] vs truth [T,T,F,F,T,F] -> 6/6
    assert acc[0, list(t).index(0.7)] == pytest.approx(1.0)


def test_sweep_table_and_best_threshold():
    t = np.array([0.5, 0.6, 0.7])
    table = sweep_table({"val": np.array([[0.5, 0.9, 0.9], [0.7, 0.7, 0.5]]), "test": np.zeros((0, 3))}, t)
    assert table.columns.tolist() == ["split", "threshold", "pixel_acc", "n_pairs"]
    val = table[table["split"] == "val"]
    np.testing.assert_allclose(val["pixel_acc"], [60.0, 80.0, 70.0])
    assert val["n_pairs"].tolist() == [2, 2, 2]
    best = best_thresholds(table)
    assert best["val"] == {"threshold": 0.6, "pixel_acc": pytest.approx(80.0)}
    assert math.isnan(best["test"]["threshold"])
    tie = sweep_table({"val": np.array([[0.8, 0.8, 0.1]])}, t)
    assert best_thresholds(tie)["val"]["threshold"] == 0.5  # ties -> the lowest threshold


def test_choose_indices_is_seeded_and_bounded():
    a = choose_indices(50, 6, seed=1)
    assert a == choose_indices(50, 6, seed=1) and a == sorted(a) and len(set(a)) == 6
    assert a != choose_indices(50, 6, seed=2)
    assert choose_indices(3, 6, seed=0) == [0, 1, 2] and choose_indices(0, 6, seed=0) == []


# ------------------------------------------------------------------------------------------ overlays
def test_colorize_and_error_map_pixels():
    labels = np.array([[-1, 0], [1, 1]])
    rgb = colorize_labels(labels, [(10, 20, 30), (40, 50, 60)])
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == PAPER_RGB and tuple(rgb[0, 1]) == (10, 20, 30) and tuple(rgb[1, 0]) == (40, 50, 60)
    half = colorize_labels(labels, [(0, 0, 0), (0, 0, 0)], ink=np.full((2, 2), 0.5))
    assert tuple(half[0, 1]) == (128, 128, 128) and tuple(half[0, 0]) == PAPER_RGB
    with pytest.raises(ValueError):
        colorize_labels(np.array([[2]]), [(0, 0, 0)])

    gt = np.array([[-1, 0, 1], [1, 0, -1]])
    pred = np.array([[1, 0, 0], [1, 1, 0]])
    err = error_map(pred, gt)
    wrong = (gt >= 0) & (pred != gt)
    assert (err[wrong] == ERROR_RGB).all() and wrong.sum() == 2
    assert (err[(gt >= 0) & ~wrong] == CORRECT_RGB).all()
    assert (err[gt < 0] == PAPER_RGB).all()  # paper never red, whatever the prediction says
    assert 100.0 * pixel_accuracy(pred, gt) == pytest.approx(50.0)
    stroke_map = np.where(gt >= 0, np.arange(gt.size).reshape(gt.shape), -1)
    scores = sketch_metrics(pred, gt, stroke_map, gt.reshape(-1), n_categories=2)
    assert pixel_accuracy(pred, gt) == scores.pixel_acc  # one Acc@P: the report's is the evaluation's
    assert math.isnan(pixel_accuracy(pred, np.full_like(gt, -1)))


def test_palette_and_thicken():
    colors = [palette_color(i) for i in range(60)]
    assert len(set(colors)) == 60
    assert all(not (r > 180 and g < 70 and b < 70) for r, g, b in colors)  # nothing like the error red
    assert list(category_colors(["b", "a", "b"])) == ["b", "a"]
    labels = np.full((5, 5), -1)
    labels[2, 2] = 3
    labels[0, 0] = 1
    grown = thicken(labels, 1)
    assert (grown[1:4, 1:4] == 3).all() and grown[0, 0] == 1 and grown[4, 4] == -1


def _sample(sketch_id: int) -> OverlaySample:
    gt = np.full((32, 32), -1)
    gt[5, 2:30] = 0
    gt[20, 2:30] = 1
    pred = gt.copy()
    pred[20, 2:10] = 0
    return OverlaySample(sketch_id, ["tree", "house"], gt, pred, 100.0 * pixel_accuracy(pred, gt))


def test_overlay_grid_layout_titles_and_legend():
    fig = overlay_grid([_sample(7), _sample(8)], title="two sketches")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert "sketch 7" in titles and "sketch 8" in titles and titles.count("errors (red)") == 2
    acc = _sample(7).pixel_acc
    assert sum(t == f"prediction  Acc@P {acc:.1f}%" for t in titles) == 2
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2 and [t.get_text() for t in legends[0].get_texts()] == ["tree", "house"]
    # the error panel paints exactly the wrong stroke pixels red (display_radius=0: no thickening)
    fig0 = overlay_grid([_sample(7)], display_radius=0)
    err_img = fig0.axes[3].get_images()[0].get_array()
    red = (np.asarray(err_img) == ERROR_RGB).all(axis=-1)
    assert red.sum() == 8 and red[20, 2:10].all()
    assert overlay_grid([]).axes[0].texts  # "no data" note


# ------------------------------------------------------------------------------------------ figures
def test_accuracy_histogram():
    values = [10.0, 55.0, 81.0, 95.0, 99.0, np.nan]
    fig = accuracy_histogram(values, bin_width=10.0)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 10 and sum(heights) == 5
    labels = ax.get_legend_handles_labels()[1]
    assert any("60% of sketches > 80%" in lab for lab in labels) and any("mean" in lab for lab in labels)
    assert "n = 5" in ax.get_title()
    assert accuracy_histogram([]).axes[0].texts


def test_category_and_seen_unseen_figures(prompts_table, per_category):
    table = category_frequency_table(per_category, caption_category_counts(prompts_table, ["train"]),
                                     caption_counts=caption_category_counts(prompts_table), min_category_count=0)
    fig = category_accuracy_figure(table, correlations=frequency_correlations(table), min_category_count=0)
    ax, ax2 = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in ax.get_xticklabels()] == table[table["shown"]]["category"].tolist()
    assert [round(p.get_height(), 3) for p in ax.patches] == [round(v, 3) for v in table[table["shown"]]["pixel_acc"]]
    assert [line.get_label() for line in ax2.get_lines()] == ["train frequency", "test frequency"]
    assert "Eq. 5" in ax.get_title()
    assert category_accuracy_figure(table.assign(shown=False), min_category_count=10).axes[0].texts

    fig = seen_unseen_figure(seen_unseen_accuracy(table))
    ax = fig.axes[0]
    assert len(ax.patches) == 2
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["seen", "unseen"]


def test_threshold_sweep_figure():
    t = np.array([0.5, 0.6, 0.7])
    sweep = sweep_table({"val": np.array([[0.5, 0.9, 0.9]]), "test": np.array([[0.6, 0.7, 0.8]])}, t)
    fig = threshold_sweep_figure(sweep, best_thresholds(sweep), reference=0.71)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0].startswith("validation") and labels[1].startswith("test") and "0.71" in labels[2]
    notes = [t.get_text() for t in ax.texts]
    assert "best 0.60: 90.0%" in notes and "best 0.70: 80.0%" in notes
    assert threshold_sweep_figure(sweep.iloc[0:0]).axes[0].texts


def test_val_curves_figure():
    history = pd.DataFrame({
        "epoch": [0, 1, 2], "val_miou": [10.0, 30.0, 20.0], "val_pixel_acc": [20.0, 40.0, 35.0],
        "val_stroke_acc": [25.0, 45.0, 40.0], "threshold": [np.nan, 0.5, 0.55],
    })
    fig = val_curves_figure(history)
    assert len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[:3] == ["mIoU", "Acc@P", "Acc@S"] and any("selected: epoch 1" in lab for lab in labels)
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 2
    assert val_curves_figure(pd.DataFrame()).axes[0].texts
    # the untrained model (epoch 0) scoring best is not what training chose: fit's rule
    untrained_best = history.assign(val_miou=[90.0, 10.0, 40.0])
    labels = [line.get_label() for line in val_curves_figure(untrained_best).axes[0].get_lines()]
    assert any("selected: epoch 2 (val_miou 40.00)" in lab for lab in labels)


def test_selected_epoch_follows_the_training_rule():
    h = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_miou": [90.0, 40.0, np.nan, 40.0]})
    assert selected_epoch(h) == 1  # ties: the first; epoch 0 excluded; unscored epochs skipped
    assert selected_epoch(h.head(1)) == 0  # nothing trained (zero-shot): epoch 0
    assert selected_epoch(h.assign(val_miou=np.nan)) is None
    assert selected_epoch(h, "val_stroke_acc") is None


def test_val_curves_mark_the_given_checkpoint_epoch():
    history = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_miou": [10.0, 30.0, 20.0, 25.0]})
    labels = [line.get_label() for line in val_curves_figure(history).axes[0].get_lines()]
    assert any(lab.startswith("selected: epoch 1 ") for lab in labels)
    labels = [line.get_label() for line in val_curves_figure(history, chosen_epoch=3).axes[0].get_lines()]
    assert "selected: epoch 3 (val_miou 25.00)" in labels and not any("epoch 1" in lab for lab in labels)


def test_report_refuses_tables_scored_otherwise():
    from sketchseg.errors import SketchSegConfigError
    from sketchseg.model.config import ModelConfig
    from sketchseg.engine.scoring import check_same_scoring, scoring_settings

    cfg = ModelConfig(pretrained=None, allow_random_init=True)
    evaluation = {"render_size": 512, "overlap_rule": "lowest_class_index", "batch_size": 4}
    recorded = scoring_settings(cfg, evaluation)
    assert recorded["model.inference_prompts"] == "template" and recorded["evaluation.render_size"] == 512
    assert "evaluation.batch_size" not in recorded and "model.margin" not in recorded  # no effect on scores
    check_same_scoring({"scoring": recorded}, cfg, {**evaluation, "batch_size": 64})  # same scores: fine
    other = ModelConfig(pretrained=None, allow_random_init=True, inference_normalization="minmax")
    with pytest.raises(SketchSegConfigError, match=r"model\.inference_normalization: tables 'none', now 'minmax'"):
        check_same_scoring({"scoring": recorded}, other, evaluation)
    with pytest.raises(SketchSegConfigError, match=r"evaluation\.overlap_rule"):
        check_same_scoring({"scoring": recorded}, cfg, {**evaluation, "overlap_rule": "most_strokes"})
    check_same_scoring({"test_miou": 1.0}, other, evaluation)  # an older file: warned, not refused
    older = {k: v for k, v in recorded.items() if k != "evaluation.checkpoint"}  # a key added since
    check_same_scoring({"scoring": older}, cfg, {**evaluation, "checkpoint": "best"})
    # tables scored before the protocol's rendering recorded no rendering: refused
    legacy = {k: v for k, v in recorded.items() if k != "evaluation.rendering"}
    with pytest.raises(SketchSegConfigError, match=r"evaluation\.rendering: tables 'floored lines"):
        check_same_scoring({"scoring": legacy}, cfg, evaluation)
    metrics = {"scoring": recorded, "checkpoint_epoch": 4, "checkpoint_val_miou": 23.018562}
    check_same_scoring(metrics, cfg, evaluation, checkpoint_metadata={"epoch": "4", "val_miou": "23.018562"})
    with pytest.raises(SketchSegConfigError, match="another checkpoint"):
        check_same_scoring(metrics, cfg, evaluation, checkpoint_metadata={"epoch": "8", "val_miou": "27.6"})
    with pytest.raises(SketchSegConfigError, match=r"model\.vv_blocks"):
        check_same_scoring(metrics, ModelConfig(pretrained=None, allow_random_init=True, vv_blocks=[12]), evaluation)


def test_best_threshold_at_an_end_of_the_grid_is_warned(caplog):
    from sketchseg.pipelines.report.nodes import warn_best_at_grid_end

    grid = np.array([0.3, 0.5, 0.7])
    sweep = pd.DataFrame({"split": ["val"] * 3 + ["test"] * 3, "threshold": list(grid) * 2,
                          "pixel_acc": [50.0, 70.0, 60.0, 50.0, 60.0, 70.0]})
    with caplog.at_level("WARNING"):
        assert warn_best_at_grid_end(sweep, grid) == ["test"]  # val peaks inside the grid
    assert "threshold sweep (test): the best threshold 0.70 is at an end" in caplog.text


def test_evaluation_scores_the_chosen_checkpoint():
    from sketchseg.errors import SketchSegConfigError
    from sketchseg.engine.scoring import choose_checkpoint

    best, last = {"metadata": {"kind": "best", "epoch": "3"}}, {"metadata": {"kind": "last", "epoch": "10"}}
    assert choose_checkpoint(best, last, {}) is best  # the default: chosen on validation (§4.3)
    assert choose_checkpoint(best, last, {"checkpoint": "best"}) is best
    assert choose_checkpoint(best, last, {"checkpoint": "last"}) is last
    with pytest.raises(SketchSegConfigError, match="evaluation.checkpoint"):
        choose_checkpoint(best, last, {"checkpoint": "optimal"})


def test_report_checks_the_checkpoint_evaluation_checkpoint_names():
    from sketchseg.errors import SketchSegConfigError
    from sketchseg.pipelines.report.nodes import checked_test_tables

    model = {"pretrained": None, "allow_random_init": True}
    best = {"metadata": {"kind": "best", "epoch": "3", "val_miou": "20.5"}}
    last = {"metadata": {"kind": "last", "epoch": "10", "val_miou": "19.0"}}
    scored_last = {"scoring": {}, "checkpoint_epoch": 10, "checkpoint_val_miou": 19.0}
    chosen, metrics, per_sketch, per_category = checked_test_tables(
        best, last, scored_last, pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]}), model, {"checkpoint": "last"})
    assert chosen is last and metrics is scored_last and per_sketch["a"].tolist() == [1]
    with pytest.raises(SketchSegConfigError, match="than the best checkpoint now on disk"):
        checked_test_tables(best, last, scored_last, pd.DataFrame(), pd.DataFrame(), model, {"checkpoint": "best"})
