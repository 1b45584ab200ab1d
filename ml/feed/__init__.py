"""The home feed's offline models: stage-1 candidates, the stage-2 reranker, their evaluation.

The stage-1 models (lightgcn.py, als.py, popularity.py, retrieval.py) are a pure
library, arrays in and arrays out, so unit tests drive them with small matrices.
Around them: data.py reads the interactions, split.py cuts them in time,
history.py and candidates.py build what the reranker sees, rerank.py fits it,
train.py and evaluate.py are the two commands (cli.py).
"""
