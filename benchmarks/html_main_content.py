"""Main content of HTML pages: the reader's own rules (``indexer/ingestion/html.py``) against the
maintained extractors trafilatura and readability-lxml, on pages whose main text is known.

Pages: the real public fixtures of ../shared/data/mixed_docs_unstructured (skipped when absent)
and the project's sample faq.html, each with a few passages of its main text and of its chrome
picked by hand, plus pages written here in the shapes sites use (landmarks; ``div id=nav`` without
landmarks; a cookie banner and a share bar; a bare fragment with no chrome at all). For each way:

- recall: the share of known main passages found in the text;
- chrome left out: the share of known boilerplate passages absent from it;
- table rows: the share of known table rows found as a Markdown row (``| Germany | €38 | €140 |``);
- headings: the share of known headings found as a section (the reader's ``headings``) or as a
  Markdown heading line (trafilatura's own Markdown);
- empty: pages where the way gave no text at all;
- CPU ms per page (``time.process_time``, so the figure holds on a loaded machine).

The extractors are installed for measuring only (not dependencies of the project); a way whose
package is missing is left out. Run: ``python -m benchmarks.html_main_content [--markdown]``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.machine import add_markdown_flag, cpu_description, markdown_table

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "data" / "mixed_docs_unstructured" / "files"

_NAV = """<nav aria-label="Main"><ul><li><a href="/">Home</a></li><li><a href="/hr">HR</a></li>
<li><a href="/it">IT help desk</a></li><li><a href="/canteen">Canteen menu</a></li></ul></nav>"""

TRAVEL_POLICY = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Travel policy - Acme intranet</title><style>body {{ font-family: sans-serif }}</style>
<script>window.analytics = {{ track: function () {{}} }};</script></head><body>
<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies</div>
<header><a href="/" class="logo">Acme intranet</a>{_NAV}
<form role="search"><input name="q" placeholder="Search the intranet"></form></header>
<nav class="breadcrumbs"><a href="/">Home</a> | <a href="/hr">HR</a> | Travel policy</nav>
<main><h1>Travel policy</h1>
<p>This policy applies to every business trip booked from 1 March 2024 onwards.</p>
<h2>Per diem and hotel caps</h2>
<p>The per diem covers meals and local transport. Hotels above the cap need written approval.</p>
<table><thead><tr><th>Country</th><th>Per diem</th><th>Hotel cap per night</th></tr></thead>
<tbody><tr><td>Germany</td><td>€38</td><td>€140</td></tr><tr><td>France</td><td>€45</td><td>€160</td></tr>
<tr><td>Japan</td><td>€50</td><td>€180</td></tr></tbody></table>
<h2>Booking</h2><p>Book flights through the travel desk at least fourteen days before departure.</p>
</main>
<aside><h2>Related pages</h2><ul><li><a href="/expenses">Expense claims</a></li></ul></aside>
<footer><p>© 2024 Acme HR. All rights reserved.</p><a href="/privacy">Privacy notice</a></footer>
</body></html>"""

OLD_LAYOUT = """<html><head><title>Pump maintenance - Waterworks wiki</title></head><body>
<div id="header"><div id="logo">Waterworks wiki</div>
<div id="navbar"><a href="/">Main page</a> <a href="/recent">Recent changes</a>
<a href="/random">Random page</a></div></div>
<div id="content"><h1>Pump maintenance</h1>
<p>Inspect the impeller of each pump every six months and replace worn seals at once.</p>
<h2>Service intervals</h2>
<table border="1"><tr><th rowspan="2">Pump</th><th colspan="2">Interval</th></tr>
<tr><th>Inspection</th><th>Overhaul</th></tr>
<tr><td>P-101</td><td>6 months</td><td>4 years</td></tr>
<tr><td>P-102</td><td>3 months</td><td>2 years</td></tr></table>
<h2>Spare parts</h2><p>Keep two spare mechanical seals per pump type in the store room.</p></div>
<div id="sidebar"><h3>Tools</h3><a href="/upload">Upload file</a> <a href="/special">Special pages</a></div>
<div id="footer">This page was last edited on 3 May 2021.
Content is available under CC BY-SA.</div>
</body></html>"""

