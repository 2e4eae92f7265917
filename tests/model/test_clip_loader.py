"""load_clip: random init permission, local weight files, tag failures (no network)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sketchseg.model import clip_loader
from sketchseg.model.clip_loader import load_clip, read_state_dict
from sketchseg.model.config import ModelConfig
from sketchseg.model.errors import ModelConfigError


def tiny(**kw) -> ModelConfig:
    base = dict(clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
                vv_blocks=[6], cross_attention_layers=[6], category_loss_layers=[6])
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    clip, tok, mean_std = load_clip(tiny())
    return clip, tok, mean_std


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_init_returns_model_tokenizer_and_mean_std(reference):
    clip, tok, (mean, std) = reference
    assert clip.visual.conv1.kernel_size == (8, 8) and len(clip.visual.transformer.resblocks) == 6
    assert clip.visual.transformer.resblocks[0].mlp.c_fc.out_features == 192  # mlp_ratio 2
    assert tok(["a sketch of a cat."]).shape == (1, 32)
    assert len(mean) == 3 and mean[0] == pytest.approx(0.48145466) and std[2] == pytest.approx(0.27577711)


def test_random_init_requires_permission():
    cfg = tiny()
    cfg.allow_random_init = False  # bypass the dataclass check to reach the loader's own
    with pytest.raises(ModelConfigError, match="allow_random_init"):
        load_clip(cfg)


def test_missing_local_file_is_named(tmp_path):
    missing = tmp_path / "weights" / "clip.safetensors"
    with pytest.raises(ModelConfigError, match="does not exist") as info:
        load_clip(tiny(pretrained=str(missing)))
    assert str(missing) in str(info.value)


def test_torch_state_dict_round_trip(reference, tmp_path):
    clip = reference[0]
    path = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), path)
    loaded, _, _ = load_clip(tiny(pretrained=str(path)))
    assert _same_weights(clip, loaded)


def test_nested_state_dict_with_module_prefix(reference, tmp_path):
    clip = reference[0]
    path = tmp_path / "train_ckpt.bin"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    loaded, _, _ = load_clip(tiny(pretrained=str(path)))
    assert _same_weights(clip, loaded)


def test_safetensors_round_trip(reference, tmp_path):
    clip = reference[0]
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    assert set(read_state_dict(path)) == set(clip.state_dict())
    loaded, _, _ = load_clip(tiny(pretrained=str(path)))
    assert _same_weights(clip, loaded)


def test_incomplete_weight_file_is_refused(reference, tmp_path):
    state = dict(reference[0].state_dict())
    state.pop("visual.proj")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ModelConfigError, match="missing key"):
        load_clip(tiny(pretrained=str(path)))
    state["visual.proj"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(ModelConfigError, match="shape mismatch") as info:
        load_clip(tiny(pretrained=str(path)))
    assert "visual.proj" in str(info.value)
    state["positional_embedding"] = torch.zeros(32, 7)  # text positions of another width
    torch.save(state, path)
    with pytest.raises(ModelConfigError, match="does not fit"):
        load_clip(tiny(pretrained=str(path)))


def test_unpicklable_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": clip_loader.ModelConfig}, path)
    with pytest.raises(ModelConfigError, match="weights_only"):
        read_state_dict(path)


def test_unknown_tag_and_model_name():
    with pytest.raises(ModelConfigError, match="neither an open_clip tag"):
        load_clip(tiny(clip_model="ViT-B-16", pretrained="not-a-tag", image_size=224,
                       vv_blocks=[12], cross_attention_layers=[12], category_loss_layers=[12]))
    with pytest.raises(ModelConfigError, match="not an open_clip architecture"):
        load_clip(tiny(clip_model="ViT-Nope"))


def test_tag_download_failure_is_explained(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("We have no connection or you passed local_files_only")

    monkeypatch.setattr(open_clip, "create_model", offline)
    cfg = tiny(clip_model="ViT-B-16", pretrained="openai", image_size=224,
               vv_blocks=[12], cross_attention_layers=[12], category_loss_layers=[12])
    with pytest.raises(ModelConfigError, match="could not fetch 'openai' weights for ViT-B-16; offline"):
        load_clip(cfg)


def test_quick_gelu_follows_the_tag_and_the_override():
    from open_clip.pretrained import get_pretrained_cfg

    tag_cfg = get_pretrained_cfg("ViT-B-16", "openai")
    assert clip_loader._resolve_quick_gelu(ModelConfig(), tag_cfg, None) is True
    assert clip_loader._resolve_quick_gelu(ModelConfig(quick_gelu=False), tag_cfg, None) is False
    assert clip_loader._resolve_quick_gelu(ModelConfig(), None, "/w/openai-vit-b-16.safetensors") is True
    assert clip_loader._resolve_quick_gelu(ModelConfig(), None, "/w/laion.safetensors") is False


RANDOM_NOTICE = "No pretrained weights loaded"


def test_random_init_notice_only_when_the_model_is_random(reference, tmp_path, caplog):
    """open_clip says "Model initialized randomly" while building; with a weight file loaded next
    that is false and must not be shown; a really random model keeps the notice."""
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in reference[0].state_dict().items()}, str(path))
    with caplog.at_level("INFO"):
        load_clip(tiny(pretrained=str(path)))
    assert caplog.records, "load_clip logs what it loaded"
    assert not [r for r in caplog.records if RANDOM_NOTICE in r.getMessage()]
    caplog.clear()
    with caplog.at_level("INFO"):
        load_clip(tiny())
    assert [r for r in caplog.records if RANDOM_NOTICE in r.getMessage()]
    import logging
    assert not logging.getLogger().filters, "the notice filter is removed again"


# ---------------------------------------------------------------- OpenAI's TorchScript archive
class _Tree(torch.nn.Module):
    """Parameters (and buffers) at dotted names: the key layout of OpenAI's ``clip`` archive."""

    def __init__(self, tensors: dict[str, torch.Tensor], buffers: tuple[str, ...] = ()) -> None:
        super().__init__()
        children: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            head, _, rest = key.partition(".")
            if rest:
                children.setdefault(head, {})[rest] = value
            elif key in buffers:
                self.register_buffer(key, value)
            else:
                self.register_parameter(key, torch.nn.Parameter(value, requires_grad=False))
        for name, sub in children.items():
            self.add_module(name, _Tree(sub))

    def forward(self) -> int:
        return 0


