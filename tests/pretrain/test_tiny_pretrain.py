"""Tiny-CLIP contrastive pre-training: loss on hand cases, data determinism, a short run, files, node."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchseg.data.sample import CATEGORIES, PLURALS, make_scene
from sketchseg.errors import SketchSegConfigError
from sketchseg.model.clip_loader import load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.pretrain.config import SEED_TAG, PretrainConfig
from sketchseg.pretrain.loop import PretrainResult, pretrain_clip
from sketchseg.pretrain.losses import (contrastive_loss, ink_patch_loss, mil_loss, patch_ink, patch_label_loss,
                                      soft_max_pool)
from sketchseg.pretrain.pairs import _patch_labels, build_pool, make_pair, single_object_text
from sketchseg.pretrain.weights import WEIGHTS_FORMAT, read_cached_weights, save_weights, weights_metadata

REPO = Path(__file__).resolve().parents[2]

# a run small enough for a unit test (a few seconds on 2 cores)
SMALL = dict(steps=20, batch_size=16, pool_size=48, warmup_steps=2, learning_rate=2e-3, num_threads=1,
             eval_per_category=2, eval_scenes=8, seed=3)


def _e(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ loss
def test_contrastive_loss_hand_case_diagonal():
    eye = _e([1.0, 0.0], [0.0, 1.0])
    # logits [[1, 0], [0, 1]]: every row and column gives -log(e / (e + 1)) = log(1 + 1/e)
    expected = math.log(1.0 + math.exp(-1.0))
    assert float(contrastive_loss(eye, eye, 1.0)) == pytest.approx(expected, abs=1e-6)
    # logit scale 2: log(1 + e^-2)
    assert float(contrastive_loss(eye, eye, 2.0)) == pytest.approx(math.log(1.0 + math.exp(-2.0)), abs=1e-6)


def test_contrastive_loss_is_symmetric_in_its_two_directions():
    img = _e([1.0, 0.0], [0.6, 0.8])
    txt = _e([0.0, 1.0], [1.0, 0.0])
    # logits = [[0, 1], [0.8, 0.6]]; rows: -log softmax diag = [log(1+e), -0.6 + log(e^0.8 + e^0.6)]
    rows = [math.log(1 + math.e), -0.6 + math.log(math.exp(0.8) + math.exp(0.6))]
    # columns: [[0, 0.8], [1, 0.6]] -> [log(1 + e^0.8), -0.6 + log(e + e^0.6)]
    cols = [math.log(1 + math.exp(0.8)), -0.6 + math.log(math.e + math.exp(0.6))]
    expected = 0.5 * (sum(rows) / 2 + sum(cols) / 2)
    assert float(contrastive_loss(img, txt, 1.0)) == pytest.approx(expected, abs=1e-6)


def test_contrastive_loss_groups_share_positives():
    eye = _e([1.0, 0.0], [0.0, 1.0])
    # one group: each row's target is (0.5, 0.5): -(0.5 * log(e/(e+1)) + 0.5 * log(1/(e+1))) = log(1+e) - 0.5
    assert float(contrastive_loss(eye, eye, 1.0, groups=[7, 7])) == pytest.approx(
        math.log(1.0 + math.e) - 0.5, abs=1e-6)
    # distinct groups = the plain diagonal loss
    assert float(contrastive_loss(eye, eye, 1.0, groups=[0, 1])) == pytest.approx(
        float(contrastive_loss(eye, eye, 1.0)), abs=1e-7)


def test_ink_patch_loss_hand_case():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    patches = torch.tensor([[e1, e2], [e2, e2]])  # (B=2, K=2, D=2)
    texts = _e(e1, e2)
    # only patch 0 of image 0 (logits [1, 0], target 0) and patch 1 of image 1 (logits [0, 1], target 1)
    ink = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(ink_patch_loss(patches, texts, 1.0, ink)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # both patches of image 0: the second one (e2) points at the wrong text: log(1 + e)
    ink = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    expected = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.e))
    assert float(ink_patch_loss(patches, texts, 1.0, ink)) == pytest.approx(expected, abs=1e-6)
    # one group: targets (0.5, 0.5) for every patch: log(1 + e) - 0.5
    assert float(ink_patch_loss(patches, texts, 1.0, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), groups=[3, 3])) == \
        pytest.approx(math.log(1 + math.e) - 0.5, abs=1e-6)
    assert float(ink_patch_loss(patches, texts, 1.0, torch.zeros(2, 2))) == 0.0


def test_soft_max_pool_between_mean_and_max():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one image, patches e1, e2
    text = _e([1.0, 0.0])                                 # cosines [1, 0]
    assert float(soft_max_pool(patches, text, 1.0)) == pytest.approx(math.log((math.e + 1) / 2), abs=1e-6)
    assert float(soft_max_pool(patches, text, 0.01)) == pytest.approx(1.0 - 0.01 * math.log(2), abs=1e-5)
    assert float(soft_max_pool(patches, text, 100.0)) == pytest.approx(0.5, abs=1e-2)


def test_mil_loss_hand_case():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one sketch, patches e1, e2
    prompts = _e([1.0, 0.0], [-1.0, 0.0])
    # scores (temperature 1): log((e + 1)/2) and log((1/e + 1)/2): they differ by exactly 1
    present = torch.tensor([[True, False]])
    assert float(mil_loss(patches, prompts, 1.0, present, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    both = torch.tensor([[True, True]])
    expected = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.e))
    assert float(mil_loss(patches, prompts, 1.0, both, 1.0)) == pytest.approx(expected, abs=1e-6)
    # an untagged sketch is skipped; none tagged -> 0
    two = torch.cat([patches, patches])
    assert float(mil_loss(two, prompts, 1.0, torch.tensor([[True, False], [False, False]]), 1.0)) == \
        pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert float(mil_loss(patches, prompts, 1.0, torch.tensor([[False, False]]), 1.0)) == 0.0
    with pytest.raises(ValueError, match="present"):
        mil_loss(patches, prompts, 1.0, torch.tensor([[True]]), 1.0)


def test_patch_label_loss_hand_case():
    # one sketch, three patches, two category prompts; patch 1 has no label, patch 2 weight 0
    patches = _e([1.0, 0.0], [0.0, 1.0], [0.0, 1.0]).unsqueeze(0)
    prompts = _e([1.0, 0.0], [0.0, 1.0])
    labels = torch.tensor([[1, -1, 0]])
    weight = torch.tensor([[1.0, 1.0, 0.0]])
    # patch 0: logits (2, 0), target 1 -> log(1 + e^2) - 0
    expected = math.log(math.exp(2.0) + 1.0)
    assert float(patch_label_loss(patches, prompts, 2.0, labels, weight)) == pytest.approx(expected, rel=1e-6)
    assert float(patch_label_loss(patches, prompts, 2.0, torch.tensor([[-1, -1, -1]]), weight)) == 0.0
    with pytest.raises(ValueError, match="labels and weight"):
        patch_label_loss(patches, prompts, 2.0, labels[:, :2], weight)


def test_patch_labels_take_the_category_with_most_ink_of_each_patch():
    stroke_map = np.full((4, 4), -1)
    stroke_map[0, 0] = 0                  # patch (0, 0): stroke 0 (category 5)
    stroke_map[0:2, 2:4] = [[1, 1], [2, -1]]  # patch (0, 1): two pixels of category 7, one of category 3
    stroke_map[3, 3] = 2                  # patch (1, 1): category 3
    labels = _patch_labels(stroke_map, np.array([5, 7, 3]), 2)
    assert labels.tolist() == [5, 7, -1, 3] and labels.dtype == np.int8


def test_pairs_carry_patch_labels_of_what_they_draw():
    single = make_pair(PretrainConfig(), 0, 2, image_size=64, kind="single", category="car", grid=8)
    labels = single.patch_labels
    assert labels.shape == (64,) and set(labels.tolist()) == {-1, CATEGORIES.index("car")}
    inked = (single.image.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64) < 128).any(axis=1)
    assert (labels[inked] >= 0).all()  # every visibly inked patch is labelled
    scene = make_pair(PretrainConfig(), 0, 1, image_size=64, kind="scene", grid=8)
    assert {CATEGORIES[i] for i in scene.patch_labels.tolist() if i >= 0} == set(scene.objects)
    assert make_pair(PretrainConfig(), 0, 1, image_size=64, kind="scene").patch_labels is None  # only on request
    pool = build_pool(PretrainConfig(), 0, 4, image_size=64, progress=False, grid=8)
    assert pool.patch_labels.shape == (4, 64)
    assert build_pool(PretrainConfig(), 0, 4, image_size=64, progress=False).patch_labels is None


def test_patch_ink_per_patch_and_threshold():
    img = torch.full((1, 16, 16), 255, dtype=torch.uint8)
    img[0, :8, :8] = 0            # patch 0 all ink
    img[0, 0, 8] = 0              # patch 1: 1 of 64 pixels -> 1/64 < 0.02
    img[0, 8:10, 8:16] = 0        # patch 3: 16 of 64 pixels -> 0.25
    ink = patch_ink(img, 8, 0.02)
    assert ink.shape == (1, 4)
    assert ink[0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.25])


def test_contrastive_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="both be"):
        contrastive_loss(torch.zeros(2, 3), torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="one entry per pair"):
        contrastive_loss(torch.eye(2), torch.eye(2), 1.0, groups=[0, 1, 2])


# ------------------------------------------------------------------------------------------ data
def test_pairs_are_deterministic_and_vary():
    cfg = PretrainConfig(seed=0)
    a = make_pair(cfg, 0, 5, image_size=64)
    b = make_pair(cfg, 0, 5, image_size=64)
    c = make_pair(cfg, 0, 6, image_size=64)
    d = make_pair(PretrainConfig(seed=1), 0, 5, image_size=64)
    assert a.image.shape == (64, 64) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image) and (a.kind, a.category, a.count, a.caption) == (
        b.kind, b.category, b.count, b.caption)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.image, d.image)
    assert (a.image < 128).any() and (a.image > 250).mean() > 0.5  # dark ink on white paper


def test_pair_kinds_and_forced_category():
    cfg = PretrainConfig(seed=0, single_fraction=0.5)
    s = make_pair(cfg, 1, 0, image_size=64, kind="single", category="giraffe")
    assert s.kind == "single" and s.category == "giraffe" and s.caption is None and 1 <= s.count <= 2
    sc = make_pair(cfg, 1, 0, image_size=64, kind="scene")
    assert sc.kind == "scene" and sc.category is None and isinstance(sc.caption, str) and sc.caption
    assert s.objects == ("giraffe",) and len(sc.objects) >= 2 and set(sc.objects) <= set(CATEGORIES)
    kinds = {make_pair(cfg, 0, i, image_size=64).kind for i in range(30)}
    assert kinds == {"single", "scene"}
    assert {make_pair(PretrainConfig(single_fraction=1.0), 0, i, image_size=64).kind for i in range(10)} == {"single"}
    with pytest.raises(ValueError, match="kind"):
        make_pair(cfg, 0, 0, image_size=64, kind="photo")


def test_zoom_enlarges_single_objects_inside_the_canvas():
    def ink_box(img: np.ndarray) -> float:
        ys, xs = np.nonzero(img < 200)
        return float(max(xs.max() - xs.min(), ys.max() - ys.min()))

    natural = [make_pair(PretrainConfig(), 0, i, image_size=64, kind="single", category="house") for i in range(8)]
    zoomed = [make_pair(PretrainConfig(max_zoom=3.0), 0, i, image_size=64, kind="single", category="house")
              for i in range(8)]
    assert np.mean([ink_box(p.image) for p in zoomed]) > 1.3 * np.mean([ink_box(p.image) for p in natural])
    for p in zoomed:  # never cut off: no ink on the border rows / columns
        assert (p.image[[0, -1], :] > 200).all() and (p.image[:, [0, -1]] > 200).all()


def _ink_box(img: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(img < 200)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_min_scale_shrinks_every_pair_and_moves_it_inside_the_canvas():
    plain = [make_pair(PretrainConfig(), 0, i, image_size=256) for i in range(12)]
    small = [make_pair(PretrainConfig(min_scale=0.3), 0, i, image_size=256) for i in range(12)]
    side = [max(b[2] - b[0], b[3] - b[1]) for b in map(_ink_box, (p.image for p in plain))]
    side_small = [max(b[2] - b[0], b[3] - b[1]) for b in map(_ink_box, (p.image for p in small))]
    assert all(s2 <= s1 + 2 for s1, s2 in zip(side, side_small))  # never larger (a pen's width of slack)
    assert np.mean(side_small) < 0.8 * np.mean(side)
    # the same sketches (kind, text), only resized and moved: shrinking draws after the drawing
    assert [(p.kind, p.category, p.caption) for p in plain] == [(p.kind, p.category, p.caption) for p in small]
    centres = {tuple(np.round(np.add(b[:2], b[2:]) / 2, -1)) for b in map(_ink_box, (p.image for p in small))}
    assert len(centres) >= 6  # placed all over, not always in the middle
    for p in small:
        assert (p.image[[0, -1], :] > 200).all() and (p.image[:, [0, -1]] > 200).all()


def test_max_thickness_draws_pens_of_several_widths_and_defaults_change_nothing():
    base = PretrainConfig()
    assert np.array_equal(make_pair(base, 0, 3, image_size=64).image,
                          make_pair(PretrainConfig(max_thickness=base.thickness, min_scale=1.0), 0, 3, image_size=64).image)
    ink = [(make_pair(PretrainConfig(max_thickness=9), 0, i, image_size=256, kind="single", category="house").image < 128).sum()
           / (make_pair(base, 0, i, image_size=256, kind="single", category="house").image < 128).sum() for i in range(10)]
    assert min(ink) >= 0.95 and max(ink) > 1.8 and len({round(float(r), 1) for r in ink}) >= 4


def test_pretraining_seed_space_is_apart_from_the_sample():
    # the sample draws sketch k of participant p from default_rng([seed, p, k]); pre-training pairs
    # from default_rng([SEED_TAG, seed, stream, i]): their scenes differ
    sample_captions = {make_scene(np.random.default_rng([0, p, k])).caption for p in range(1, 4) for k in range(8)}
    ours = {make_scene(np.random.default_rng([SEED_TAG, 0, s, i])).caption for s in range(2) for i in range(12)}
    assert len(sample_captions & ours) <= 1  # (a short caption could repeat by chance, not the streams)
    assert SEED_TAG > 10_000  # never a sample seed / participant number in practice


def test_single_object_texts_name_the_category():
    rng = np.random.default_rng(0)
    for cat in CATEGORIES:
        for count in (1, 2, 3):
            text = single_object_text(rng, cat, count).lower()
            word = cat if count == 1 else PLURALS[cat]
            assert word in text, (cat, count, text)
    texts = {single_object_text(np.random.default_rng(i), "tree", 1) for i in range(60)}
    assert "A sketch of tree." in texts and len(texts) >= 4  # the sketch model's own prompt is among them


# ------------------------------------------------------------------------------------------ config
def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(SketchSegConfigError, match="unknown pretrain parameter"):
        PretrainConfig.from_dict({"stepz": 3})
    with pytest.raises(SketchSegConfigError, match="pretrain.steps"):
        PretrainConfig.from_dict({"steps": -1})
    with pytest.raises(SketchSegConfigError, match="single_fraction"):
        PretrainConfig.from_dict({"single_fraction": 1.5})
    with pytest.raises(SketchSegConfigError, match="pretrain.patch_label_loss_weight"):
        PretrainConfig.from_dict({"patch_label_loss_weight": -1})
    for bad in (0.0, 1.5, True):
        with pytest.raises(SketchSegConfigError, match="pretrain.min_scale"):
            PretrainConfig.from_dict({"min_scale": bad})
    for bad in (2, 3.5, True):
        with pytest.raises(SketchSegConfigError, match="pretrain.max_thickness"):
            PretrainConfig.from_dict({"thickness": 3, "max_thickness": bad})
    a, b = PretrainConfig(), PretrainConfig(device="cuda", num_threads=4)
    assert a.fingerprint() == b.fingerprint()  # where it runs does not change the weights' identity
    assert a.fingerprint() != PretrainConfig(steps=a.steps + 1).fingerprint()


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def short_run() -> tuple[PretrainConfig, PretrainResult]:
    cfg = PretrainConfig.from_dict(SMALL)
    return cfg, pretrain_clip(cfg, progress=False, log_every=1)


def test_short_pretraining_lowers_the_loss(short_run):
    cfg, result = short_run
    losses = [h["loss"] for h in result.history]
    assert len(losses) == cfg.steps
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    assert all(np.isfinite(losses))
    s = result.summary
    assert s["pairs_seen"] == cfg.steps * cfg.batch_size and s["pool_size"] == cfg.pool_size
    assert {"before_zero_shot_acc", "after_zero_shot_acc", "before_scene_r1", "after_scene_r1"} <= set(s)
    # the logit scale is learnable and clamped
    assert 1.0 < s["final_logit_scale"] <= cfg.logit_scale_max
    assert s["final_logit_scale"] != pytest.approx(cfg.logit_scale_init)


def test_dense_losses_train_and_are_logged():
    """With the ink, MIL and patch-label terms on, each is logged, and the patch-label loss of a
    short run falls (the generator's stroke labels teach the patch tokens)."""
    cfg = PretrainConfig.from_dict({**SMALL, "steps": 25, "ink_loss_weight": 1.0, "mil_loss_weight": 1.0,
                                    "patch_label_loss_weight": 1.0})
    result = pretrain_clip(cfg, progress=False, log_every=1)
    for key in ("loss_ink", "loss_mil", "loss_label"):
        assert all(math.isfinite(h[key]) for h in result.history), key
    first = np.mean([h["loss_label"] for h in result.history[:3]])
    last = np.mean([h["loss_label"] for h in result.history[-3:]])
    assert last < first
    plain = pretrain_clip(PretrainConfig.from_dict({**SMALL, "steps": 2}), progress=False, log_every=1)
    assert all(math.isnan(h["loss_label"]) for h in plain.history)


def test_pretraining_is_deterministic():
    cfg = PretrainConfig.from_dict(dict(steps=3, batch_size=8, pool_size=16, warmup_steps=1, num_threads=1,
                                           eval_per_category=0, eval_scenes=0, seed=11))
    a = pretrain_clip(cfg, progress=False)
    b = pretrain_clip(cfg, progress=False)
    assert a.state.keys() == b.state.keys()
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    c = pretrain_clip(PretrainConfig.from_dict({**cfg.to_dict(), "seed": 12}), progress=False)
    assert not torch.equal(a.state["visual.conv1.weight"], c.state["visual.conv1.weight"])


def test_saved_weights_load_through_clip_loader(short_run, tmp_path):
    cfg, result = short_run
    path = save_weights(tmp_path / "tiny-clip.safetensors", result.state, weights_metadata(cfg, result.summary))
    clip, _, _ = load_clip(ModelConfig(clip_model="sketchseg-tiny", pretrained=str(path), image_size=64,
                                       vv_blocks=[6], cross_attention_layers=[6], category_loss_layers=[6]))
    loaded = clip.state_dict()
    assert loaded.keys() == result.state.keys()
    assert all(torch.equal(loaded[k], result.state[k]) for k in loaded)
    assert float(clip.logit_scale.detach().exp()) == pytest.approx(result.summary["final_logit_scale"], rel=1e-5)


def test_cached_weights_need_the_same_config(short_run, tmp_path):
    cfg, result = short_run
    path = save_weights(tmp_path / "w.safetensors", result.state, weights_metadata(cfg, result.summary))
    hit = read_cached_weights(path, cfg.fingerprint())
    assert hit is not None and hit["metadata"]["format"] == WEIGHTS_FORMAT
    assert torch.equal(hit["state"]["visual.proj"], result.state["visual.proj"])
    assert read_cached_weights(path, PretrainConfig(steps=1).fingerprint()) is None
    assert read_cached_weights(tmp_path / "missing.safetensors", cfg.fingerprint()) is None


# ------------------------------------------------------------------------------------------ node + conf
def test_node_reuses_matching_weights_and_checks_the_model(short_run, tmp_path, monkeypatch):
    from sketchseg.pipelines.make_sample import nodes

    cfg, result = short_run
    path = save_weights(tmp_path / "w.safetensors", result.state, weights_metadata(cfg, result.summary))
    params = {**cfg.to_dict(), "weights_path": str(path), "reuse_existing": True}
    model = {"clip_model": "sketchseg-tiny", "pretrained": str(path)}

    def boom(*a, **k):
        raise AssertionError("pre-trained again although the weights were up to date")

    monkeypatch.setattr(nodes, "pretrain_clip", boom)
    payload, summary = nodes.pretrain_tiny_clip({"sketches": 30}, params, model)
    assert summary["reused"] is True
    assert torch.equal(payload["state"]["visual.conv1.weight"], result.state["visual.conv1.weight"])
    with pytest.raises(SketchSegConfigError, match="model.clip_model"):
        nodes.pretrain_tiny_clip({}, params, {"clip_model": "ViT-B-16", "pretrained": str(path)})
    # another config: trains again (here: the patched trainer)
    with pytest.raises(AssertionError, match="pre-trained again"):
        nodes.pretrain_tiny_clip({}, {**params, "steps": cfg.steps + 1}, model)


def test_sample_conf_catalogues_the_pretrained_weights_where_the_model_can_read_them():
    from sketchseg.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(conf_source=str(REPO / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "sample"})
    params, catalog = loader["parameters"], loader["catalog"]
    weights = params["pretrain"]["weights_path"]
    assert catalog["tiny_clip_weights"]["filepath"] == weights
    assert params["model"]["clip_model"] == params["pretrain"]["clip_model"]
    PretrainConfig.from_dict({k: v for k, v in params["pretrain"].items() if k not in ("weights_path", "reuse_existing")})


def test_the_model_to_pretrain_is_built_without_open_clips_random_init_alarm(caplog):
    """Random on purpose (it is pre-trained next): open_clip's "Model initialized randomly" warning
    would alarm the demo's user for nothing; the weights are still the seeded random ones."""
    from sketchseg.pretrain.clip import create_tiny_clip

    with caplog.at_level("INFO"):
        model = create_tiny_clip("sketchseg-tiny", 0)[0]
    assert not [r for r in caplog.records if "No pretrained weights loaded" in r.getMessage()]
    assert torch.equal(model.visual.conv1.weight, create_tiny_clip("sketchseg-tiny", 0)[0].visual.conv1.weight)
