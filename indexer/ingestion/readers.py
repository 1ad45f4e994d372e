"""Turn one file into LlamaIndex ``Document`` objects, or say why it cannot be read.

Binary formats go to maintained parsers (pdfplumber in ``pdf.py``, python-docx, python-pptx,
openpyxl, EbookLib, odfpy, striprtf); the readers of formats that hold tables are in ``office.py``.
Text formats are decoded here rather than by ``SimpleDirectoryReader``, whose text fallback decodes
with ``errors="ignore"``: that silently drops non-UTF-8 characters and happily "reads" binary blobs
as garbage.

Every built-in reader is handed the file's bytes, read once (``read_bytes``), never its path: the
build hashes those same bytes, so a file rewritten meanwhile is recorded as it was read. Readers run
behind one guard (``documents_from``) that turns whatever they raise into a one-line reason, and
behind the bounds of ``ReadLimits``.

``data.readers`` names a LlamaIndex ``BaseReader`` (or the user's own) for an extension, over the
built-in reader if there is one. It travels in ``ReadLimits`` as its dotted path and kwargs, to
chunking workers and Ray actors alike, and each process makes its own instance once. It is called
as LlamaIndex's file readers are, ``load_data(path)``, behind the same guard and bounds; a file
rewritten between its hash and its reading is read again by the next build, whose hash differs.

A document may carry ``headings``: ``(char offset, heading)`` pairs in its text, from which each
chunk gets the ``section`` it starts in, and ``pages``: ``(char offset, page number)`` pairs, from
which it gets ``page`` and ``page_end`` (see ``chunking.py``).
"""

from __future__ import annotations

import codecs
import io
import json
import re
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config.models import DataConfig
from indexer.ingestion.images import IMAGE_SUFFIXES, read_image
from indexer.ingestion.ocr import NO_TEXT

_SNIFF_BYTES = 8192
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MD_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
FORMATS_EXTRA = "pip install 'indexer[formats]'"

if TYPE_CHECKING:
    from llama_index.core.schema import Document

    from indexer.ingestion.html import HtmlText


def _document(text: str, metadata: dict[str, Any] | None = None) -> Document:
    # Imported here: planning a build imports this module, and an unchanged build needs no
    # LlamaIndex (1.5 s of imports).
    from llama_index.core.schema import Document

    return Document(text=text, metadata=metadata or {})


HEADINGS = "headings"
# ``(char offset, page number)`` pairs: where each page starts in a document's text (PDFs).
PAGES = "pages"


def _default(field: str) -> Any:
    return DataConfig.model_fields[field].default


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


