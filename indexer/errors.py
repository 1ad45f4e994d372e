"""Errors a user can act on.

Everything the CLI reports without a traceback derives from ``IndexerError``; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations


class IndexerError(Exception):
    """A problem with the user's input or environment, explained in one paragraph."""

    exit_code = 2


class ConfigError(IndexerError):
    """The config file (or an override) is malformed or invalid."""


class DataError(IndexerError):
    """The documents folder is missing, empty or unusable."""


class ModelError(IndexerError):
    """A model (embedding or LLM) cannot be found or loaded."""


class StoreError(IndexerError):
    """The vector store rejected a request or cannot be reached."""


class IndexMismatchError(IndexerError):
    """The index on disk was built with settings that differ from the config."""


class ClusterError(IndexerError):
    """A Ray cluster (``build.engine: ray``) cannot be reached or cannot run the build's workers."""
