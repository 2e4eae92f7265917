"""Create the open_clip backbone: an open_clip tag, a local weight file, or random weights.

The package ships one extra open_clip architecture, ``sketchseg-tiny`` (a 6-block 64-px ViT and
a 2-block text tower, random weights only) used by the fast tests and the sample pipeline. It is
registered with ``open_clip.add_model_config`` the first time this module is used.

Weight files are read safely: ``safetensors`` for ``.safetensors``, otherwise
``torch.load(weights_only=True)`` (a restricted unpickler: tensors and plain containers only).

OpenAI's own release (``ViT-B-16.pt`` of their ``clip`` package, usually in ``~/.cache/clip/``, the
file CLIP Surgery and the authors load) is a TorchScript archive, which ``weights_only=True`` cannot
read. Such a file (a zip with ``constants.pkl`` or ``code/``) is read with
``torch.jit.load(path, map_location="cpu").state_dict()`` and nothing else. What that trusts:
PyTorch's C++ TorchScript deserialiser. It unpickles the archive's ``data.pkl`` / ``constants.pkl``
with TorchScript's own unpickler, which can only build TorchScript types and tensors (no Python
object, no Python callable is ever looked up or called), and it compiles the TorchScript source in
``code/`` into TorchScript graphs (compiled, never run: no method of the loaded module is called;
``state_dict()`` only reads its parameters and buffers). So no Python code from the file runs, but a
crafted archive meets a large C++ parser, which has had memory-safety bugs; load archives from
trusted sources only (OpenAI's URL carries the file's SHA-256, which is logged and compared for the
known release). fp16 weights are returned as fp32.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from sketchseg.model.errors import ModelConfigError
from sketchseg.model.config import ModelConfig

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL_NAME = "sketchseg-tiny"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

MeanStd = tuple[tuple[float, float, float], tuple[float, float, float]]
_registered = False


def register_model_configs() -> None:
    """Register the package's open_clip model configs (idempotent)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    _registered = True


def looks_like_path(value: str) -> bool:
    """True when ``value`` is meant as a file path rather than an open_clip tag."""
    return (
        "/" in value
        or os.sep in value
        or value.startswith(("~", "."))
        or value.lower().endswith(WEIGHT_SUFFIXES)
    )


def _resolve_quick_gelu(cfg: ModelConfig, tag_cfg: dict[str, Any] | None, path: str | None) -> bool:
    if cfg.quick_gelu is not None:
        return bool(cfg.quick_gelu)
    if cfg.clip_model.endswith("-quickgelu"):
        return False  # the architecture config already selects QuickGELU
    if tag_cfg:
        return bool(tag_cfg.get("quick_gelu", False))
    if path is not None and "openai" in Path(path).as_posix().lower():
        logger.info("model.quick_gelu is null and %s mentions 'openai': using QuickGELU activations", path)
        return True
    return False


def _mean_std(clip_model: nn.Module) -> MeanStd:
    visual = getattr(clip_model, "visual", clip_model)
    pp = getattr(visual, "preprocess_cfg", None) or {}
    mean = tuple(float(v) for v in pp.get("mean", getattr(visual, "image_mean", None) or OPENAI_MEAN))
    std = tuple(float(v) for v in pp.get("std", getattr(visual, "image_std", None) or OPENAI_STD))
    return mean, std  # type: ignore[return-value]


def _check_model_name(name: str) -> None:
    import open_clip

    if name not in open_clip.list_models():
        raise ModelConfigError(
            f"model.clip_model '{name}' is not an open_clip architecture "
            f"(see open_clip.list_models(); this package adds '{TINY_MODEL_NAME}')"
        )


# SHA-256 digests of OpenAI's TorchScript releases (from the download URLs of their ``clip`` package)
OPENAI_TORCHSCRIPT_SHA256 = {
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f": "ViT-B/16",
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af": "ViT-B/32",
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836": "ViT-L/14",
}


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript archive: a zip whose top folder holds ``constants.pkl`` or ``code/``."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.split("/", 1)[-1] == "constants.pkl" or n.split("/", 1)[-1].startswith("code/") for n in names)