def _require(module: str, file_type: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnreadableFile(
            f"reading {file_type} files needs the 'formats' extra: {FORMATS_EXTRA}"
        ) from None


def _read_text(raw: bytes) -> list[Document]:
    return [_document(text=decode_text(raw))]


def _read_markdown(raw: bytes) -> list[Document]:
    text = decode_text(raw)
    headings = [(m.start(), m.group(2)) for m in _MD_HEADING_RE.finditer(text)]
    metadata: dict[str, Any] = {HEADINGS: headings}
    top = next((m.group(2) for m in _MD_HEADING_RE.finditer(text) if len(m.group(1)) == 1), None)
    if top:
        metadata["title"] = top
    return [_document(text=text, metadata=metadata)]


def _read_json(raw: bytes) -> list[Document]:
    text = decode_text(raw)
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return [_document(text=text)]


def html_to_text(markup: str | bytes, *, main_content: bool = False) -> tuple[str, str]:
    """Visible text and title of an HTML page (bs4 detects the charset of bytes from <meta>); with
    ``main_content`` only its main content (``indexer.ingestion.html``)."""
    from indexer.ingestion.html import page_text

    page = page_text(markup, main_content=main_content)
    return page.text, page.title


def read_html(raw: bytes) -> HtmlText:
    """An HTML file's main content, title and headings."""
    from indexer.ingestion.html import page_text

    # Decode ourselves (BOM, UTF-8, cp1252) unless the page declares its charset.
    markup: str | bytes = raw if re.search(rb"<meta[^>]+charset", raw[:4096], re.I) else decode_text(raw)
    return page_text(markup, main_content=True)


def _read_html(raw: bytes) -> list[Document]:
    page = read_html(raw)
    metadata: dict[str, Any] = {HEADINGS: page.headings}
    if page.title:
        metadata["title"] = page.title
    return [_document(text=page.text, metadata=metadata)]


def _read_pdf(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    from indexer.ingestion.pdf import read_pdf  # it imports this module

    limits = limits or ReadLimits()
    return read_pdf(raw, limits.ocr, limits.ocr_languages)


class _OfficeReader:
    """A reader of ``office.py`` (DOCX, PPTX, ODT, CSV/TSV, XLSX, ODS: their tables as Markdown),
    imported when first called (it imports this module), and handed the limits so that it stops
    reading at ``data.max_document_chars``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
        from indexer.ingestion import office

        reader: Callable[[bytes, ReadLimits | None], list[Document]] = getattr(office, self.name)
        return reader(raw, limits)


def _read_epub(raw: bytes) -> list[Document]:
    # EbookLib for the container, one document per chapter so chunks can cite it; LlamaIndex's
    # EpubReader merges all chapters into one text and decodes them as UTF-8 regardless.
    _require("ebooklib", "EPUB")
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(raw), options={"ignore_ncx": True})
    except Exception as exc:  # EpubException, zipfile.BadZipFile, KeyError
        raise UnreadableFile(f"not a readable EPUB ({type(exc).__name__}: {exc})") from None
    titles = book.get_metadata("DC", "title")
    book_title = titles[0][0] if titles else ""
    docs = []
    for item in book.get_items_of_type(ebooklib.ITEM_DOCUMENT):
        text, chapter = html_to_text(item.get_content())
        metadata: dict[str, Any] = {"title": book_title} if book_title else {}
        if chapter and chapter != book_title:
            metadata["section"] = chapter
        docs.append(_document(text=text, metadata=metadata))
    return docs


def _read_rtf(raw: bytes) -> list[Document]:
    # striprtf directly: LlamaIndex's RTFReader opens the file in the locale's encoding.
    from striprtf.striprtf import rtf_to_text

    text = decode_text(raw)
    if not text.lstrip().startswith("{\\rtf"):
        raise UnreadableFile("not an RTF file (no {\\rtf header)")
    return [_document(text=rtf_to_text(text, errors="replace"))]


def _read_image(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    limits = limits or ReadLimits()
    return read_image(raw, limits.ocr, limits.ocr_languages)


def _read_eml(raw: bytes) -> list[Document]:
    # The standard library's email parser (policy.default decodes charsets and transfer encodings).
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(raw)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        raise UnreadableFile("e-mail without a text or HTML body")
    content = body.get_content()
    text = html_to_text(content)[0] if body.get_content_subtype() == "html" else content
    metadata: dict[str, Any] = {}
    if message["subject"]:
        metadata["title"] = str(message["subject"])
    return [_document(text=text, metadata=metadata)]


READERS: dict[str, Callable[..., list[Document]]] = {
    ".txt": _read_text,
    ".text": _read_text,
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".rst": _read_text,
    ".csv": _OfficeReader("read_csv"),
    ".tsv": _OfficeReader("read_tsv"),
    ".xlsx": _OfficeReader("read_xlsx"),
    ".ods": _OfficeReader("read_ods"),
    ".json": _read_json,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
    ".docx": _OfficeReader("read_docx"),
    ".pptx": _OfficeReader("read_pptx"),
    ".epub": _read_epub,
    ".rtf": _read_rtf,
    ".odt": _OfficeReader("read_odt"),
    ".eml": _read_eml,
    **dict.fromkeys(IMAGE_SUFFIXES, _read_image),
}
TAKES_LIMITS = {_read_pdf, _read_image}
"""Readers handed the ``ReadLimits`` too, for the OCR settings (``data.ocr``)."""


def is_supported(path: Path, configured: Collection[str] = ()) -> bool:
    """Whether a built-in reader, or one of the ``configured`` extensions (``data.readers``),
    reads ``path``."""
    suffix = path.suffix.lower()
    return suffix in READERS or suffix in configured


ReaderRef = tuple[str, str, dict[str, Any]]
"""A ``data.readers`` entry as it travels to workers: extension, dotted class path, kwargs."""


@dataclass(frozen=True)
class ReadLimits:
    """How much one file may make a reader take in (``data.max_*``, see ``config/models.py``), and
    the readers ``data.readers`` puts over the built-in ones."""

    max_file_bytes: int = _default("max_file_bytes")
    max_inflated_bytes: int = _default("max_inflated_bytes")
    max_inflation_ratio: float = _default("max_inflation_ratio")
    max_document_chars: int = _default("max_document_chars")
    readers: tuple[ReaderRef, ...] = field(default=(), hash=False)
    ocr: str = _default("ocr")
    ocr_languages: tuple[str, ...] = ("en",)

    @classmethod
    def of(cls, data: DataConfig) -> ReadLimits:
        readers = tuple((ext, spec.class_, dict(spec.kwargs)) for ext, spec in sorted(data.readers.items()))
        return cls(
            data.max_file_bytes,
            data.max_inflated_bytes,
            data.max_inflation_ratio,
            data.max_document_chars,
            readers,
            data.ocr,
            tuple(data.ocr_languages),
        )

    def reader_for(self, suffix: str) -> ReaderRef | None:
        suffix = suffix.lower()
        return next((ref for ref in self.readers if ref[0] == suffix), None)

    def named(self, field: str) -> str:
        """``data.FIELD (VALUE)``, as a skip reason names the bound: a later plan reads a file
        again once the bound its reason names has another value (``plan._worth_retrying``)."""
        value = getattr(self, field)
        return f"data.{field} ({value:g})" if isinstance(value, float) else f"data.{field} ({value})"

    def changed_since(self, reason: str) -> bool:
        """Whether ``reason`` names a bound that these limits set to another value."""
        names = [f.name for f in fields(self) if f.name != "readers"]
        return any(f"data.{name} (" in reason and self.named(name) not in reason for name in names)


def read_bytes(path: Path, limits: ReadLimits) -> bytes:
    """The file's bytes, read once: what its hash and its text are both made from. A file that grew
    past ``data.max_file_bytes`` since the build listed it is refused without reading the rest."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read ({exc.strerror or exc})") from None
    if len(raw) > limits.max_file_bytes:
        raise UnreadableFile(f"larger than {limits.named('max_file_bytes')} since the build listed it")
    return raw


def read_file(path: Path, limits: ReadLimits | None = None) -> list[Document]:
    """Read ``path`` into documents with no empty text; raise ``UnreadableFile`` otherwise."""
    limits = limits or ReadLimits()
    return documents_from(read_bytes(path, limits), path.suffix, limits, path)


def documents_from(
    raw: bytes, suffix: str, limits: ReadLimits, path: Path | None = None, notes: list[str] | None = None
) -> list[Document]:
    """The documents of a file of type ``suffix`` whose bytes are ``raw`` (read from ``path``), with
    no empty text; raise ``UnreadableFile`` otherwise. Every reader runs here, in the build's
    chunking workers and on Ray actors alike: whatever one raises on a malformed file (a
    ``LookupError`` for an unknown charset, a ``RecursionError`` for deep nesting, a parser's own
    error) skips that file, with its reason in one line, and never stops a build. A reader of
    ``data.readers`` is given ``path``. Each page left without text (``ocr.NO_TEXT``) is told in
    ``notes``, for the build summary."""
    configured = limits.reader_for(suffix) if path is not None else None
    reader = READERS.get(suffix.lower())
    if reader is None and configured is None:
        raise UnreadableFile(f"unsupported file type {suffix or '(no extension)'!r}")
    check_archive(raw, limits)
    try:
        if configured is not None:
            assert path is not None
            docs = list(configured_reader(configured).load_data(path))
        else:
            assert reader is not None
            takes_limits = reader in TAKES_LIMITS or isinstance(reader, _OfficeReader)
            docs = reader(raw, limits) if takes_limits else reader(raw)
    except UnreadableFile:
        raise
    except Exception as exc:
        raise UnreadableFile(failure_reason(exc)) from None
    empty = [f"page {page}: {why}" for d in docs for page, why in d.metadata.get(NO_TEXT) or ()]
    docs = [d for d in docs if d.text.strip()]
    for doc in docs:
        doc.metadata.pop(NO_TEXT, None)
    if not docs:
        why = f"; {'; '.join(empty[:3])}" if empty else ""
        raise UnreadableFile(f"no text found (empty file, or a scan without a text layer{why})")
    if notes is not None:
        notes.extend(empty)
    chars = sum(len(d.text) for d in docs)
    if chars > limits.max_document_chars:
        raise UnreadableFile(
            f"{chars} characters of text, more than {limits.named('max_document_chars')}"
        )
    return docs


def readers_record(data: DataConfig) -> dict[str, Any]:
    """What the manifest's ``loader`` keeps of ``data.readers``: each class and its kwargs, without
    secrets (nothing when none is configured, so older manifests read the same)."""
    if not data.readers:
        return {}
    return {"readers": {ext: spec.record() for ext, spec in sorted(data.readers.items())}}


_CONFIGURED: dict[str, Any] = {}


def configured_reader(ref: ReaderRef, where: str = "the config") -> Any:
    """The instance of a ``data.readers`` entry, made once per process (a ``ConfigError`` naming
    the field if it cannot be made)."""
    from indexer.config.plugins import READER_BASE, build

    ext, path, kwargs = ref
    key = repr((path, sorted(kwargs.items())))
    made = _CONFIGURED.get(key)
    if made is None:
        made = build(path, kwargs, base=READER_BASE, field=f"data.readers[{ext}]", where=where)
        _CONFIGURED[key] = made
    return made


def check_archive(raw: bytes, limits: ReadLimits) -> None:
    """Refuse a zip archive (DOCX, PPTX, XLSX, EPUB and ODT are ones) that would inflate past
    ``data.max_inflated_bytes`` or ``data.max_inflation_ratio`` times its size, from its central
    directory alone: nothing is inflated. Every reader of such a format inflates with Python's
    zipfile, which never gives more bytes of a member than the directory lists. Any file that opens
    as an archive is checked, whatever its name, so a reader added later is bounded too."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except Exception:  # not an archive (or a damaged one, which its reader reports)
        return
    if inflated > limits.max_inflated_bytes:
        raise UnreadableFile(
            f"archive inflates to {inflated} bytes, more than {limits.named('max_inflated_bytes')}"
        )
    if inflated > limits.max_inflation_ratio * max(len(raw), 1):
        raise UnreadableFile(
            f"archive inflates {inflated / max(len(raw), 1):.0f} times its size of {len(raw)} bytes, "
            f"more than {limits.named('max_inflation_ratio')}"
        )


_REASON_CHARS = 200
_OBJECT_REPR_RE = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def failure_reason(exc: BaseException, what: str = "cannot be read") -> str:
    """One line saying why a reader (or the chunker) failed on a file, for the build summary."""
    # An object's repr names its address ("<_io.BytesIO object at 0x7f...>"), which differs on
    # every read: the same failure must read the same, or a warning printed once per reason repeats.
    lines = _OBJECT_REPR_RE.sub("", str(exc)).strip().splitlines()
    message = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if len(message) > _REASON_CHARS:
        message = message[: _REASON_CHARS - 3] + "..."
    return f"{what} ({message})"