BLOG_POST = """<!doctype html><html><head><meta charset="utf-8">
<title>Why our kiln cracked</title></head><body>
<div class="site-nav"><a href="/">Blog</a> <a href="/about">About the studio</a>
<a href="/shop">Shop</a></div>
<article><header><h1>Why our kiln cracked</h1><p class="byline">By Ana Ruiz, 12 June 2023</p></header>
<p>The crack started at the door seal, where the firing cycle heated the brick fastest.</p>
<p>We now ramp the temperature by 80 degrees per hour up to 600 degrees before the glaze firing.</p>
<h2>What we changed</h2><p>The new controller holds each step for ten minutes, so the bricks heat evenly.</p>
<div class="share-buttons">Share on Mastodon Share by e-mail</div>
<footer><p>Filed under ceramics and kilns.</p></footer></article>
<div class="newsletter"><h3>Subscribe</h3><p>Get our posts by e-mail every month.</p></div>
<footer role="contentinfo"><p>Studio Ruiz, Calle Mayor 5, Toledo</p></footer></body></html>"""

FRAGMENT = "<p>The gate code for the loading bay is 4471.</p>"

NEWS = """<html><head><title>River levels fall after storm | Valley News</title></head><body>
<header role="banner"><div>Valley News</div><ul class="menu"><li><a href="/local">Local</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/weather">Weather</a></li></ul></header>
<div role="main"><h1>River levels fall after storm</h1>
<p>The river at Millbridge fell by forty centimetres overnight after two days of heavy rain.</p>
<p>The flood barrier on Quay Street stays closed until the level drops below two metres.</p>
<aside class="related"><h2>More from Valley News</h2><ul><li><a href="/a">Bus timetable changes</a></li>
<li><a href="/b">Library reopens</a></li></ul></aside>
<p>Residents can collect sandbags from the fire station on Mill Lane until Friday.</p></div>
<footer><p>Valley News, all rights reserved. Contact the newsroom.</p></footer></body></html>"""


@dataclass
class Page:
    name: str
    html: bytes
    main: list[str]
    chrome: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)


