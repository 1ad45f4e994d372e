"""What an index must agree on with the model that embeds into it or queries it: one
``EmbeddingIdentity``, known in part from the config alone (before the model loads, so a mismatched
config is refused before torch is imported) and in whole once vectors exist."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.components.embedding.load import (
    display_name,
    hub_cache_folder,
    resolve_dtype,
    resolve_model_location,
)
from indexer.config.models import EmbeddingConfig

log = logging.getLogger(__name__)

# Files that define what a sentence-transformers folder computes; weights are covered by size and a
# hash of their first megabyte, which changes with any re-training without reading gigabytes.
_DEFINING_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True, kw_only=True)
class EmbeddingIdentity:
    """The vector space of an index, as its manifest records it (``record``) and as a config or a
    loaded model gives it. A field left ``None`` is not known yet, and not checked: the dimension
    before the model loads, the fingerprint of a Hugging Face model not downloaded yet.
    ``index/manifest.py`` compares the keys it lists in ``EMBEDDING_KEYS``."""

    name: str
    fingerprint: str | None = None
    dimension: int | None = None
    normalize: bool
    query_prefix: str
    passage_prefix: str
    # int8 weights give other vectors than the model's own: a space of its own for the manifest.
    quantization: str = "none"
    backend: str = "torch"
    # Recorded, not checked (manifest EMBEDDING_KEYS): bfloat16/float16 vectors retrieve what float32
    # ones do (benchmarks/embedding_dtype.py), so indexes and questions may mix them.
    dtype: str = "float32"
    # ``embedding.provider: llama_index``: the class's keyword arguments, without secrets; recorded
    # for the reader, not checked (a batch size changes no vector; the fingerprint covers the rest).
    kwargs: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """The manifest's form: the known fields."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def with_dimension(self, dimension: int) -> EmbeddingIdentity:
        return dataclasses.replace(self, dimension=dimension)


def config_identity(config: EmbeddingConfig) -> EmbeddingIdentity:
    """The model's identity as far as it is known without loading it (no dimension): enough to
    refuse a mismatched config before torch is even imported.

    A Hugging Face model that is not downloaded yet has no fingerprint here: it is unknown until the
    load downloads it, and a field left unknown is not checked (as the dimension). The build then
    records the fingerprint of the downloaded files, the same one every later process computes.
    """
    if config.provider == "llama_index":
        from indexer.components.embedding.llama_index import safe_kwargs

        # The class computes as it does: its vectors' fingerprint (known once it loads) is checked.
        return EmbeddingIdentity(
            name=str(config.class_),
            normalize=config.normalize,
            query_prefix=config.query_prefix,
            passage_prefix=config.passage_prefix,
            backend="llama_index",
            kwargs=safe_kwargs(config.kwargs),
        )
    name = display_name(config.model)
    return EmbeddingIdentity(
        name=name,
        fingerprint=_fingerprint(resolve_model_location(config.model), name),
        normalize=config.normalize,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
        quantization=config.quantization,
        backend=config.backend,
        dtype=resolve_dtype(config)[0],
    )


def identity_to_check(config: EmbeddingConfig, recorded: Mapping[str, Any]) -> EmbeddingIdentity:
    """What to check an index's ``recorded`` identity against before any work: the config's. A
    LlamaIndex class is known by its vectors only, so where its kwargs differ from those recorded
    it is loaded for its fingerprint (unchanged kwargs load nothing: a no-op build stays cheap)."""
    identity = config_identity(config)
    if config.provider == "llama_index" and recorded.get("kwargs") != identity.kwargs:
        from indexer.components.embedding.llama_index import LlamaIndexEmbedder

        return LlamaIndexEmbedder(config).identity
    return identity


def loaded_identity(config: EmbeddingConfig, dimension: int) -> EmbeddingIdentity:
    """The identity of a model that has loaded in this process (so its files are here)."""
    identity = config_identity(config)
    fingerprint = loaded_fingerprint(resolve_model_location(config.model), identity.name)
    return dataclasses.replace(identity, fingerprint=fingerprint, dimension=dimension)


def identity_for(config: EmbeddingConfig, dimension: int) -> EmbeddingIdentity:
    """The identity of vectors of ``dimension`` made with ``config``, without loading the model
    (a Ray build's driver knows its vectors, not the workers' models). A Hugging Face model not
    downloaded on the driver has no fingerprint here: left out, it is not checked, and the next
    build that loads the model records it. A LlamaIndex class is known by its vectors only: it is
    loaded here (once per process) for its fingerprint."""
    if config.provider == "llama_index":
        from indexer.components.embedding.llama_index import LlamaIndexEmbedder

        return LlamaIndexEmbedder(config).identity
    return config_identity(config).with_dimension(dimension)


def loaded_fingerprint(location: str, name: str) -> str:
    """The fingerprint of a model that has loaded, so its files are on this machine."""
    fingerprint = _fingerprint(location, name)
    if fingerprint is not None:
        return fingerprint
    # Loaded, yet its files are not where loading keeps them (another cache, say): its name is all
    # that identifies it. Every process that loads it the same way computes the same name hash.
    log.warning(
        "cannot find the files of embedding model %r in %s: the index records its name only, so a "
        "changed model under the same name will not be detected",
        name,
        hub_cache_folder(),
    )
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def model_fingerprint(config: EmbeddingConfig) -> str | None:
    """The fingerprint of ``config``'s model files, or ``None`` for a Hugging Face id not
    downloaded yet (the ONNX files are kept under it)."""
    return _fingerprint(resolve_model_location(config.model), display_name(config.model))


def _fingerprint(location: str, name: str) -> str | None:
    """A hash of the model's defining files, or ``None`` for a Hugging Face id not downloaded yet."""
    folder = Path(location)
    if not folder.is_dir():
        snapshot = _hub_snapshot(location)
        if snapshot is None:
            return None
        folder = snapshot
    return _folder_fingerprint(folder, name)


# Once per process and folder: a build asks several times, and each reads the config files and 1 MB
# of weights. A hub snapshot's folder names its revision, so a newer download is hashed afresh.
@functools.lru_cache(maxsize=8)
def _folder_fingerprint(folder: Path, name: str) -> str:
    digest = hashlib.sha256()
    found = False
    for rel in _DEFINING_FILES:
        path = folder / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + path.read_bytes())
            found = True
    for rel in _WEIGHT_FILES:
        path = folder / rel
        if path.is_file():
            with path.open("rb") as fh:
                digest.update(rel.encode() + str(path.stat().st_size).encode() + fh.read(1 << 20))
            found = True
    if not found:  # another layout: the name is all there is
        digest.update(name.encode())
    return digest.hexdigest()[:16]


def _hub_snapshot(repo_id: str) -> Path | None:
    """The downloaded snapshot of a Hugging Face model, or ``None`` when ``repo_id`` is not
    downloaded (or is no hub id at all). Other failures (an unreadable cache) surface."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=hub_cache_folder(), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        return None
