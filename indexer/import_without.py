"""Importing a library as if some of its optional dependencies were not installed.

Some libraries import a large optional dependency eagerly, inside ``try: ... except ImportError``,
for features indexer never uses. Imported with that dependency hidden, they take their own
"not installed" path, and a cold command skips the dependency's import:

- NLTK (``ingestion/punkt.py``) and scikit-learn and SciPy: 1.3 s of CPU in a build that edited
  one file, against 0.35 s without them.
- bm25s (``index/keyword.py``) and SciPy: 0.2 s of a cold query's 1.1 s.

Hidden only from the importing thread and only during that import: any other thread, and
everything afterwards, imports them as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

_lock = threading.Lock()


class _HideFromThread(importlib.abc.MetaPathFinder):
    """Answers "not installed" for ``hidden`` packages not imported yet, to one thread only."""

    def __init__(self, hidden: Iterable[str]) -> None:
        self.thread = threading.get_ident()
        self.hidden = frozenset(hidden)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if threading.get_ident() == self.thread and fullname.split(".", 1)[0] in self.hidden:
            raise ModuleNotFoundError(f"{fullname!r} is hidden while another module imports", name=fullname)
        return None  # the other finders decide


def import_without(name: str, hidden: Iterable[str]) -> ModuleType:
    """``import name``, with the top-level packages ``hidden`` looking uninstalled to it: once per
    process; a module imported already (however it was) is returned as it is."""
    if name in sys.modules:
        return sys.modules[name]
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        finder = _HideFromThread(hidden)
        sys.meta_path.insert(0, finder)
        try:
            return importlib.import_module(name)
        finally:
            sys.meta_path.remove(finder)
