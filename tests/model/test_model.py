"""SketchSegModel: trainable sets, two-level losses, gradients, segmentation, text cache."""

from __future__ import annotations

import pytest
import torch

from sketchseg.model.errors import ModelConfigError
from sketchseg.model.model import SketchSegModel, build_model
from sketchseg.model.text_tower import TextTower
from tests.tiny_model import build_tiny, tiny_cfg


def make(backbone, **kw) -> SketchSegModel:
    return build_tiny(backbone, tiny_cfg(**kw))


def sketches(n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    img = torch.ones(n, 3, size, size)
    for i in range(n):
        for _ in range(6):
            r, c = torch.randint(4, size - 12, (2,), generator=g).tolist()
            if torch.rand((), generator=g) > 0.5:
                img[i, :, r, c : c + 10] = 0.0
            else:
                img[i, :, r : r + 10, c] = 0.0
    return img


CAPTIONS = ["a tree next to a car", "a dog on the grass"]
CATEGORIES = [["tree", "car"], ["dog", "grass"]]


def test_text_tower_reproduces_open_clip(backbone):
    clip, tok, _ = backbone
    tokens = tok(["a sketch of a tree.", "a dog"])
    with torch.no_grad():
        torch.testing.assert_close(TextTower(clip)(tokens), clip.encode_text(tokens))


def test_finetune_strategies_give_the_right_trainable_sets(backbone):
    sets = {}
    for strategy, extra in (("ln", {"num_visual_prompts": 0}), ("prompts", {}), ("ln_prompts", {}), ("full", {})):
        model = make(backbone, finetune=strategy, **extra)
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        sets[strategy] = (names, model.parameter_counts())
        assert not any(n.startswith("text.") for n in names), strategy  # text tower + logit_scale frozen
        assert "encoder.visual.conv1.weight" not in names or strategy == "full"
        assert any(n.startswith("encoder.cross_attention.") for n in names)
        assert "threshold.logit" in names
    ln, _ = sets["ln"]
    assert "encoder.visual.ln_pre.weight" in ln and "encoder.visual.transformer.resblocks.0.ln_2.bias" in ln
    assert "encoder.visual.ln_post.weight" in ln and "encoder.prompts.tokens" not in ln
    assert "encoder.visual.transformer.resblocks.0.attn.in_proj_weight" not in ln
    prompts, _ = sets["prompts"]
    assert "encoder.prompts.tokens" in prompts and "encoder.visual.ln_pre.weight" not in prompts
    lnp, lnp_counts = sets["ln_prompts"]
    assert "encoder.prompts.tokens" in lnp and "encoder.visual.ln_1.weight" not in lnp
    assert "encoder.visual.transformer.resblocks.5.ln_1.weight" in lnp
    full, full_counts = sets["full"]
    assert "encoder.visual.conv1.weight" in full and "encoder.visual.proj" in full
    assert lnp_counts["trainable"] < full_counts["trainable"] < full_counts["total"]
    assert lnp_counts["total"] == full_counts["total"]


def test_training_losses_keys_and_threshold_gradient(backbone):
    model = make(backbone)
    model.train()
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert set(out) == {"loss", "loss_global", "loss_category", "threshold", "n_category_pairs"}
    assert out["n_category_pairs"] == 4
    assert not out["threshold"].requires_grad and out["threshold"].item() == pytest.approx(0.5)
    torch.testing.assert_close(out["loss"], out["loss_global"] + out["loss_category"])
    out["loss"].backward()
    grad = model.threshold.logit.grad
    assert grad is not None and grad.abs().item() > 0
    assert model.encoder.prompts.tokens.grad.abs().sum() > 0
    ca = model.encoder.cross_attention.projections["3"].text_proj.weight.grad
    assert ca is not None and ca.abs().sum() > 0
    assert all(p.grad is None for p in model.text.parameters())


def test_holistic_token_vv_trains_the_vv_path_without_the_category_level(backbone):
    """CLIP Surgery** (Tab. 2): holistic level only. With the VST (original path) as Eq. 1's
    embedding, v-v in training changes nothing; with holistic_token='vv' the loss differs and its
    gradient reaches the v-v path (the value projection of a v-v block)."""
    def holistic(**kw):  # -> (loss, gradient of the last block's in_proj weight)
        model = make(backbone, use_category_level=False, num_visual_prompts=0, finetune="full", **kw)
        model.train()
        model.zero_grad(set_to_none=True)  # the backbone is shared between the models of this module
        out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
        assert out["n_category_pairs"] == 0
        out["loss"].backward()
        grad = model.encoder.visual.transformer.resblocks[-1].attn.in_proj_weight.grad.clone()
        model.zero_grad(set_to_none=True)
        return out["loss"].detach(), grad

    loss_vst_vv, grad_vst = holistic(vv_train=True)
    loss_vst_qk, _ = holistic(vv_train=False)
    torch.testing.assert_close(loss_vst_vv, loss_vst_qk)  # vv_train alone has no effect
    loss_vv, grad_vv = holistic(vv_train=True, holistic_token="vv")
    assert abs(loss_vv.item() - loss_vst_vv.item()) > 1e-6
    # the last block's v-v update reads only the value projection (rows 2w..3w of in_proj) of the
    # original path's input; the VST's last block uses its queries too
    width = backbone[0].visual.class_embedding.shape[-1]
    assert grad_vv[2 * width:].abs().sum() > 0
    assert grad_vv[:width].abs().sum() == 0
    assert grad_vst[:width].abs().sum() > 0


def _patch_grad_spy(monkeypatch, detach_mask: bool = False) -> dict:
    """Record the gradient reaching the first-level patch tokens the similarity maps are computed
    from (``detach_mask``: cut the route map -> mask -> category image, as a control)."""
    import sketchseg.model.model as mm

    seen: dict = {}
    real_similarity, real_mask, real_norm = mm.patch_similarity, mm.threshold_mask, mm.minmax_normalise

    def similarity(text, patches, grid):
        if patches.requires_grad:
            patches.register_hook(lambda g: seen.__setitem__("grad", g.detach().clone()))
        return real_similarity(text, patches, grid)

    monkeypatch.setattr(mm, "patch_similarity", similarity)
    if detach_mask:
        monkeypatch.setattr(mm, "threshold_mask", lambda *a, **k: real_mask(*a, **k).detach())
        monkeypatch.setattr(mm, "minmax_normalise", lambda t: real_norm(t).detach())
    return seen


@pytest.mark.parametrize("thresholding", ["learnable", "none"])
def test_category_loss_reaches_first_level_features(backbone, monkeypatch, thresholding):
    # the first-level patch tokens' only route to the category loss is similarity map -> mask (or,
    # without thresholding, the map itself as pixel weights) -> category image -> VCT
    model = make(backbone, use_global_loss=False, thresholding=thresholding)
    seen = _patch_grad_spy(monkeypatch)
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert out["loss_global"].item() == 0.0
    out["loss"].backward()
    assert seen["grad"].abs().sum() > 0
    monkeypatch.undo()
    model.zero_grad(set_to_none=True)
    cut = _patch_grad_spy(monkeypatch, detach_mask=True)
    model.training_losses(sketches(), CAPTIONS, CATEGORIES)["loss"].backward()
    assert "grad" not in cut or cut["grad"].abs().sum() == 0  # the control: no other route


def test_without_thresholding_pixels_are_weighted(backbone):
    model = make(backbone, thresholding="none")
    assert model.threshold is None
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert torch.isnan(out["threshold"])  # (the similarity maps' gradient route: the test above)


def test_without_category_level_the_branch_is_never_built_or_run(backbone, monkeypatch):
    model = make(backbone, use_category_level=False)
    assert model.encoder.cross_attention is None and model.threshold is None
    assert not any("cross_attention" in n for n, _ in model.named_parameters())
    calls = []
    original = model.encoder.forward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(model.encoder, "forward", spy)
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert len(calls) == 1 and calls[0].get("category_text") is None
    assert out["loss_category"].item() == 0.0 and out["n_category_pairs"] == 0
    assert out["loss"].item() == pytest.approx(out["loss_global"].item())


def test_category_images_are_encoded_in_one_batched_pass_with_their_text(backbone, monkeypatch):
    model = make(backbone)
    calls = []
    original = model.encoder.forward

    def spy(x, **kwargs):
        calls.append((x.shape, kwargs))
        return original(x, **kwargs)

    monkeypatch.setattr(model.encoder, "forward", spy)
    model.training_losses(sketches(), CAPTIONS, [["tree", "car", "tree"], ["dog"]])
    assert len(calls) == 2
    shape, kwargs = calls[1]
    assert shape[0] == 3  # duplicate "tree" kept once: 2 + 1 pairs
    assert kwargs["category_text"].shape == (3, 64)
    assert list(kwargs["return_layers"]) == [3, 5, 6]
    assert calls[0][1]["vv"] is True


def test_cross_attention_off_builds_no_modules(backbone):
    model = make(backbone, cross_attention=False)
    assert model.encoder.cross_attention is None
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert out["loss_category"].item() >= 0.0


def test_segment_shapes_and_normalisation(backbone):
    model = make(backbone).eval()
    images = sketches(3, size=96)  # resized to cfg.image_size inside
    maps = model.segment(images, [["tree", "car"], ["dog"], []], size=128)
    assert [tuple(m.shape) for m in maps] == [(2, 128, 128), (1, 128, 128), (0, 128, 128)]
    assert maps[0].min() >= -1.0 and maps[0].max() <= 1.0
    norm = model.segment_normalised(images, [["tree", "car"], ["dog"], []], size=(32, 48))
    assert tuple(norm[0].shape) == (2, 32, 48)
    assert norm[0].min() >= 0.0 and norm[0].max() <= 1.0
    assert norm[0].flatten(1).amax(1).min() > 0.9


def test_text_cache_eviction_keeps_the_strings_of_the_request(backbone, monkeypatch):
    import sketchseg.model.text_cache as tc

    model = make(backbone)
    monkeypatch.setattr(tc, "_TEXT_CACHE_MAX", 3)
    first = model.encode_text(["a", "b"])
    again = model.encode_text(["a", "c", "d"])  # would outgrow the cache: it is emptied, "a" kept
    assert set(model.text_cache.embeddings) == {"a", "c", "d"}
    torch.testing.assert_close(again[0], first[0], rtol=0, atol=0)
    torch.testing.assert_close(again, model.encode_text(["a", "c", "d"], cache=False))


def test_encode_text_is_normalised_cached_and_frozen(backbone):
    model = make(backbone)
    emb = model.encode_text(["A sketch of tree.", "A sketch of car.", "A sketch of tree."])
    assert emb.shape == (3, 64) and not emb.requires_grad
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    assert set(model.text_cache.embeddings) == {"A sketch of tree.", "A sketch of car."}


def test_training_under_bf16_autocast(backbone):
    model = make(backbone)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.threshold.logit.grad is not None


def test_input_checks(backbone):
    model = make(backbone)
    with pytest.raises(ValueError, match="captions"):
        model.training_losses(sketches(), ["only one"], CATEGORIES)
    with pytest.raises(ValueError, match="list of category names"):
        model.training_losses(sketches(), CAPTIONS, ["tree", "dog"])
    with pytest.raises(ModelConfigError, match="1-based"):
        build_model(tiny_cfg(vv_blocks=[7, 8]))


def test_similarity_maps_helper(backbone):
    model = make(backbone).eval()
    out = model.encode_sketch(sketches())
    text = model.encode_text(["A sketch of tree.", "A sketch of car."]).unsqueeze(0).expand(2, -1, -1)
    maps = model.similarity_maps(out.patches, text, 32)
    assert maps.shape == (2, 2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ValueError, match="square"):
        model.similarity_maps(out.patches[:, :10], text, 32)


def test_segment_builds_prompts_from_the_configured_template(backbone):
    model = make(backbone, prompt_template="A drawing of {}.").eval()
    x = sketches()
    cats = [["tree", "car"], ["dog"]]
    got = model.segment(x, cats, size=32)
    explicit = model.segment(x, cats, size=32, prompts=[["A drawing of tree.", "A drawing of car."], ["A drawing of dog."]])
    default = model.segment(x, cats, size=32, prompts=[["A sketch of tree.", "A sketch of car."], ["A sketch of dog."]])
    for a, b, c in zip(got, explicit, default):
        torch.testing.assert_close(a, b)
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("subtract", [True, False])
def test_segment_with_the_prompt_ensemble(backbone, subtract):
    from sketchseg.model.prompt_ensemble import ensemble_embeddings, ensemble_templates
    from sketchseg.model.similarity import patch_similarity, upsample

    model = make(backbone, inference_prompts="ensemble", ensemble_subtract_empty=subtract).eval()
    x = sketches()
    cats = [["tree", "car"], ["dog"]]
    got = model.segment(x, cats, size=32)
    out = model.encode_sketch(x)
    text = ensemble_embeddings(model.encode_text, ["tree", "car", "dog"], ensemble_templates(),
                               subtract_empty=subtract)
    for b, rows in enumerate(([0, 1], [2])):
        sim = patch_similarity(text[rows].unsqueeze(0), out.patches[b : b + 1], out.grid)[0]
        torch.testing.assert_close(got[b], upsample(sim, 32, model.cfg.upsample_mode))
    single = make(backbone).eval().segment(x, cats, size=32)
    assert not torch.allclose(got[0], single[0])
    # the ensemble is cached by name and gives the same maps on a second call
    assert set(model.text_cache.ensembles) == {("tree", subtract), ("car", subtract), ("dog", subtract)}
    for a, b in zip(got, model.segment(x, cats, size=32)):
        torch.testing.assert_close(a, b)
    # prompts given by the caller win over the ensemble
    prompts = [["A sketch of tree.", "A sketch of car."], ["A sketch of dog."]]
    for a, b in zip(model.segment(x, cats, size=32, prompts=prompts), single):
        torch.testing.assert_close(a, b)
    # the other subtraction setting is not served from the cache
    model.cfg.ensemble_subtract_empty = not subtract
    other = ensemble_embeddings(model.encode_text, ["tree"], ensemble_templates(), subtract_empty=not subtract)
    torch.testing.assert_close(model.ensemble_text(["tree"]), other)
    # the reference implementation encodes anew (no cache)
    reference = make(backbone, inference_prompts="ensemble", ensemble_subtract_empty=subtract,
                     implementation="reference").eval()
    for a, b in zip(reference.segment(x, cats, size=32), got):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert not reference.text_cache.ensembles


def test_ln_prompts_ca_also_trains_the_cross_attention_blocks_attention(backbone, tmp_path):
    from sketchseg.model.checkpoint import trainable_state_dict

    base = make(backbone, finetune="ln_prompts")  # (models built on one backbone share its tensors)
    base_names = {n for n, p in base.named_parameters() if p.requires_grad}
    wide = make(backbone, finetune="ln_prompts_ca")
    layers = wide.cfg.cross_attention_layers
    names = {n for n, p in wide.named_parameters() if p.requires_grad}
    attn = {f"encoder.visual.transformer.resblocks.{i - 1}.attn.{k}" for i in layers
            for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}
    assert names - base_names == attn  # exactly those, on top of LN + prompts + added modules
    assert "encoder.visual.transformer.resblocks.0.attn.in_proj_weight" not in names
    assert attn <= set(trainable_state_dict(wide))  # and they are saved in checkpoints
    out = wide.training_losses(sketches(), CAPTIONS, CATEGORIES)
    out["loss"].backward()
    grad = dict(wide.named_parameters())[f"encoder.visual.transformer.resblocks.{layers[0] - 1}.attn.in_proj_weight"].grad
    assert grad is not None and grad.abs().sum() > 0
    with pytest.raises(ModelConfigError, match="ln_prompts_ca"):
        tiny_cfg(finetune="ln_prompts_ca", cross_attention=False)


def test_text_cache_survives_a_move_to_where_the_model_is_and_not_another_dtype(backbone):
    model = build_tiny(backbone, tiny_cfg())
    model.encode_text(["A sketch of tree."])
    model.to("cpu").eval()  # no move (a Segmenter of a placed model): the cache stays
    assert set(model.text_cache.embeddings) == {"A sketch of tree."}
    model.double()
    assert model.text_cache.embeddings == {}  # moved: the cache is dropped
    model.float()
