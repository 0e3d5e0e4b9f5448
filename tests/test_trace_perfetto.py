# SPDX-License-Identifier: GPL-2.0-only
"""Chrome/Perfetto trace-event JSON: one track per CPU, instants and B/E slices, checked
against the Trace Event Format twice: with a JSON schema written from the format's
document (per-phase required keys and types) and with the library's own validator,
which also checks what a schema cannot (B/E balanced and nested per track)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pagesim.model import page_alloc as pa
from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.mmzone import MIGRATE_MOVABLE
from pagesim.model.page_alloc import alloc_pages, drain_pages
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.sequential import call
from pagesim.trace import (
    TraceEvent,
    Tracer,
    read_ftrace,
    render_perfetto,
    trace_events,
    validate_trace_events,
    write_perfetto,
)

DEB = Path(__file__).parent / "data" / "reference" / "debian-6.1-2cpu-hotplug"

_NUM = {"type": "number", "minimum": 0}
_INT = {"type": "integer"}
#: The Trace Event Format (the JSON Object Format with its event phases), as a schema.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "traceEvents": {"type": "array", "items": {"$ref": "#/$defs/event"}},
        "displayTimeUnit": {"enum": ["ms", "ns"]},
    },
    "$defs": {
        "event": {
            "type": "object",
            "required": ["ph", "pid", "tid"],
            "properties": {
                "ph": {"enum": [*"BEXiIbenCMsftPONDc", "(", ")"]},
                "name": {"type": "string"}, "cat": {"type": "string"},
                "pid": _INT, "tid": _INT, "ts": _NUM, "dur": _NUM,
                "args": {"type": "object"},
            },
            "allOf": [
                {"if": {"properties": {"ph": {"const": "M"}}},
                 "then": {"required": ["name", "args"],
                          "properties": {"name": {"enum": [
                              "process_name", "process_labels", "process_sort_index",
                              "thread_name", "thread_sort_index"]}}},
                 "else": {"required": ["ts"]}},
                {"if": {"properties": {"ph": {"enum": ["B", "X", "i", "I", "C"]}}},
                 "then": {"required": ["name"]}},
                {"if": {"properties": {"ph": {"const": "X"}}}, "then": {"required": ["dur"]}},
                {"if": {"properties": {"ph": {"enum": ["i", "I"]}}},
                 "then": {"properties": {"s": {"enum": ["g", "p", "t"]}}}},
                {"if": {"properties": {"name": {"enum": ["thread_name", "process_name"]},
                                       "ph": {"const": "M"}}},
                 "then": {"properties": {"args": {"required": ["name"], "properties": {
                     "name": {"type": "string"}}}}}},
            ],
        },
    },
}


def both_validators(doc: Any) -> list[str]:
    """Errors from the library's validator; the schema must agree when it finds none."""
    errors = validate_trace_events(doc)
    if not errors:
        jsonschema.validate(doc, SCHEMA)
    return errors


def traced_run(nr_cpus: int = 2) -> tuple[Tracer, int]:
    m = simple_machine(kern="v6.19", geom=tiny(2, 4, 4), nr_cpus=nr_cpus,
                       zones=(("Normal", 64),), min_free_kbytes=0)
    set_pcp_limits(m, m.zone("Normal"), 6, 2)
    t = Tracer()
    m.tracer = t
    held = []
    for i in range(12):
        cpu = i % nr_cpus
        t.clock_ns = 2_000_000 + 1500 * i
        t.tasks[cpu] = (300 + cpu, f"worker/{cpu}")
        if i % 3 == 2:
            call(cpu, pa.__free_pages, m, held.pop(), 0)
        else:
            held.append(call(cpu, alloc_pages, m, 0, MIGRATE_MOVABLE))
    t.clock_ns += 10_000
    with t.span("drain_all_pages", cpu=0, zone="Normal"):
        for c in range(nr_cpus):
            with t.span("drain_pages", cpu=0, target=c):
                t.clock_ns += 700
                call(0, drain_pages, m, c)
    return t, m.nr_cpus


def test_model_trace_conforms_and_has_one_track_per_cpu(tmp_path: Path) -> None:
    t, nr_cpus = traced_run()
    out = tmp_path / "trace.json"
    write_perfetto(out, t.events, t.spans, nr_cpus=nr_cpus, process_name="test machine")
    doc = json.loads(out.read_text())
    assert both_validators(doc) == []
    evs = doc["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in evs
               if e["ph"] == "M" and e["name"] == "thread_name"}
    assert threads == {c: f"CPU{c}" for c in range(nr_cpus)}
    pids = {e["pid"] for e in evs}
    assert len(pids) == 1  # the machine is one process
    instants = [e for e in evs if e["ph"] == "i"]
    assert len(instants) == len(t.events)
    for rec, ev in zip(instants, sorted(t.events, key=lambda e: e.ts_ns), strict=True):
        assert rec["name"] == ev.name and rec["tid"] == ev.cpu
        assert rec["ts"] * 1000 == pytest.approx(ev.ts_ns)
        assert rec["args"]["pfn"] == ev.fields["pfn"] and rec["args"]["comm"] == ev.comm
    slices = [(e["ph"], e.get("name")) for e in evs if e["ph"] in "BE"]
    assert slices == [("B", "drain_all_pages"), ("B", "drain_pages"), ("E", "drain_pages"),
                      ("B", "drain_pages"), ("E", "drain_pages"), ("E", "drain_all_pages")]
    drains = [e for e in instants if e["name"] == "mm_page_pcpu_drain"]
    begin = next(e["ts"] for e in evs if e["ph"] == "B")
    end = next(e["ts"] for e in reversed(evs) if e["ph"] == "E")
    assert drains and all(begin <= e["ts"] <= end for e in drains[-2:])


