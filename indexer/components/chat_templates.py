"""Chat templates: the built-in ones, and the choice of one for a GGUF.

A GGUF's own ``tokenizer.chat_template`` is the right template whenever it has one. Many GGUFs
(base models, older conversions) carry none, and a wrong template is worse than useless: a model
whose vocabulary has no ``<|im_start|>`` token reads ChatML as plain text, never produces the end
marker, and runs to ``max_new_tokens``. So a template is picked by the model's architecture and
checked against its vocabulary: every marker a template writes must be one token of it.

The templates are Jinja in the Hugging Face convention (``messages``, ``add_generation_prompt``,
``bos_token``), so a user's own template (``llm.chat_template``) is written the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import ConfigError


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    source: str
    # Marker strings the template writes, which must each be a single token of the vocabulary.
    markers: tuple[str, ...] = ()
    # Markers that begin a turn or end one: generating one means the answer is over.
    turn_markers: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()


# System prompts fold into the first user turn where a family has no system role.
_GEMMA = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'] + '\\n\\n' %}"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_MISTRAL = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = ns.system + m['content'] + '\\n\\n' %}"
    "{% elif m['role'] == 'user' %}[INST] {{ ns.system }}{% set ns.system = '' %}{{ m['content'] }}[/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
_PHI3 = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# For a vocabulary that has none of the markers above: plain text, stopped by a stop string.
_PLAIN = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ m['role'] | capitalize }}: {{ m['content'] }}\n\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

BUILTIN: dict[str, ChatTemplate] = {
    t.name: t
    for t in (
        ChatTemplate("chatml", _CHATML, ("<|im_start|>", "<|im_end|>"), ("<|im_start|>", "<|im_end|>")),
        ChatTemplate(
            "gemma", _GEMMA, ("<start_of_turn>", "<end_of_turn>"), ("<start_of_turn>", "<end_of_turn>")
        ),
        ChatTemplate(
            "llama3",
            _LLAMA3,
            ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
            ("<|start_header_id|>", "<|eot_id|>"),
        ),
        ChatTemplate("mistral", _MISTRAL, ("[INST]", "[/INST]"), ("[INST]",)),
        ChatTemplate(
            "phi3",
            _PHI3,
            ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
            ("<|user|>", "<|assistant|>", "<|end|>"),
        ),
        ChatTemplate("plain", _PLAIN, (), (), ("\nUser:", "\nSystem:")),
    )
}

# Which family an architecture's instruct models use, tried first; the rest follow in this order.
_BY_ARCHITECTURE = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "llama": "llama3",
    "phi3": "phi3",
    "mistral": "mistral",
}
_FALLBACK_ORDER = ("chatml", "llama3", "gemma", "phi3", "mistral")

FROM_GGUF = "from GGUF"


@dataclass(frozen=True)
class TemplateChoice:
    template: ChatTemplate
    # Why this one: "from GGUF", "configured", or the reason it was picked for the model.
    reason: str
    picked: bool = False  # chosen by us for a GGUF without a template: worth a warning


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def choose_template(
    setting: str,
    gguf_template: str | None,
    architecture: str,
    is_single_token: Callable[[str], bool],
) -> TemplateChoice:
    """The template for ``llm.chat_template`` = ``setting`` (auto, a built-in name, a Jinja string
    or a file) and a GGUF with ``gguf_template`` (or none)."""
    if setting in ("auto", "gguf"):
        if gguf_template:
            return TemplateChoice(ChatTemplate("gguf", gguf_template), FROM_GGUF)
        if setting == "gguf":
            raise ConfigError(
                "llm.chat_template is 'gguf' but the model file has no tokenizer.chat_template: "
                f"choose one of {', '.join(builtin_names())}, or give a Jinja template"
            )
        return pick_for_vocabulary(architecture, is_single_token)
    if setting in BUILTIN:
        return TemplateChoice(BUILTIN[setting], "configured (llm.chat_template)")
    if "{{" in setting or "{%" in setting:
        return TemplateChoice(ChatTemplate("custom", setting), "configured Jinja (llm.chat_template)")
    path = Path(setting).expanduser()
    if path.is_file():
        return TemplateChoice(ChatTemplate(path.name, path.read_text("utf-8")), f"configured file {path}")
    raise ConfigError(
        f"llm.chat_template {setting!r} is not a built-in template ({', '.join(builtin_names())}), "
        "'auto', 'gguf', a Jinja string or an existing file"
    )


def pick_for_vocabulary(architecture: str, is_single_token: Callable[[str], bool]) -> TemplateChoice:
    """The first family, the architecture's own first, whose markers are all tokens; else plain."""
    preferred = _BY_ARCHITECTURE.get(architecture)
    order = ([preferred] if preferred else []) + [n for n in _FALLBACK_ORDER if n != preferred]
    for name in order:
        template = BUILTIN[name]
        if all(is_single_token(m) for m in template.markers):
            why = "the architecture's family" if name == preferred else "its markers are tokens"
            return TemplateChoice(template, f"picked for {architecture!r}: {why}", picked=True)
    return TemplateChoice(BUILTIN["plain"], f"picked for {architecture!r}: no known markers", picked=True)


def missing_markers(template: ChatTemplate, is_single_token: Callable[[str], bool]) -> list[str]:
    return [m for m in template.markers if not is_single_token(m)]


def sentinel(index: int) -> str:
    """A stand-in for message ``index``'s text while the template renders: private-use characters
    that no template writes and no tokenizer merges with its neighbours."""
    return f"\ue000{index}\ue001"


def split_rendered(rendered: str, contents: Sequence[str]) -> list[tuple[str, bool]]:
    """Split a template rendered over sentinels into ``(text, is_template_text)`` pieces, with each
    message's own text put back as a piece of its own."""

    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in re.finditer("\ue000(\\d+)\ue001", rendered):
        if match.start() > position:
            pieces.append((rendered[position : match.start()], True))
        pieces.append((contents[int(match.group(1))], False))
        position = match.end()
    if position < len(rendered):
        pieces.append((rendered[position:], True))
    return pieces
