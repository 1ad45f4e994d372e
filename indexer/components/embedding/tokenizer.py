"""The embedding model's tokenizer: what chunking counts and cuts by (``token_counter``,
``TextTokens``), and the passage tokenizing the encoder and the chunking workers share
(``PassageTokenizer``). Rebuilt from the tokenizer's JSON, none of it needs torch or the weights."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# The fallback tokenizer's tokens: runs of word characters, and every other non-space character.
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")

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
    (``forward.forward_batches``). On a GPU a chunking worker runs it, so the encoder is handed token ids
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
        at once (``forward.embed_texts``): two took 0.54 to 0.71 s for 2,000 passages that one text at a
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
        import torch

        input_ids, mask = pad_right(ids, self.pad_id)
        features: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
        }
        if self.token_type_ids:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        features.update(self.constants)
        return features


def passage_tokenizer(st: Any) -> PassageTokenizer | None:
    """The model's passage tokenizing (``PassageTokenizer``), or ``None`` where its Rust tokenizer
    does not give exactly the input the model's own preprocessing gives (a slow tokenizer, text
    cleaned in Python, left padding, inputs other than ids): then the model's own ``encode`` runs
    on texts. Checked on probe texts, tensor for tensor."""
    import torch
    from tokenizers import Tokenizer

    base = fast_tokenizer_json(st)
    tokenizer = getattr(st, "tokenizer", None)
    if base is None or getattr(st, "truncate_dim", None) is not None or tokenizer is None:
        return None
    if getattr(tokenizer, "padding_side", "right") != "right":
        return None
    rust = Tokenizer.from_str(base)
    limit = int(st.max_seq_length or 0)
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


def fast_tokenizer_json(st: Any) -> str | None:
    """The sentence-transformers model ``st``'s fast tokenizer, serialised: what a chunking worker
    process rebuilds it from without loading torch or the model. ``None`` for a slow (Python)
    tokenizer."""
    backend = getattr(getattr(st, "tokenizer", None), "backend_tokenizer", None)
    return backend.to_str() if backend is not None else None


def token_counter(tokenizer_json: str) -> Any:
    """A fast (Rust) tokenizer rebuilt from its JSON, without torch or the model's weights, that
    counts whole texts: no truncation at the model's input length, no padding."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer_json)
    counter.no_truncation()
    counter.no_padding()
    return counter


def token_spans_by(counter: Any) -> Callable[[str], list[tuple[int, int]]]:
    """The character spans of a text's tokens, by a ``token_counter``."""
    return lambda text: counter.encode(text, add_special_tokens=False).offsets


class TextTokens:
    """A text's tokens as the embedding model's tokenizer gives them, without special tokens or
    truncation: ids (``tokenize``) and character spans (``spans``, what chunking counts and cuts
    by). From the fast tokenizer's JSON (several times faster than ``tokenizer.tokenize``, with no
    "sequence longer than the model" warning), or from a slow (Python) tokenizer, which has no
    offsets: its spans are its tokens' lengths laid end to end."""

    def __init__(self, tokenizer_json: str | None, slow: Any = None) -> None:
        if tokenizer_json is None and slow is None:
            raise ValueError("a tokenizer's JSON or a slow tokenizer is needed")
        self._counter = token_counter(tokenizer_json) if tokenizer_json is not None else None
        self._slow = slow

    @classmethod
    def fallback(cls) -> TextTokens:
        """For a model whose tokenizer is out of reach (``embedding.provider: llama_index`` with a
        class that exposes none, a remote API): each word and each punctuation mark is a token,
        about what a subword tokenizer counts for English prose and fewer than it counts for
        other text."""
        return cls(None, _WordsAndMarks())

    def tokenize(self, text: str) -> list[Any]:
        if self._counter is not None:
            return self._counter.encode(text, add_special_tokens=False).ids  # type: ignore[no-any-return]
        return self._slow.tokenize(text)  # type: ignore[no-any-return]

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._counter is not None:
            return self._counter.encode(text, add_special_tokens=False).offsets  # type: ignore[no-any-return]
        if isinstance(self._slow, _WordsAndMarks):
            return self._slow.spans(text)
        out, at = [], 0
        for token in self._slow.tokenize(text):
            width = max(1, len(token.removeprefix("##").lstrip("▁Ġ")))
            out.append((at, at + width))
            at += width
        return out


class _WordsAndMarks:
    """``TextTokens.fallback``'s tokenizer, with the offsets a slow tokenizer lacks."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD_OR_MARK.findall(text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD_OR_MARK.finditer(text)]


def pad_right(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token id rows padded on the right to the longest, as int64 arrays of ids and attention
    mask: what both torch's batches and the ONNX session take."""
    import numpy as np

    width = max(len(row) for row in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for at, row in enumerate(ids):
        input_ids[at, : len(row)] = row
        mask[at, : len(row)] = 1
    return input_ids, mask
