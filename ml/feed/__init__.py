"""The home feed's offline models: candidates (LightGCN, ALS, popularity), a reranker, their evaluation."""
