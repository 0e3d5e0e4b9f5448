# SPDX-License-Identifier: GPL-2.0-only
"""The report document (:mod:`pagesim.report.data`) as one self-contained HTML file.

One file, because a report is attached to bug reports and opened from a mail or a CI
artifact: it must work from ``file://`` with no server, and it must not reach the
network, so the style sheet and the script are inlined and a Content-Security-Policy
forbids every fetch (a stray URL would fail loudly rather than phone home). The data is
a JSON ``<script type="application/json">`` block read by the script; in it every
``<``, ``>`` and ``&`` is a JSON escape, so no scenario name or message can end the
block or open a tag. The header is also printed as static HTML, so the page says what
it is about even with scripts off.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from pagesim.trace._files import write_text_atomic

#: what the page may load: nothing but its own inline style and script (and data: images)
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")

_ASSET_PACKAGE = "pagesim.report"


def _asset(name: str) -> str:
    return resources.files(_ASSET_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def embed_json(doc: Any) -> str:
    """``doc`` as JSON that is safe inside a ``<script>`` element: no ``</script>``,
    ``<!--`` or markup can appear in it, and the JSON parser reads it back unchanged
    (the escapes are JSON's own)."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _header_html(doc: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in doc.get("header", []))
    notes = "".join(f"<p class=\"note\">{html.escape(str(n))}</p>"
                    for n in doc.get("notes", []))
    return f"<table class=\"facts\">{rows}</table>{notes}"


def render_html(doc: dict[str, Any]) -> str:
    """The page for a report document."""
    values = {
        "TITLE": html.escape(str(doc.get("title", "pagesim report"))),
        "CSP": html.escape(CSP),
        "STYLE": _asset("report.css"),
        "HEADER": _header_html(doc),
        "DATA": embed_json(doc),
        "SCRIPT": _asset("report.js"),
    }
    # One pass: text put in for one placeholder is never searched for another.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], _asset("template.html"))


def write_report(path: str | Path, doc: dict[str, Any]) -> None:
    """Write the page whole or not at all (a temporary file beside it, then a rename)."""
    write_text_atomic(path, render_html(doc))
