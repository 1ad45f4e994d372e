"""Query: retrieval, answers, streaming and cited sources."""
