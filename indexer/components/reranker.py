"""The optional cross-encoder that re-scores retrieved passages against the question."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.components.devices import check_device
from indexer.components.openmp_env import set_wait_policy_before_torch
from indexer.config.models import RerankConfig
from indexer.errors import ModelError


def load_reranker(config: RerankConfig) -> Any:
    """A sentence-transformers ``CrossEncoder`` from a local folder or the Hugging Face cache.

    Loading never reaches the network when ``HF_HUB_OFFLINE=1``; a model that is not on the
    machine is a clear error naming the setting, not a download attempt in the middle of a query.
    """
    set_wait_policy_before_torch()
    from sentence_transformers import CrossEncoder

    check_device(config.device, "retrieval.rerank.device")
    try:
        return CrossEncoder(config.model, device=config.device)
    except Exception as exc:  # no such folder, not in the cache while offline, not a cross-encoder
        where = "folder" if Path(config.model).exists() else "model"
        raise ModelError(
            f"cannot load the cross-encoder {where} {config.model!r} (retrieval.rerank.model): "
            f"{type(exc).__name__}: {exc}. Point it at a local sentence-transformers CrossEncoder "
            "folder, or remove retrieval.rerank to retrieve without reranking."
        ) from None
