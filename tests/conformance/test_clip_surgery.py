"""Conformance: sketchseg's two-path encoder equals CLIP Surgery's own dual-path ViT.

The fixture ``fixtures/clip_surgery_dual_path.npz`` holds the outputs of the ``VisionTransformer``
of xmed-lab/CLIP_Surgery (``clip/clip_surgery_model.py``, commit in the fixture and in
``README.md``) on 3 images, with random weights regenerated here from the stored seed (the weights
themselves are never stored). Their forward returns one tensor: token 0 is the ORIGINAL (q-k)
path's class token, tokens 1.. are the v-v path's patch tokens, both after ``ln_post`` and
``proj``; the fixture also holds the full token sets of each path (their transformer's
``[x, x_ori]`` output through their ``ln_post`` / ``proj``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchseg.model.encoder import SketchEncoder

FIXTURE = Path(__file__).parent / "fixtures" / "clip_surgery_dual_path.npz"
ATOL = 1e-5  # fp32 fixture; measured max |diff| ~1e-6


def regenerate_weights(keys: list[str], shapes: list[tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """The fixture's weight recipe (also stored in it as ``weight_recipe``).

    ``numpy.random.default_rng(seed)``; for every key in sorted order ``z = standard_normal(shape)``
    (float64), then LayerNorm weights (``ln_*.weight``) ``1 + 0.1 z``; biases (``*.bias``,
    ``in_proj_bias``) ``0.1 z``; ``class_embedding`` / ``positional_embedding`` ``0.5 z``; ``proj``
    ``z / sqrt(shape[0])``; any other weight ``z / sqrt(prod(shape[1:]))`` (fan-in); cast to float32.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in sorted(zip(keys, shapes)):
        z = rng.standard_normal(shape)
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2].startswith("ln_") and parts[-1] == "weight":
            w = 1.0 + 0.1 * z
        elif parts[-1] in ("bias", "in_proj_bias"):
            w = 0.1 * z
        elif key in ("class_embedding", "positional_embedding"):
            w = 0.5 * z
        elif key == "proj":
            w = z / np.sqrt(shape[0])
        else:
            w = z / np.sqrt(np.prod(shape[1:]))
        out[key] = torch.from_numpy(w.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def weights(fixture) -> dict[str, torch.Tensor]:
    keys = [str(k) for k in fixture["key_names"]]
    shapes = [tuple(int(s) for s in str(v).strip("[]").split(",")) for v in fixture["key_shapes"]]
    return regenerate_weights(keys, shapes, int(fixture["seed"]))


def build_encoder(weights: dict[str, torch.Tensor], fixture, **kwargs) -> SketchEncoder:
    """open_clip's CLIP with the fixture's vision config (OpenAI layout, QuickGELU), its weights."""
    from open_clip.model import CLIP

    cfg = ast.literal_eval(str(fixture["config"]))
    vision_cfg = dict(image_size=cfg["input_resolution"], patch_size=cfg["patch_size"], width=cfg["width"],
                      layers=cfg["layers"], head_width=cfg["width"] // cfg["heads"], mlp_ratio=4.0)
    text_cfg = dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    clip = CLIP(cfg["output_dim"], vision_cfg, text_cfg, quick_gelu=True).eval()
    clip.visual.load_state_dict(weights, strict=True)
    return SketchEncoder(clip.visual, vv_blocks=[int(i) for i in fixture["vv_blocks"]], **kwargs).eval()


def test_weights_regenerate_from_the_seed(fixture, weights):
    sums = np.array([float(weights[str(k)].double().abs().sum()) for k in fixture["key_names"]])
    np.testing.assert_allclose(sums, fixture["key_abs_sums"], rtol=1e-12)


def test_fixture_is_discriminative(fixture):
    # CLIP Surgery puts the v-v path on the last six blocks; the two paths must differ by far more
    # than the tolerance, and the returned tensor is [original cls, v-v patches]
    n_layers = ast.literal_eval(str(fixture["config"]))["layers"]
    assert list(fixture["vv_blocks"]) == list(range(n_layers - 5, n_layers + 1))
    assert np.abs(fixture["vv_tokens"] - fixture["ori_tokens"])[:, 1:].max() > 1000 * ATOL
    np.testing.assert_array_equal(fixture["surgery_output"][:, 0], fixture["ori_tokens"][:, 0])
    np.testing.assert_array_equal(fixture["surgery_output"][:, 1:], fixture["vv_tokens"][:, 1:])


@pytest.mark.parametrize(
    "dtype,kwargs",
    [
        (torch.float32, dict(attention="sdpa")),
        (torch.float32, dict(attention="manual")),
        (torch.float32, dict(attention="manual", shared_qkv=False)),
        (torch.float64, dict(attention="sdpa")),
    ],
)
def test_dual_path_forward_equals_clip_surgery(fixture, weights, dtype, kwargs):
    encoder = build_encoder(weights, fixture, **kwargs).to(dtype)
    pixels = torch.from_numpy(fixture["images"]).to(dtype)
    with torch.no_grad():
        two = encoder(pixels, vv=True)
        one = encoder(pixels, vv=False)
    surgery = fixture["surgery_output"]
    # their returned tensor: original-path class token + v-v path patch tokens
    np.testing.assert_allclose(two.vst.double().numpy(), surgery[:, 0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(two.patches.double().numpy(), surgery[:, 1:], rtol=0, atol=ATOL)
    # the v-v path's own class token and the original path's patch tokens
    np.testing.assert_allclose(two.vv_vst.double().numpy(), fixture["vv_tokens"][:, 0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(one.patches.double().numpy(), fixture["ori_tokens"][:, 1:], rtol=0, atol=ATOL)
    np.testing.assert_allclose(one.vst.double().numpy(), fixture["ori_tokens"][:, 0], rtol=0, atol=ATOL)
