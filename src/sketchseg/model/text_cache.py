"""Embeddings of the frozen text tower, cached by string (``Levers.text_cache``).

The text tower never trains, so a caption's or prompt's embedding can be computed once and kept:
``TextCache.encode`` runs the tower only on the strings it has not seen. Cached strings are encoded
in full, fixed-shape batches (padded with empty strings), so a text's embedding is bit-identical
whatever it was encoded with. Category-name ensembles (``prompt_ensemble``) are cached apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchseg.model.prompt_ensemble import ensemble_embeddings, ensemble_templates

logger = logging.getLogger(__name__)

_TEXT_BATCH = 64
_TEXT_CACHE_MAX = 200_000


class TextCache:
    """L2-normalised fp32 embeddings of ``tower`` (a ``TextTower``) cached by string.

    Not a module (it holds no parameters; ``tower`` stays registered on its owner). The owner
    passes the device the tower lives on and empties the cache (``clear``) when it moves the tower
    to another device or dtype.

    Attributes
    ----------
    embeddings
        ``{text: (D,) embedding}``.
    ensembles
        ``{(category name, subtract_empty): (D,) embedding}`` of the 85-template ensemble.
    """

    def __init__(self, tower: nn.Module, tokenizer: Callable[..., torch.Tensor], embed_dim: int) -> None:
        self.tower = tower
        self.tokenizer = tokenizer
        self.embed_dim = embed_dim
        self.embeddings: dict[str, torch.Tensor] = {}
        self.ensembles: dict[tuple[str, bool], torch.Tensor] = {}
        self._placement = self._tower_placement()

    def _tower_placement(self) -> tuple[torch.device, torch.dtype] | None:
        param = next(self.tower.parameters(), None)
        return None if param is None else (param.device, param.dtype)

    def follow_tower(self) -> None:
        """After the model moved (``.to()``, ``.half()``): forget the cache when the tower now lives
        on another device or dtype, keep it when it did not move (a ``Segmenter`` of an already
        placed model, ``.to("cpu")`` on CPU)."""
        placement = self._tower_placement()
        if placement != self._placement:
            self.clear()
        self._placement = placement

    def clear(self) -> None:
        """Forget every cached embedding (they live on the old device / dtype)."""
        self.embeddings = {}
        self.ensembles = {}

    def batches(self, texts: list[str], device: torch.device, *, padded: bool) -> Iterator[torch.Tensor]:
        """Normalised fp32 embeddings of ``texts`` in chunks of ``_TEXT_BATCH``; ``padded``: every
        chunk is a full, fixed-shape batch (padded with empty strings), so that a text's embedding
        is bit-identical whatever it is encoded with (a resumed run, with an empty cache, then
        reproduces an uninterrupted one exactly)."""
        was_training = self.tower.training
        self.tower.eval()
        try:
            with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
                for start in range(0, len(texts), _TEXT_BATCH):
                    chunk = texts[start : start + _TEXT_BATCH]
                    batch = chunk + [""] * (_TEXT_BATCH - len(chunk)) if padded else chunk
                    tokens = self.tokenizer(batch).to(device)
                    yield F.normalize(self.tower(tokens).float(), dim=-1)[: len(chunk)]
        finally:
            self.tower.train(was_training)

    def _fill(self, missing: list[str], device: torch.device, needed: Sequence[str] = ()) -> None:
        """Encode ``missing`` into the cache; when it would outgrow ``_TEXT_CACHE_MAX`` the cache
        is emptied first, except for the strings of ``needed`` (the current request) it holds."""
        if len(self.embeddings) + len(missing) > _TEXT_CACHE_MAX:
            self.embeddings = {t: self.embeddings[t] for t in dict.fromkeys(needed) if t in self.embeddings}
        start = 0
        for emb in self.batches(missing, device, padded=True):
            for t, e in zip(missing[start : start + emb.shape[0]], emb):
                self.embeddings[t] = e
            start += emb.shape[0]

    def encode(self, texts: Sequence[str], device: torch.device, *, cache: bool) -> torch.Tensor:
        """Embeddings (N, D) of ``texts``, no gradient; through the cache when ``cache``, else the
        tower runs on exactly these strings, unpadded (the reference path)."""
        if isinstance(texts, str):
            raise ValueError("encode_text expects a list of strings, got a single string")
        texts = list(texts)
        if not texts:
            return torch.empty(0, self.embed_dim, device=device)
        if not cache:
            return torch.cat(list(self.batches(texts, device, padded=False)))
        missing = [t for t in dict.fromkeys(texts) if t not in self.embeddings]
        if missing:
            self._fill(missing, device, needed=texts)
        return torch.stack([self.embeddings[t] for t in texts])

    def precompute(self, texts: Sequence[str], device: torch.device) -> int:
        """Encode the strings of ``texts`` not cached yet; returns how many were encoded."""
        missing = [t for t in dict.fromkeys(str(t) for t in texts) if t not in self.embeddings]
        if missing:
            self._fill(missing, device)
            logger.info("text cache: %d embeddings precomputed (%d cached)", len(missing), len(self.embeddings))
        return len(missing)

    def ensemble(self, names: list[str], encode: Callable[[list[str]], torch.Tensor], *,
                 subtract_empty: bool) -> torch.Tensor:
        """Ensemble embeddings (N, D) of category ``names`` (non-empty), encoded with ``encode``
        for the names not cached yet."""
        missing = list(dict.fromkeys(n for n in names if (n, subtract_empty) not in self.ensembles))
        if missing:
            rows = ensemble_embeddings(encode, missing, ensemble_templates(), subtract_empty=subtract_empty)
            self.ensembles.update(((n, subtract_empty), row) for n, row in zip(missing, rows))
        return torch.stack([self.ensembles[n, subtract_empty] for n in names])
