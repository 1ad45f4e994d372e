"""An HTML page as the text a reader wants: its main content, with tables as Markdown tables and
its headings as sections.

Main content by rules over the page's own markup, chosen by measurement over trafilatura 2 and
readability-lxml (``benchmarks/html_main_content.py``, 13 pages whose main text, chrome, table rows
and headings are known): the rules kept all the main text (trafilatura lost a small page and a
passage of another, readability a whole datasheet: 7% each), left out 93% of the chrome (trafilatura 90%, readability 93%),
kept every table row and every heading (trafilatura 82% of the headings, readability 88%), and
add no dependency (trafilatura brings courlan, htmldate, jusText, dateparser, babel and tld).
The rules:

- what a reader never sees is left out: script, style, template, form controls, ``hidden`` and
  ``aria-hidden`` elements;
- site chrome is left out: ``nav``, ``aside``, the ARIA landmarks navigation, banner, contentinfo,
  complementary and search, a ``header`` or ``footer`` that belongs to the page rather than to an
  article or section (HTML-AAM's banner and contentinfo), and an element whose ``id`` or
  ``class`` names it as a menu, footer, sidebar, cookie banner, breadcrumb or share bar;
- ``main`` (or ``role=main``), else the page's only ``article``, is the content when the page has
  one; a page-level header that holds the page's ``h1`` stays when the content has none (a page
  that puts its title and lead there);
- on a page with neither, a block of three links or more that is nearly all link text is a menu
  (an old page's row of links in a layout table);
- a page where the rules keep nothing (a tiny page, or one that is all chrome) yields its whole
  visible text, so it is never skipped as empty.

The tree is walked with an explicit stack, never by recursion, so a deeply nested page costs time
in proportion to its size and raises no ``RecursionError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from indexer.ingestion.tables import markdown_table

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag

_INVISIBLE = frozenset(
    {"script", "style", "noscript", "template", "head", "title", "meta", "link", "svg", "canvas",
     "iframe", "object", "embed", "map", "button", "select", "input", "textarea", "option", "dialog"}
)
# Not ``form``: ASP.NET pages wrap all their content in one; its controls are left out instead.
_CHROME = frozenset({"nav", "aside", "menu"})
_CHROME_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menubar", "menu", "dialog",
     "alertdialog", "toolbar"}
)
# Words of an id or class that mark chrome on pages without landmarks (``div id="navbar"``). Whole
# words only: "share" must not drop "shared-results". An element so marked that holds an h1 stays:
# WordPress's ``header class="entry-header"`` holds the post's title.
_CHROME_WORDS = frozenset(
    {"cookie", "cookies", "consent", "gdpr", "breadcrumb", "breadcrumbs", "skiplink", "sharing",
     "share", "social", "newsletter", "advert", "advertisement", "sidebar", "nav", "navbar",
     "navigation", "menu", "footer", "header", "masthead", "toolbar"}
)
_WORD_RE = re.compile(r"[a-z]+")
# A page's header and footer belong to an article or section inside these (HTML-AAM).
_SECTIONING = frozenset({"article", "aside", "main", "nav", "section"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset(
    {"address", "article", "blockquote", "body", "caption", "center", "dd", "details", "dialog", "div",
     "dl", "dt", "fieldset", "figcaption", "figure", "footer", "header", "hr", "html", "legend", "li",
     "main", "ol", "p", "section", "summary", "td", "th", "tr", "ul", "table", "tbody", "thead",
     "tfoot"}
)
# Bounds for a table's spans: a ``colspan=100000`` must not make a table of 100000 columns.
_MAX_COLSPAN = 64
_MAX_ROWSPAN = 1000
_MAX_HEADING = 300  # characters
# A menu on a page without landmarks: a block of this many links or more, this much of its text
# linked.
_MENU_BLOCKS = frozenset({"div", "ul", "ol", "table", "tr", "td", "p", "span", "center"})
_MENU_LINKS = 3
_MENU_LINK_SHARE = 0.8
_LINE_BREAK = "\ue000"  # <br> inside a block, kept through whitespace folding (not a space to \s)
_SPACE_RE = re.compile(r"\s+")
_BLANK_LINES_RE = re.compile(r"\n\n+")


@dataclass
class HtmlText:
    """What a page reads as: its text, title, and ``(char offset, heading)`` pairs in the text."""

    text: str
    title: str = ""
    headings: list[tuple[int, str]] = field(default_factory=list)


def parse(markup: str | bytes) -> BeautifulSoup:
    """The page's tree (bs4 detects the charset of bytes from <meta> or a BOM)."""
    from bs4 import BeautifulSoup

    return BeautifulSoup(markup, "html.parser")


