# SPDX-License-Identifier: GPL-2.0-only
"""The report's document: plain data the page draws, built from a replay or a run.

The HTML page is a viewer and nothing else, so everything it shows is decided here, in
Python, where it can be tested without a browser: which boxes go on which CPU's lane and
where, what each box's detail says, and what was left out. The document is JSON (it is
embedded in the page as such), in one shape for both sources::

    {"format": "pagesim-report", "version": 1, "kind": "counterexample" | "simulation",
     "title": str, "header": [[label, value]...], "notes": [str...],
     "cpus": [0, 1, ...], "kinds": [[kind, legend text]...],
     "items": [{"cpu", "x", "w", "label", "kind", "title", ...}...],
     "selected": int, "violation": null | {"item", "property", "message"},
     "initial": {fact: value}            # counterexamples: the machine before step 0
     "samples": {...}}                   # simulations: the results file's series

An item is one box on its CPU's lane at slot ``x`` (``w`` slots wide: only spans are
wider than one). A counterexample's items are its replay steps, one per slot, with the
call chain, the value and the facts the step changed exactly as ``pagesim replay
--json`` prints them (the same :func:`pagesim.cli.check.replay_json` data, not a second
replay). A simulation's items are its kmem trace events (spec §8.4) and its long
operations (offline, online, contiguous allocation); a real-size run has far too many
events for one page, so only the first and last few thousand per CPU are kept, a gap box
marks what was left out, and the page says so.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pagesim.model.snapshot import MT_NAMES

FORMAT = "pagesim-report"
VERSION = 1

#: kmem events kept per CPU in a simulation's report (half from the start of the run,
#: half from its end), and the most kept over all CPUs: a page of a few MB that a
#: browser draws at once
MAX_EVENTS_PER_CPU = 2000
MAX_EVENTS_TOTAL = 16000


class ReportError(ValueError):
    """Input the report cannot be built from; the message names the place."""


# =======================================================================================
# Counterexamples


#: the legend of a counterexample's boxes: what kind of op each step ran
STEP_KINDS = (
    ("lock", "takes a lock (spin_lock, mutex_lock, trylock)"),
    ("unlock", "releases a lock"),
    ("read", "READ_ONCE: a read another CPU may race with"),
    ("write", "WRITE_ONCE: a write another CPU may race with"),
    ("irq", "interrupts off/on, preemption off/on: pins the task to its CPU"),
    ("work", "queues or waits for work on another CPU"),
    ("choice", "a nondeterministic choice"),
    ("point", "a preemption point"),
    ("other", "any other op"),
)


def step_kind(op: str) -> str:
    """The legend kind of a replayed op, from its text (``spin_lock(&zone.lock)``)."""
    name = op.split("(", 1)[0].strip()
    if "unlock" in name:
        return "unlock"
    if "lock" in name:
        return "lock"
    if name.startswith("READ_ONCE") or name.startswith("atomic_read"):
        return "read"
    if name.startswith("WRITE_ONCE") or name.startswith("atomic"):
        return "write"
    if name.startswith(("local_irq", "preempt_", "migrate_", "local_lock", "local_unlock")):
        return "irq"
    if "work" in name:
        return "work"
    if name.startswith("choose"):
        return "choice"
    if name.startswith("point"):
        return "point"
    return "other"


def _require(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise ReportError(f"{where}: {problem}")


def counterexample_document(replay: Mapping[str, Any], *, source: str = "",
                            saved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report of one replayed counterexample.

    ``replay`` is the object :func:`pagesim.cli.check.replay_json` prints (scenario,
    kernel, cpus, initial facts, steps, violation); ``saved`` the counterexample file's
    own record of what the checker found, shown beside what the replay reproduced."""
    where = source or "replay"
    steps = replay.get("steps")
    _require(isinstance(steps, list), where, "the replay has no steps")
    assert isinstance(steps, list)
    cpus_n = replay.get("cpus")
    _require(isinstance(cpus_n, int) and cpus_n > 0, where, "the replay has no CPU count")
    assert isinstance(cpus_n, int)
    items: list[dict[str, Any]] = []
    cpus = set(range(cpus_n))
    for x, st in enumerate(steps):
        _require(isinstance(st, dict) and isinstance(st.get("cpu"), int)
                 and isinstance(st.get("op"), str), f"{where}: steps[{x}]",
                 "not a replay step")
        chain = [list(c) for c in st.get("chain") or []]
        fn = chain[-1][0] if chain else st["op"]
        cpus.add(st["cpu"])
        fields = [["op", st["op"]]]
        if st.get("value") not in (None, ""):
            fields.append(["value", st["value"]])
        if st.get("choice") is not None:
            fields.append(["choice", st["choice"]])
        if st.get("preemption"):
            fields.append(["preemption", "the scheduler switched to this thread here"])
        items.append({
            "cpu": st["cpu"], "x": x, "w": 1, "label": str(fn), "kind": step_kind(st["op"]),
            "title": st["op"], "thread": st.get("thread", f"cpu{st['cpu']}"),
            "step": st.get("step", x), "chain": chain, "fields": fields,
            "changes": [list(c) for c in st.get("changes") or []],
            **({"preemption": True} if st.get("preemption") else {})})
    v = replay.get("violation")
    violation = None
    selected = 0
    if isinstance(v, dict):
        idx = v.get("step")
        item = idx if isinstance(idx, int) and 0 <= idx < len(items) else None
        if item is not None:
            items[item]["violation"] = True
            selected = item
        violation = {"item": item, "property": v.get("property"), "message": v.get("message")}
    if violation is not None:
        verdict = f"violation: {violation['property']}: {violation['message']}"
    else:
        verdict = "the schedule does not reproduce a violation"
    header: list[list[str]] = [
        ["scenario", str(replay.get("scenario"))],
        ["kernel", str(replay.get("kernel"))],
        ["CPUs", str(cpus_n)],
        ["steps", str(len(items))],
        ["verdict", verdict],
    ]
    if saved is not None and saved.get("property") is not None:
        header.append(["found by the checker",
                       f"{saved.get('property')}: {saved.get('message')}"])
    if source:
        header.append(["counterexample", source])
    initial = replay.get("initial") or {}
    notes = []
    if not initial:
        notes.append("This scenario records no machine snapshot, so steps show their call "
                     "chain and values but no state changes.")
    return {
        "format": FORMAT, "version": VERSION, "kind": "counterexample",
        "title": f"pagesim counterexample: {replay.get('scenario')} on {replay.get('kernel')}",
        "header": header, "notes": notes, "cpus": sorted(cpus),
        "kinds": [list(k) for k in STEP_KINDS], "items": items, "selected": selected,
        "violation": violation, "initial": dict(initial),
        "finished": bool(replay.get("finished", False))}


