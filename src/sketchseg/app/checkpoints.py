"""Which checkpoints the app offers, and the loaded models it keeps.

A checkpoint is any sketchseg safetensors file (the training pipeline's ``best.safetensors``, the
sample's, a converted authors' one): its metadata says the model it belongs to. A backbone file
(``tiny-clip.safetensors``, CLIP weights) has no sketchseg ``format`` and is not offered.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from sketchseg.api import Segmenter, load_model
from sketchseg.errors import SketchSegError
from sketchseg.model.checkpoint import KNOWN_FORMATS, read_checkpoint_metadata
from sketchseg.model.errors import CheckpointNotFoundError, ModelError

logger = logging.getLogger(__name__)

#: where the demo's model is written (`bash scripts/demo.sh`: variant ours-sample of the sample
#: environment, experiment.output_folder sample/ours-sample), relative to the project root; other
#: variants keep their own folders (data/06_models/<variant>/, data/06_models/sample/<variant>/)
SAMPLE_CHECKPOINT = Path("data/06_models/sample/ours-sample/best.safetensors")
MODELS_DIR = Path("data/06_models")


def is_checkpoint(path: str | Path) -> bool:
    """True for a safetensors file whose metadata names a sketchseg checkpoint format."""
    try:
        return read_checkpoint_metadata(path).get("format") in KNOWN_FORMATS
    except (SketchSegError, ModelError, OSError, ValueError):
        return False


def find_checkpoints(models_dir: str | Path = MODELS_DIR, extra: list[str | Path] | None = None) -> list[str]:
    """``extra`` paths first, then every sketchseg checkpoint under ``models_dir``: the demo's model
    (``SAMPLE_CHECKPOINT``) first, then the ``best.safetensors`` of every variant, then the others
    (sorted), as strings, without duplicates."""
    found: list[str] = [str(p) for p in (extra or []) if str(p).strip()]
    root = Path(models_dir)
    if root.is_dir():
        demo = root / SAMPLE_CHECKPOINT.relative_to(MODELS_DIR)
        files = sorted(root.rglob("*.safetensors"),
                       key=lambda p: (p != demo, p.name != "best.safetensors", str(p)))
        found += [str(p) for p in files if is_checkpoint(p)]
    return list(dict.fromkeys(found))


def is_offered(checkpoint: str | Path, models_dir: str | Path, started_with: str | Path | None = None) -> bool:
    """Whether the app may load ``checkpoint``: the ``--checkpoint`` it was started with, or a file
    under ``models_dir``, with every symlink resolved (a link out of the folder does not count).
    Anything else on the server (a file uploaded through the page's upload route, a file of another
    user) is not a checkpoint of this app, whatever its metadata says (#27)."""
    try:
        real = Path(checkpoint).expanduser().resolve()
        if started_with is not None and real == Path(started_with).expanduser().resolve():
            return True
        return real.is_relative_to(Path(models_dir).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte in the path
        return False


def default_checkpoint(choices: list[str]) -> str | None:
    """The checkpoint selected when the page opens: the first of ``choices`` (a given one, else the
    demo's model, which ``find_checkpoints`` lists first, else the first variant's best)."""
    return choices[0] if choices else None


class ModelCache:
    """Loaded models by checkpoint path (at most ``size``, least recently used dropped), loaded on
    the ``device`` once; thread-safe (gradio runs events in worker threads)."""

    def __init__(self, *, device: str = "cpu", size: int = 2) -> None:
        self.device = device
        self.size = max(1, int(size))
        self._models: OrderedDict[str, Segmenter] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: str | Path) -> Segmenter:
        """The model of ``checkpoint``; raises ``SketchSegError`` / ``ModelError`` / ``OSError`` when it cannot load."""
        key = str(Path(checkpoint).expanduser())
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if not Path(key).is_file():
                raise CheckpointNotFoundError(key)
            # the checkpoint's own configuration; a relative CLIP weight path is found from the
            # checkpoint's folders by the loader (model.checkpoint.clip_weights_beside)
            segmenter = load_model(key, device=self.device)
            self._models[key] = segmenter
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return segmenter