def page_text(markup: str | bytes, *, main_content: bool = True) -> HtmlText:
    """The page's text; with ``main_content`` only its main content (see the module's rules),
    otherwise all its visible text (an EPUB chapter, an e-mail body), with tables and headings
    rendered the same way."""
    soup = parse(markup)
    title = _fold(soup.title.get_text(" ")) if soup.title else ""
    if main_content:
        roots, kept_header = _content_roots(soup)
        menus = _link_menus(soup) if roots[0] is soup else set()
        found = _render(roots, partial(_is_chrome, kept_header=kept_header, menus=menus))
        if found.text:
            return HtmlText(found.text, title, found.headings)
    found = _render([soup], _is_invisible)
    return HtmlText(found.text, title, found.headings)


def _fold(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _is_invisible(tag: Tag) -> bool:
    attrs = tag.attrs or {}
    return (
        tag.name in _INVISIBLE
        or "hidden" in attrs
        or str(attrs.get("aria-hidden", "")).lower() == "true"
        or "display:none" in str(attrs.get("style", "")).replace(" ", "").lower()
    )


def _is_chrome(tag: Tag, kept_header: Tag | None = None, menus: Collection[int] = ()) -> bool:
    if _is_invisible(tag) or tag.name in _CHROME or id(tag) in menus:
        return True
    attrs = tag.attrs or {}
    if str(attrs.get("role", "")).lower() in _CHROME_ROLES:
        return True
    if tag.name in ("header", "footer") and not _in_sectioning(tag):
        return tag is not kept_header
    marks = " ".join([str(attrs.get("id", "")), *_classes(attrs)]).lower()
    if not marks or _CHROME_WORDS.isdisjoint(_WORD_RE.findall(marks)):
        return False
    return tag.name not in ("body", "html", "main", "article") and tag.find("h1") is None


def _link_menus(soup: BeautifulSoup) -> set[int]:
    """The ids of the blocks that are menus on a page without landmarks: lists, tables, cells and
    divisions of three links or more whose text is nearly all link text (a site's menu as a row
    of links in a layout table). Counted in one pass from the leaves up, so a deep page costs
    time in proportion to its size."""
    from bs4 import NavigableString, Tag

    text: dict[int, int] = {}
    linked: dict[int, int] = {}
    links: dict[int, int] = {}
    nodes = list(soup.descendants)
    for node in reversed(nodes):  # children before their parents
        parent = node.parent
        if parent is None:
            continue
        key = id(parent)
        if isinstance(node, NavigableString):
            n = len(node.strip()) if type(node) is NavigableString else 0
            text[key] = text.get(key, 0) + n
            continue
        if not isinstance(node, Tag) or _is_invisible(node):
            continue
        own = id(node)
        if node.name == "a":
            linked[own], links[own] = text.get(own, 0), links.get(own, 0) + 1
        text[key] = text.get(key, 0) + text.get(own, 0)
        linked[key] = linked.get(key, 0) + linked.get(own, 0)
        links[key] = links.get(key, 0) + links.get(own, 0)
    return {
        id(node)
        for node in nodes
        if isinstance(node, Tag)
        and node.name in _MENU_BLOCKS
        and links.get(id(node), 0) >= _MENU_LINKS
        and linked.get(id(node), 0) >= _MENU_LINK_SHARE * text.get(id(node), 0)
    }


def _classes(attrs: Mapping[str, object]) -> list[str]:
    value = attrs.get("class") or []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _in_sectioning(tag: Tag) -> bool:
    parent = tag.parent
    while parent is not None:
        if parent.name in _SECTIONING or str((parent.attrs or {}).get("role", "")).lower() == "main":
            return True
        parent = parent.parent
    return False


def _content_roots(soup: BeautifulSoup) -> tuple[list[Tag], Tag | None]:
    """``main`` or the only ``article`` when the page has one, else the whole page; and the
    page-level header kept as content: the one that holds the page's h1 when the content has no
    h1 of its own (a page that puts its title and lead there)."""
    mains = soup.find_all(lambda t: _is_main(t) and not _is_invisible(t), limit=1)
    articles = soup.find_all("article", limit=2)
    content = mains[0] if mains else articles[0] if len(articles) == 1 else None
    if content is not None and content.find("h1") is not None:
        return [content], None
    header = next(
        (h for h in soup.find_all("header") if not _in_sectioning(h) and h.find("h1") is not None), None
    )
    if content is None:
        # The whole page: its header is chrome when the page has an h1 outside it.
        if header is not None and any(h.find_parent("header") is None for h in soup.find_all("h1")):
            header = None
        return [soup], header
    return ([header, content] if header is not None else [content]), header


def _is_main(tag: Tag) -> bool:
    return tag.name == "main" or str((tag.attrs or {}).get("role", "")).lower() == "main"


@dataclass
class _Out:
    blocks: list[str] = field(default_factory=list)
    headings: list[tuple[int, str]] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)
    length: int = 0

    def add_inline(self, text: str) -> None:
        self.inline.append(text)

    def flush(self) -> None:
        if not self.inline:
            return
        folded = _SPACE_RE.sub(" ", "".join(self.inline))
        self.inline.clear()
        # One <br> breaks the line, two or more (an old page's paragraphs) the paragraph.
        text = "\n".join(line.strip() for line in folded.split(_LINE_BREAK))
        self.block(_BLANK_LINES_RE.sub("\n\n", text).strip())

    def block(self, text: str, *, heading: bool = False) -> None:
        if not text:
            return
        if self.blocks:
            self.length += 2  # the "\n\n" between blocks
        if heading:
            self.headings.append((self.length, text))
        self.blocks.append(text)
        self.length += len(text)

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


