"""Passage vectors from a sentence-transformers model ``st``: by its own ``encode`` on texts, or
from token ids through its forward pass, in batches cut for the fewest padded tokens and computed
by one stream per core (``components/cpu_streams.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexer.components.embedding.tokenizer import PassageTokenizer

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


def embed_texts(
    st: Any, tokenizer: PassageTokenizer | None, texts: Sequence[str], batch_size: int, normalize: bool
) -> Any:
    """Passage vectors for ``texts``, the way every build embeds them: from ``tokenizer``'s ids
    where one was checked for this model (``passage_tokenizer``; cheaper than the model's own
    preprocessing, and ids let a CPU cut its batches by tokens), tokenized in parts by the CPU
    streams that then compute them; else by the model's ``encode``."""
    if tokenizer is None:
        return encode_passages(st, texts, batch_size, normalize)
    from indexer.components.cpu_streams import map_in_streams

    streams = streams_of(st)
    part = max(1, -(-len(texts) // streams))
    parts = [texts[at : at + part] for at in range(0, len(texts), part)]
    ids = [row for tokenized in map_in_streams(tokenizer.in_one_call, parts, streams) for row in tokenized]
    return encode_token_ids(st, tokenizer, ids, batch_size, normalize)


def streams_of(st: Any) -> int:
    """The forward streams ``encode_token_ids`` runs: where torch computes on a CPU one per
    intra-op thread (``components/cpu_streams.py``), else (a GPU, onnxruntime) one."""
    from indexer.components.cpu_streams import cpu_streams

    runs_own_threads = getattr(getattr(st[0], "model", None), "runs_own_threads", False)
    return cpu_streams() if st.device.type == "cpu" and not runs_own_threads else 1


def encode_token_ids(
    st: Any, tokenizer: PassageTokenizer, ids: Sequence[Any], batch_size: int, normalize: bool
) -> Any:
    """Passage vectors from ``tokenizer``'s ids, as ``encode_passages`` computes them from the
    texts: longest first in batches of up to ``embedding.batch_size`` (on a CPU cut by
    ``forward_batches`` for the fewest padded tokens and batches that stay in cache, and computed
    by one single-core stream per intra-op thread, ``components/cpu_streams.py``), through the
    model's own forward (its dtype and backend included), pooling and normalising."""
    import numpy as np
    import torch

    from indexer.components.cpu_streams import map_in_streams

    st.eval()
    on_cpu = st.device.type == "cpu"
    batches = forward_batches([len(x) for x in ids], batch_size, CPU_FORWARD_TOKENS if on_cpu else None)

    def forward(rows: list[int]) -> Any:
        features = tokenizer.batch([ids[i] for i in rows])
        features = {k: v.to(st.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        out = st(features)["sentence_embedding"]
        if normalize:
            out = torch.nn.functional.normalize(out, p=2, dim=1)
        return out.float().cpu().numpy()

    outputs = map_in_streams(forward, batches, streams_of(st))
    if not outputs:
        return np.empty((0, st.get_embedding_dimension() or 0), dtype=np.float32)
    vectors = np.empty((len(ids), outputs[0].shape[1]), dtype=np.float32)
    for rows, out in zip(batches, outputs, strict=True):
        vectors[rows] = out
    return vectors


def encode_passages(st: Any, texts: Sequence[str], batch_size: int, normalize: bool) -> Any:
    """Passage vectors as one numpy array, exactly as LlamaIndex's ``get_text_embedding_batch``
    computes them.

    We call the SentenceTransformer directly: LlamaIndex hands it ``embed_batch_size`` texts per
    call, so its length sorting (which keeps padding low) works on 64 texts instead of all of
    them, and each vector becomes a Python list on the way out.
    """
    return st.encode(
        list(texts),
        batch_size=batch_size,
        prompt_name="text",
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
