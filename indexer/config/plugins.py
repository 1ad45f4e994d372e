"""Components the config names by dotted path: any LlamaIndex class (an ``LLM``, a ``BaseReader``,
a ``BaseNodePostprocessor``, ...) or the user's own, from any importable module.

A spec is ``{class: package.module.Class, kwargs: {...}}``. When the config loads, the class is
imported and checked to be of the right kind, and ``kwargs`` against its signature, so a typo is
a config error naming the field, not a failure halfway through a build; the object itself is made
only when it is first needed (``build``), since some (a reranker, a remote LLM client) load models
or open connections.

Specs travel to build workers and Ray actors as the dotted path and kwargs, never as an instance:
each process makes its own.

``kwargs`` may hold secrets (``api_key``, ``token``, ``password``...): ``redact`` and ``scrub``
keep them out of what is printed, logged or written to the manifest.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexer.errors import ConfigError

# The base classes each kind of spec must derive from (imported only when a config names one).
LLM_BASE = "llama_index.core.llms.llm.LLM"
EMBEDDING_BASE = "llama_index.core.base.embeddings.base.BaseEmbedding"
READER_BASE = "llama_index.core.readers.base.BaseReader"
POSTPROCESSOR_BASE = "llama_index.core.postprocessor.types.BaseNodePostprocessor"

REDACTED = "***"
# Parts of a kwarg's name (split at '_' and case changes) that mark its value as a secret. Whole
# parts, so that max_tokens or target_metadata_key are not taken for one.
_SECRET_PARTS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "token",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "apikey",
        "passphrase",
        "cookie",
        "bearer",
    }
)
_SECRET_KEY_OWNERS = frozenset({"api", "access", "private", "secret", "client", "subscription"})
_NAME_PARTS_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# llama_index.<kind>.<name> is what the integration package llama-index-<kind>-<name> installs.
_INTEGRATION_RE = re.compile(r"^llama_index\.([a-z0-9_]+)\.([a-z0-9_]+)")


def is_secret(name: str) -> bool:
    """Whether a kwarg called ``name`` holds a secret, by its name."""
    parts = [p.lower() for p in _NAME_PARTS_RE.findall(name)]
    if any(p in _SECRET_PARTS for p in parts):
        return True
    if parts == ["key"]:
        return True
    return any(p == "key" and i > 0 and parts[i - 1] in _SECRET_KEY_OWNERS for i, p in enumerate(parts))


def redact(value: Any) -> Any:
    """``value`` with every secret-named key's value replaced by ``***``, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret(str(k)) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def secret_values(value: Any) -> list[str]:
    """The text of every secret in ``value`` (a kwargs mapping), to scrub from messages."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_secret(str(k)) and v is not None and not isinstance(v, Mapping | list | tuple):
                if str(v):
                    found.append(str(v))
            else:
                found.extend(secret_values(v))
    elif isinstance(value, list | tuple):
        for v in value:
            found.extend(secret_values(v))
    return found


def scrub(text: str, kwargs: Any) -> str:
    """``text`` (an exception's message, say) with the secrets of ``kwargs`` replaced by ``***``:
    a constructor's error may quote its whole input."""
    for secret in sorted(secret_values(kwargs), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def install_hint(module: str) -> str:
    """What to install for ``module``: the integration package for LlamaIndex's, else a hint."""
    match = _INTEGRATION_RE.match(module)
    if match and match.group(1) != "core":
        kind, name = match.group(1), match.group(2)
        package = f"llama-index-{kind.replace('_', '-')}-{name.replace('_', '-')}"
        return f"pip install {package}"
    if module.startswith("llama_index"):
        return "pip install llama-index-core"
    return "install the package that provides it, or put its folder on PYTHONPATH"


def import_class(path: str) -> type:
    """The class at the dotted ``path``; ``ValueError`` saying what is missing (and what to
    install) otherwise."""
    module_name, _, name = path.strip().rpartition(".")
    if not module_name or not name or not all(part.isidentifier() for part in path.split(".")):
        raise ValueError(f"{path!r} is not a dotted path to a class (write package.module.ClassName)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise ValueError(
                f"class {path!r}: there is no module {missing!r} ({install_hint(module_name)})"
            ) from None
        raise ValueError(
            f"class {path!r}: importing {module_name!r} needs the module {missing!r}, which is not "
            f"installed ({install_hint(missing)})"
        ) from None
    except Exception as exc:  # the module itself is broken: its own error, in one line
        raise ValueError(
            f"class {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    found = getattr(module, name, None)
    if found is None:
        raise ValueError(f"class {path!r}: module {module_name!r} has no {name!r}")
    if not inspect.isclass(found):
        raise ValueError(f"class {path!r} is a {type(found).__name__}, not a class")
    return found


def check_module(path: str) -> None:
    """Refuse a dotted class path whose module is not installed, naming what to install, without
    importing the module (an embedding integration's module imports torch: seconds, at every
    config load)."""
    import importlib.util

    module, _, name = path.strip().rpartition(".")
    if not module or not name or not all(part.isidentifier() for part in path.split(".")):
        raise ValueError(f"{path!r} is not a dotted path to a class (write package.module.ClassName)")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package is missing
        found = None
    if found is None:
        raise ValueError(f"class {path!r}: there is no module {module!r} ({install_hint(module)})")


def check_class(path: str, base: str, kwargs: Mapping[str, Any]) -> type:
    """Import ``path`` and check that it derives from ``base`` (a dotted path) and takes
    ``kwargs``; ``ValueError`` with the reason otherwise."""
    cls = import_class(path)
    base_cls = import_class(base)
    if not issubclass(cls, base_cls):
        raise ValueError(
            f"class {path!r} is not a {base_cls.__name__} ({base}); this field takes a subclass of it"
        )
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a C extension's class: its constructor says at build time
        return cls
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return cls
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"class {path!r} takes no kwargs {', '.join(map(repr, unknown))}; it takes: "
            f"{', '.join(accepted) or 'none'}"
        )
    return cls


def build(path: str, kwargs: Mapping[str, Any], *, base: str, field: str, where: str = "the config") -> Any:
    """``path(**kwargs)``, checked to be a ``base``; a ``ConfigError`` naming ``where`` (the
    config file), ``field`` and ``path`` otherwise, with secrets scrubbed from the message."""
    try:
        cls = check_class(path, base, kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {field}: {exc}") from None
    try:
        return cls(**dict(kwargs))
    except Exception as exc:
        reason = scrub(_error_text(exc), kwargs)
        raise ConfigError(
            f"{where}: {field}: cannot create {path} with kwargs {redact(dict(kwargs))!r}: "
            f"{type(exc).__name__}: {reason}"
        ) from None


def _error_text(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # its text quotes the input: name the fields instead
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'kwargs'}: {e['msg']}" for e in exc.errors()
        )
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ComponentSpec(BaseModel):
    """``{class: dotted.path.Class, kwargs: {...}}``: a component the config names. Subclasses set
    ``base``, the class it must derive from."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )
    base: ClassVar[str] = ""

    class_: str = Field(
        alias="class",
        description="Dotted path of the class: a LlamaIndex integration's (e.g. "
        "llama_index.core.postprocessor.SimilarityPostprocessor) or one of your own modules "
        "(importable: installed, or on PYTHONPATH).",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments the class is made with. Values of secret-looking keys "
        "(api_key, token, password...) are never printed or recorded: give them as ${VAR}.",
    )

    @model_validator(mode="after")
    def _importable(self) -> ComponentSpec:
        if self.base:
            check_class(self.class_, self.base, self.kwargs)
        return self

    def build(self, field: str, where: str = "the config") -> Any:
        """A new instance (see ``build``)."""
        return build(self.class_, self.kwargs, base=self.base, field=field, where=where)

    def record(self) -> dict[str, Any]:
        """What a manifest or a report may keep of this spec: the class, and kwargs without secrets."""
        return {"class": self.class_, "kwargs": redact(self.kwargs)}


class ReaderSpec(ComponentSpec):
    """A LlamaIndex ``BaseReader`` (or the user's own) for one file extension."""

    base: ClassVar[str] = READER_BASE


class PostprocessorSpec(ComponentSpec):
    """A LlamaIndex ``BaseNodePostprocessor`` (or the user's own)."""

    base: ClassVar[str] = POSTPROCESSOR_BASE
