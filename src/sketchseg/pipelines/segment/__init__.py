"""segment pipeline: segment a folder of user sketches with a chosen checkpoint."""