def pages() -> list[Page]:
    found = [
        Page(
            "travel-policy (written)",
            TRAVEL_POLICY.encode(),
            ["This policy applies to every business trip", "Hotels above the cap need written approval",
             "Book flights through the travel desk"],
            ["We use cookies", "IT help desk", "Canteen menu", "Search the intranet",
             "Related pages", "Expense claims", "All rights reserved", "Privacy notice"],
            [["Country", "Per diem", "Hotel cap per night"], ["Germany", "€38", "€140"],
             ["France", "€45", "€160"],
             ["Japan", "€50", "€180"]],
            ["Travel policy", "Per diem and hotel caps", "Booking"],
        ),
        Page(
            "old-layout wiki (written)",
            OLD_LAYOUT.encode(),
            ["Inspect the impeller of each pump", "Keep two spare mechanical seals"],
            ["Recent changes", "Random page", "Upload file", "Special pages", "last edited on"],
            [["P-101", "6 months", "4 years"], ["P-102", "3 months", "2 years"]],
            ["Pump maintenance", "Service intervals", "Spare parts"],
        ),
        Page(
            "blog post (written)",
            BLOG_POST.encode(),
            ["The crack started at the door seal", "We now ramp the temperature by 80 degrees",
             "The new controller holds each step"],
            ["About the studio", "Share on Mastodon", "Get our posts by e-mail", "Calle Mayor 5"],
            [],
            ["Why our kiln cracked", "What we changed"],
        ),
        Page("fragment (written)", FRAGMENT.encode(), ["The gate code for the loading bay is 4471."]),
        Page(
            "news (written)",
            NEWS.encode(),
            ["The river at Millbridge fell by forty centimetres", "The flood barrier on Quay Street",
             "Residents can collect sandbags"],
            ["Bus timetable changes", "Library reopens", "Sport", "Contact the newsroom"],
            [],
            ["River levels fall after storm"],
        ),
        Page(
            "faq.html (sample)",
            (ROOT / "data" / "sample" / "faq.html").read_bytes(),
            ["firmware for both the mast and the console is released under the GPL-3.0 license",
             "A small team of volunteers maintains the designs", "The mast talks only to the console"],
            ["Did not find your question? Ask on the community forum."],
            [],
            ["About the project", "Who makes Aurora Station?", "Data and connectivity", "Hardware questions"],
        ),
    ]
    real = [
        ("example-with-scripts.html",
         ["Belarusian forces remain unlikely to attack Ukraine",
          "Karolina Hird, George Barros, Grace Mappes, Madison Williams, and Frederick W. Kagan"],
         ["Who We Are", "Planned Giving", "Suite 515", "THE INSTITUTE FOR THE STUDY OF WAR"],
         [], ["Russian Offensive Campaign Assessment, December 13"]),
        ("example-steelJIS-datasheet.html",
         ["Rolled or forget alloy steel bars to be used for the manufacture of the bolts", "JIS G 4108"],
         ["About us", "Korean steels", "Is this information useful?", "All rights reserved"],
         [["Bars", "890", "1000", "12", "40"]], []),
        ("ideas-page.html",
         ["The way to get new ideas is to notice anomalies", "yields whole new fractal buds"], [], [], []),
        ("example-10k-1p.html",
         ["Commission file number: 000-30653", "Indicate by check mark if the registrant is a well-known"],
         [], [["Common stock", "GLXZ", "OTCQB marketplace"]], []),
        ("fake-html.html", ["My first paragraph. lorem ipsum dolor set amet."], [],
         [["Row 1, Cell 1", "Row 1, Cell 2"], ["Row 2, Cell 1", "Row 2, Cell 2"]],
         ["My First Heading", "My Second Heading", "A Third Heading"]),
        ("fake-html-cp1252.html", ["Der Preis betrug 15,50 €", "El niño comió paella"], [], [], []),
        ("lang_eng_spa_mult.html", ["All human beings are born free and equal in dignity"], [], [], []),
    ]
    for name, main, chrome, rows, headings in real:
        if (FIXTURES / name).is_file():
            found.append(Page(name, (FIXTURES / name).read_bytes(), main, chrome, rows, headings))
    return found


# Each way: page bytes -> (text, headings found as sections).
Way = Callable[[bytes], tuple[str, list[str]]]


def _rules(raw: bytes) -> tuple[str, list[str]]:
    from indexer.ingestion.readers import read_html

    doc = read_html(raw)
    return doc.text, [h for _, h in doc.headings]


def _all_visible(raw: bytes) -> tuple[str, list[str]]:
    from indexer.ingestion.html import page_text

    doc = page_text(raw, main_content=False)
    return doc.text, [h for _, h in doc.headings]


def _trafilatura_markdown(raw: bytes) -> tuple[str, list[str]]:
    import trafilatura

    text = trafilatura.extract(
        raw, output_format="markdown", include_tables=True, include_comments=False
    ) or ""
    return text, [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)]


def _trafilatura_rendered(raw: bytes) -> tuple[str, list[str]]:
    import trafilatura

    from indexer.ingestion.html import page_text

    markup = trafilatura.extract(raw, output_format="html", include_tables=True, include_comments=False) or ""
    doc = page_text(markup, main_content=False) if markup else None
    return (doc.text, [h for _, h in doc.headings]) if doc else ("", [])


