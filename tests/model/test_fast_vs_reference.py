"""The fast implementation equals the straightforward reference one (losses, gradients, maps)."""

from __future__ import annotations

import pytest
import torch

from sketchseg.errors import SketchSegConfigError
from sketchseg.model import two_path_attention as tpa
from sketchseg.model.clip_loader import load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import ModelConfigError
from sketchseg.model.levers import Levers
from sketchseg.model.model import SketchSegModel
from tests.tiny_model import build_tiny, cross_sketches
from tests.tiny_model import tiny_cfg as shared_tiny_cfg

TOL = dict(rtol=1e-4, atol=1e-5)
CAPTIONS = ["a tree next to a car", "a dog on the grass", "a tree next to a car", "a house"]
CATEGORIES = [["tree", "car", "tree"], ["dog", "grass"], ["tree", "car"], ["house", "tree", "sun"]]


def tiny_cfg(**kw) -> ModelConfig:
    return shared_tiny_cfg(**{"finetune": "full", **kw})


def make(backbone, **kw) -> SketchSegModel:
    return build_tiny(backbone, tiny_cfg(**kw))  # same prompts / cross-attention initialisation in every model


def sketches() -> torch.Tensor:
    return cross_sketches(4)


def losses_and_grads(model: SketchSegModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model.training_losses(sketches(), CAPTIONS, CATEGORIES)
    out["loss"].backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return {k: v.detach() for k, v in out.items() if torch.is_tensor(v)} | {"n": out["n_category_pairs"]}, grads


def assert_same(a: tuple, b: tuple) -> None:
    (la, ga), (lb, gb) = a, b
    assert la["n"] == lb["n"]
    for key in ("loss", "loss_global", "loss_category", "threshold"):
        torch.testing.assert_close(la[key], lb[key], **TOL, msg=key)
    assert la["loss_category"] > 0 and la["loss_global"] > 0  # the comparison is not vacuous
    assert ga.keys() == gb.keys() and len(ga) > 10
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-3, atol=1e-6, msg=name)


def test_levers_follow_the_implementation(backbone):
    assert make(backbone).levers == Levers()
    ref = make(backbone, implementation="reference")
    assert ref.levers == Levers(False, False, False, False, False)
    assert ref.encoder.attention_impl == "manual" and not ref.encoder.shared_qkv
    with pytest.raises(ModelConfigError, match="implementation"):
        tiny_cfg(implementation="turbo")
    with pytest.raises(ValueError, match="unknown levers"):
        ref.set_levers(warp_speed=True)


@pytest.fixture(scope="module")
def fast_result(backbone):
    return losses_and_grads(make(backbone))


def test_fast_and_reference_give_the_same_losses_and_gradients(backbone, fast_result):
    assert_same(fast_result, losses_and_grads(make(backbone, implementation="reference")))


@pytest.mark.parametrize("lever", [f for f in Levers.__dataclass_fields__])
def test_each_lever_alone_changes_nothing_but_speed(backbone, fast_result, lever):
    single = make(backbone)
    single.set_levers(**{lever: False})
    assert_same(fast_result, losses_and_grads(single))


@pytest.mark.parametrize("minmax", [False, True])
def test_fast_and_reference_give_the_same_maps(backbone, minmax):
    fast, ref = make(backbone).eval(), make(backbone, implementation="reference").eval()
    cats = [["tree", "car"], ["dog"], [], ["house", "tree", "sun"]]
    seg = "segment_normalised" if minmax else "segment"
    a = getattr(fast, seg)(sketches(), cats, size=96)
    b = getattr(ref, seg)(sketches(), cats, size=96)
    assert [m.shape for m in a] == [m.shape for m in b]
    for ma, mb in zip(a, b):
        torch.testing.assert_close(ma, mb, **TOL)
        if ma.numel():
            assert torch.equal(ma.argmax(0), mb.argmax(0)) or (ma - mb).abs().max() < 1e-5


def test_reference_uses_the_straightforward_pieces(backbone, monkeypatch):
    ref = make(backbone, implementation="reference")
    calls = []
    original = ref.encoder.forward

    def spy(x, **kwargs):
        calls.append(x.shape[0])
        return original(x, **kwargs)

    impls = []
    real_core = tpa.attention_core

    def core_spy(*args, impl="sdpa", **kwargs):
        impls.append(impl)
        return real_core(*args, impl=impl, **kwargs)

    monkeypatch.setattr(ref.encoder, "forward", spy)
    monkeypatch.setattr(tpa, "attention_core", core_spy)
    out = ref.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert impls and set(impls) == {"manual"}
    # sketch pass, then one pass per category slot: 2 / 2 / 2 / 3 distinct categories
    assert calls == [4, 4, 4, 1] and out["n_category_pairs"] == 9
    assert ref.text_cache.embeddings == {}  # text encoded every call, never cached


