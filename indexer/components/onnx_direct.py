"""The torch-free ONNX route: the exported model (``onnx_backend.py``) run by onnxruntime, its
input made by the Rust ``tokenizers`` library and its output pooled in numpy, so that a process
that only embeds (a query, a small build) never imports torch, transformers or
sentence-transformers (5 to 10 s of imports on a small CPU).

What the route computes is taken from the loaded sentence-transformers model once, in a process
that has it anyway (the first ONNX load, which exports the model): the tokenizer, the prompts, the
pooling and the normalising, written as a *recipe* beside the ONNX file, and only after the
recipe's vectors were checked against the model's own on probe texts. A model the recipe cannot
describe (other modules, pooling that skips the prompt, a slow tokenizer, a vector that differs)
gets no recipe and stays on the torch route.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.components.embedding.embedder import Embedder, Passages
from indexer.config.models import EmbeddingConfig

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from indexer.components.embedding.identity import EmbeddingIdentity

log = logging.getLogger(__name__)

_RECIPE_VERSION = 1
# A probe vector of the recipe against the model's own: float32 through the same ONNX graph, so
# anything short of equal to rounding is a recipe that describes another computation.
_MIN_PROBE_COSINE = 0.99999
_POOLINGS = ("mean", "cls", "max")
_PROBES = (
    "How often should the desiccant pack be replaced?",
    "  Spaces at both ends, and  double  ones inside.  ",
    "Ünïcödé café naïve résumé – “quotes” 東京都 🙂",
    "one",
)


@dataclass(frozen=True)
class Recipe:
    """What the torch route computes for this model and config, in plain data."""

    version: int
    tokenizer_json: str  # truncates at the model's input, pads nothing
    query_prompt: str
    text_prompt: str
    pad_id: int
    token_type_ids: bool
    pooling: str
    normalize: bool
    dimension: int
    max_tokens: int


def recipe_path(onnx_file: Path, config: EmbeddingConfig) -> Path:
    """One recipe per ONNX file and per the settings that change the computation around it."""
    key = json.dumps([config.query_prefix, config.passage_prefix, config.normalize, config.model])
    return onnx_file.with_name(
        f"{onnx_file.stem}.recipe-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    )


def read_recipe(onnx_file: Path, config: EmbeddingConfig) -> Recipe | None:
    """The recipe beside ``onnx_file``, or ``None`` where there is none (not exported yet, or a
    model the route cannot describe) or it is unreadable."""
    path = recipe_path(onnx_file, config)
    if not onnx_file.is_file() or not path.is_file():
        return None
    try:
        recipe = Recipe(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return recipe if recipe.version == _RECIPE_VERSION else None


class OnnxEmbedder(Embedder):
    """Vectors of the torch route's model, computed without torch: an ``Embedder`` for questions
    and for small builds' passages."""

    def __init__(self, recipe: Recipe, onnx_file: Path, config: EmbeddingConfig) -> None:
        self.recipe = recipe
        self.onnx_file = onnx_file
        self.config = config

    def load(self) -> None:
        """Load onnxruntime, the model's session and the tokenizer now rather than at the first
        call (a build does it while another process chunks its file)."""
        _ = self._session, self._tokenizer

    @functools.cached_property
    def _session(self) -> Any:
        import onnxruntime

        from indexer.errors import ModelError

        options = onnxruntime.SessionOptions()
        # As in onnx_backend: spinning threads would hold both cores after each call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(
                str(self.onnx_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a truncated or foreign file
            raise ModelError(
                f"cannot load the ONNX embedding model {self.onnx_file}: {exc}. "
                "Delete the file to have it exported again (embedding.backend_file)."
            ) from None

    @functools.cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.recipe.tokenizer_json)

    @property
    def dimension(self) -> int:
        return self.recipe.dimension

    @functools.cached_property
    def identity(self) -> EmbeddingIdentity:
        from indexer.components.embedding.identity import config_identity

        # load_direct found the model's files by their fingerprint, so it is known here.
        return config_identity(self.config).with_dimension(self.recipe.dimension)

    @property
    def max_tokens(self) -> int:
        return self.recipe.max_tokens

    @property
    def tokenizer_json(self) -> str:
        # The model's own tokenizer (it truncates at the model's input; chunking lifts that).
        return self.recipe.tokenizer_json

    @property
    def route(self) -> str:
        return "onnxruntime + tokenizers (torch not imported)"

    def embed_query(self, question: str) -> list[float]:
        known = self._known_vectors.pop(question, None)
        vector = known() if known is not None else None
        if vector is not None:
            return vector
        return [float(x) for x in self.encode([question], self.recipe.query_prompt)[0]]

    @functools.cached_property
    def _known_vectors(self) -> dict[str, Callable[[], list[float] | None]]:
        return {}

    def expect_vector(self, question: str, vector: Callable[[], list[float] | None]) -> None:
        """``question``'s vector comes from ``vector()`` (another process computing it while this
        one opens the index: ``query/prefetch.py``), unless that gives None; used once."""
        self._known_vectors[question] = vector

    def embed(self, passages: Passages) -> Any:
        """Passage vectors, in batches of ``embedding.batch_size`` texts of similar length (little
        padding)."""
        import numpy as np

        ids = self.token_ids([str(p) for p in passages], self.recipe.text_prompt)
        batch_size = self.config.batch_size
        out = np.empty((len(ids), self.recipe.dimension), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.forward([ids[i] for i in rows])
        return out

    @property
    def llama_index(self) -> BaseEmbedding:
        """The torch route's model (loading torch): the recipe has no LlamaIndex form."""
        from indexer.components.embedding.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(self.config).llama_index

    def encode(self, texts: Sequence[str], prompt: str) -> Any:
        """Vectors of ``texts`` each after ``prompt``."""
        return self.forward(self.token_ids(texts, prompt))

    def token_ids(self, texts: Sequence[str], prompt: str) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch([prompt + t for t in texts])]

    def forward(self, ids: Sequence[Sequence[int]]) -> Any:
        """Vectors for token ids: padded on the right, run, pooled, normalised."""
        import numpy as np

        recipe = self.recipe
        if not ids:
            return np.empty((0, recipe.dimension), dtype=np.float32)
        from indexer.components.embedding.tokenizer import pad_right

        input_ids, mask = pad_right(ids, recipe.pad_id)
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        names = [i.name for i in self._session.get_inputs()]
        (hidden,) = self._session.run(["last_hidden_state"], {n: feed[n] for n in names})
        hidden = hidden.astype(np.float32, copy=False)
        weights = mask[..., None].astype(np.float32)
        if recipe.pooling == "mean":
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        elif recipe.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = np.where(weights > 0, hidden, -1e9).max(axis=1)
        if recipe.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32, copy=False)


