"""Which parameters of a ``SketchSegModel`` train (``model.finetune``) and which a checkpoint stores.

Strategies (``config.FINETUNE_STRATEGIES``): ``ln`` the visual LayerNorms; ``prompts`` the visual
prompts; ``ln_prompts`` both (the paper); ``ln_prompts_ca`` also the attention projections of the
cross-attention blocks; ``full`` the whole visual tower. The modules that are not part of CLIP
(cross-attention, threshold) always train; the text tower never does. The authors' test-time layer
(``model.test_time_cross_attention: authors``, converted checkpoints only) never trains, and is
always saved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from sketchseg.model.model import SketchSegModel


def set_trainable(model: SketchSegModel) -> None:
    """Freeze every parameter of ``model``, then unfreeze those ``model.cfg.finetune`` trains."""
    for p in model.parameters():
        p.requires_grad_(False)
    visual = model.encoder.visual
    strategy = model.cfg.finetune
    if strategy in ("ln", "ln_prompts", "ln_prompts_ca"):
        for module in visual.modules():
            if isinstance(module, nn.LayerNorm):
                for p in module.parameters():
                    p.requires_grad_(True)
    if strategy == "full":
        for p in visual.parameters():
            p.requires_grad_(True)
    if strategy == "ln_prompts_ca":  # the blocks' own attention projections where CCT joins in
        for layer in model.cfg.cross_attention_layers:
            for p in visual.transformer.resblocks[layer - 1].attn.parameters():
                p.requires_grad_(True)
    if strategy in ("prompts", "ln_prompts", "ln_prompts_ca", "full") and model.encoder.prompts is not None:
        for p in model.encoder.prompts.parameters():
            p.requires_grad_(True)
    for module in added_modules(model):
        for p in module.parameters():
            p.requires_grad_(True)
    for p in model.text.parameters():  # text tower and logit_scale: always frozen
        p.requires_grad_(False)


def added_modules(model: SketchSegModel) -> list[nn.Module]:
    """Modules that are not part of CLIP (always saved in checkpoints): cross-attention, threshold."""
    mods: list[nn.Module] = []
    if model.encoder.cross_attention is not None:
        mods.append(model.encoder.cross_attention)
    if model.threshold is not None:
        mods.append(model.threshold)
    return mods


def checkpoint_parameter_names(model: SketchSegModel) -> list[str]:
    """Names saved by ``trainable_state_dict``: trainable parameters plus every non-CLIP one."""
    extra: set[int] = set()
    saved = [model.encoder.prompts, getattr(model.encoder, "authors_cross_attention", None)]
    for module in added_modules(model) + [m for m in saved if m is not None]:
        extra.update(id(p) for p in module.parameters())
    return [n for n, p in model.named_parameters() if p.requires_grad or id(p) in extra]
