"""Two-path attention maths on open_clip ResidualAttentionBlock weights."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.transformer import CustomResidualAttentionBlock, ResidualAttentionBlock

from sketchseg.model import two_path_attention as tpa
from sketchseg.model.errors import ModelConfigError


def _block(width: int = 32, heads: int = 4, seed: int = 0) -> ResidualAttentionBlock:
    torch.manual_seed(seed)
    block = ResidualAttentionBlock(width, heads, mlp_ratio=2.0)
    with torch.no_grad():  # non-trivial LN affine and biases
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block.eval()


def test_vv_self_attention_matches_eq2_per_head():
    torch.manual_seed(1)
    v = torch.randn(2, 3, 7, 8)  # (B, heads, N, d_head)
    got = tpa.vv_self_attention(v)
    want = torch.empty_like(v)
    for b in range(2):
        for h in range(3):
            vh = v[b, h]
            want[b, h] = torch.softmax(vh @ vh.T / math.sqrt(8), dim=-1) @ vh
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_vv_attention_uses_the_value_projection_and_out_projection():
    block = _block()
    x = torch.randn(2, 5, 32)
    xn = block.ln_1(x)
    width, heads, dh = 32, 4, 8
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    v = xn @ w[2 * width :].T + b[2 * width :]
    heads_out = []
    for h in range(heads):
        vh = v[..., h * dh : (h + 1) * dh]
        heads_out.append(torch.softmax(vh @ vh.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ vh)
    want = block.attn.out_proj(torch.cat(heads_out, dim=-1))
    _, _, v2 = tpa.qkv_projection(block, xn)
    torch.testing.assert_close(tpa.vv_attention(block, v2), want, atol=1e-5, rtol=1e-5)


def test_block_forward_reproduces_open_clip():
    block = _block()
    x = torch.randn(3, 6, 32)
    torch.testing.assert_close(tpa.block_forward(block, x), block(x), atol=1e-5, rtol=1e-5)


def test_two_path_is_fed_by_the_original_path():
    blocks = [_block(seed=s) for s in range(4)]
    x0 = torch.randn(2, 5, 32)
    x_final, y_final, layers = tpa.run_two_path(blocks, x0, vv_blocks=[3, 4], return_layers=[1, 2, 3, 4])
    # the original path is untouched by the v-v path
    x_plain, y_none, _ = tpa.run_two_path(blocks, x0)
    torch.testing.assert_close(x_final, x_plain)
    assert y_none is None
    # y starts at the output of block 2 and is updated from the ORIGINAL inputs of blocks 3 and 4
    x_in3, x_in4 = layers[2], layers[3]
    y = layers[2]
    for blk, x_in in ((blocks[2], x_in3), (blocks[3], x_in4)):
        _, _, v = tpa.qkv_projection(blk, blk.ln_1(x_in))
        y = y + tpa.vv_attention(blk, v)
    torch.testing.assert_close(y_final, y, atol=1e-5, rtol=1e-5)
    # no FFN / second LN in the v-v path, and it differs from the original path
    assert not torch.allclose(y_final, x_final, atol=1e-3)


def test_two_path_does_not_feed_y_into_its_own_attention(monkeypatch):
    blocks = [_block(seed=s) for s in range(3)]
    seen = []
    original = tpa.vv_attention

    def spy(block, v):
        seen.append(v)
        return original(block, v)

    monkeypatch.setattr(tpa, "vv_attention", spy)
    x0 = torch.randn(1, 4, 32)
    _, _, layers = tpa.run_two_path(blocks, x0, vv_blocks=[2, 3], return_layers=[1, 2])
    for blk, x_in, v in zip(blocks[1:], (layers[1], layers[2]), seen):
        _, _, v_orig = tpa.qkv_projection(blk, blk.ln_1(x_in))
        torch.testing.assert_close(v, v_orig)


def test_query_hook_replaces_queries_in_the_original_path_only():
    block = _block()
    x = torch.randn(2, 5, 32)
    called = []

    def hook(q):
        called.append(q.shape)
        return torch.cat([torch.zeros_like(q[:, :1]), q[:, 1:]], dim=1)

    out = tpa.block_forward(block, x, hook)
    assert called == [torch.Size([2, 5, 32])]
    assert not torch.allclose(out[:, 0], block(x)[:, 0], atol=1e-4)
    # a query change of token 0 cannot change other tokens within this block
    torch.testing.assert_close(out[:, 1:], block(x)[:, 1:], atol=1e-5, rtol=1e-5)


def test_other_block_types_are_refused():
    with pytest.raises(ModelConfigError, match="ResidualAttentionBlock"):
        tpa.check_block(CustomResidualAttentionBlock(32, 4))
    tpa.check_block(_block())
