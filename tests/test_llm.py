"""The llama.cpp LLM on a tiny random-weight GGUF: template, BOS, streaming, stopping, threads."""

from __future__ import annotations

import os
from pathlib import Path

import llama_cpp
import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from indexer.components.chat_model import Message, role_of
from indexer.components.llm import ChatLlamaCPP
from indexer.components.llm_loader import load_llm
from indexer.config.models import LLMConfig
from indexer.errors import ModelError
from tests.support.tiny_gguf import BOS_TOKEN, TEMPLATE_MARKERS

MESSAGES = [
    ChatMessage(role=MessageRole.SYSTEM, content="Answer from the context."),
    ChatMessage(role=MessageRole.USER, content="What is the mast made of?"),
]


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path) -> ChatLlamaCPP:
    model, notice = load_llm(LLMConfig(model_path=tiny_gguf, n_ctx=512, max_new_tokens=12))
    assert model is not None and notice is None
    return model


def test_prompt_goes_through_the_ggufs_chat_template_with_one_bos(llm: ChatLlamaCPP) -> None:
    rendered = llm.render(MESSAGES)
    for marker in TEMPLATE_MARKERS:
        assert marker in rendered.text
    assert rendered.text.startswith(BOS_TOKEN)
    assert rendered.text.endswith(f"{TEMPLATE_MARKERS[0]}assistant\n")
    bos = llm.llama.token_bos()
    assert rendered.tokens[0] == bos and rendered.tokens.count(bos) == 1
    assert "system: " not in rendered.text.lower()  # not LlamaIndex's generic role: content prompt


def test_a_light_message_renders_as_a_llama_index_chat_message(llm: ChatLlamaCPP) -> None:
    """The engine's prompts are ``Message``s (no LlamaIndex import); ``ChatModelLLM`` passes
    LlamaIndex ``ChatMessage``s: both are the same prompt."""
    light = [Message(role_of(m), m.content or "") for m in MESSAGES]
    assert llm.render(light) == llm.render(MESSAGES)
    assert llm.count_tokens(light) == llm.count_tokens(MESSAGES)


def test_the_prompt_llama_cpp_receives_is_the_templated_one(llm: ChatLlamaCPP) -> None:
    llm.completion(MESSAGES)
    assert llm.last_prompt is not None
    assert llm.last_prompt.tokens == llm.render(MESSAGES).tokens
    assert all(marker in llm.last_prompt.text for marker in TEMPLATE_MARKERS)


def test_streaming_yields_tokens_and_stops_at_max_new_tokens(llm: ChatLlamaCPP) -> None:
    pieces = list(llm.stream_tokens(MESSAGES))
    assert 1 <= len(pieces) <= 12
    assert all(isinstance(p, str) for p in pieces)
    generated = llm.llama.tokenize("".join(pieces).encode(), add_bos=False, special=True)
    assert len(generated) <= 12 + 2  # re-tokenizing text may merge or split a little


def test_generation_stops_at_the_end_of_turn_token(llm: ChatLlamaCPP) -> None:
    eos = llm.llama.token_eos()
    # Make end-of-turn the only likely token: the real stop path must end generation at once.
    choice = llm.completion(MESSAGES, logit_bias={eos: 1000.0})["choices"][0]
    assert choice["text"] == "" and choice["finish_reason"] == "stop"


def test_the_context_window_is_llm_n_ctx(llm: ChatLlamaCPP) -> None:
    assert llm.n_ctx == 512 and llm.llama.n_ctx() == 512


