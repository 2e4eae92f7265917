"""Pre-training of the sample's tiny CLIP-shaped model on generated sketch-text pairs (the demo
needs a CLIP to start from, and the tiny model has no published weights)."""
