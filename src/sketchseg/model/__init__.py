"""The sketch segmentation model: plain PyTorch + open_clip, nothing else from sketchseg.

``model.SketchSegModel`` / ``build_model`` (the two-level model), ``config.ModelConfig``,
``checkpoint`` (save, and ``load_model_from_checkpoint``: the one loader), ``losses`` (triplet
losses, data-parallel included), ``encoder`` and its attention / prompt / cross-attention parts,
``clip_loader``, ``text_cache``, ``levers``, ``finetune``, ``fingerprint``, ``errors``.
"""
