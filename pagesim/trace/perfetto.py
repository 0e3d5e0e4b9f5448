# SPDX-License-Identifier: GPL-2.0-only
"""Chrome trace-event JSON, which ui.perfetto.dev and chrome://tracing open.

Layout: the machine is one process (``pid`` 1, named after the machine and kernel), each
CPU one thread of it (``tid`` = CPU number, named "CPU0", "CPU1", ... and sorted by
number), so every CPU gets its own track. A kmem event is an instant event (``"ph":
"i"``, thread scope) on its CPU's track whose ``args`` are the event's printed fields
plus the task that ran; a span the driver recorded (:meth:`Tracer.begin` /
:meth:`Tracer.end`) is a ``"B"``/``"E"`` pair on its CPU's track. Timestamps are in
microseconds, as the format requires, with the nanoseconds kept as the fraction.

:func:`validate_trace_events` checks a document against the Trace Event Format (the
required keys of each phase, numeric microsecond timestamps, integer pid/tid, B/E
balanced and nested per track), so a test, or the simulator before it writes, can tell
a trace that would load from one that would not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

from pagesim.trace._files import write_text_atomic
from pagesim.trace.events import Span, TraceEvent

#: The process id the machine's tracks live under.
MACHINE_PID = 1

#: Phases of the Trace Event Format.
PHASES = frozenset("BEXiICMbnesStTpFfPONDVvRc()")
_METADATA = frozenset(("process_name", "process_labels", "process_sort_index",
                       "thread_name", "thread_sort_index"))


def _us(ts_ns: int) -> float | int:
    """Microseconds, exact: an integer when the time is whole microseconds."""
    return ts_ns // 1000 if ts_ns % 1000 == 0 else ts_ns / 1000


def trace_events(events: Iterable[TraceEvent], spans: Iterable[Span] = (), *,
                 nr_cpus: int, process_name: str = "pagesim") -> dict[str, Any]:
    """The JSON document (a dict) for ``events`` and ``spans`` on ``nr_cpus`` CPUs."""
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": MACHINE_PID, "tid": 0,
         "args": {"name": process_name}}]
    cpus = set(range(nr_cpus))
    body: list[dict[str, Any]] = []
    for ev in events:
        cpus.add(ev.cpu)
        args: dict[str, Any] = {k: v for k, v in ev.fields.items()}
        args["comm"] = ev.comm
        args["task_pid"] = ev.pid
        body.append({"name": ev.name, "cat": "kmem", "ph": "i", "s": "t",
                     "ts": _us(ev.ts_ns), "pid": MACHINE_PID, "tid": ev.cpu, "args": args})
    for sp in spans:
        cpus.add(sp.cpu)
        rec: dict[str, Any] = {"name": sp.name, "cat": "pagesim", "ph": sp.ph,
                               "ts": _us(sp.ts_ns), "pid": MACHINE_PID, "tid": sp.cpu}
        if sp.ph == "B":
            rec["args"] = {**sp.args, "comm": sp.comm, "task_pid": sp.pid}
        body.append(rec)
    for cpu in sorted(cpus):
        out.append({"name": "thread_name", "ph": "M", "pid": MACHINE_PID, "tid": cpu,
                    "args": {"name": f"CPU{cpu}"}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": MACHINE_PID, "tid": cpu,
                    "args": {"sort_index": cpu}})
    # stable sort by time: equal timestamps keep the order they happened in, events
    # before spans (an E at the time of the event it encloses must come after it)
    body.sort(key=lambda r: r["ts"])
    out.extend(body)
    return {"traceEvents": out, "displayTimeUnit": "ns",
            "otherData": {"generator": "pagesim"}}


def render_perfetto(events: Iterable[TraceEvent], spans: Iterable[Span] = (), *,
                    nr_cpus: int, process_name: str = "pagesim") -> str:
    doc = trace_events(events, spans, nr_cpus=nr_cpus, process_name=process_name)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"


def write_perfetto(path: str | Path, events: Iterable[TraceEvent], spans: Iterable[Span] = (),
                   *, nr_cpus: int, process_name: str = "pagesim") -> None:
    """:func:`render_perfetto` written whole (temporary file, then rename)."""
    write_text_atomic(path, render_perfetto(events, spans, nr_cpus=nr_cpus,
                                            process_name=process_name))


# =======================================================================================
# Validation against the Trace Event Format


def _is_num(v: object) -> TypeGuard[int | float]:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_trace_events(doc: object) -> list[str]:
    """Every way ``doc`` breaks the Trace Event Format (empty: it conforms).

    Checked: the JSON object form (``traceEvents`` list, ``displayTimeUnit`` "ms" or
    "ns"); per event a known ``ph``, integer ``pid``/``tid``, a finite non-negative
    ``ts`` (microseconds) except on metadata, a ``name`` except on "E", ``dur`` on "X",
    ``s`` in g/p/t on instants, ``args`` an object (numbers for counters, a name for
    the *_name metadata); per (pid, tid) track the B/E pairs balanced, properly nested
    (an "E" with a name closes the slice of that name) and not going back in time.
    """
    errors: list[str] = []
    if not isinstance(doc, dict):
        return ["top level: expected a JSON object with 'traceEvents'"]
    evs = doc.get("traceEvents")
    if not isinstance(evs, list):
        return ["top level: 'traceEvents' must be a list"]
    unit = doc.get("displayTimeUnit", "ms")
    if unit not in ("ms", "ns"):
        errors.append(f"top level: displayTimeUnit {unit!r} is not 'ms' or 'ns'")
    stacks: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for i, ev in enumerate(evs):
        where = f"traceEvents[{i}]"
        if not isinstance(ev, dict):
            errors.append(f"{where}: not an object")
            continue
        ph = ev.get("ph")
        if not isinstance(ph, str) or ph not in PHASES:
            errors.append(f"{where}: ph {ph!r} is not a trace-event phase")
            continue
        pid, tid = ev.get("pid"), ev.get("tid")
        if not _is_int(pid):
            errors.append(f"{where}: pid {pid!r} is not an integer")
        if not _is_int(tid):
            errors.append(f"{where}: tid {tid!r} is not an integer")
        name = ev.get("name")
        if ph != "E" and not isinstance(name, str):
            errors.append(f"{where}: ph {ph!r} needs a string name")
        if "args" in ev and not isinstance(ev["args"], dict):
            errors.append(f"{where}: args must be an object")
        ts = ev.get("ts")
        if ph == "M":
            if name not in _METADATA:
                errors.append(f"{where}: unknown metadata event {name!r}")
            args = ev.get("args")
            if not isinstance(args, dict):
                errors.append(f"{where}: metadata needs args")
            elif isinstance(name, str) and name.endswith("_name") and not isinstance(
                    args.get("name"), str):
                errors.append(f"{where}: {name} needs args.name")
            elif isinstance(name, str) and name.endswith("_sort_index") and not _is_int(
                    args.get("sort_index")):
                errors.append(f"{where}: {name} needs an integer args.sort_index")
            continue
        if not _is_num(ts) or float(ts) < 0:
            errors.append(f"{where}: ts {ts!r} is not a non-negative number of microseconds")
            continue
        t = float(ts)
        if ph == "X" and (not _is_num(ev.get("dur")) or ev["dur"] < 0):
            errors.append(f"{where}: ph 'X' needs a non-negative dur")
        if ph in "iI" and ev.get("s", "t") not in ("g", "p", "t"):
            errors.append(f"{where}: instant scope {ev.get('s')!r} is not g, p or t")
        if ph == "C":
            args = ev.get("args")
            if not isinstance(args, dict) or not all(_is_num(v) for v in args.values()):
                errors.append(f"{where}: counter args must be numbers")
        if ph in "BE" and isinstance(pid, int) and isinstance(tid, int):
            stack = stacks.setdefault((pid, tid), [])
            if stack and t < stack[-1][1]:
                errors.append(f"{where}: {ph} at {ts} before the open slice's begin "
                              f"at {stack[-1][1]} on pid {pid} tid {tid}")
            if ph == "B":
                stack.append((str(name), t))
            elif not stack:
                errors.append(f"{where}: E without a B on pid {pid} tid {tid}")
            else:
                open_name, _ = stack.pop()
                if isinstance(name, str) and name != open_name:
                    errors.append(f"{where}: E {name!r} closes {open_name!r} on pid {pid} "
                                  f"tid {tid} (slices must nest)")
    for (pid, tid), stack in sorted(stacks.items()):
        for open_name, _ in stack:
            errors.append(f"track pid {pid} tid {tid}: B {open_name!r} never ended")
    return errors
