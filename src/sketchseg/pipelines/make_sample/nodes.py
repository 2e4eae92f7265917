"""Write the generated FS-COCO-shaped sample dataset and pre-train the tiny CLIP it is fine-tuned from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sketchseg import tracking
from sketchseg.data.sample import generate_sample
from sketchseg.errors import SketchSegConfigError
from sketchseg.pretrain.config import PretrainConfig
from sketchseg.pretrain.loop import pretrain_clip
from sketchseg.pretrain.weights import read_cached_weights, weights_metadata

logger = logging.getLogger(__name__)

def make_sample(sample: dict[str, Any], data: dict[str, Any], splits: dict[str, Any]) -> dict[str, Any]:
    """Generate the sample under ``data.fscoco_root`` / ``data.fscoco_seg_root`` (refused where
    those folders hold anything the generator did not write, e.g. the real FS-COCO).

    Its FS-COCO-seg val/test folders annotate the protocol split of ``splits.test_participants``
    and ``splits.val_per_participant``, drawn with ``sample.seed``; ``splits.mode: fscoco_seg``
    then reads the split back from those folders.
    """
    summary = generate_sample(
        data["fscoco_root"],
        data["fscoco_seg_root"],
        n_participants=int(sample["n_participants"]),
        sketches_per_participant=int(sample["sketches_per_participant"]),
        seed=int(sample["seed"]),
        test_participants=tuple(int(p) for p in splits["test_participants"]),
        val_per_participant=int(splits["val_per_participant"]),
        raster_size=int(sample.get("raster_size", 256)),
        write_photos=bool(sample.get("write_photos", True)),
    )
    logger.info("sample written: %s", summary)
    return {k: (v if isinstance(v, (int, float, str, bool, list, dict)) or v is None else str(v)) for k, v in summary.items()}


def _same_path(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def pretrain_tiny_clip(
    sample_summary: dict[str, Any], pretrain: dict[str, Any], model: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CLIP-style contrastive pre-training of the sample's tiny CLIP on generated sketches.

    Returns the open_clip state dict as ``{"state", "metadata"}`` (catalogued as a safetensors
    file that ``model.pretrained`` points at) and a JSON summary. When ``pretrain.reuse_existing``
    and ``pretrain.weights_path`` already holds weights of the same configuration, they are
    returned as they are instead of training again. Runs after ``make_sample`` (it reads its
    summary only to log it: the pre-training pairs come from their own seed space).
    """
    params = dict(pretrain or {})
    weights_path = params.pop("weights_path", None)
    reuse = bool(params.pop("reuse_existing", True))
    cfg = PretrainConfig.from_dict(params)
    if _same_path(model.get("pretrained"), weights_path) and model.get("clip_model") != cfg.clip_model:
        raise SketchSegConfigError(
            f"model.pretrained points at the pre-trained weights {weights_path} of '{cfg.clip_model}' "
            f"(pretrain.clip_model) but model.clip_model is '{model.get('clip_model')}'; make them the same"
        )
    logger.info("pre-training %s on generated pairs (seed space apart from the sample of %s sketches)",
                cfg.clip_model, sample_summary.get("sketches", "?"))

    if reuse and weights_path:
        cached = read_cached_weights(weights_path, cfg.fingerprint())
        if cached is not None:
            logger.info("reusing %s: it holds pre-trained weights of the same pretrain configuration", weights_path)
            meta = cached["metadata"]
            summary = {"reused": True, "weights_path": str(weights_path), "clip_model": cfg.clip_model,
                       "config_fingerprint": cfg.fingerprint(), "config": cfg.to_dict(),
                       **{k: meta[k] for k in ("steps", "final_loss_ema", "after_zero_shot_acc", "after_scene_r1",
                                               "seconds") if k in meta}}
            return cached, summary

    result = pretrain_clip(cfg)
    tracking.log_metrics({f"pretrain.{k}": float(v) for k, v in result.summary.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for h in result.history:
        tracking.log_metrics({"pretrain.loss": h["loss"], "pretrain.logit_scale": h["logit_scale"]}, step=int(h["step"]))
    summary = {"reused": False, "weights_path": str(weights_path), **result.summary, "history": result.history}
    return {"state": result.state, "metadata": weights_metadata(cfg, result.summary)}, summary
