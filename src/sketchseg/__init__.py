"""sketchseg: open-vocabulary scene sketch segmentation with a two-level fine-tuned CLIP ViT."""

__version__ = "0.1.0"
