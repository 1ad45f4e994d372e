"""NLTK, imported for the one thing indexer uses it for: the Punkt sentence tokenizer inside
LlamaIndex's ``SentenceSplitter`` (``llama_index.core.utils.globals_helper.punkt_tokenizer``).

Any ``import nltk.<module>`` first runs ``nltk/__init__.py``, which imports the whole toolkit, and
with it scikit-learn (``nltk.classify.scikitlearn``, ``nltk.parse.transitionparser``) and SciPy
(``nltk.metrics``, ``nltk.translate``) where they are installed: about 1,500 modules and 1.3 s of
CPU in a build that edited one file, against 0.35 s without them. NLTK imports both inside
``try: ... except ImportError``; without them only its scikit-learn classifier wrapper, a few
statistics (Fisher's exact test) and a parser's training lose a feature, none of which Punkt or
anything in indexer uses. So NLTK is imported here with both hidden from it, as if they were not
installed. Hidden only from the importing thread and only during NLTK's import: any other thread,
and everything afterwards (bm25s imports SciPy), imports them as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# NLTK's optional dependencies that Punkt never needs (top-level package names).
_OPTIONAL = frozenset({"sklearn", "scipy"})

_lock = threading.Lock()


class _HideFromThread(importlib.abc.MetaPathFinder):
    """Answers "not installed" for ``_OPTIONAL`` packages not imported yet, to one thread only."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if threading.get_ident() == self.thread and fullname.split(".", 1)[0] in _OPTIONAL:
            raise ModuleNotFoundError(f"{fullname!r} is hidden while NLTK imports", name=fullname)
        return None  # the other finders decide


def import_nltk() -> None:
    """Import NLTK without its optional scientific dependencies, once per process; a no-op when
    NLTK is imported already (however it was)."""
    if "nltk" in sys.modules:
        return
    with _lock:
        if "nltk" in sys.modules:
            return
        finder = _HideFromThread()
        sys.meta_path.insert(0, finder)
        try:
            importlib.import_module("nltk")
        finally:
            sys.meta_path.remove(finder)
