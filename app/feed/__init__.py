"""The home-feed family (HOME_FEED, CATEGORY_FEED): candidates from several sources, reranked."""