def load_direct(config: EmbeddingConfig) -> OnnxEmbedder | None:
    """The torch-free embedder for ``config`` run by ONNX, or ``None`` where its recipe is missing
    (the model has not been through the ONNX route yet, or cannot take this one)."""
    from indexer.components.embedding.identity import model_fingerprint
    from indexer.components.onnx_backend import model_file

    fingerprint = model_fingerprint(config)
    if fingerprint is None:
        return None
    onnx_file = model_file(fingerprint, config.quantization, config.backend_file)
    recipe = read_recipe(onnx_file, config)
    return None if recipe is None else OnnxEmbedder(recipe, onnx_file, config)


def write_recipe(st: Any, onnx_file: Path, config: EmbeddingConfig) -> bool:
    """Describe the SentenceTransformer ``st`` (already running ``onnx_file``) as a
    recipe, check the recipe's vectors against the model's own, and write it. ``False`` where the
    model cannot be described or a probe differs: it then stays on the torch route."""
    path = recipe_path(onnx_file, config)
    if path.is_file():
        return True
    recipe = _describe(st, config.normalize)
    if recipe is None:
        return False
    import numpy as np

    direct = OnnxEmbedder(recipe, onnx_file, config)
    for prompt_name, prompt in (("query", recipe.query_prompt), ("text", recipe.text_prompt)):
        mine = direct.encode(_PROBES, prompt)
        theirs = st.encode(
            list(_PROBES),
            prompt_name=prompt_name,
            normalize_embeddings=config.normalize,
            convert_to_numpy=True,
        ).astype(np.float32)
        cosine = (mine * theirs).sum(axis=1) / (
            np.linalg.norm(mine, axis=1) * np.linalg.norm(theirs, axis=1) + 1e-12
        )
        if mine.shape != theirs.shape or float(cosine.min()) < _MIN_PROBE_COSINE:
            log.info(
                "embedding model stays on the torch route: the ONNX recipe's %s vectors differ", prompt_name
            )
            return False
    payload = json.dumps(asdict(recipe))
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as fh:
            fh.write(payload)
        os.replace(fh.name, path)
    except OSError as exc:  # a read-only cache: the next process takes the torch route again
        log.info("cannot write the ONNX recipe %s: %s", path, exc)
        return False
    return True


def _describe(st: Any, normalize: bool) -> Recipe | None:
    from indexer.components.embedding.tokenizer import passage_tokenizer

    modules = [type(m).__name__ for m in st]
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling = st[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode not in _POOLINGS:
        return None
    prompts = st.prompts or {}
    query_prompt, text_prompt = prompts.get("query") or "", prompts.get("text") or ""
    if not getattr(pooling, "include_prompt", True) and (query_prompt or text_prompt):
        return None
    tokenizer = passage_tokenizer(st)
    if tokenizer is None:
        return None
    dimension = st.get_embedding_dimension()
    if not dimension:
        return None
    return Recipe(
        version=_RECIPE_VERSION,
        tokenizer_json=tokenizer.tokenizer_json,
        query_prompt=query_prompt,
        text_prompt=text_prompt,
        pad_id=tokenizer.pad_id,
        token_type_ids=tokenizer.token_type_ids,
        pooling=str(mode),
        normalize=normalize or modules[-1] == "Normalize",
        dimension=int(dimension),
        max_tokens=int(st.max_seq_length or 0),
    )