def test_fast_path_batches_categories_and_caches_text(backbone, monkeypatch):
    fast = make(backbone)
    calls = []
    original = fast.encoder.forward

    def spy(x, **kwargs):
        calls.append(x.shape[0])
        return original(x, **kwargs)

    monkeypatch.setattr(fast.encoder, "forward", spy)
    impls = []
    real_core = tpa.attention_core

    def core_spy(*args, impl="sdpa", **kwargs):
        impls.append(impl)
        return real_core(*args, impl=impl, **kwargs)

    monkeypatch.setattr(tpa, "attention_core", core_spy)
    assert fast.precompute_text(CAPTIONS) == 3
    fast.training_losses(sketches(), CAPTIONS, CATEGORIES)
    assert calls == [4, 9] and impls and set(impls) == {"sdpa"}
    assert set(CAPTIONS) <= set(fast.text_cache.embeddings) and "A sketch of sun." in fast.text_cache.embeddings


def test_cached_text_is_independent_of_what_it_is_encoded_with(backbone):
    a, b = make(backbone), make(backbone)
    a.precompute_text(["A sketch of tree.", "A sketch of car.", "A sketch of dog."])
    b.encode_text(["A sketch of dog."])
    assert torch.equal(a.encode_text(["A sketch of dog."]), b.encode_text(["A sketch of dog."]))
    ref = make(backbone, implementation="reference")
    torch.testing.assert_close(ref.encode_text(["A sketch of dog."]), a.encode_text(["A sketch of dog."]), **TOL)


# ------------------------------------------------------------------ the training step
def _batch() -> dict:
    return {"images": sketches(), "captions": CAPTIONS, "categories": CATEGORIES, "prompts": None}


class _NaNLoss(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def training_losses(self, *args, **kwargs):
        out = self.model.training_losses(*args, **kwargs)
        return dict(out, loss=out["loss"] * float("nan"))


def test_fast_step_never_waits_for_the_device(backbone, monkeypatch):
    from sketchseg.engine.train import TrainConfig, make_optimizer, train_step

    model = make(backbone)
    model.precompute_text(CAPTIONS + [f"A sketch of {c}." for cs in CATEGORIES for c in cs])
    optimizer, on_device = make_optimizer([p for p in model.parameters() if p.requires_grad],
                                          TrainConfig(learning_rate=1e-3))
    assert on_device  # fused AdamW

    def host_sync(*args, **kwargs):
        raise AssertionError("host synchronisation in the training step")

    batch = _batch()
    monkeypatch.setattr(torch.Tensor, "item", host_sync)
    monkeypatch.setattr(torch.Tensor, "__bool__", host_sync)
    monkeypatch.setattr(torch.Tensor, "tolist", host_sync)
    out, finite = train_step(model.training_losses, optimizer, batch, device=torch.device("cpu"),
                             precision="fp32", skips_on_device=True)
    monkeypatch.undo()
    assert finite.item() and torch.isfinite(out["loss"])


@pytest.mark.parametrize("on_device", [True, False])
def test_a_non_finite_batch_leaves_weights_and_optimiser_untouched(backbone, on_device):
    from sketchseg.engine.train import TrainConfig, make_optimizer, train_step

    model = make(backbone)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, fused = make_optimizer(params, TrainConfig(learning_rate=1e-3, fused_optimizer=on_device))
    assert fused == on_device
    cpu = torch.device("cpu")
    train_step(model.training_losses, optimizer, _batch(), device=cpu, precision="fp32", skips_on_device=fused)
    before = [p.detach().clone() for p in params]
    state = {k: v.clone() for k, v in optimizer.state[params[0]].items()}
    _, finite = train_step(_NaNLoss(model).training_losses, optimizer, _batch(), device=cpu, precision="fp32",
                           skips_on_device=fused)
    assert not finite.item()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert all(torch.equal(v, optimizer.state[params[0]][k]) for k, v in state.items())  # step count too
    train_step(model.training_losses, optimizer, _batch(), device=cpu, precision="fp32", skips_on_device=fused)
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params))  # a good batch updates again


def test_threshold_learning_rate_moves_the_threshold_alone():
    """At the paper's 1e-6 an Adam step moves the threshold's logit by ~1e-6; its own rate moves it
    by ~that rate (Adam's first step is lr * sign(grad)), and the other weights as before."""
    from sketchseg.engine.train import TrainConfig, make_optimizer, parameter_groups, train_step

    cpu = torch.device("cpu")
    after = {}
    for thr_lr in (None, 0.05):
        torch.manual_seed(0)
        model = make(load_clip(tiny_cfg()))  # its own backbone: the whole tower trains (finetune full)
        cfg = TrainConfig(learning_rate=1e-6, threshold_learning_rate=thr_lr, fused_optimizer=False)
        groups = parameter_groups(model, cfg)
        assert (thr_lr is None) == (not isinstance(groups[0], dict))
        optimizer, _ = make_optimizer(groups, cfg)
        logit0 = model.threshold.logit.detach().clone()
        train_step(model.training_losses, optimizer, _batch(), device=cpu, precision="fp32", skips_on_device=False)
        moved = float((model.threshold.logit.detach() - logit0).abs().max())
        assert moved == pytest.approx(thr_lr or 1e-6, rel=0.05)
        after[thr_lr] = {n: p.detach().clone() for n, p in model.named_parameters() if "threshold" not in n}
    for name, value in after[None].items():
        torch.testing.assert_close(after[0.05][name], value, rtol=0, atol=0, msg=name)
    with pytest.raises(SketchSegConfigError, match="threshold_learning_rate"):
        TrainConfig.from_dict({"threshold_learning_rate": 0})
