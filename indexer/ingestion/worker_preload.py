"""Imported once by the chunking workers' fork server (``build_processes.child_context``), never by
a build itself: everything a worker needs before its first file is loaded here, so each forked
worker starts with it instead of loading it again.

The splitter's sentence tokenizer is NLTK's Punkt, and importing NLTK imports scikit-learn, SciPy
and pandas when they are installed: about 1,500 modules and 1.5 s of CPU, once per worker per build
when a worker loaded it at its first file.
"""

from llama_index.core.utils import globals_helper

from indexer.index import keyword
from indexer.ingestion import chunking, prepare, readers

WORKER_MODULES = (chunking, prepare, readers)  # what the workers run, imported here once

globals_helper.punkt_tokenizer  # noqa: B018  (built on first use; the workers inherit it)
keyword.chunk_terms("Load the stemmer and the stop words.")
