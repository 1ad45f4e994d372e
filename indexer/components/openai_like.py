"""An LLM served by a local OpenAI-compatible server: llama.cpp's server (C++ or Python), llamafile,
Ollama's ``/v1``, LM Studio, vLLM.

It offers what the query engine asks of an LLM (``stream_tokens``, ``count_tokens``) over the
``openai`` client, with a bounded timeout and no retries, so a server that is down or hung is an
error within ``llm.timeout`` seconds, never a hang. Nothing here can reach a remote API unless the
user's own ``base_url`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from functools import cached_property
from typing import Any

from indexer.components.chat_model import AnyMessage, JsonReply, TokenStream, Usage, role_of, text_of
from indexer.config.models import LLMConfig
from indexer.errors import ModelError

log = logging.getLogger(__name__)

# Chat templates add a few tokens per message (role markers, separators); a server's tokenize
# endpoint counts the text only, so this is added per message to stay on the safe side.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
# With no tokenize endpoint, a conservative estimate: BPE vocabularies average about 4 bytes of
# English per token, rarely fewer than 2.5.
_BYTES_PER_TOKEN_ESTIMATE = 2.5


class OpenAILikeLLM:
    """Chat completions from ``llm.base_url``; ``llm.model`` names the model there."""

    def __init__(self, config: LLMConfig) -> None:
        try:
            from openai import OpenAI
        except ImportError:
            raise ModelError(
                "llm.provider openai_like needs the 'openai' package: pip install 'indexer[openai]'"
            ) from None
        assert config.base_url and config.model
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        # Local servers ignore the key, but the client insists on one.
        self._client = OpenAI(
            base_url=self.base_url, api_key=config.api_key or "none", timeout=config.timeout, max_retries=0
        )
        self.exact_token_counts = True
        # Which response_format this server takes for JSON-constrained replies, once known.
        self._json_format: str | None = None

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    def stream_tokens(self, messages: Sequence[AnyMessage], **kwargs: Any) -> TokenStream:
        """Text pieces as the server sends them. The request is made here, so an unreachable
        server fails at once rather than at the first token."""
        # Counted first: llama-cpp-python's server ends a stream when another request arrives.
        prompt_tokens = self.count_tokens(messages)
        response = self._request(messages, stream=True, **kwargs)

        def pieces(stream: TokenStream) -> Generator[str, None, None]:
            text = ""
            try:
                for chunk in response:
                    if getattr(chunk, "usage", None):  # servers that report it count best
                        stream.completion_tokens = chunk.usage.completion_tokens
                    if not chunk.choices:
                        continue
                    if chunk.choices[0].finish_reason:
                        stream.finish_reason = chunk.choices[0].finish_reason
                    delta = chunk.choices[0].delta.content
                    if delta:
                        text += delta
                        yield delta
            except Exception as exc:
                raise self._error(exc) from None
            finally:
                response.close()  # closes the HTTP response: the server stops generating
                if not stream.completion_tokens:
                    stream.completion_tokens = self._count_text(text) if text else 0

        return TokenStream(pieces, prompt_tokens)

    def complete_json(
        self, messages: Sequence[AnyMessage], schema: dict[str, Any], *, max_tokens: int
    ) -> JsonReply:
        """A reply constrained by the server: OpenAI's ``json_schema`` response format (llama.cpp's
        server, vLLM, LM Studio, Ollama), else ``json_object`` with a ``schema`` (llama-cpp-python's
        server); a server that takes neither is a clear error."""
        import openai

        # The client types response_format as TypedDicts without llama-cpp-python's "schema" key.
        formats: dict[str, Any] = {
            "json_schema": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
            "json_object": {"type": "json_object", "schema": schema},
        }
        order = [self._json_format] if self._json_format else list(formats)
        refusals = []
        for name in order:
            try:
                response = self._client.chat.completions.create(
                    model=self.config.model or "",
                    messages=_payload(messages),
                    max_tokens=max_tokens,
                    temperature=self.config.temperature,
                    seed=self.config.seed,
                    response_format=formats[name],
                )
            except openai.APIStatusError as exc:
                # Servers refuse a format they lack with 400, 422, or (llama-cpp-python) 500.
                refusals.append(f"{name}: HTTP {exc.status_code}")
                continue
            except Exception as exc:
                raise self._error(exc) from None
            self._json_format = name
            choice = response.choices[0]
            usage = response.usage
            return JsonReply(
                choice.message.content or "",
                choice.finish_reason,
                Usage(
                    usage.prompt_tokens if usage else self.count_tokens(messages),
                    usage.completion_tokens if usage else self._count_text(choice.message.content or ""),
                ),
            )
        raise ModelError(
            f"the LLM server at {self.base_url} (llm.base_url) offers no JSON-constrained replies "
            f"({'; '.join(refusals)}), which the judge and `indexer eval generate` need: use a "
            "server that supports response_format (llama.cpp's server, llama-cpp-python's, vLLM, "
            "Ollama), or llm.provider llama_cpp"
        )

    def _request(self, messages: Sequence[AnyMessage], *, stream: bool, **kwargs: Any) -> Any:
        config = self.config
        try:
            return self._client.chat.completions.create(
                model=config.model or "",
                messages=_payload(messages),
                max_tokens=int(kwargs.pop("max_tokens", config.max_new_tokens)),
                temperature=config.temperature,
                top_p=config.top_p,
                seed=config.seed,
                stream=stream,
                **kwargs,
            )
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> ModelError:
        import openai

        where = f"the LLM server at {self.base_url} (llm.base_url)"
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"{where} did not answer within {self.config.timeout:g} s (llm.timeout): is it overloaded "
                "or still loading the model?"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                f"cannot reach {where}: {exc.__cause__ or exc}. Start the server, or fix llm.base_url "
                "(it usually ends in /v1)."
            )
        if isinstance(exc, openai.APIStatusError):
            return ModelError(
                f"{where} refused the request for model {self.config.model!r} (llm.model): "
                f"HTTP {exc.status_code}: {exc.message}"
            )
        return ModelError(f"{where} failed: {type(exc).__name__}: {exc}")

    def count_tokens(self, messages: Sequence[AnyMessage]) -> int:
        """Prompt tokens, counted by the server's own tokenizer when it offers one (llama.cpp's
        ``/tokenize``, llama-cpp-python's ``/extras/tokenize``), else estimated from the bytes."""
        text_tokens = sum(self._count_text(text_of(m)) for m in messages)
        return text_tokens + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + 2

    def _count_text(self, text: str) -> int:
        if self._tokenize_endpoint is not None:
            url, field = self._tokenize_endpoint
            try:
                response = self._http.post(url, json={field: text})
                response.raise_for_status()
                return len(response.json()["tokens"])
            except Exception as exc:
                log.warning("token count from %s failed (%s); estimating from now on", url, exc)
                self._tokenize_endpoint = None
        self.exact_token_counts = False
        return int(len(text.encode("utf-8")) / _BYTES_PER_TOKEN_ESTIMATE) + 1

    @cached_property
    def _http(self) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        return httpx.Client(timeout=self.config.timeout, headers=headers)

    @cached_property
    def _tokenize_endpoint(self) -> tuple[str, str] | None:
        root = self.base_url.removesuffix("/v1")
        for url, field in ((f"{root}/extras/tokenize", "input"), (f"{root}/tokenize", "content")):
            try:
                response = self._http.post(url, json={field: "probe"})
                if response.status_code == 200 and isinstance(response.json().get("tokens"), list):
                    return url, field
            except Exception:  # not this server's endpoint, or not JSON: try the next
                continue
        log.warning(
            "%s offers no tokenize endpoint: prompt sizes are estimated from their length", self.base_url
        )
        return None


def _payload(messages: Sequence[AnyMessage]) -> list[Any]:
    # Any: the client's message TypedDicts want literal roles.
    return [{"role": role_of(m), "content": text_of(m)} for m in messages]