def test_timestamps_are_microseconds() -> None:
    ev = TraceEvent(1_500, 0, 1, "a", "mm_page_free", {"pfn": 1, "order": 0})
    whole = TraceEvent(3_000_000, 0, 1, "a", "mm_page_free", {"pfn": 2, "order": 0})
    doc = trace_events([ev, whole], nr_cpus=1)
    ts = [e["ts"] for e in doc["traceEvents"] if e["ph"] == "i"]
    assert ts == [1.5, 3000]
    assert doc["displayTimeUnit"] == "ns"


def test_real_log_converts_to_a_valid_trace() -> None:
    log = read_ftrace(DEB / "offkern_39.kmem-trace.txt.gz")
    doc = json.loads(render_perfetto(log.events, nr_cpus=2))
    assert both_validators(doc) == []
    assert sum(e["ph"] == "i" for e in doc["traceEvents"]) == len(log.events)


def valid_doc() -> dict[str, Any]:
    t, n = traced_run()
    return trace_events(t.events, t.spans, nr_cpus=n)


def _first(doc: dict[str, Any], ph: str) -> dict[str, Any]:
    return next(e for e in doc["traceEvents"] if e["ph"] == ph)


@pytest.mark.parametrize(("breakage", "message"), [
    (lambda d: _first(d, "i").pop("ph"), "is not a trace-event phase"),
    (lambda d: _first(d, "i").update(ph="Q"), "is not a trace-event phase"),
    (lambda d: _first(d, "i").update(pid="1"), "pid '1' is not an integer"),
    (lambda d: _first(d, "i").update(tid=0.5), "tid 0.5 is not an integer"),
    (lambda d: _first(d, "i").update(ts="12"), "is not a non-negative number"),
    (lambda d: _first(d, "i").update(ts=-1), "is not a non-negative number"),
    (lambda d: _first(d, "i").pop("name"), "needs a string name"),
    (lambda d: _first(d, "i").update(s="x"), "instant scope"),
    (lambda d: _first(d, "i").update(ph="X"), "needs a non-negative dur"),
    (lambda d: _first(d, "M").update(name="thread_colour"), "unknown metadata event"),
    (lambda d: _first(d, "M").update(args={}), "needs args.name"),
    (lambda d: d["traceEvents"].remove(_first(d, "E")), "never ended"),
    (lambda d: d["traceEvents"].remove(_first(d, "B")), "E without a B"),
    (lambda d: _first(d, "E").update(name="drain_all_pages"), "slices must nest"),
    (lambda d: d.update(displayTimeUnit="s"), "displayTimeUnit"),
    (lambda d: d.pop("traceEvents"), "'traceEvents' must be a list"),
])
def test_validator_rejects_each_breakage(breakage: Any, message: str) -> None:
    doc = valid_doc()
    assert validate_trace_events(doc) == []
    breakage(doc)
    errors = validate_trace_events(doc)
    assert errors and any(message in e for e in errors), errors


def test_validator_accepts_the_other_phases() -> None:
    doc = {"traceEvents": [
        {"name": "x", "ph": "X", "ts": 1, "dur": 2.5, "pid": 1, "tid": 0},
        {"name": "pcp count", "ph": "C", "ts": 1, "pid": 1, "tid": 0, "args": {"cpu0": 3}},
        {"ph": "B", "name": "a", "ts": 1, "pid": 1, "tid": 1},
        {"ph": "E", "ts": 2, "pid": 1, "tid": 1},
    ], "displayTimeUnit": "ms"}
    assert both_validators(doc) == []


def test_tracer_spans_must_nest() -> None:
    t = Tracer()
    t.begin("offline_pages", cpu=0)
    t.begin("isolate", cpu=0)
    with pytest.raises(ValueError, match="'isolate' is the innermost open slice"):
        t.end("offline_pages", cpu=0)
    t.end("isolate", cpu=0)
    t.end("offline_pages", cpu=0)
    with pytest.raises(ValueError, match="without a begin"):
        t.end("offline_pages", cpu=0)
    with pytest.raises(RuntimeError), t.span("migrate", cpu=1):
        raise RuntimeError("the operation failed")
    assert [(s.ph, s.name, s.cpu) for s in t.spans[-2:]] == [("B", "migrate", 1),
                                                            ("E", "migrate", 1)]
    assert validate_trace_events(trace_events([], t.spans, nr_cpus=2)) == []
