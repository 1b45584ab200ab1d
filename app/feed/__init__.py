"""The home feed: candidate models stored in PostgreSQL, the reranker's artifact, its features."""
