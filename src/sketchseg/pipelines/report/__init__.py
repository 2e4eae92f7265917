"""report pipeline: catalogued figures and tables of a trained model (paper Fig. 7, S9, S11, S14, S2.2)."""