def test_threads_default_to_the_cores_this_process_may_use(tiny_gguf: Path) -> None:
    """Narrowed to one core (as ``taskset`` or a container's cpuset would), the model runs one
    thread, although the machine has more: ``os.cpu_count()`` would give them all."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        one_core, _ = load_llm(LLMConfig(model_path=tiny_gguf, n_ctx=512, max_new_tokens=4))
    finally:
        os.sched_setaffinity(0, allowed)
    assert one_core is not None
    assert one_core.llama.n_threads == 1 and one_core.llama.n_threads_batch == 1
    every_core, _ = load_llm(LLMConfig(model_path=tiny_gguf, n_ctx=512, max_new_tokens=4))
    assert every_core is not None and every_core.llama.n_threads == len(allowed)


def test_prompt_longer_than_the_window_is_a_clear_error(llm: ChatLlamaCPP) -> None:
    long = [ChatMessage(role=MessageRole.USER, content="word " * 600)]
    with pytest.raises(ModelError, match=r"exceed llm\.n_ctx \(512\)"):
        llm.completion(long)


def test_missing_model_notice_or_error(tmp_path: Path) -> None:
    model, notice = load_llm(LLMConfig())
    assert model is None and notice and "llm.model_path" in notice and "llm.repo_id" in notice
    with pytest.raises(ModelError, match=r"llm\.model_path is not set"):
        load_llm(LLMConfig(required=True))
    # A path that is set but not there is an error whatever llm.required says.
    with pytest.raises(ModelError, match=r"absent\.gguf"):
        load_llm(LLMConfig(model_path=tmp_path / "absent.gguf"))
    assert load_llm(LLMConfig(provider="none")) == (None, None)


def test_a_file_that_is_not_a_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match=r"cannot load the GGUF at .*bogus\.gguf"):
        load_llm(LLMConfig(model_path=bogus))


def test_hub_download_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = LLMConfig(model_path=tmp_path / "m.gguf", repo_id="someone/some-model-GGUF", filename="m.gguf")
    with pytest.raises(ModelError, match=r"cannot download 'm\.gguf' from Hugging Face repo"):
        load_llm(config)


def test_a_prompt_prefix_evaluated_ahead_leaves_the_answer_as_it_was(llm: ChatLlamaCPP) -> None:
    """``indexer query`` evaluates the prompt up to its passages while a child still retrieves
    (query/prefetch.py): the prompt then evaluates only the rest, and the answer does not change."""
    other = [MESSAGES[0], ChatMessage(role=MessageRole.USER, content="Where is the anemometer?")]
    full = llm.render(MESSAGES).tokens
    llm.llama.reset()
    plain = llm.completion(MESSAGES)["choices"][0]["text"]

    shared = llm.evaluate_prefix(MESSAGES, other, threads=1)

    # What llama.cpp holds is what the next prompt begins with: it evaluates only the rest.
    assert 0 < shared < len(full) and llm.llama.n_tokens == shared
    assert list(llm.llama.input_ids[:shared]) == full[:shared]
    context = llm.llama._ctx.ctx
    assert llama_cpp.llama_n_threads_batch(context) == llm.llama.n_threads_batch  # set back
    assert llm.completion(MESSAGES)["choices"][0]["text"] == plain


def test_a_cold_query_evaluates_the_prompt_before_its_passages_ahead(built_sample: Path) -> None:
    from indexer import Indexer
    from indexer.query.prefetch import _evaluate_prompt_prefix

    ix = Indexer.from_config(built_sample, {"llm.max_new_tokens": 4})
    question = "What does error E-214 mean?"
    _evaluate_prompt_prefix(ix, question)
    llm = ix.components.llm
    assert isinstance(llm, ChatLlamaCPP)
    ahead = list(llm.llama.input_ids[: llm.llama.n_tokens])

    stream = ix.stream(question, top_k=2)
    list(stream)

    assert llm.last_prompt is not None and stream.sources
    prompt = llm.last_prompt.tokens
    # The system turn and the qa_prompt's text up to the first passage, no more.
    assert ahead and prompt[: len(ahead)] == ahead
    text = llm.llama.detokenize(ahead, special=True).decode()
    assert ix.config.query.system_prompt in text and '<passage n="1"' not in text