# =======================================================================================
# Simulations


SIM_KINDS = (
    ("refill", "mm_page_alloc_zone_locked: a block taken from the buddy under zone->lock"),
    ("alloc", "mm_page_alloc: a block handed to the caller"),
    ("isolated", "mm_page_alloc of a page inside a range being offlined"),
    ("free", "mm_page_free / mm_page_free_batched: a block freed"),
    ("drain", "mm_page_pcpu_drain: a page flushed from a pcplist to the buddy"),
    ("event", "any other trace event"),
    ("span", "a long operation (offline, online, contiguous allocation)"),
    ("gap", "events left out of this page"),
    ("violation", "where the run failed"),
)


#: box labels of the kmem events (the tooltip and the detail give the full name)
SHORT_NAMES = {"mm_page_alloc": "alloc", "mm_page_alloc_zone_locked": "zone_locked",
               "mm_page_free": "free", "mm_page_free_batched": "free_batched",
               "mm_page_pcpu_drain": "pcpu_drain"}


@dataclass(frozen=True)
class SimEvent:
    """One kmem event in the report's terms: the simulated step it happened at (not
    nanoseconds: the runner's clock is steps), its CPU, name and printed fields."""

    step: int
    cpu: int
    name: str
    fields: Mapping[str, Any]
    comm: str = ""


