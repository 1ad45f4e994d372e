"""The endpoints, one router per feature: ``rag`` (our own retrieve and query), ``openai`` (the
OpenAI-compatible chat, models and embeddings), ``documents`` (a source's original file and
its PDF page as an image) and ``service`` (health and the index's
description). ``create_app`` includes them; each reads its app's state through ``Context``."""