def _render(roots: list[Tag], skip: Callable[[Tag], bool]) -> _Out:
    """The blocks of the text under ``roots`` in document order, leaving out what ``skip`` says."""
    from bs4 import NavigableString, Tag
    from bs4.element import CData, Comment, Declaration, Doctype, ProcessingInstruction, Script, Stylesheet

    ignored = (Comment, Declaration, Doctype, ProcessingInstruction, Script, Stylesheet)
    out = _Out()
    end_of_block = object()
    stack: list[object] = list(reversed(roots))
    while stack:
        node = stack.pop()
        if node is end_of_block:
            out.flush()
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, CData) or not isinstance(node, ignored):
                out.add_inline(str(node))
            continue
        if not isinstance(node, Tag) or skip(node):
            continue
        name = node.name
        if name in _HEADINGS:
            heading = _inline_text(node, skip)
            # A page that never closes its h1 holds the rest of itself in it: that is no heading.
            if len(heading) <= _MAX_HEADING:
                out.flush()
                out.block(heading, heading=True)
                continue
        if name == "table" and _is_data_table(node):
            out.flush()
            out.block(markdown_table(_table_rows(node, skip)))
            continue
        if name == "pre":
            out.flush()
            out.block(node.get_text().strip("\n"))
            continue
        if name == "br":
            out.add_inline(_LINE_BREAK)
            continue
        if name in _BLOCKS:
            out.flush()
            stack.append(end_of_block)
            if name == "li":
                out.add_inline("- ")
        stack.extend(reversed(node.contents))
    out.flush()
    return out


def _inline_text(tag: Tag, skip: Callable[[Tag], bool]) -> str:
    """The text under ``tag`` on one line, leaving out what ``skip`` says (a heading, a cell:
    a table nested in a cell is flattened into it)."""
    from bs4 import NavigableString, Tag
    from bs4.element import CData, Comment, Declaration, Doctype, ProcessingInstruction, Script, Stylesheet

    ignored = (Comment, Declaration, Doctype, ProcessingInstruction, Script, Stylesheet)
    parts: list[str] = []
    stack: list[object] = [tag]
    while stack:
        node = stack.pop()
        if isinstance(node, NavigableString):
            if isinstance(node, CData) or not isinstance(node, ignored):
                parts.append(str(node))
        elif isinstance(node, Tag) and not skip(node):
            if node.name in _BLOCKS or node.name == "br":
                parts.append(" ")
            stack.extend(reversed(node.contents))
    return _fold("".join(parts))


