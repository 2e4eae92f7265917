"""CLIP-style contrastive pre-training of the tiny CLIP on generated sketches (sample env only).

Why: the paper fine-tunes a CLIP that was *pre-trained* on image-text pairs; its method (frozen
text tower, LayerNorm + visual prompts) relies on that image-text alignment. The sample's
``sketchseg-tiny`` architecture has no published weights, and from random weights the frozen text
tower gives near-identical prompt embeddings, so nothing can be learned. This module gives the
tiny CLIP a small CLIP-like starting point: both towers trained with the symmetric InfoNCE loss
(learnable logit scale, AdamW) on generated pairs, image-level only (no patch or mask labels,
as CLIP never sees any).

Pairs (:func:`.pairs.make_pair`) come from :mod:`sketchseg.data.sample`'s drawing routines:

* single objects: 1..``MAX_COUNTS[c]`` instances of one category drawn where scenes draw them,
  paired with a text drawn per visit ("A sketch of tree.", "a tree", "two trees", a one-object
  caption from ``make_caption`` ...); all single objects of a category are positives of each other;
* scenes: ``make_scene`` with its caption.

Seed space: pair ``i`` of stream ``s`` is drawn with ``np.random.default_rng([SEED_TAG, seed, s, i])``;
the sample's sketches use ``[seed, participant, k]`` keys, so pre-training never sees a sample
(train, val or test) sketch. Images are rendered like the sample's rasters (256 px, 3-px ink) and
resized with Lanczos to the architecture's input size, as ``load_sketch_image`` does.

Weights are returned as an open_clip state dict (``clip_model.state_dict()``) that
``clip_loader.load_clip`` reads back from a ``.safetensors`` file.

Modules: :mod:`.config` (``PretrainConfig``, seed keys), :mod:`.pairs` (generated sketch-text
pairs), :mod:`.clip` (the randomly initialised open_clip model and its input), :mod:`.losses`
(InfoNCE, ink and multiple-instance losses), :mod:`.evaluate` (held-out alignment), :mod:`.loop`
(``pretrain_clip`` and its LR schedule) and :mod:`.weights` (safetensors files).
"""
