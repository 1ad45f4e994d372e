"""Build a tiny, random-weight llama GGUF for tests.

The test-suite needs a *real* llama.cpp model (loaded through
``llama_cpp.Llama``) to exercise loading, chat templating, streaming and
stopping, but it must run offline and fast.  This module writes one from
scratch with :class:`gguf.GGUFWriter` and numpy: a 2-layer, 64-dim llama with a
byte-level GPT-2 style BPE tokenizer (all 256 bytes, a few merges), ChatML
control tokens and a ChatML Jinja chat template.  The output is noise, but it
is deterministic for a given seed and the file is well under 1 MB.

The output projection carries a per-token bias (through a constant residual
channel) so that sampled text is mostly printable ASCII and the end-of-turn
token is very unlikely: generation reliably runs until ``max_tokens``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import gguf
import numpy as np
import numpy.typing as npt

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "DEFAULT_EOS_LOGIT_BIAS",
    "EOS_TOKEN",
    "IM_END",
    "IM_START",
    "SPECIAL_TOKENS",
    "TEMPLATE_MARKERS",
    "write_tiny_llama_gguf",
]

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TEMPLATE_MARKERS: tuple[str, str] = (IM_START, IM_END)
BOS_TOKEN = "<s>"
EOS_TOKEN = IM_END  # end of turn == end of sequence, so generation stops there
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, IM_START, IM_END)
DEFAULT_EOS_LOGIT_BIAS = -12.0

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Model shape: tiny on purpose (~109k F32 params, ~0.43 MB file).
_N_EMBD = 64
_N_HEAD = 4
_N_HEAD_KV = 2
_N_LAYER = 2
_N_FF = 128
_HEAD_DIM = _N_EMBD // _N_HEAD

# A handful of merges (GPT-2 byte alphabet, "Ġ" is the space byte) so the BPE
# merge machinery is exercised; every left/right side is itself a token.
_MERGES: tuple[tuple[str, str], ...] = (
    ("Ġ", "t"),
    ("h", "e"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("r", "e"),
    ("Ġ", "s"),
    ("a", "t"),
    ("e", "n"),
    ("o", "r"),
    ("Ġ", "w"),
    ("Ġ", "o"),
    ("i", "s"),
    ("Ġt", "he"),
    ("in", "g"),
)

# Logit biases (added via the constant residual channel, in logit units).
_BIAS_PRINTABLE = 0.0
_BIAS_OTHER_BYTE = -8.0
_BIAS_CONTROL = -30.0  # BOS / <|im_start|>: never sampled
_CONST_CHANNEL = 8.0  # value of residual channel 0 for every token


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character mapping."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


def _build_vocab(
    eos_logit_bias: float,
) -> tuple[list[str], list[int], list[str], list[float]]:
    """Return (tokens, token types, merges, per-token logit bias)."""
    byte_chars = _bytes_to_unicode()
    tokens: list[str] = [byte_chars[b] for b in range(256)]
    types: list[int] = [int(gguf.TokenType.NORMAL)] * 256
    bias: list[float] = [
        _BIAS_PRINTABLE if (0x20 <= b < 0x7F or b == 0x0A) else _BIAS_OTHER_BYTE for b in range(256)
    ]
    merges: list[str] = []
    for left, right in _MERGES:
        if left + right not in tokens:
            tokens.append(left + right)
            types.append(int(gguf.TokenType.NORMAL))
            bias.append(_BIAS_PRINTABLE)
        merges.append(f"{left} {right}")
    for special in SPECIAL_TOKENS:
        tokens.append(special)
        types.append(int(gguf.TokenType.CONTROL))
        bias.append(eos_logit_bias if special == EOS_TOKEN else _BIAS_CONTROL)
    return tokens, types, merges, bias


def _tensors(rng: np.random.Generator, bias: Sequence[float]) -> dict[str, npt.NDArray[np.float32]]:
    """Random llama weights; numpy shapes are (rows, cols) = reversed ggml ne."""
    n_vocab = len(bias)
    n_kv = _N_HEAD_KV * _HEAD_DIM

    def normal(*shape: int, std: float) -> npt.NDArray[np.float32]:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def ones(n: int) -> npt.NDArray[np.float32]:
        return np.ones(n, dtype=np.float32)

    # Channel 0 of the residual stream is a constant: it is set in every
    # embedding and no block writes to it, so output[:, 0] acts as a bias.
    token_embd = normal(n_vocab, _N_EMBD, std=1.0)
    token_embd[:, 0] = _CONST_CHANNEL
    # After the final RMS norm channel 0 is roughly const / rms(x).
    h0 = _CONST_CHANNEL / np.sqrt((_CONST_CHANNEL**2 + _N_EMBD - 1) / _N_EMBD)
    output = normal(n_vocab, _N_EMBD, std=0.3)
    output[:, 0] = np.asarray(bias, dtype=np.float32) / np.float32(h0)

    out: dict[str, npt.NDArray[np.float32]] = {"token_embd.weight": token_embd}
    for i in range(_N_LAYER):
        attn_output = normal(_N_EMBD, _N_EMBD, std=0.1)
        ffn_down = normal(_N_EMBD, _N_FF, std=0.1)
        attn_output[0, :] = 0.0
        ffn_down[0, :] = 0.0
        out |= {
            f"blk.{i}.attn_norm.weight": ones(_N_EMBD),
            f"blk.{i}.attn_q.weight": normal(_N_EMBD, _N_EMBD, std=0.2),
            f"blk.{i}.attn_k.weight": normal(n_kv, _N_EMBD, std=0.2),
            f"blk.{i}.attn_v.weight": normal(n_kv, _N_EMBD, std=0.2),
            f"blk.{i}.attn_output.weight": attn_output,
            f"blk.{i}.ffn_norm.weight": ones(_N_EMBD),
            f"blk.{i}.ffn_gate.weight": normal(_N_FF, _N_EMBD, std=0.2),
            f"blk.{i}.ffn_up.weight": normal(_N_FF, _N_EMBD, std=0.2),
            f"blk.{i}.ffn_down.weight": ffn_down,
        }
    out["output_norm.weight"] = ones(_N_EMBD)
    out["output.weight"] = output
    return out


def write_tiny_llama_gguf(
    path: pathlib.Path,
    *,
    n_ctx_train: int = 2048,
    seed: int = 0,
    eos_logit_bias: float = DEFAULT_EOS_LOGIT_BIAS,
) -> pathlib.Path:
    """Write a tiny random llama GGUF to ``path`` and return ``path``.

    ``n_ctx_train`` becomes ``llama.context_length``; ``seed`` fixes the weights
    (same arguments -> byte-identical file).  ``eos_logit_bias`` shifts the
    logit of the EOS / ``<|im_end|>`` token: the default makes it practically
    never sampled (generation runs to ``max_tokens``); a large positive value
    (e.g. ``30.0``) makes the model end its turn immediately.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, merges, bias = _build_vocab(eos_logit_bias)
    rng = np.random.default_rng(seed)

    writer = gguf.GGUFWriter(path, arch="llama")
    try:
        writer.add_name("tiny-random-llama")
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        writer.add_context_length(n_ctx_train)
        writer.add_embedding_length(_N_EMBD)
        writer.add_block_count(_N_LAYER)
        writer.add_feed_forward_length(_N_FF)
        writer.add_head_count(_N_HEAD)
        writer.add_head_count_kv(_N_HEAD_KV)
        writer.add_rope_dimension_count(_HEAD_DIM)
        writer.add_rope_freq_base(10000.0)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_vocab_size(len(tokens))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(tokens.index(BOS_TOKEN))
        writer.add_eos_token_id(tokens.index(EOS_TOKEN))
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_chat_template(CHAT_TEMPLATE)

        for name, tensor in _tensors(rng, bias).items():
            writer.add_tensor(name, tensor)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path
