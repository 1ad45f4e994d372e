"""The ONNX Runtime route for embeddings: the model's transformer is exported to ONNX once, then
runs in onnxruntime (which chromadb already installs) in place of torch.

Why not sentence-transformers' own ``backend="onnx"``: it goes through optimum, whose releases pin
transformers<4.58 and huggingface-hub<1 and so break sentence-transformers 6. Exporting with
``torch.onnx`` and swapping only the transformer's forward keeps everything else the library's own
(prefixes, tokenising, length-sorted batching, pooling, normalising), so an ONNX vector equals the
torch vector to float precision, and a torch-built index can be queried through ONNX.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.errors import ModelError

_OPSET = 17


def cache_dir() -> Path:
    """Where exported models are kept unless ``embedding.backend_file`` says otherwise."""
    root = os.environ.get("INDEXER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "indexer"
    )
    return Path(root) / "onnx"


def model_file(fingerprint: str, quantization: str, backend_file: str | None) -> Path:
    if backend_file:
        return Path(backend_file).expanduser()
    suffix = "" if quantization == "none" else f"-{quantization}"
    return cache_dir() / f"{fingerprint}{suffix}.onnx"


def use_onnx(st_model: Any, path: Path, quantization: str) -> None:
    """Run ``st_model``'s transformer through onnxruntime, exporting it to ``path`` first if needed."""
    import torch

    transformer = st_model[0]
    if not isinstance(getattr(transformer, "model", None), torch.nn.Module):
        raise ModelError(
            "embedding.backend 'onnx' needs a sentence-transformers model whose first module is a "
            f"Transformer; this one starts with {type(transformer).__name__}. Use embedding.backend: torch."
        )
    if not path.is_file():
        _export(transformer, path, quantization)
    transformer.model = _onnx_transformer_class()(path, transformer.model.config)


@functools.cache
def _onnx_transformer_class() -> type:
    """Defined on first use: subclassing torch.nn.Module at import time would load torch."""
    import onnxruntime
    import torch

    class OnnxTransformer(torch.nn.Module):
        """Stands in for the Hugging Face model inside sentence-transformers' Transformer module:
        same inputs, same ``last_hidden_state`` output, computed by onnxruntime."""

        # onnxruntime computes on a thread pool of its own, which torch's settings do not reach:
        # a build runs it as one stream (components/cpu_streams.py is for torch's threads).
        runs_own_threads = True

        def __init__(self, path: Path, config: Any) -> None:
            super().__init__()
            options = onnxruntime.SessionOptions()
            # Spinning worker threads would hold both cores after each query and slow the llama.cpp
            # generation that follows it.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                self.session = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # a truncated or foreign file
                raise ModelError(
                    f"cannot load the ONNX embedding model {path}: {exc}. "
                    "Delete the file to have it exported again (embedding.backend_file)."
                ) from None
            self.input_names = [i.name for i in self.session.get_inputs()]
            self.config = config

        def forward(self, **features: Any) -> dict[str, Any]:
            feed = {name: features[name].cpu().numpy() for name in self.input_names}
            (hidden,) = self.session.run(["last_hidden_state"], feed)
            return {"last_hidden_state": torch.from_numpy(hidden)}

    return OnnxTransformer


def _export(transformer: Any, path: Path, quantization: str) -> None:
    """Export (and quantise) to a temporary file beside ``path``, then rename: a killed export
    or a second process never leaves a half-written model where the next load looks."""
    import torch

    try:
        import onnx  # noqa: F401  (torch.onnx and the quantiser need it)
    except ImportError:
        raise ModelError(
            "the ONNX embedding backend exports the model once with the 'onnx' package, which is "
            "not installed: pip install onnx"
        ) from None
    model = transformer.model
    # A padded batch of two lengths, so the traced graph keeps the attention-mask path.
    sample = transformer.tokenizer(
        ["an example passage to trace the model with", "a query"],
        return_tensors="pt",
        padding=True,
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        exported = Path(tmp) / "model.onnx"
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
        try:
            # The tracer warns about shapes it fixes (the tests check the graph against torch on
            # padded batches); the quantiser logs advice on the root logger.
            with warnings.catch_warnings(), _quiet_root_logger(), torch.inference_mode():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _Positional().eval(),
                    tuple(sample[n] for n in names),
                    str(exported),
                    input_names=names,
                    output_names=["last_hidden_state"],
                    dynamic_axes=axes,
                    opset_version=_OPSET,
                    dynamo=False,
                )
                if quantization == "int8":
                    exported = _quantize_int8(exported)
        except Exception as exc:
            raise ModelError(f"cannot export the embedding model to ONNX ({path}): {exc}") from None
        os.replace(exported, path)


def _quantize_int8(exported: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = exported.with_name("model-int8.onnx")
    # Per-channel scales: with per-tensor ones MiniLM's vectors fell to cosine 0.89 of the float
    # model's; per-channel keeps them at 0.98 or above.
    quantize_dynamic(str(exported), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    return quantized


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