@dataclass(frozen=True)
class SimSpan:
    """A long operation on one CPU's track, from its begin step to its end step (None:
    still running when the run stopped)."""

    cpu: int
    name: str
    begin: int
    end: int | None
    args: Mapping[str, Any] = field(default_factory=dict)


def _mt(n: object) -> str:
    if isinstance(n, int) and 0 <= n < len(MT_NAMES):
        return MT_NAMES[n]
    return str(n)


def _zone_of(zones: Sequence[Mapping[str, Any]], pfn: int) -> str | None:
    for z in zones:
        start, spanned = z.get("start_pfn"), z.get("spanned")
        if isinstance(start, int) and isinstance(spanned, int) and start <= pfn < start + spanned:
            return str(z.get("name"))
    return None


@dataclass
class _Offline:
    block: object
    start: int
    end: int
    first: int
    last: int


def _offlines(events: Iterable[Mapping[str, Any]], last_step: int) -> list[_Offline]:
    """The offlines of a run as pfn ranges and step windows: an allocation from one of
    them while it ran is the safety question of spec §6.1."""
    out = []
    for e in events:
        if e.get("op") != "offline" or not isinstance(e.get("start_pfn"), int):
            continue
        started, ended = e.get("started", -1), e.get("ended", -1)
        if not isinstance(started, int) or started < 0:
            continue
        end = ended if isinstance(ended, int) and ended >= 0 else last_step
        nr = e.get("nr_pages") if isinstance(e.get("nr_pages"), int) else 0
        assert isinstance(nr, int)
        out.append(_Offline(e.get("block"), started, end, e["start_pfn"],
                            e["start_pfn"] + nr))
    return out


def _event_effects(ev: SimEvent, zones: Sequence[Mapping[str, Any]],
                   offlines: Sequence[_Offline]) -> tuple[str, list[str]]:
    """(kind, what the event says changed): the tracepoint's meaning (spec §8.4), in the
    machine's terms. A tracepoint says what moved, not the whole state, so this is all
    a simulation's step can show beside the sampled counters."""
    f = ev.fields
    pfn = f.get("pfn")
    order = f.get("order", 0)
    where = ""
    if isinstance(pfn, int) and pfn >= 0:
        zone = _zone_of(zones, pfn)
        where = f" of {zone}" if zone else ""
    what = f"pfn {pfn}{where} (order {order}"
    mt = f" {_mt(f['migratetype'])}" if "migratetype" in f else ""
    kind = "event"
    effects: list[str] = []
    if ev.name == "mm_page_alloc":
        kind = "alloc"
        if not isinstance(pfn, int) or pfn < 0:
            effects.append(f"allocation of order {order}{mt} failed (no page)")
        else:
            effects.append(f"{what},{mt}) handed out to the caller")
            for off in offlines:
                if off.first <= pfn < off.last and off.start <= ev.step <= off.end:
                    kind = "isolated"
                    effects.append(
                        f"inside memory block {off.block} (pfn {off.first}-{off.last - 1}), "
                        f"which offline_pages was isolating or offlining from step "
                        f"{off.start} to {off.end} (the safety question of spec §6.1)")
    elif ev.name == "mm_page_alloc_zone_locked":
        kind = "refill"
        if f.get("percpu_refill"):
            effects.append(f"{what},{mt}) taken from the buddy's free lists onto cpu{ev.cpu}'s "
                           "pcplist (rmqueue_bulk refill)")
        else:
            effects.append(f"{what},{mt}) taken from the buddy's free lists under zone->lock")
    elif ev.name == "mm_page_free":
        kind = "free"
        effects.append(f"{what}) freed (free_pages_prepare: the event comes before the "
                       "choice between the pcplist and the buddy)")
    elif ev.name == "mm_page_free_batched":
        kind = "free"
        effects.append(f"{what}) freed in a batch (free_unref_page_list), onto a pcplist")
    elif ev.name == "mm_page_pcpu_drain":
        kind = "drain"
        effects.append(f"{what}) moved from a pcplist back to the buddy's free lists as"
                       f"{mt or ' its type'} (free_pcppages_bulk)")
    return kind, effects


