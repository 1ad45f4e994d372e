"""The index each variant is evaluated against.

Evaluation never writes into the config's own index. A dataset's corpus (a BEIR ``corpus.jsonl``,
or the config's ``data`` folder for question files) is indexed into a folder of its own, keyed by
the corpus, the embedding model and the chunking: variants that differ only in query settings
share one index, and later runs reuse it (after an incremental sync, which embeds nothing when
nothing changed).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.components import Components
from indexer.config.models import Config
from indexer.eval.datasets import Dataset, read_corpus
from indexer.index.index import Index
from indexer.index.manifest import EMBEDDING_KEYS, Manifest

DEFAULT_CACHE_FOLDER = "eval-indexes"


class EvalComponents(Components):
    """Components whose LLM is shared by every variant with the same LLM settings: a sweep loads
    a GGUF once, and llama.cpp runs one generation at a time on all cores."""

    def __init__(self, config: Config, llm_cache: dict[str, tuple[Any, str | None]]) -> None:
        super().__init__(config)
        self._llm_cache = llm_cache

    @property
    def llm(self) -> Any:
        from indexer.components.llm_loader import load_llm

        key = self.config.llm.model_dump_json()
        if key not in self._llm_cache:
            # One model in memory at a time: a sweep over LLM settings must not hold several GGUFs.
            self._llm_cache.clear()
            self._llm_cache[key] = load_llm(self.config.llm)
        llm, self.llm_notice = self._llm_cache[key]
        return llm


@dataclass
class PreparedIndex:
    key: str
    location: str
    manifest: Manifest
    index: Index
    build: dict[str, Any] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "location": self.location,
            "documents": len(self.manifest.files),
            "chunks": self.manifest.chunk_count,
            "embedding": self.manifest.embedding.get("name"),
            "chunking": self.manifest.chunking,
            "build": self.build,
            "variants": self.variants,
        }


class IndexCache:
    def __init__(
        self, root: Path | None, llm_cache: dict[str, tuple[Any, str | None]], show_progress: bool
    ) -> None:
        self.root = root
        self.llm_cache = llm_cache
        self.show_progress = show_progress
        self.prepared: dict[str, PreparedIndex] = {}

    def prepare(self, dataset: Dataset, config: Config, variant: str) -> tuple[PreparedIndex, Components]:
        """The index for ``dataset`` under ``config``'s embedding and chunking, synced once per run;
        and components for ``config`` pointed at it."""
        probe = Components(config)
        identity = probe.embedder.identity.record()
        key = index_key(dataset, config, identity)
        derived = _pointed_at(config, self._root_for(config), key)
        components = EvalComponents(derived, self.llm_cache)
        prepared = self.prepared.get(key)
        if prepared is None:
            index = Index(derived.vector_store)
            build = self._sync(dataset, components, index)
            manifest = index.current()
            assert manifest is not None
            prepared = PreparedIndex(
                key=key, location=index.location, manifest=manifest, index=index, build=build
            )
            self.prepared[key] = prepared
        prepared.variants.append(variant)
        return prepared, components

    def _root_for(self, config: Config) -> Path | None:
        if self.root is not None:
            return self.root
        persist = config.vector_store.persist_dir
        return persist.parent / DEFAULT_CACHE_FOLDER if persist is not None else None

    def _sync(self, dataset: Dataset, components: Components, index: Index) -> dict[str, Any]:
        chunking = components.config.chunking
        label = f"Indexing {dataset.name} ({chunking.chunk_size}/{chunking.chunk_overlap})"
        if dataset.corpus_path is not None:
            from indexer.ingestion.records import index_records

            return index_records(
                read_corpus(dataset.corpus_path),
                components,
                index,
                source=str(dataset.corpus_path),
                show_progress=self.show_progress,
                description=label,
            ).to_dict()
        from indexer.ingestion.pipeline import build_index

        built = build_index(components, index, show_progress=self.show_progress).to_dict()
        return {k: v for k, v in built.items() if k not in ("changes", "dry_run", "stages")}


def index_key(dataset: Dataset, config: Config, identity: dict[str, Any]) -> str:
    """Readable and unique: ``<corpus>-<model>-c<size>o<overlap>-<hash>``."""
    if dataset.corpus_path is not None:
        corpus: dict[str, Any] = {"records": str(dataset.corpus_path)}
        corpus_name = dataset.corpus_path.parent.name
    else:
        corpus = config.data.model_dump(mode="json")
        corpus_name = config.data.input_dir.name
    material = {
        "corpus": corpus,
        "chunking": config.chunking.model_dump(),
        # What defines the vector space, not how it is computed: torch and onnx share an index.
        "embedding": {k: identity[k] for k in EMBEDDING_KEYS if k in identity},
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:10]
    model = str(identity["name"]).rstrip("/").rsplit("/", 1)[-1]
    chunking = config.chunking
    sizes = f"c{chunking.chunk_size}o{chunking.chunk_overlap}"
    return f"{slug(corpus_name)[:40]}-{slug(model)[:40]}-{sizes}-{digest}"


def _pointed_at(config: Config, root: Path | None, key: str) -> Config:
    store = config.vector_store
    if root is not None and store.persist_dir is not None:
        new_store = store.model_copy(update={"persist_dir": root / key, "collection": "eval"})
    elif root is not None:
        new_store = store.model_copy(update={"persist_dir": root / key, "host": None, "collection": "eval"})
    else:
        # A Chroma server: the dataset index is a collection of its own on the same server.
        new_store = store.model_copy(update={"collection": f"eval-{key}"[:500]})
    # Metrics score document ids: de-duplication would hide a judged document behind a copy of
    # its text under another id (MS MARCO has such near-duplicate passages).
    retrieval = config.retrieval.model_copy(update={"dedupe": False})
    return config.model_copy(update={"vector_store": new_store, "retrieval": retrieval})


def slug(text: str) -> str:
    """``text`` as a file name that every file system takes (a variant's config, an index folder)."""
    return re.sub(r"[^A-Za-z0-9._=,-]+", "_", text).strip("_") or "x"
