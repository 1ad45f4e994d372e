"""The local LLM: a GGUF run in-process by llama.cpp, prompted through the GGUF's own chat template.

LlamaIndex's ``LlamaCPP`` formats chat as generic ``role: content`` text (or Llama-2 tags) and
then lets llama.cpp tokenize it with a BOS in front, so a template that writes its own BOS gets
two. This subclass keeps LlamaIndex's LLM interface and model loading, but renders messages with
the template stored in the GGUF (llama-cpp-python's Jinja2 formatter), tokenizes once with exactly
one BOS, and stops at the model's end-of-turn token or ``max_new_tokens``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.llms.llama_cpp import LlamaCPP
from pydantic import PrivateAttr

from indexer.config.models import LLMConfig
from indexer.errors import ModelError

log = logging.getLogger(__name__)

# Used only when a GGUF carries no chat template; ChatML is what most recent instruct models use.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

HOW_TO_ADD_A_MODEL = (
    "To get answers, put a GGUF chat model at llm.model_path (e.g. download one such as "
    "Qwen2.5-1.5B-Instruct-GGUF by hand), or set llm.repo_id and llm.filename so that it is "
    "downloaded once from the Hugging Face Hub on this machine."
)


@dataclass
class RenderedPrompt:
    text: str
    tokens: list[int]
    stop: list[str]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ChatLlamaCPP(LlamaCPP):
    """``LlamaCPP`` driven through the GGUF's chat template."""

    _formatter: Any = PrivateAttr()
    _top_p: float = PrivateAttr()
    _seed: int = PrivateAttr()
    _last_prompt: RenderedPrompt | None = PrivateAttr(default=None)

    def __init__(self, model_path: Path, config: LLMConfig) -> None:
        threads = config.n_threads or cpu_count()
        super().__init__(
            model_path=str(model_path),
            temperature=min(config.temperature, 1.0),
            max_new_tokens=config.max_new_tokens,
            context_window=config.n_ctx,
            model_kwargs={
                "n_threads": threads,
                "n_threads_batch": threads,
                "n_gpu_layers": config.n_gpu_layers,
                "seed": config.seed,
            },
            verbose=False,
        )
        self._top_p = config.top_p
        self._seed = config.seed
        self._formatter = self._make_formatter()

    @classmethod
    def class_name(cls) -> str:
        return "ChatLlamaCPP"

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama``."""
        return self._model

    @property
    def last_prompt(self) -> RenderedPrompt | None:
        """The prompt llama.cpp received last: what the template made of the messages."""
        return self._last_prompt

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = self._model
        template = model.metadata.get("tokenizer.chat_template")
        if not template:
            log.warning("%s has no chat template; using ChatML", self.model_path)
            template = FALLBACK_TEMPLATE
        eos_id, bos_id = model.token_eos(), model.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model._model.token_get_text(bos_id) if bos_id != -1 else "",
            add_generation_prompt=True,
            stop_token_ids=[eos_id] if eos_id != -1 else None,
        )

    def render(self, messages: Sequence[ChatMessage]) -> RenderedPrompt:
        """Apply the chat template and tokenize, with exactly one BOS."""
        payload = [{"role": _role(m.role), "content": m.content or ""} for m in messages]
        result = self._formatter(messages=payload)
        model = self._model
        tokens = model.tokenize(result.prompt.encode("utf-8"), add_bos=False, special=True)
        bos = model.token_bos()
        wants_bos = bos != -1 and model._model.add_bos_token()
        if wants_bos and (not tokens or tokens[0] != bos):
            tokens = [bos, *tokens]
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return RenderedPrompt(text=result.prompt, tokens=tokens, stop=[s for s in stop if s])

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.render(messages).tokens)

    def _generate(self, messages: Sequence[ChatMessage], stream: bool, **kwargs: Any) -> Any:
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
        return self._model.create_completion(
            prompt=prompt.tokens,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self._top_p,
            seed=self._seed,
            stop=prompt.stop,
            stream=stream,
            **kwargs,  # llama.cpp sampling extras: grammar, logit_bias, ...
        )

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response = self._generate(messages, stream=False, **kwargs)
        text = response["choices"][0]["text"]
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=response)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        chunks = self._generate(messages, stream=True, **kwargs)

        def gen() -> ChatResponseGen:
            text = ""
            for chunk in chunks:
                delta = chunk["choices"][0]["text"]
                text += delta
                yield ChatResponse(
                    message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta, raw=chunk
                )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        response = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=response.message.content or "", raw=response.raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        responses = self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)

        def gen() -> CompletionResponseGen:
            for r in responses:
                yield CompletionResponse(text=r.message.content or "", delta=r.delta, raw=r.raw)

        return gen()

    def stream_tokens(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[str]:
        """Just the text pieces, as they are generated. Closing the iterator (or Ctrl-C while it
        runs) stops llama.cpp after the token in progress; the next call starts cleanly and still
        reuses the KV cache of the shared prompt prefix."""
        chunks = self._generate(messages, stream=True, **kwargs)
        try:
            for chunk in chunks:
                delta = chunk["choices"][0]["text"]
                if delta:
                    yield delta
        finally:
            chunks.close()


def _role(role: MessageRole | str) -> str:
    return role.value if isinstance(role, MessageRole) else str(role)


def load_llm(config: LLMConfig) -> tuple[Any, str | None]:
    """The configured LLM (``ChatLlamaCPP``, or ``OpenAILikeLLM`` for a server), or
    ``(None, notice)`` when answers are off or no model is available.

    A missing model is an error only when ``llm.required`` is true.
    """
    if config.provider == "none":
        return None, None
    if config.provider == "openai_like":
        from indexer.components.openai_like import OpenAILikeLLM

        return OpenAILikeLLM(config), None
    path = resolve_model_path(config)
    if path is None:
        where = f"no GGUF model at {config.model_path}" if config.model_path else "llm.model_path is not set"
        message = f"{where} (llm.model_path). {HOW_TO_ADD_A_MODEL}"
        if config.required:
            raise ModelError(message)
        return None, f"{where}: showing retrieved sources only. {HOW_TO_ADD_A_MODEL}"
    try:
        return ChatLlamaCPP(path, config), None
    except ModelError:
        raise
    except Exception as exc:  # llama.cpp raises ValueError for a file it cannot load
        raise ModelError(
            f"cannot load the GGUF at {path} (llm.model_path): {type(exc).__name__}: {exc}"
        ) from None


def resolve_model_path(config: LLMConfig) -> Path | None:
    if config.model_path is not None and config.model_path.is_file():
        return config.model_path
    if config.repo_id and config.filename:
        return _download(config)
    return None


def _download(config: LLMConfig) -> Path:
    """Fetch the GGUF from the Hub into the folder of ``model_path`` (default ``./models``)."""
    from huggingface_hub import hf_hub_download

    folder = config.model_path.parent if config.model_path else Path("models").resolve()
    assert config.repo_id and config.filename
    try:
        return Path(hf_hub_download(repo_id=config.repo_id, filename=config.filename, local_dir=folder))
    except Exception as exc:  # offline, unknown repo, no such file
        raise ModelError(
            f"cannot download {config.filename!r} from Hugging Face repo {config.repo_id!r} "
            f"(llm.repo_id/llm.filename): {type(exc).__name__}: {exc}"
        ) from None
