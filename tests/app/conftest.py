"""Shared set-up of the app tests: a tiny checkpoint, sketches drawn with PIL, a served app."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from sketchseg.model.checkpoint import save_checkpoint
from sketchseg.model.config import ModelConfig
from sketchseg.model.model import build_model

TINY = dict(
    clip_model="sketchseg-tiny", pretrained=None, allow_random_init=True, image_size=64,
    vv_blocks=[4, 5, 6], cross_attention_layers=[4, 5, 6], category_loss_layers=[4, 5, 6],
)


def make_checkpoint(path: Path, seed: int = 5) -> Path:
    """A tiny random-weight model with perturbed prompts / LayerNorms, saved with save_checkpoint."""
    model = build_model(ModelConfig(**TINY))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return save_checkpoint(path, model, {"epoch": 1})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("app_models") / "tiny" / "best.safetensors")


def house_and_sun(size: tuple[int, int] = (240, 160), mode: str = "L") -> Image.Image:
    """A house (square + roof) and a sun (circle) in black on white."""
    im = Image.new(mode, size, "white")
    d = ImageDraw.Draw(im)
    d.rectangle([20, 70, 100, 150], outline="black", width=4)
    d.line([(15, 70), (60, 25), (105, 70)], fill="black", width=4)
    d.ellipse([160, 15, 220, 75], outline="black", width=4)
    return im


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_app(tiny_checkpoint, tmp_path_factory):
    """The app started by the command line's own launch() on 127.0.0.1 and a free port (in this
    process, not blocking); yields its URL and closes it afterwards."""
    from sketchseg.app.cli import launch, parse_args

    models = tiny_checkpoint.parent.parent
    args: argparse.Namespace = parse_args(["--checkpoint", str(tiny_checkpoint), "--models-dir", str(models),
                                           "--port", str(free_port())])
    page, url = launch(args, block=False)
    try:
        yield url
    finally:
        page.close()