def _keep(per_cpu: Mapping[int, list[int]], steps: Sequence[int], cap: int,
          centres: Sequence[int]) -> tuple[set[int], str]:
    """The event indices kept and, when some CPU lost some, the sentence the page prints
    about it. A CPU with more than ``cap`` events keeps its first and last quarter of
    ``cap`` and shares the other half among windows centred on the ``centres`` (the
    steps where a long operation began or ended: where an offline's story is), or, with
    none, its first and last half."""
    kept: set[int] = set()
    if centres:
        head = tail = cap // 4
        per = max(1, (cap - head - tail) // len(centres))
        how = (f"the first {head:,}, the last {tail:,} and up to {per:,} around each "
               "begin and end of a long operation")
    else:
        head, tail, per = cap - cap // 2, cap // 2, 0
        how = f"the first {head:,} and the last {tail:,}"
    counts = []
    for cpu, idx in sorted(per_cpu.items()):
        if len(idx) <= cap:
            kept.update(idx)
            continue
        mine = set(idx[:head]) | set(idx[len(idx) - tail:])
        at = [steps[i] for i in idx]
        for c in centres:
            p = bisect.bisect_left(at, c)
            lo = max(0, p - per // 2)
            mine.update(idx[lo:lo + per])
        kept |= mine
        counts.append(f"CPU{cpu} {len(mine):,} of {len(idx):,}")
    if not counts:
        return kept, ""
    return kept, (f"More than {cap:,} events on a CPU: shown are {how} ("
                  f"{'; '.join(counts)}); a hatched box marks each run left out.")


def _first_of_interest(items: Sequence[Mapping[str, Any]],
                       violation: Mapping[str, Any] | None) -> int:
    """The box the page opens on: the failure, else the first page handed out of a range
    being offlined, else the first long operation, else the first box."""
    if violation is not None and violation.get("item") is not None:
        return int(violation["item"])
    for kind in ("isolated", "span"):
        for i, it in enumerate(items):
            if it["kind"] == kind:
                return i
    return 0


def simulation_document(results: Mapping[str, Any], events: Sequence[SimEvent] = (),
                        spans: Sequence[SimSpan] = (), *, traced: bool = False,
                        source: str = "",
                        max_events_per_cpu: int = MAX_EVENTS_PER_CPU,
                        max_events_total: int = MAX_EVENTS_TOTAL) -> dict[str, Any]:
    """The report of one simulation run.

    ``results`` is the results file's object (:mod:`pagesim.sim.results`); ``events``
    and ``spans`` its trace, if it was traced (``traced``), oldest first. Without spans
    the long operations come from the results file's events."""
    nr_cpus = results.get("nr_cpus")
    if not isinstance(nr_cpus, int) or nr_cpus < 1:
        raise ReportError(f"{source or 'results'}: nr_cpus: not a CPU count")
    zones = (results.get("machine") or {}).get("zones") or []
    last_step = results.get("steps") if isinstance(results.get("steps"), int) else 0
    assert isinstance(last_step, int)
    rec_events = [e for e in results.get("events") or [] if isinstance(e, dict)]
    offlines = _offlines(rec_events, last_step)
    cpus = set(range(nr_cpus))

    # Which events the page keeps: ordered by step (stable: the order they were emitted
    # in within a step), then per CPU at most ``cap`` of them (_keep says which).
    order = sorted(range(len(events)), key=lambda i: events[i].step)
    per_cpu: dict[int, list[int]] = {}
    for i in order:
        per_cpu.setdefault(events[i].cpu, []).append(i)
    ncpu_events = max(1, len(per_cpu))
    cap = max(2, min(max_events_per_cpu, max_events_total // ncpu_events))
    steps_of = [e.step for e in events]
    centres = sorted({st for sp in spans for st in (sp.begin, sp.end) if st is not None}
                     | {e["started"] for e in rec_events
                        if isinstance(e.get("started"), int) and e["started"] >= 0}
                     | {e["ended"] for e in rec_events
                        if isinstance(e.get("ended"), int) and e["ended"] >= 0})
    kept, capped = _keep(per_cpu, steps_of, cap, centres)

    # Long operations: the trace's spans, or the results' events; each annotated with
    # what the results file says about how it ended.
    if not spans:
        spans = [SimSpan(e["cpu"], str(e.get("op")), e["started"],
                         e["ended"] if isinstance(e.get("ended"), int) and e["ended"] >= 0
                         else None)
                 for e in rec_events
                 if isinstance(e.get("cpu"), int) and isinstance(e.get("started"), int)
                 and e["started"] >= 0]
    records: dict[tuple[int, str, int], Mapping[str, Any]] = {
        (e["cpu"], str(e.get("op")), e["started"]): e for e in rec_events
        if isinstance(e.get("cpu"), int) and isinstance(e.get("started"), int)}

    # Slots: every kept event, each span's begin and end, each gap and the violation,
    # ordered by step; the sort key's second field keeps a span's begin before the
    # events of its step and its end after them.
    entries: list[tuple[int, int, int, str, Any]] = []
    for n, i in enumerate(order):
        if i in kept:
            entries.append((events[i].step, 1, n, "event", events[i]))
    for s_i, sp in enumerate(spans):
        entries.append((sp.begin, 0, s_i, "begin", s_i))
        entries.append((sp.end if sp.end is not None else last_step, 2, s_i, "end", s_i))
    position = {i: n for n, i in enumerate(order)}
    for cpu, idx in per_cpu.items():
        run: list[int] = []
        for i in [*idx, -1]:
            if i >= 0 and i not in kept:
                run.append(i)
                continue
            if run:  # a run of events left out: one gap box where it began
                first, last = events[run[0]].step, events[run[-1]].step
                entries.append((first, 1, position[run[0]], "gap",
                                (cpu, len(run), first, last)))
                run = []
    v = results.get("violation")
    if isinstance(v, dict):
        m = re.match(r"cpu(\d+)", str(v.get("context", "")))
        vstep = v["step"] if isinstance(v.get("step"), int) else last_step
        if m:
            entries.append((vstep, 3, 0, "violation", int(m.group(1))))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))

    items: list[dict[str, Any]] = []
    span_items: dict[int, dict[str, Any]] = {}
    violation = None
    for x, (step, _, _, what, obj) in enumerate(entries):
        if what == "event":
            ev: SimEvent = obj
            cpus.add(ev.cpu)
            kind, effects = _event_effects(ev, zones, offlines)
            fields = [[k, (_mt(val) if k == "migratetype" else val)]
                      for k, val in ev.fields.items()]
            if ev.comm:
                fields.append(["task", ev.comm])
            items.append({"cpu": ev.cpu, "x": x, "w": 1,
                          "label": SHORT_NAMES.get(ev.name, ev.name),
                          "kind": kind, "title": ev.name, "step": step, "fields": fields,
                          "effects": effects})
        elif what == "begin":
            sp = spans[obj]
            cpus.add(sp.cpu)
            rec = records.get((sp.cpu, sp.name, sp.begin))
            fields = [[k, val] for k, val in sp.args.items()]
            effects = []
            if rec is not None:
                fields += [[k, rec[k]] for k in ("block", "start_pfn", "nr_pages", "ret",
                                                 "reason", "retries", "gave_up",
                                                 "duration_steps") if k in rec]
                if rec.get("gave_up"):
                    effects.append(f"gave up after {rec.get('retries')} retries")
            ending = "still running when the run stopped" if sp.end is None else \
                f"steps {sp.begin}-{sp.end}"
            item = {"cpu": sp.cpu, "x": x, "w": 1, "label": sp.name, "kind": "span",
                    "title": f"{sp.name} ({ending})", "step": step, "fields": fields,
                    "effects": effects, "span": True}
            span_items[obj] = item
            items.append(item)
        elif what == "end":
            item = span_items[obj]
            item["w"] = max(1, x - item["x"] + 1)
        elif what == "gap":
            cpu, n, first, last = obj
            items.append({"cpu": cpu, "x": x, "w": 1, "label": "…", "kind": "gap",
                          "title": f"{n:,} events not shown (steps {first}-{last})",
                          "step": first, "fields": [["events left out", n],
                                                    ["steps", f"{first}-{last}"]],
                          "effects": []})
        elif what == "violation":
            assert isinstance(v, dict)
            cpus.add(obj)
            violation = {"item": len(items), "property": v.get("property"),
                         "message": v.get("message")}
            items.append({"cpu": obj, "x": x, "w": 1, "label": str(v.get("property")),
                          "kind": "violation", "title": f"{v.get('property')}: "
                          f"{v.get('message')}", "step": step, "violation": True,
                          "fields": [["context", v.get("context")]], "effects": []})
    # Items are drawn and stepped through by slot; a span's item sits at its begin slot,
    # and the list is in slot order already (entries were sorted, items appended in it).
    if violation is None and isinstance(v, dict):
        violation = {"item": None, "property": v.get("property"), "message": v.get("message")}

    s = results.get("summary") or {}

    def num(key: str) -> str:
        v = s.get(key, 0)
        return f"{v:,}" if isinstance(v, int) else str(v)

    header = [
        ["kernel", str(results.get("kernel"))],
        ["machine", f"{(results.get('machine') or {}).get('source', '?')}, {nr_cpus} CPUs"],
        ["workload", f"{(results.get('workload') or {}).get('name', '?')}, seed "
                     f"{results.get('seed')}, {last_step:,} steps"],
        ["page operations", f"{num('page_ops')} ({num('allocs')} allocs, {num('frees')} frees)"],
        ["drain_all_pages / remote drains", f"{num('drains')} / {num('remote_drains')}"],
        ["pages handed out from isolated blocks", num("isolated_allocs")],
        ["verdict", "no violation" if not isinstance(v, dict)
         else f"violation: {v.get('property')}: {v.get('message')}"],
    ]
    if source:
        header.append(["results", source])
    notes: list[str] = []
    if not traced:
        notes.append("This run was not traced: the lanes show its long operations only "
                     "(run pagesim simulate with --trace for every kmem event).")
    else:
        notes.append(f"{len(events):,} trace events; {len(kept):,} shown. "
                     "Boxes are in step order; a step's detail shows the event's fields, "
                     "what it moved, and the counters sampled at or before its step.")
        if capped:
            notes.append(capped)
    kinds = [list(k) for k in SIM_KINDS]
    samples = results.get("samples") or {}
    keep_series = ("step", "pcp_pages", "free_blocks", "nr_free_pages", "in_use", "drains",
                   "remote_drains", "migrations", "isolated_on_pcp", "offline_retries")
    return {
        "format": FORMAT, "version": VERSION, "kind": "simulation",
        "title": f"pagesim simulation: {(results.get('workload') or {}).get('name', '?')} "
                 f"on {results.get('kernel')}",
        "header": header, "notes": notes, "cpus": sorted(cpus), "kinds": kinds,
        "items": items, "selected": _first_of_interest(items, violation),
        "violation": violation,
        "samples": {k: samples[k] for k in keep_series if k in samples}}
