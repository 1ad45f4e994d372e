"""Request checks beyond the schemas: limits from the ``server`` config, text the tokenizers can
encode, the model a request names, and OpenAI chat messages read as a question and its history.
Each failure is a 400 (or 404) ``APIError`` naming the field."""

from __future__ import annotations

from indexer.config.models import ServerConfig
from indexer.server.errors import APIError
from indexer.server.schemas import ChatCompletionRequest, EmbeddingsRequest

# The limits every way in keeps (MCP too) are defined once, in ``indexer.ways_in``.
from indexer.ways_in import check_question, check_top_k, check_unicode

__all__ = [
    "check_model",
    "check_question",
    "check_top_k",
    "check_unicode",
    "embedding_texts",
    "split_messages",
]


def check_model(model: str, expected: str) -> None:
    check_unicode(model, "model")
    if model != expected:
        raise APIError(
            404,
            f"model: unknown model {model!r}; this endpoint serves {expected!r} (see GET /v1/models)",
            param="model",
            code="model_not_found",
        )


def split_messages(body: ChatCompletionRequest) -> tuple[str, list[dict[str, str]]]:
    """The last message (the user's) is the question; earlier user and assistant turns with text
    are its history. System and tool messages are dropped: the index's own prompt applies."""
    texts: list[tuple[str, str]] = []
    for i, message in enumerate(body.messages):
        content = message.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise APIError(
                    400, f"messages.{i}.content: only text parts are supported", param=f"messages.{i}.content"
                )
            content = "".join(part.text or "" for part in content)
        check_unicode(content or "", f"messages.{i}.content")
        texts.append((message.role, content or ""))
    role, question = texts[-1]
    if role != "user":
        raise APIError(
            400,
            f"messages: the last message must be the user's question, got role {role!r}",
            param="messages",
        )
    history = [{"role": r, "content": c} for r, c in texts[:-1] if r in ("user", "assistant") and c]
    return question, history


def embedding_texts(
    body: EmbeddingsRequest, settings: ServerConfig, model_id: str, dimension: int
) -> list[str]:
    """The texts to embed, after checking the model, their number, their content and the
    dimensions asked for."""
    check_model(body.model, model_id)
    given = [body.input] if isinstance(body.input, str) else body.input
    if not given:
        raise APIError(400, "input: must not be empty", param="input")
    if len(given) > settings.max_embedding_inputs:
        raise APIError(
            400,
            f"input: {len(given)} texts; the limit is {settings.max_embedding_inputs} "
            "(server.max_embedding_inputs)",
            param="input",
        )
    texts = [t for t in given if isinstance(t, str)]
    if len(texts) != len(given):
        raise APIError(400, "input: token arrays are not supported; send text", param="input")
    if any(not t.strip() for t in texts):
        raise APIError(400, "input: texts must not be empty", param="input")
    for i, text in enumerate(texts):
        check_unicode(text, f"input.{i}" if isinstance(body.input, list) else "input")
    if body.dimensions is not None and body.dimensions != dimension:
        raise APIError(400, f"dimensions: {model_id} gives {dimension} dimensions", param="dimensions")
    return texts