def _openai_archive(clip: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    """Write ``clip``'s weights as OpenAI does (TorchScript, fp16, + its int leftovers); returns them."""
    tensors = {k: v.detach().clone().half() for k, v in clip.state_dict().items()}
    extra = {"input_resolution": torch.tensor(64), "context_length": torch.tensor(32), "vocab_size": torch.tensor(49408)}
    torch.jit.save(torch.jit.script(_Tree({**tensors, **extra}, buffers=tuple(extra))), str(path))
    return tensors


def test_openai_torchscript_archive_is_accepted_as_pretrained(reference, tmp_path):
    clip = reference[0]
    path = tmp_path / "ViT-B-16.pt"  # a name like OpenAI's; the layout, not the name, is what counts
    written = _openai_archive(clip, path)
    assert clip_loader.is_torchscript_archive(path)
    with pytest.raises(RuntimeError):  # what the restricted unpickler says about such a file
        torch.load(str(path), weights_only=True)
    state = read_state_dict(path)
    assert set(written) <= set(state) and all(state[k].dtype == torch.float32 for k in written)
    loaded, _, _ = load_clip(tiny(pretrained=str(path), quick_gelu=False))
    own = loaded.state_dict()
    for key, value in written.items():  # fp16 values, read back exactly
        assert torch.equal(own[key], value.float()), key


def test_plain_state_dicts_are_not_torchscript(reference, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(reference[0].state_dict(), path)
    assert not clip_loader.is_torchscript_archive(path)
    assert not clip_loader.is_torchscript_archive(__file__)


def test_unreadable_torchscript_archive_is_named(tmp_path):
    import zipfile

    path = tmp_path / "broken.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("broken/constants.pkl", b"not a pickle")
        zf.writestr("broken/code/__torch__.py", b"")
    with pytest.raises(ModelConfigError, match="could not read TorchScript archive") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)