def _readability_rendered(raw: bytes) -> tuple[str, list[str]]:
    from readability import Document

    from indexer.ingestion.html import page_text

    try:
        markup = Document(raw).summary(html_partial=True)
    except Exception:  # readability raises on pages it finds nothing in
        return "", []
    doc = page_text(markup, main_content=False)
    return doc.text, [h for _, h in doc.headings]


WAYS: dict[str, tuple[str, Way]] = {
    "own rules (chosen)": ("", _rules),
    "all visible text, no selection": ("", _all_visible),
    "trafilatura 2 Markdown": ("trafilatura", _trafilatura_markdown),
    "trafilatura 2 HTML + our tables": ("trafilatura", _trafilatura_rendered),
    "readability-lxml + our tables": ("readability", _readability_rendered),
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", "").replace("*", "")).strip()


def _row_found(text: str, row: list[str]) -> bool:
    cells = [re.escape(_norm(c)) for c in row]
    return re.search(r"\|\s*" + r"\s*\|\s*".join(cells) + r"\s*\|", text) is not None


def measure(repeats: int = 5) -> list[dict[str, object]]:
    import importlib.util

    results = []
    corpus = pages()
    for label, (module, way) in WAYS.items():
        if module and importlib.util.find_spec(module) is None:
            continue
        kept = total_main = dropped = total_chrome = rows = total_rows = heads = total_heads = empty = 0
        cpu = 0.0
        per_page = []
        for page in corpus:
            start = time.process_time()
            for _ in range(repeats):
                text, headings = way(page.html)
            cpu += (time.process_time() - start) / repeats
            flat = _norm(text)
            lines = "\n".join(_norm(line) for line in text.splitlines())
            k = sum(_norm(m) in flat for m in page.main)
            d = sum(_norm(c) not in flat for c in page.chrome)
            r = sum(_row_found(lines, row) for row in page.rows)
            h = sum(_norm(x) in {_norm(y) for y in headings} for x in page.headings)
            kept, total_main = kept + k, total_main + len(page.main)
            dropped, total_chrome = dropped + d, total_chrome + len(page.chrome)
            rows, total_rows = rows + r, total_rows + len(page.rows)
            heads, total_heads = heads + h, total_heads + len(page.headings)
            empty += not flat
            per_page.append((page.name, k, len(page.main), d, len(page.chrome), r, len(page.rows)))
        results.append({
            "way": label,
            "recall": kept / total_main,
            "chrome_left_out": dropped / total_chrome,
            "table_rows": rows / total_rows,
            "headings": heads / total_heads,
            "empty_pages": empty,
            "cpu_ms_per_page": 1000 * cpu / len(corpus),
            "pages": len(corpus),
            "per_page": per_page,
        })
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_markdown_flag(parser)
    parser.add_argument("--per-page", action="store_true", help="also print each page's counts")
    args = parser.parse_args()
    results = measure()
    cpu = cpu_description()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores ({' '.join(cpu['flags'])}), load {cpu['load_1min']}")
    for r in results:
        print(f"{r['way']:34} recall {r['recall']:.2f}  chrome out {r['chrome_left_out']:.2f}  "
              f"rows {r['table_rows']:.2f}  headings {r['headings']:.2f}  empty {r['empty_pages']}  "
              f"{r['cpu_ms_per_page']:.1f} ms/page")
        if args.per_page:
            for row in r["per_page"]:  # type: ignore[attr-defined]
                print("   ", row)
    if args.markdown:
        columns = ["way", "main text kept", "boilerplate left out", "table rows", "headings", "empty pages",
                   "CPU ms/page"]
        rows = [
            [r["way"], f"{r['recall']:.2f}", f"{r['chrome_left_out']:.2f}", f"{r['table_rows']:.2f}",
             f"{r['headings']:.2f}", f"{r['empty_pages']} of {r['pages']}", f"{r['cpu_ms_per_page']:.1f}"]
            for r in results
        ]
        print(markdown_table(columns, rows))


if __name__ == "__main__":
    main()
