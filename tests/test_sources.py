"""Which files of a folder a build considers (``ingestion.sources.discover``): nested files by
their relative path, hidden files and folders never, a linked folder never entered, sub-folders
only with ``recursive``, and the ``required_exts`` and ``exclude`` filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.config.models import DataConfig
from indexer.ingestion.sources import discover


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel in [
        "top.txt",
        "Notes.MD",
        "a/b/deep.txt",
        "a/skip-me.txt",
        "drafts/old.txt",
        ".hidden.txt",
        ".git/config.txt",
        "a/.cache/x.txt",
        "data.bin",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"text of {rel}\n")
    (root / "data.bin").write_bytes(b"\x00\x01binary")
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "far.txt").write_text("outside\n")
    (root / "linked").symlink_to(outside / "inner", target_is_directory=True)
    return root


def _ids(**data: Any) -> tuple[list[str], list[str], list[str]]:
    found = discover(DataConfig(**data))
    return (
        [s.doc_id for s in found.sources],
        [s.doc_id for s in found.unsupported],
        [r.doc_id for r in found.refused],
    )


def test_a_folder_lists_its_nested_files_and_never_hidden_ones_or_a_linked_folder(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    sources, unsupported, refused = _ids(input_dir=root)
    assert sources == ["Notes.MD", "a/b/deep.txt", "a/skip-me.txt", "drafts/old.txt", "top.txt"]
    assert unsupported == ["data.bin"] and refused == []
    found = discover(DataConfig(input_dir=root))
    assert {s.doc_id: s.size for s in found.sources}["top.txt"] == len("text of top.txt\n")
    assert all(s.path == root / s.doc_id for s in found.sources)


def test_recursive_off_lists_the_top_level_only(tmp_path: Path) -> None:
    sources, unsupported, _ = _ids(input_dir=_folder(tmp_path), recursive=False)
    assert sources == ["Notes.MD", "top.txt"] and unsupported == ["data.bin"]


def test_extensions_and_exclude_patterns_filter_by_name_and_by_relative_path(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    sources, unsupported, _ = _ids(input_dir=root, required_exts=[".md"])
    assert sources == ["Notes.MD"] and unsupported == []
    sources, _, _ = _ids(input_dir=root, exclude=["drafts/*", "skip-*"])
    assert sources == ["Notes.MD", "a/b/deep.txt", "top.txt"]
