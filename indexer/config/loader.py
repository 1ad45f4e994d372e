"""Read a YAML config: ``extends`` layering, ``${VAR:default}`` expansion, ``--set`` overrides,
path resolution and validation, with errors that name the file and the field.

Relative paths resolve against the folder of the file that wrote them (so a base config keeps
working when extended from elsewhere); paths given with ``--set`` resolve against the current
directory, as any other command-line path would.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from indexer.config.models import Config
from indexer.config.plugins import redact
from indexer.errors import ConfigError

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")

# Values a config may hold once its aliases (``*name``) are expanded. A real config holds a few
# hundred; the bound keeps a "billion laughs" file (aliases of aliases, exponential once expanded)
# from hanging every walk over the tree (env expansion, validation) and eating memory.
MAX_CONFIG_VALUES = 100_000


def load_config(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | Iterable[str] | None = None
) -> Config:
    """Load, layer, override and validate the config at ``path``.

    ``overrides`` is either a mapping of dotted keys to values or ``KEY=VALUE`` strings as given
    to ``--set`` (values parsed as YAML scalars).
    """
    config_path = Path(path).expanduser().resolve()
    raw = _read_layered(config_path, chain=())
    override_map = {
        # --set values expand ${VAR} as the files do: a key given as '${INDEXER_KEY}' is the
        # variable's value, never that literal string.
        key: _expand_env(value, f"--set {key}")
        for key, value in _normalise_overrides(overrides).items()
    }
    for key, value in override_map.items():
        if key in path_keys() and isinstance(value, str) and not _is_bundled(value):
            value = str(Path(value).expanduser().resolve())
        _set_dotted(raw, key, value, config_path)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, config_path, override_map)) from None
    config._source = str(config_path)
    return config


def parse_set_options(options: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}``, values parsed as YAML scalars."""
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, text = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {option!r}: expected KEY=VALUE, e.g. --set query.top_k=8")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parsed[key.strip()] = value
    return parsed


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML, as ``indexer config`` prints it (and eval reports keep it), with
    the secrets of components' ``kwargs`` masked."""
    return yaml.safe_dump(_masked(config.model_dump(mode="json")), sort_keys=False, allow_unicode=True)


def _masked(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: redact(v) if k == "kwargs" else _masked(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_masked(v) for v in node]
    return node


def _normalise_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    return parse_set_options(overrides)


def _read_layered(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{path}: 'extends' forms a cycle: {cycle}")
    data = _read_yaml(path)
    base_ref = data.pop("extends", None)
    data = _expand_env(data, str(path))
    _resolve_paths(data, path.parent)
    if base_ref is None:
        return data
    if not isinstance(base_ref, str):
        raise ConfigError(f"{path}: 'extends' must be the path of another config file")
    base_path = (path.parent / os.path.expanduser(base_ref)).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: 'extends' names {base_ref!r}, but {base_path} does not exist")
    return _deep_merge(_read_layered(base_path, (*chain, path)), data)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except _TooLarge as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML at {where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing aliases that expand past ``MAX_CONFIG_VALUES`` values or
    contain themselves (``_TooLarge``, a ``YAMLError``) before anything is constructed."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


class _UniqueKeyLoader(BoundedSafeLoader):
    """PyYAML keeps the last of two equal keys without a word: two ``chunking:`` sections would
    silently drop the first. A duplicate is an error, reported like any malformed YAML (with its
    line); keys brought in by a ``<<`` merge may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class _TooLarge(yaml.YAMLError):
    """Aliases that expand past ``MAX_CONFIG_VALUES``, or that contain themselves."""


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of the tree as aliases expand it, without expanding it: the composer
    shares one node per anchor, so each node's size is computed once (iteratively, so that a
    deeply nested file cannot exhaust the stack here either)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = list(node.value)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_CONFIG_VALUES:
                line = node.start_mark.line + 1
                raise _TooLarge(
                    f"its aliases (*name) expand to more than {MAX_CONFIG_VALUES:,} values (at line "
                    f"{line}); a config is refused past that, as a guard against alias bombs"
                )
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise _TooLarge(
                    f"the anchor at line {child.start_mark.line + 1} is used inside itself (a "
                    "recursive alias); a config must be a finite tree"
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _expand_env(node: Any, where: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:default}`` in every string of ``node`` (which comes from
    ``where``: a file, or a ``--set`` option), as a new tree: an alias shares one object between
    places, which must not be expanded twice."""

    def expand(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise ConfigError(
                    f"{where}: environment variable {name} is not set and ${{{name}}} has no "
                    f"default (write ${{{name}:default}})"
                )
            return default

        return _ENV_RE.sub(one, text)

    if isinstance(node, dict):
        return {key: _expand_env(value, where) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, where) for v in node]
    if isinstance(node, str):
        expanded = expand(node)
        if expanded != node and _ENV_RE.fullmatch(node):
            # A value that is only a variable takes the variable's YAML type (e.g. a port number).
            try:
                return yaml.safe_load(expanded) if expanded.strip() else expanded
            except yaml.YAMLError:
                return expanded
        return expanded
    return node


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    for dotted in path_keys():
        section, _, key = dotted.partition(".")
        block = data.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and not _is_bundled(block[key]):
            block[key] = str((base_dir / os.path.expanduser(block[key])).resolve())


def _is_bundled(value: str) -> bool:
    """``bundled:NAME`` names a model that a pip package ships, not a path (llm.model_path)."""
    return value.startswith("bundled:")


@functools.cache
def path_keys(model: type[BaseModel] = Config, prefix: str = "") -> frozenset[str]:
    """Dotted names of every Path-typed field (e.g. ``data.input_dir``)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
        if annotation is Path or Path in args:
            keys.add(prefix + name)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= path_keys(annotation, f"{prefix}{name}.")
    return frozenset(keys)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {dotted}: {where} in {path} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _explain(exc: ValidationError, path: Path, overrides: Mapping[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        source = _source_of(loc, path, overrides)
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(error["loc"])
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] not in ("value_error", "assertion_error"):
                message += f" (got {error['input']!r})"
        lines.append(f"{source}: {_shown_loc(error['loc']) or 'top level'}: {message}")
    count = len(lines)
    header = f"invalid config ({count} problem{'s' if count > 1 else ''}):\n  "
    return header + "\n  ".join(lines)


def _shown_loc(loc: tuple[int | str, ...]) -> str:
    """A field's dotted name, with a key that holds a dot (an extension of data.readers) in
    brackets: data.readers[.log].class, not data.readers..log.class."""
    shown = ""
    for part in loc:
        text = str(part)
        shown += f"[{text}]" if "." in text else (f".{text}" if shown else text)
    return shown


def _source_of(loc: str, path: Path, overrides: Mapping[str, Any]) -> str:
    """Where the offending value came from: an override, or the file (with overrides inside)."""
    if any(loc == key or loc.startswith(key + ".") for key in overrides):
        return f"--set {loc}"
    inside = [key for key in overrides if key.startswith(loc + ".")]
    return f"{path} with --set {', '.join(inside)}" if inside else str(path)


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Config
    parts = list(loc[:-1])
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        annotation = field.annotation if field is not None else None
        args = typing.get_args(annotation)
        if args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel) and parts:
            annotation = args[-1]  # a list or dict of sections: the next part is its index or key
            parts.pop(0)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    unknown = str(loc[-1])
    close = difflib.get_close_matches(unknown, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {unknown!r}{hint}; allowed: {', '.join(allowed)}"
