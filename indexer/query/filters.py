"""Metadata filters: which chunks a question may be answered from.

``path`` is a glob over the file's path relative to ``data.input_dir`` (``guides/*``, ``*.md``),
``type`` a file extension (``pdf`` or ``.pdf``), and a chunk metadata key (``METADATA_KEYS``) an
exact match (``page=3``, ``title=Maintenance``). Several filters must all hold; a key outside these
is refused with the list, since it could only ever match nothing.

Chroma's ``where`` cannot glob, so path and type filters become the list of matching files from
the manifest (``doc_id $in [...]``); the keyword index applies the same rules in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from indexer.errors import ConfigError
from indexer.index import chroma
from indexer.index.store import CHUNK_INDEX, DOC_ID, FILE_HASH
from indexer.query.text import unicode_problem, value_problem

FilterValue = str | int | float | bool
PATH_KEYS = ("path", "file")
TYPE_KEYS = ("type", "ext", "file_type")
# The metadata every chunk may carry (``ingestion.chunking``): a filter on any other key matches
# nothing, so it is refused rather than answered with "No matching passages." (a typo like typ=pdf).
METADATA_KEYS = (
    "title",
    "page",
    "page_end",
    "section",
    "file_name",
    DOC_ID,
    FILE_HASH,
    CHUNK_INDEX,
    "start_char",
    "end_char",
)
FILTER_KEYS = (*PATH_KEYS, *TYPE_KEYS, *METADATA_KEYS)


def parse_filter_options(options: Iterable[str]) -> dict[str, FilterValue]:
    """``key=value`` strings (from ``--filter``) as a mapping; values stay strings here and are
    matched against numbers too (``page=3`` finds page 3)."""
    filters: dict[str, FilterValue] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                f"--filter {option!r}: expected key=value, e.g. --filter path='guides/*' or "
                "--filter type=pdf or --filter page=3"
            )
        filters[key.strip()] = value.strip()
    return filters


def filter_problem(key: Any, value: Any) -> str | None:
    """What is wrong with one filter, naming it as ``filters.KEY``; ``None`` when it is fine.

    Keys and values reach Chroma's ``where`` and the keyword index's mask cache: an operator key
    (``$or``) or a list would be read as query syntax or fail deep inside them."""
    if not isinstance(key, str) or not key.strip():
        return f"filters: keys must be non-empty metadata names, got {key!r}"
    if (problem := unicode_problem(key)) is not None:
        return f"filters: key {key!r} {problem}"
    if key.startswith("$"):
        return (
            f"filters.{key}: keys starting with '$' are query operators, not metadata names; "
            'give key: value pairs, e.g. {"path": "guides/*", "page": 3}'
        )
    if key not in FILTER_KEYS:
        return unknown_key_problem(key)
    if isinstance(value, bool | int | float | str):
        problem = value_problem(value)
        return None if problem is None else f"filters.{key}: {problem}"
    kind = "a list" if isinstance(value, list | tuple) else type(value).__name__
    return (
        f"filters.{key}: must be one string, number or boolean, not {kind} "
        "(several filters must all hold; one key cannot take several values)"
    )


def unknown_key_problem(key: str) -> str:
    """The message for a filter on a key no chunk has, naming the keys that exist and the likeliest
    one meant."""
    import difflib

    close = difflib.get_close_matches(key, FILTER_KEYS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"filters.{key}: no such filter key{hint}; filter on path (a glob), type (an extension), "
        f"or a metadata key: {', '.join(METADATA_KEYS)}"
    )


def check_filters(filters: Mapping[str, Any] | None) -> None:
    """Raise ``ConfigError`` naming the first bad filter."""
    for key, value in (filters or {}).items():
        problem = filter_problem(key, value)
        if problem is not None:
            raise ConfigError(problem)


def _as_number(value: FilterValue) -> list[FilterValue]:
    """The typed forms a filter value may be stored as (Chroma compares types strictly)."""
    forms: list[FilterValue] = [value]
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            forms.append(lowered == "true")
        else:
            for cast in (int, float):
                try:
                    number = cast(value)
                except ValueError:
                    continue
                # "nan", "inf" and "1e999" read as floats that Chroma refuses in a where clause
                # (and that no stored value equals): they stay strings.
                if math.isfinite(number):
                    forms.append(number)
                break
    elif not isinstance(value, bool):
        forms.append(str(value))
    return forms


def _extension(value: FilterValue) -> str:
    text = str(value).lower()
    return text if text.startswith(".") else f".{text}"


@dataclass(frozen=True)
class Filters:
    path: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    fields: tuple[tuple[str, tuple[FilterValue, ...]], ...] = ()

    @classmethod
    def from_mapping(cls, *mappings: Mapping[str, FilterValue] | None) -> Filters:
        """Merge filter mappings (config first, then the call's): a later key replaces an earlier."""
        merged: dict[str, FilterValue] = {}
        for mapping in mappings:
            check_filters(mapping)
            merged.update(mapping or {})
        path, types, fields = [], [], []
        for key, value in merged.items():
            if key in PATH_KEYS:
                path.append(str(value))
            elif key in TYPE_KEYS:
                types.append(_extension(value))
            else:
                fields.append((key, tuple(_as_number(value))))
        return cls(tuple(path), tuple(types), tuple(fields))

    def __bool__(self) -> bool:
        return bool(self.path or self.types or self.fields)

    def describe(self) -> str:
        parts = [f"path={p}" for p in self.path] + [f"type={t}" for t in self.types]
        parts += [f"{k}={v[0]}" for k, v in self.fields]
        return ", ".join(parts)

    def file_allowed(self, file: str) -> bool:
        return all(fnmatchcase(file, p) for p in self.path) and all(
            file.lower().endswith(t) for t in self.types
        )

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        if not self.file_allowed(str(metadata.get("file", metadata.get(DOC_ID, "")))):
            return False
        for key, forms in self.fields:
            if key not in metadata:
                return False
            value = metadata[key]
            if value not in forms and str(value) not in {str(f) for f in forms}:
                return False
        return True

    def chroma_where(self, indexed_files: Iterable[str]) -> chroma.Where | None:
        """The filter as a Chroma ``where`` (``None``: no filter). Callers check ``allowed_files``
        first: an empty ``$in`` would be an error in Chroma rather than an empty result."""
        clauses: list[chroma.Where] = []
        if self.path or self.types:
            clauses.append(chroma.where_in(DOC_ID, sorted(self.allowed_files(indexed_files))))
        clauses += [chroma.where_any(key, forms) for key, forms in self.fields]
        return chroma.where_all(clauses)

    def allowed_files(self, indexed_files: Iterable[str]) -> list[str]:
        return [f for f in indexed_files if self.file_allowed(f)]
