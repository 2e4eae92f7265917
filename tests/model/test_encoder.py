"""SketchEncoder: exact open_clip reproduction, prompts, v-v path, cross-attention."""

from __future__ import annotations

import time

import pytest
import torch

from sketchseg.model.clip_loader import load_clip
from sketchseg.model.config import ModelConfig
from sketchseg.model.encoder import SketchEncoder, interpolate_positional_embedding
from sketchseg.model.errors import ModelConfigError
from tests.tiny_model import tiny_cfg


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    clip, _, _ = load_clip(tiny_cfg())
    return clip


def test_reproduces_open_clip_encode_image_tiny(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = enc(x, vv=False)
        ref = tiny_clip.encode_image(x)
    torch.testing.assert_close(out.vst, ref, atol=1e-5, rtol=1e-5)
    assert out.patches.shape == (3, 64, 64) and out.grid == (8, 8)


def test_reproduces_open_clip_encode_image_vit_b16_and_counts_parameters():
    t0 = time.perf_counter()
    torch.manual_seed(0)
    cfg = ModelConfig(pretrained=None, allow_random_init=True)
    clip, tok, mean_std = load_clip(cfg)
    enc = SketchEncoder(clip.visual).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        got, ref = enc(x).vst, clip.encode_image(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # paper set-up (ln_prompts): LN 39,936 + prompts 3*768 + cross-attention 3*986,112 + threshold 1
    from sketchseg.model.model import SketchSegModel

    model = SketchSegModel(clip, tok, cfg, mean_std)
    counts = model.parameter_counts()
    assert sum(p.numel() for p in model.encoder.cross_attention.parameters()) == 3 * 986_112
    assert counts["trainable"] == 39_936 + 3 * 768 + 3 * 986_112 + 1
    clip_total = sum(p.numel() for p in clip.parameters())
    assert counts["total"] == clip_total + 3 * 768 + 3 * 986_112 + 1
    assert time.perf_counter() - t0 < 60


def test_prompts_sit_after_the_patches_and_change_the_output(tiny_clip):
    torch.manual_seed(1)
    plain = SketchEncoder(tiny_clip.visual).eval()
    prompted = SketchEncoder(tiny_clip.visual, num_prompts=3, prompt_init_range=0.0625).eval()
    tokens = prompted.prompts.tokens
    assert tokens.shape == (3, 96) and tokens.abs().max() <= 0.0625 and tokens.abs().max() > 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        emb_plain, _ = plain.embed(x)
        emb, grid = prompted.embed(x)
        assert emb.shape == (2, 1 + 64 + 3, 96)
        # class + patches unchanged (LN is per token); prompts are the last S tokens, without position
        torch.testing.assert_close(emb[:, : 1 + 64], emb_plain)
        torch.testing.assert_close(emb[0, -3:], tiny_clip.visual.ln_pre(tokens))
        a, b = plain(x), prompted(x)
    assert b.patches.shape == a.patches.shape  # prompt tokens are not returned as patches
    assert not torch.allclose(a.vst, b.vst, atol=1e-4)


def test_vv_path_gives_different_patches_and_the_same_vst(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual, vv_blocks=[3, 4, 5, 6]).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        qk = enc(x, vv=False, return_layers=[6])
        vv = enc(x, vv=True, return_layers=[6])
    torch.testing.assert_close(qk.vst, vv.vst)
    torch.testing.assert_close(vv.layer_vst[6], vv.vst)
    assert not torch.allclose(qk.patches, vv.patches, atol=1e-3)
    # the v-v path's own token 0 (CLIP Surgery**'s holistic embedding) exists only with vv
    assert qk.vv_vst is None and vv.vv_vst.shape == vv.vst.shape
    assert not torch.allclose(vv.vv_vst, vv.vst, atol=1e-3)


def test_positional_embedding_is_interpolated_for_other_sizes(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual).eval()
    out = enc(torch.randn(1, 3, 96, 128))
    assert out.grid == (12, 16) and out.patches.shape == (1, 192, 64)
    pos = tiny_clip.visual.positional_embedding
    same = interpolate_positional_embedding(pos, (8, 8), (8, 8))
    assert same is pos
    big = interpolate_positional_embedding(pos, (8, 8), (16, 16))
    assert big.shape == (257, 96)
    torch.testing.assert_close(big[0], pos[0])


def test_cross_attention_depends_on_the_category_text(tiny_clip):
    torch.manual_seed(2)
    enc = SketchEncoder(tiny_clip.visual, cross_attention_layers=[3, 5, 6], embed_dim=64).eval()
    x = torch.randn(2, 3, 64, 64)
    t1, t2 = torch.randn(2, 64), torch.randn(2, 64)
    with torch.no_grad():
        a = enc(x, category_text=t1, return_layers=[2, 3, 6])
        b = enc(x, category_text=t2, return_layers=[2, 3, 6])
        plain = enc(x, return_layers=[2, 3, 6])
    torch.testing.assert_close(a.layer_vst[2], b.layer_vst[2])  # before the first cross-attention block
    for layer in (3, 6):
        assert not torch.allclose(a.layer_vst[layer], b.layer_vst[layer], atol=1e-4)
        assert not torch.allclose(a.layer_vst[layer], plain.layer_vst[layer], atol=1e-4)
    # three layers of W_t (64 -> 96), LN_t (96) and W_q' (96 -> 96)
    n = sum(p.numel() for p in enc.cross_attention.parameters())
    assert n == 3 * ((64 * 96 + 96) + 2 * 96 + (96 * 96 + 96))


def test_cross_attention_query_projection_starts_as_the_block_query(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual, cross_attention_layers=[3], embed_dim=64)
    proj = enc.cross_attention.projections["3"]
    block = tiny_clip.visual.transformer.resblocks[2]
    torch.testing.assert_close(proj.query_proj.weight, block.attn.in_proj_weight[:96])
    torch.testing.assert_close(proj.text_norm.weight, block.ln_1.weight)


def test_cross_attention_dropout_one_is_self_attention(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual, cross_attention_layers=[3, 5], cross_attention_dropout=1.0)
    enc.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = enc(x, category_text=torch.randn(2, 64))
        plain = enc(x)
    torch.testing.assert_close(a.vst, plain.vst)


def test_no_cross_attention_modules_means_text_is_refused(tiny_clip):
    enc = SketchEncoder(tiny_clip.visual)
    assert enc.cross_attention is None
    with pytest.raises(ModelConfigError, match="cross-attention"):
        enc(torch.randn(1, 3, 64, 64), category_text=torch.randn(1, 64))
