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

# Sleeping, not spinning, OpenMP threads between parallel regions (GNU OpenMP's OMP_WAIT_POLICY,
# read when torch's OpenMP runtime starts: importing sketchseg before torch, or scripts/setup.sh).
# Same results (the policy changes how idle threads wait, not the arithmetic), as fast on an idle
# machine, and far faster on a shared one: with one competing busy process on 2 cores, spinning
# threads made the tiny CLIP's pre-training 2.9x slower, sleeping ones 1.7x (docs/demo-timing.md).
# A value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
