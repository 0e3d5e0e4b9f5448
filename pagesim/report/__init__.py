# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim report``: one self-contained HTML page for a counterexample or a simulation.

* :mod:`pagesim.report.data` decides what the page shows (per-CPU lanes of steps, each
  step's call chain, values and the state it changed) as plain JSON data;
* :mod:`pagesim.report.html` puts that data, the style sheet and the script
  (``report.css``, ``report.js``, ``template.html`` in this package) into one file that
  opens from disk and fetches nothing.
"""

from pagesim.report.data import (
    MAX_EVENTS_PER_CPU,
    ReportError,
    SimEvent,
    SimSpan,
    counterexample_document,
    simulation_document,
)
from pagesim.report.html import embed_json, render_html, write_report

__all__ = [
    "MAX_EVENTS_PER_CPU",
    "ReportError",
    "SimEvent",
    "SimSpan",
    "counterexample_document",
    "embed_json",
    "render_html",
    "simulation_document",
    "write_report",
]
