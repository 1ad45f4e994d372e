"""Imported once by the chunking workers' fork server (``build_processes.child_context``), never by
a build itself: everything a worker needs before its first file is loaded here, so each forked
worker starts with it instead of loading it again.

The splitter's sentence tokenizer is NLTK's Punkt (imported as ``punkt.import_nltk`` does, without
SciPy and scikit-learn), built here once rather than once per worker per build at its first file.
"""

from llama_index.core.utils import globals_helper

from indexer.index import keyword
from indexer.ingestion import chunking, prepare, readers
from indexer.ingestion.punkt import import_nltk

WORKER_MODULES = (chunking, prepare, readers)  # what the workers run, imported here once

import_nltk()  # without SciPy and scikit-learn, which Punkt never uses (``punkt.py``)
globals_helper.punkt_tokenizer  # noqa: B018  (built on first use; the workers inherit it)
keyword.chunk_terms("Load the stemmer and the stop words.")