def _rows_of(table: Tag) -> list[tuple[Tag, bool]]:
    """The table's own rows (not those of a table nested in a cell), each with whether it belongs
    to the table's head, in the order thead, tbody/bare rows, tfoot."""
    head: list[tuple[Tag, bool]] = []
    body: list[tuple[Tag, bool]] = []
    foot: list[tuple[Tag, bool]] = []
    for child in table.find_all(True, recursive=False):
        if child.name == "tr":
            body.append((child, False))
        elif child.name in ("thead", "tbody", "tfoot"):
            into = head if child.name == "thead" else foot if child.name == "tfoot" else body
            into.extend((row, child.name == "thead") for row in child.find_all("tr", recursive=False))
    return head + body + foot


def _cells_of(row: Tag) -> list[Tag]:
    return row.find_all(["td", "th"], recursive=False)


def _is_data_table(table: Tag) -> bool:
    """A table of data, rendered as a Markdown table; a table used for layout (one row or one
    column, ``role=presentation``, or cells that hold headings or tables of their own) is read
    as the blocks of its cells instead."""
    if str((table.attrs or {}).get("role", "")).lower() in ("presentation", "none"):
        return False
    if not _is_grid(table):
        return False
    for cells in (_cells_of(row) for row, _ in _rows_of(table)):
        for cell in cells:
            if cell.find(list(_HEADINGS)) is not None:
                return False
            inner = cell.find("table")
            if inner is not None and _is_grid(inner):
                return False
    return True


def _is_grid(table: Tag) -> bool:
    """Two rows or more, one of two cells or more (by shape alone: no recursion into tables nested
    in tables)."""
    rows = [len(_cells_of(row)) for row, _ in _rows_of(table)]
    return len([n for n in rows if n]) >= 2 and max(rows) >= 2


def _span(cell: Tag, name: str, most: int) -> int:
    try:
        return max(1, min(int(str(cell.get(name) or "1").strip() or 1), most))
    except ValueError:
        return 1


def _fill_spanned(out: list[str], pending: dict[int, tuple[int, str]]) -> None:
    """Append to the row ``out`` the cells that rows above span into at its next columns."""
    while len(out) in pending:
        left, text = pending.pop(len(out))
        if left > 1:
            pending[len(out)] = (left - 1, text)
        out.append(text)


def _table_rows(table: Tag, skip: Callable[[Tag], bool]) -> list[list[str]]:
    """The table as a grid of cell texts, header first: a cell spanning rows fills each of them
    (every row then reads alone, as it does in a chunk of a split table); one spanning columns
    fills each of them in the header, where it names a group of columns, and the first of them
    in the body. Several header rows are merged into one, column by column."""
    grid: list[list[str]] = []
    is_head: list[bool] = []
    pending: dict[int, tuple[int, str]] = {}  # column -> (rows still to fill, text)
    for row, in_head in _rows_of(table):
        cells = _cells_of(row)
        if not cells:
            continue
        header_row = in_head or all(cell.name == "th" for cell in cells)
        out: list[str] = []
        for cell in cells:
            _fill_spanned(out, pending)
            text = _inline_text(cell, skip)
            colspan = _span(cell, "colspan", _MAX_COLSPAN)
            rowspan = _span(cell, "rowspan", _MAX_ROWSPAN)
            for i in range(colspan):
                value = text if i == 0 or header_row else ""
                if rowspan > 1:
                    pending[len(out)] = (rowspan - 1, value)
                out.append(value)
        _fill_spanned(out, pending)
        grid.append(out)
        is_head.append(header_row)
    lead = 0
    while lead < len(grid) and is_head[lead]:
        lead += 1
    if lead > 1:
        width = max(len(r) for r in grid[:lead])
        merged = []
        for col in range(width):
            words: list[str] = []
            for r in grid[:lead]:
                if col < len(r) and r[col] and r[col] not in words:
                    words.append(r[col])
            merged.append(" ".join(words))
        grid = [merged, *grid[lead:]]
    # Columns empty in every row are an old page's spacers, not data.
    width = max((len(r) for r in grid), default=0)
    used = [col for col in range(width) if any(col < len(r) and r[col] for r in grid)]
    return [[r[col] if col < len(r) else "" for col in used] for r in grid]
