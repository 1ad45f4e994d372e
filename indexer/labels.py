"""Labels of a passage's place (title, section) as a reader sees them."""

from __future__ import annotations

import re

_DASHES_RE = re.compile(r"[\u2010-\u2015\u2212-]+")
_SPACE_RE = re.compile(r"\s+")


def _key(label: object) -> str:
    return _SPACE_RE.sub(" ", _DASHES_RE.sub("-", str(label or ""))).strip().casefold()


def same_label(a: object, b: object) -> bool:
    """Whether two labels read the same (case, spacing and the kind of dash aside): a section that
    is the title again must not be shown twice ("Onboarding notes – Kestrel team, Onboarding notes
    - Kestrel team"). The web page's ``sameLabel`` in static/app.js is the same rule."""
    return bool(_key(a)) and _key(a) == _key(b)
