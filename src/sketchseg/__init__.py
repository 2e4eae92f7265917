"""sketchseg: open-vocabulary scene sketch segmentation with a two-level fine-tuned CLIP ViT."""

import os

__version__ = "0.1.0"

# Bit-reproducible CPU runs across processes: without conditional numerical reproducibility,
# Intel MKL (torch's CPU BLAS) picks code paths by memory alignment, so two processes with the
# same seeds drift apart by float rounding after a few epochs. AUTO,STRICT keeps the fastest
# instruction set. Must be set before MKL's first call (importing sketchseg before torch runs
# does; scripts/setup.sh exports it too). A value set by the user wins (e.g. MKL_CBWR=AUTO for
# speed over reproducibility).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