def read_torchscript_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive (module docstring: what this trusts)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    known = OPENAI_TORCHSCRIPT_SHA256.get(digest.hexdigest())
    logger.info("%s: TorchScript archive, sha256 %s (%s)", path, digest.hexdigest(),
                f"OpenAI's {known} release" if known else "not a known OpenAI release")
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice (torch.export cannot read these)
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - the TorchScript loader raises several types
        raise ModelConfigError(f"could not read TorchScript archive {path}: {exc}") from exc
    return {k: (v.float() if v.is_floating_point() else v) for k, v in module.state_dict().items()}


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a weight file safely into a flat ``{name: tensor}`` dict on the CPU.

    Accepts a plain state dict, a dict holding it under ``"state_dict"`` (training checkpoints),
    an OpenAI TorchScript archive (``read_torchscript_state_dict``), and strips DataParallel
    ``module.`` prefixes.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors" and is_torchscript_archive(path):
        obj: Any = read_torchscript_state_dict(path)
    elif path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ModelConfigError(f"could not read safetensors weight file {path}: {exc}") from exc
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except RuntimeError as exc:
            if "TorchScript" in str(exc):
                raise ModelConfigError(
                    f"{path} is a TorchScript archive (e.g. OpenAI's original release), which cannot be read "
                    "with weights_only=True; convert it once, from a trusted source, with "
                    "`torch.save(torch.jit.load(p, map_location='cpu').state_dict(), 'clip_state_dict.pt')` "
                    "or use the open_clip tag 'openai'"
                ) from exc
            raise ModelConfigError(f"could not read weight file {path}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
            raise ModelConfigError(
                f"could not read weight file {path} with torch.load(weights_only=True): {exc}"
            ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ModelConfigError(f"weight file {path} does not hold a (non-empty) state dict")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        while key.startswith("module."):
            key = key[len("module."):]
        state[key] = value
    if not state:
        raise ModelConfigError(f"weight file {path} holds no tensors")
    return state


def load_clip_from_file(
    clip_model: nn.Module, path: str | os.PathLike[str], *, model_name: str = "<model>"
) -> None:
    """Load the weights of ``path`` into the (already created) open_clip ``clip_model``.

    Missing keys are an error (they would stay random); unexpected keys are logged.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    state = read_state_dict(path)
    state = convert_state_dict(clip_model, state)
    logit_scale = getattr(clip_model, "logit_scale", None)
    if isinstance(logit_scale, torch.Tensor) and "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(logit_scale.shape)
    for key in ("input_resolution", "context_length", "vocab_size"):  # OpenAI JIT leftovers
        state.pop(key, None)
    try:
        resize_pos_embed(state, clip_model)
        resize_text_pos_embed(state, clip_model)
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise ModelConfigError(
            f"weight file {path} does not fit open_clip model '{model_name}': its positional embeddings "
            f"cannot be adapted ({exc or type(exc).__name__}); is model.clip_model the right architecture?"
        ) from exc

    own = clip_model.state_dict()
    shape_mismatch = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shape_mismatch:
        raise ModelConfigError(
            f"weight file {path} does not fit open_clip model '{model_name}': shape mismatch for "
            f"{len(shape_mismatch)} tensor(s): {shape_mismatch[:10]}"
        )
    result = clip_model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "logit_bias"]
    if missing:
        raise ModelConfigError(
            f"weight file {path} does not fit open_clip model '{model_name}': {len(missing)} missing key(s), "
            f"e.g. {missing[:10]} (unexpected: {list(result.unexpected_keys)[:10]}); "
            "is model.clip_model the architecture these weights were trained with?"
        )
    if result.unexpected_keys:
        logger.warning(
            "weight file %s has %d key(s) that model '%s' does not use (ignored): %s",
            path, len(result.unexpected_keys), model_name, list(result.unexpected_keys)[:10],
        )
    logger.info("loaded CLIP weights for %s from %s (%d tensors)", model_name, path, len(state))


class _RandomInitNotice(logging.Filter):
    """open_clip's "No pretrained weights loaded ... Model initialized randomly" (root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def weights_follow() -> Iterator[None]:
    """Build a CLIP whose weights are loaded (or pre-trained) right after: open_clip's random-init
    notice would mislead, so it is dropped (it stays where the model really stays random)."""
    notice = _RandomInitNotice()
    root = logging.getLogger()
    root.addFilter(notice)
    try:
        yield
    finally:
        root.removeFilter(notice)


RANDOM_INIT_SEED = 0
"""Seed of random CLIP weights (``model.pretrained: null``)."""


def _seeded_random_clip(name: str, quick: bool) -> nn.Module:
    """open_clip's ``name`` with random weights from ``RANDOM_INIT_SEED``, the global RNG untouched."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return open_clip.create_model(name, pretrained=None, force_quick_gelu=quick)


def _quick_gelu_of(cfg: ModelConfig) -> bool:
    """QuickGELU or not, as ``cfg.pretrained`` would decide it, without loading any weights."""
    pretrained = cfg.pretrained
    if pretrained is None:
        return _resolve_quick_gelu(cfg, None, None)
    if looks_like_path(pretrained):
        return _resolve_quick_gelu(cfg, None, str(Path(pretrained).expanduser()))
    from open_clip.pretrained import get_pretrained_cfg

    return _resolve_quick_gelu(cfg, get_pretrained_cfg(cfg.clip_model, pretrained) or None, None)


def load_clip(cfg: ModelConfig, *, weights_in_checkpoint: bool = False
              ) -> tuple[nn.Module, Callable[..., torch.Tensor], MeanStd]:
    """Create the open_clip model named by ``cfg``.

    With ``weights_in_checkpoint`` (a checkpoint that holds every CLIP weight, e.g. a converted
    authors' one) ``cfg.pretrained`` is not loaded: seeded random weights stand in until the
    checkpoint overwrites them.

    Returns
    -------
    (clip_model, tokenizer, (mean, std))
        the model on the CPU in fp32 and eval mode, its open_clip tokenizer and the image
        normalisation statistics of its pretraining.
    """
    import open_clip

    register_model_configs()
    name = cfg.clip_model
    _check_model_name(name)
    pretrained = cfg.pretrained

    if weights_in_checkpoint:
        with weights_follow():  # the checkpoint's weights follow: open_clip's random-init notice would mislead
            clip_model = _seeded_random_clip(name, _quick_gelu_of(cfg))
        logger.info("%s: every CLIP weight comes from the checkpoint (model.pretrained %r is not read)",
                    name, pretrained)
    elif pretrained is None:
        if not cfg.allow_random_init:
            raise ModelConfigError(
                "model.pretrained is null (random CLIP weights) but model.allow_random_init is false; "
                "set model.pretrained to an open_clip tag or a local weight file"
            )
        quick = _resolve_quick_gelu(cfg, None, None)
        logger.warning(
            "model.pretrained is null: %s is RANDOMLY initialised (allow_random_init=true); "
            "results are meaningless beyond smoke tests", name,
        )
        # Random weights come from a fixed seed, without touching the global RNG: every process
        # that builds this config (training, evaluation, a resumed run) gets the same frozen weights,
        # so a checkpoint that stores only the trainable parameters restores the same model.
        clip_model = _seeded_random_clip(name, quick)
    elif looks_like_path(pretrained) or Path(pretrained).expanduser().is_file():
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ModelConfigError(
                f"model.pretrained = '{pretrained}' looks like a weight file path but {path} does not exist "
                "(or is not a file); the sample env's tiny CLIP is written by "
                "`kedro run --pipelines=pretrain_sample --env=sample` (bash scripts/demo.sh runs it)"
            )
        quick = _resolve_quick_gelu(cfg, None, str(path))
        with weights_follow():
            clip_model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick)
        load_clip_from_file(clip_model, path, model_name=name)
    else:
        from open_clip.pretrained import get_pretrained_cfg

        tag_cfg = get_pretrained_cfg(name, pretrained)
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ModelConfigError(
                f"model.pretrained = '{pretrained}' is neither an open_clip tag of {name} "
                f"(known: {tags}) nor a weight file path"
            )
        quick = _resolve_quick_gelu(cfg, tag_cfg, None)
        try:
            clip_model = open_clip.create_model(
                name, pretrained=pretrained, cache_dir=cfg.cache_dir, force_quick_gelu=quick
            )
        except Exception as exc:  # noqa: BLE001 - network/hub errors come in many types
            raise ModelConfigError(
                f"could not fetch '{pretrained}' weights for {name}; offline? download them once online "
                f"or set model.pretrained to a local file path ({type(exc).__name__}: {exc})"
            ) from exc
        logger.info("loaded open_clip %s weights '%s' (quick_gelu=%s)", name, pretrained, quick)

    clip_model = clip_model.float().eval()
    tokenizer = open_clip.get_tokenizer(name)
    return clip_model, tokenizer, _mean_std(clip_model)
