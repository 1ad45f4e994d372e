"""NLTK, imported for the one thing indexer uses it for: the Punkt sentence tokenizer inside
LlamaIndex's ``SentenceSplitter`` (``llama_index.core.utils.globals_helper.punkt_tokenizer``).

Any ``import nltk.<module>`` first runs ``nltk/__init__.py``, which imports the whole toolkit, and
with it scikit-learn (``nltk.classify.scikitlearn``, ``nltk.parse.transitionparser``) and SciPy
(``nltk.metrics``, ``nltk.translate``) where they are installed: about 1,500 modules and 1.3 s of
CPU in a build that edited one file, against 0.35 s without them. NLTK imports both inside
``try: ... except ImportError``; without them only its scikit-learn classifier wrapper, a few
statistics (Fisher's exact test) and a parser's training lose a feature, none of which Punkt or
anything in indexer uses. So NLTK is imported here with both hidden from it, as if they were not
installed. Hidden only from the importing thread and only during NLTK's import
(``indexer/import_without.py``): any other thread, and everything afterwards, imports them as usual.
"""

from __future__ import annotations

from indexer.import_without import import_without

# NLTK's optional dependencies that Punkt never needs (top-level package names).
_OPTIONAL = frozenset({"sklearn", "scipy"})


def import_nltk() -> None:
    """Import NLTK without its optional scientific dependencies, once per process; a no-op when
    NLTK is imported already (however it was)."""
    import_without("nltk", _OPTIONAL)
