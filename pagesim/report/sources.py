# SPDX-License-Identifier: GPL-2.0-only
"""A simulation's trace, from wherever it is, in the report's terms.

A run's events reach the report two ways: straight from the :class:`~pagesim.trace.Tracer`
when ``pagesim simulate --out`` writes the report itself, and from the files that run
left (``trace.json``, else ``trace.txt``) when ``pagesim report DIR`` is run later.
Both become the same :class:`~pagesim.report.data.SimEvent` and
:class:`~pagesim.report.data.SimSpan` lists, so the two reports of one run are the same
page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pagesim.report.data import ReportError, SimEvent, SimSpan, simulation_document
from pagesim.sim.runner import NS_PER_STEP
from pagesim.trace._files import read_text
from pagesim.trace.events import Span, TraceEvent
from pagesim.trace.perfetto import validate_trace_events

#: the names pagesim simulate --out gives the files a report reads
TRACE_JSON = "trace.json"
TRACE_TXT = "trace.txt"
REPORT_NAME = "report.html"

#: Perfetto args that are the task, not the event's fields
_TASK_ARGS = ("comm", "task_pid")


def from_tracer(events: Iterable[TraceEvent],
                spans: Iterable[Span]) -> tuple[list[SimEvent], list[SimSpan]]:
    """A live tracer's events and spans (the runner's clock counts steps in
    ``NS_PER_STEP`` nanoseconds)."""
    out = [SimEvent(e.ts_ns // NS_PER_STEP, e.cpu, e.name, dict(e.fields), e.comm)
           for e in events]
    return out, _pair_spans((s.ph, s.ts_ns // NS_PER_STEP, s.cpu, s.name, dict(s.args))
                            for s in spans)


def _pair_spans(marks: Iterable[tuple[str, int, int, str, dict[str, Any]]]) -> list[SimSpan]:
    """B/E marks, nested per CPU, as spans in the order they began (one never ended
    runs to the end of the run)."""
    open_: dict[int, list[tuple[int, str, int, dict[str, Any]]]] = {}
    done: list[tuple[int, SimSpan]] = []
    for n, (ph, step, cpu, name, args) in enumerate(marks):
        stack = open_.setdefault(cpu, [])
        if ph == "B":
            stack.append((n, name, step, args))
        elif ph == "E" and stack:
            k, bname, begin, bargs = stack.pop()
            done.append((k, SimSpan(cpu, bname, begin, step, _fields(bargs))))
    for cpu, stack in open_.items():
        for k, bname, begin, bargs in stack:
            done.append((k, SimSpan(cpu, bname, begin, None, _fields(bargs))))
    return [s for _, s in sorted(done, key=lambda d: d[0])]


def _fields(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in _TASK_ARGS}


def from_perfetto(path: Path) -> tuple[list[SimEvent], list[SimSpan]]:
    """A ``trace.json`` that ``pagesim simulate --trace`` wrote; checked against the
    trace-event format first, so a damaged file is one error naming its first fault."""
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    errors = validate_trace_events(doc)
    if errors:
        raise ReportError(f"{path}: {errors[0]}")
    events: list[SimEvent] = []
    marks: list[tuple[str, int, int, str, dict[str, Any]]] = []
    for ev in doc["traceEvents"]:
        ph = ev["ph"]
        if ph not in ("i", "I", "B", "E"):
            continue
        # ts is microseconds; the runner's step is NS_PER_STEP nanoseconds
        step = round(float(ev["ts"]) * 1000) // NS_PER_STEP
        args = ev.get("args") or {}
        if ph in "iI":
            events.append(SimEvent(step, ev["tid"], ev["name"],
                                   _fields(args),
                                   str(args.get("comm", ""))))
        else:
            marks.append((ph, step, ev["tid"], ev.get("name", ""), dict(args)))
    return events, _pair_spans(marks)


def from_ftrace(path: Path) -> list[SimEvent]:
    """A ``trace.txt`` (ftrace text): its events, without spans (ftrace has none)."""
    from pagesim.trace.ftrace import read_ftrace
    return [SimEvent(e.ts_ns // NS_PER_STEP, e.cpu, e.name, dict(e.fields), e.comm)
            for e in read_ftrace(path).events]


def simulation_report_from_files(results: dict[str, Any], results_path: Path, *,
                                 max_events_per_cpu: int | None = None) -> dict[str, Any]:
    """The report of a run from its results file and the trace files beside it."""
    where = results_path.parent
    events: list[SimEvent] = []
    spans: list[SimSpan] = []
    traced = False
    if (where / TRACE_JSON).is_file():
        events, spans = from_perfetto(where / TRACE_JSON)
        traced = True
    elif (where / TRACE_TXT).is_file():
        events = from_ftrace(where / TRACE_TXT)
        traced = True
    kw = {} if max_events_per_cpu is None else {"max_events_per_cpu": max_events_per_cpu}
    return simulation_document(results, events, spans, traced=traced,
                               source=str(results_path), **kw)


def simulation_report(results: dict[str, Any], tracer: Any = None,
                      source: str = "") -> dict[str, Any]:
    """The report of a run just finished: its results object and its live tracer."""
    if tracer is None:
        return simulation_document(results, source=source)
    events, spans = from_tracer(tracer.events, tracer.spans)
    return simulation_document(results, events, spans, traced=True, source=source)
