"""Stage-1 models of the home feed as a pure library: arrays in, arrays out.

LightGCN (the candidate model), implicit's ALS (the baseline and the fallback when no
LightGCN model exists), popularity (the last resort) and exact top-k retrieval over the
embeddings they produce. Nothing here reads a database or a file, so the unit tests
drive every model with small matrices, and training, evaluation and serving share it.
"""
