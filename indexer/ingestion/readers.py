"""Turn one file into LlamaIndex ``Document`` objects, or say why it cannot be read.

Binary formats go to LlamaIndex's maintained readers (pypdf, docx2txt). Text formats are decoded
here rather than by ``SimpleDirectoryReader``, whose text fallback decodes with ``errors="ignore"``:
that silently drops non-UTF-8 characters and happily "reads" binary blobs as garbage.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llama_index.core.schema import Document

_SNIFF_BYTES = 8192
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MD_TITLE_RE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class UnreadableFile(Exception):
    """The file cannot be turned into text; the message says why, for the build summary."""


def decode_text(raw: bytes) -> str:
    """Decode bytes of unknown encoding: BOM first, then strict UTF-8, then cp1252."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding)
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise UnreadableFile("looks binary (contains NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte, so the text survives.
        return raw.decode("latin-1")


def _read_text(path: Path) -> list[Document]:
    text = decode_text(path.read_bytes())
    metadata: dict[str, Any] = {}
    if path.suffix.lower() in (".md", ".markdown"):
        match = _MD_TITLE_RE.search(text)
        if match:
            metadata["title"] = match.group(1)
    return [Document(text=text, metadata=metadata)]


def _read_json(path: Path) -> list[Document]:
    text = decode_text(path.read_bytes())
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return [Document(text=text)]


def _read_html(path: Path) -> list[Document]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    text = soup.get_text("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return [Document(text=text, metadata={"title": title} if title else {})]


def _read_pdf(path: Path) -> list[Document]:
    import pypdf

    try:
        pdf = pypdf.PdfReader(path)
    except pypdf.errors.PdfReadError as exc:
        raise UnreadableFile(f"not a readable PDF ({exc})") from None
    if pdf.is_encrypted:
        raise UnreadableFile("encrypted PDF (no password support)")
    title = (pdf.metadata.title if pdf.metadata else None) or ""
    docs = []
    for number, page in enumerate(pdf.pages, start=1):
        metadata: dict[str, Any] = {"page": number}
        if title:
            metadata["title"] = title
        docs.append(Document(text=page.extract_text() or "", metadata=metadata))
    return docs


def _read_docx(path: Path) -> list[Document]:
    from llama_index.readers.file import DocxReader

    try:
        return DocxReader().load_data(path)
    except Exception as exc:  # docx2txt raises zipfile/KeyError on a damaged file
        raise UnreadableFile(f"not a readable DOCX ({type(exc).__name__}: {exc})") from None


READERS: dict[str, Callable[[Path], list[Document]]] = {
    ".txt": _read_text,
    ".md": _read_text,
    ".markdown": _read_text,
    ".rst": _read_text,
    ".csv": _read_text,
    ".tsv": _read_text,
    ".json": _read_json,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
    ".docx": _read_docx,
}


def read_file(path: Path) -> list[Document]:
    """Read ``path`` into documents with no empty text; raise ``UnreadableFile`` otherwise."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableFile(f"unsupported file type {path.suffix!r}")
    try:
        docs = reader(path)
    except OSError as exc:
        raise UnreadableFile(f"cannot read ({exc.strerror or exc})") from None
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise UnreadableFile("no text found (empty file, or a scan without a text layer)")
    return docs
