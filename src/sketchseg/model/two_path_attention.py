"""The two-path vision transformer of paper §3.1.1, on top of open_clip block weights.

Both paths use the weights of open_clip's ``ResidualAttentionBlock`` (``ln_1``, ``attn`` =
``nn.MultiheadAttention``, ``ls_1``, ``ln_2``, ``mlp``, ``ls_2``); nothing is copied.

* Original path (q-k attention): ``x <- x + ls_1(MHSA(ln_1(x)))``, ``x <- x + ls_2(FFN(ln_2(x)))``
  for every block, exactly as open_clip computes it (re-implemented with
  ``F.scaled_dot_product_attention``, batch-first ``(B, N, width)``).
* Second path (v-v attention, Eq. 2): for each block ``l`` in ``vv_blocks``
  ``y <- y + ls_1(out_proj(s-attn(V, V, V)))`` with ``V`` the block's value projection of
  ``ln_1(x_in)``, where ``x_in`` is the ORIGINAL path's input to that block ("the input to the v-v
  multi-head attention is always the features from the original path"), per head
  ``softmax(V Vᵀ / sqrt(d_head)) V``; no second LN and no FFN. ``y`` starts as the original
  path's output of the block just before the first v-v block. The original path never reads ``y``.

The query/key/value projection of a block is computed once and shared by both paths.

A per-block ``query_hook(q) -> q`` may replace the self-attention queries ``(B, N, width)`` of
the original path (used by the category-level cross-attention, see ``cross_attention.py``).

Two implementations of the same maths (``attention`` argument): ``"sdpa"`` (default) uses
``F.scaled_dot_product_attention`` (fused flash / memory-efficient kernels on CUDA, also for the
v-v path, which is attention with q = k = v); ``"manual"`` is the textbook
``softmax(q kᵀ / sqrt(d)) v`` with explicit matmuls (the benchmark's reference path). With
``shared_qkv=False`` the v-v path computes its own value projection instead of reusing the
block's (the reference path: no sharing between the two paths).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.model.errors import ModelConfigError

QueryHook = Callable[[torch.Tensor], torch.Tensor]

ATTENTION_IMPLEMENTATIONS = ("sdpa", "manual")


def check_block(block: nn.Module, index: int | None = None) -> None:
    """Raise ``ModelConfigError`` unless ``block`` is a plain open_clip ResidualAttentionBlock."""
    where = f"block {index}" if index is not None else "block"
    needed = ("ln_1", "attn", "ls_1", "ln_2", "mlp", "ls_2")
    missing = [n for n in needed if not hasattr(block, n)]
    attn = getattr(block, "attn", None)
    if missing or not isinstance(attn, nn.MultiheadAttention):
        raise ModelConfigError(
            f"{where} is a {type(block).__name__} (missing {missing or 'an nn.MultiheadAttention attn'}); the "
            "two-path encoder supports open_clip ViTs built from the default ResidualAttentionBlock only"
        )
    if hasattr(block, "ln_1_kv"):
        raise ModelConfigError(f"{where} is a cross-attention block; only self-attention blocks are supported")
    if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:  # noqa: SLF001
        raise ModelConfigError(f"{where}: attention with separate q/k/v projections is not supported")
    if not attn.batch_first:
        raise ModelConfigError(f"{where}: only batch-first attention is supported")
    if attn.bias_k is not None or attn.add_zero_attn:
        raise ModelConfigError(f"{where}: attention with bias_k/bias_v or add_zero_attn is not supported")


def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, width) -> (B, heads, N, d_head)."""
    b, n, w = t.shape
    return t.reshape(b, n, n_heads, w // n_heads).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d_head) -> (B, N, width)."""
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


def qkv_projection(block: nn.Module, x_ln: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The block's query, key and value projections of the normalised input, each (B, N, width)."""
    attn: nn.MultiheadAttention = block.attn
    qkv = F.linear(x_ln, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.chunk(3, dim=-1)
    return q, k, v


def _dropout_p(block: nn.Module) -> float:
    return float(block.attn.dropout) if block.training else 0.0


def _check_attention(impl: str) -> None:
    if impl not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {impl!r}")


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Textbook attention ``softmax(q kᵀ / sqrt(d)) v`` on (B, heads, N, d) with explicit matmuls."""
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights.to(v.dtype) @ v


def attention_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float = 0.0,
              impl: str = "sdpa") -> torch.Tensor:
    """Multi-head attention core on (B, heads, N, d): ``impl`` "sdpa" (fused kernels) or "manual"."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    _check_attention(impl)
    return manual_attention(q, k, v, dropout_p)


def qk_attention(block: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                 impl: str = "sdpa") -> torch.Tensor:
    """Standard multi-head attention with the block's out-projection, (B, N, width)."""
    attn: nn.MultiheadAttention = block.attn
    h = attn.num_heads
    out = attention_core(split_heads(q, h), split_heads(k, h), split_heads(v, h), dropout_p=_dropout_p(block),
                         impl=impl)
    return attn.out_proj(merge_heads(out))


def vv_self_attention(v_heads: torch.Tensor, *, impl: str = "sdpa") -> torch.Tensor:
    """Eq. 2 per head: ``softmax(V Vᵀ / sqrt(d_head)) V`` for ``v_heads`` (B, heads, N, d_head)."""
    return attention_core(v_heads, v_heads, v_heads, impl=impl)


def vv_attention(block: nn.Module, v: torch.Tensor, *, impl: str = "sdpa") -> torch.Tensor:
    """v-v multi-head attention (q = k = v = the value projection) with the block's out-projection."""
    attn: nn.MultiheadAttention = block.attn
    return attn.out_proj(merge_heads(vv_self_attention(split_heads(v, attn.num_heads), impl=impl)))


def value_projection(block: nn.Module, x_ln: torch.Tensor) -> torch.Tensor:
    """The block's value projection alone (the reference path's unshared v-v input), (B, N, width)."""
    attn: nn.MultiheadAttention = block.attn
    width = attn.embed_dim
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    return F.linear(x_ln, attn.in_proj_weight[2 * width :], bias)


def block_forward(block: nn.Module, x: torch.Tensor, query_hook: QueryHook | None = None, *,
                  attention: str = "sdpa") -> torch.Tensor:
    """The original (q-k) block: ``x + ls_1(MHSA(ln_1 x))`` then ``+ ls_2(FFN(ln_2 x))``."""
    q, k, v = qkv_projection(block, block.ln_1(x))
    if query_hook is not None:
        q = query_hook(q)
    x = x + block.ls_1(qk_attention(block, q, k, v, impl=attention))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def two_path_block_forward(
    block: nn.Module, x: torch.Tensor, y: torch.Tensor, query_hook: QueryHook | None = None, *,
    attention: str = "sdpa", shared_qkv: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of both paths; the v-v update of ``y`` reads the original path's input ``x``.

    ``shared_qkv`` (default): one q/k/v projection serves both paths; otherwise the v-v path
    normalises ``x`` and projects its values itself (same numbers, twice the work).
    """
    x_ln = block.ln_1(x)
    q, k, v = qkv_projection(block, x_ln)
    if attention == "sdpa" and shared_qkv:
        y = y + block.ls_1(vv_attention(block, v))
    else:
        v_vv = v if shared_qkv else value_projection(block, block.ln_1(x))
        y = y + block.ls_1(vv_attention(block, v_vv, impl=attention))
    if query_hook is not None:
        q = query_hook(q)
    x = x + block.ls_1(qk_attention(block, q, k, v, impl=attention))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, y


def run_two_path(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    vv_blocks: Sequence[int] = (),
    query_hooks: Mapping[int, QueryHook] | None = None,
    return_layers: Sequence[int] = (),
    attention: str = "sdpa",
    shared_qkv: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[int, torch.Tensor]]:
    """Run all ``blocks`` on ``x`` (B, N, width).

    Parameters
    ----------
    vv_blocks
        1-based indices of the blocks that update the v-v path; empty = single path.
    query_hooks
        ``{1-based block index: hook}`` replacing the original path's queries in that block.
    return_layers
        1-based indices whose original-path outputs are returned.
    attention, shared_qkv
        implementation switches (see the module docstring); the result is the same up to rounding.

    Returns
    -------
    (x_final, y_final or None, {layer: original-path output after that block})
    """
    _check_attention(attention)
    vv = set(int(i) for i in vv_blocks)
    hooks = dict(query_hooks or {})
    wanted = set(int(i) for i in return_layers)
    first_vv = min(vv) if vv else None
    y: torch.Tensor | None = None
    layers: dict[int, torch.Tensor] = {}
    for i, block in enumerate(blocks, start=1):
        if first_vv is not None and i == first_vv:
            y = x  # the original path's output of the block before the first v-v block
        hook = hooks.get(i)
        if i in vv and y is not None:
            x, y = two_path_block_forward(block, x, y, hook, attention=attention, shared_qkv=shared_qkv)
        else:
            x = block_forward(block, x, hook, attention=attention)
        if i in wanted:
            layers[i] = x
    return x, y, layers
