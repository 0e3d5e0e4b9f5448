# SPDX-License-Identifier: GPL-2.0-only
"""Drive the model with a real machine's allocation stream, read from an ftrace log.

Each ``mm_page_alloc`` of the log becomes an allocation of the same order and
migratetype on the same CPU, in the zones its gfp mask allows; each ``mm_page_free`` a
free of the page that allocation got. The model places pages its own way, so the log's
pfns are only names: a map from the log's pfn to the model's block ties a free to its
allocation. A free of a page the log never allocated (allocated before tracing started,
or one page of a split block) has nothing to free in the model: it is counted and
skipped, as are allocations that failed on the real machine (``page`` NULL).

The events that are consequences of the allocator's own decisions
(``mm_page_alloc_zone_locked`` refills, ``mm_page_pcpu_drain`` flushes) are not
replayed: the model makes its own, and comparing their counts with the log's is the
point of a replay. ``mm_page_free_batched`` is not replayed either: every batched page
also has its ``mm_page_free`` (``free_pages_prepare`` runs first, spec §3.2).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pagesim.model.mmzone import ALLOC_CMA, MIGRATE_MOVABLE, MIGRATE_PCPTYPES, Machine
from pagesim.model.page_alloc import BadPage, __free_pages, alloc_pages
from pagesim.runtime.sequential import call
from pagesim.trace.events import KMEM_EVENTS, TraceEvent, Tracer
from pagesim.trace.ftrace import FtraceLog, TraceFormatError

#: events that are the allocator's reactions, made afresh by the model
CONSEQUENCES = ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "mm_page_free_batched")


def gfp_zone_name(gfp: str) -> str:
    """The highest zone a symbolic gfp mask (as show_gfp_flags prints it) allows on
    x86-64 (gfp_zone(): __GFP_DMA, __GFP_DMA32, or __GFP_MOVABLE with __GFP_HIGHMEM for
    ZONE_MOVABLE; HIGHMEM alone means Normal on 64-bit)."""
    tokens = set(gfp.split("|"))
    if tokens & {"GFP_DMA", "__GFP_DMA"}:
        return "DMA"
    if tokens & {"GFP_DMA32", "__GFP_DMA32"}:
        return "DMA32"
    movable = bool(tokens & {"GFP_HIGHUSER_MOVABLE", "__GFP_MOVABLE"})
    highmem = bool(tokens & {"GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER", "__GFP_HIGHMEM"})
    return "Movable" if movable and highmem else "Normal"


@dataclass
class ReplayResult:
    """What a replay did; :meth:`summary` prints it."""

    path: str
    kernel: str
    #: event lines read, per name
    log_events: Counter[str] = field(default_factory=Counter)
    allocs: int = 0
    alloc_failures: int = 0  # the model found no block
    log_failed_allocs: int = 0  # NULL in the log: skipped
    frees: int = 0
    frees_unknown: int = 0  # the log never allocated the page: skipped
    order_mismatches: int = 0  # freed with another order than allocated (model's used)
    reallocated: int = 0  # allocated again without a free in between
    other_lines: int = 0
    truncated_line: int | None = None
    #: pages left on pcplists at the end, per zone
    pcp_pages: dict[str, int] = field(default_factory=dict)
    #: blocks the replay allocated and the log never freed
    still_held: int = 0
    #: the model's own events, when it ran with a tracer
    model_events: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        return self.log_failed_allocs + self.frees_unknown

    @property
    def not_replayed(self) -> Counter[str]:
        return Counter({k: v for k, v in self.log_events.items()
                        if k not in ("mm_page_alloc", "mm_page_free")})

    def summary(self) -> str:
        total = sum(self.log_events.values())
        lines = [f"replayed {self.path} on {self.kernel}: {total} events read, "
                 f"{self.allocs + self.frees} replayed ({self.allocs} allocations, "
                 f"{self.frees} frees), {self.skipped} skipped, "
                 f"{self.alloc_failures} failures"]
        lines.append(f"  skipped: {self.frees_unknown} frees of pages allocated before the "
                     f"log started, {self.log_failed_allocs} allocations that failed in "
                     "the log")
        if self.order_mismatches or self.reallocated:
            lines.append(f"  inconsistent log: {self.order_mismatches} frees with another "
                         f"order than the allocation, {self.reallocated} pages allocated "
                         "twice without a free")
        rest = self.not_replayed
        if rest:
            lines.append("  not replayed (the model makes its own): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(rest.items())))
        if self.other_lines or self.truncated_line is not None:
            cut = (f", last line {self.truncated_line} cut short"
                   if self.truncated_line is not None else "")
            lines.append(f"  other lines kept aside: {self.other_lines}{cut}")
        pcp = ", ".join(f"{z} {n}" for z, n in self.pcp_pages.items())
        lines.append(f"  at the end: {sum(self.pcp_pages.values())} pages on pcplists "
                     f"({pcp}); {self.still_held} blocks the log allocated and never freed")
        if self.model_events:
            lines.append("  events, model / log: " + ", ".join(
                f"{k} {self.model_events.get(k, 0)} / "
                f"{self.log_events.get(k, 'not traced')}"
                for k in KMEM_EVENTS))
        return "\n".join(lines) + "\n"


def replay(m: Machine, log: FtraceLog, tracer: Tracer | None = None) -> ReplayResult:
    """Replay ``log`` on ``m`` (see the module docstring). With a ``tracer`` the model's
    own events are collected, stamped with the log's times and tasks. Raises
    :class:`TraceFormatError` (file:line) for an event the machine cannot run: a CPU it
    does not have, a migratetype that is not a pcp type."""
    res = ReplayResult(log.path, m.kernel.name, other_lines=log.other_lines,
                       truncated_line=log.truncated_line)
    zone_idx = {z.name: i for i, z in enumerate(m.zones)}
    normal = zone_idx.get("Normal", len(m.zones) - 1)
    held: dict[int, tuple[int, int]] = {}  # log pfn -> (model pfn, order)
    m.tracer = tracer
    first = len(log.header) + 1
    try:
        for i, item in enumerate(log.items):
            if not isinstance(item, TraceEvent):
                continue
            ev = item
            res.log_events[ev.name] += 1
            if ev.name not in ("mm_page_alloc", "mm_page_free"):
                continue
            where = f"{log.path}:{first + i}"
            if ev.cpu >= m.nr_cpus:
                raise TraceFormatError(f"{where}: event on CPU {ev.cpu}, the machine has "
                                       f"{m.nr_cpus} (give --cpus {ev.cpu + 1} or more)")
            fields = ev.fields
            log_pfn = int(fields["pfn"])
            order = int(fields["order"])
            if tracer is not None:
                tracer.clock_ns = ev.ts_ns
                tracer.tasks[ev.cpu] = (ev.pid, ev.comm)
            if ev.name == "mm_page_alloc":
                if log_pfn < 0:
                    res.log_failed_allocs += 1
                    continue
                mt = int(fields.get("migratetype", MIGRATE_MOVABLE))
                if not 0 <= mt < MIGRATE_PCPTYPES:
                    raise TraceFormatError(f"{where}: mm_page_alloc of migratetype {mt}; "
                                           "allocations request a pcp type (0-2)")
                if order >= m.geom.nr_orders:
                    raise TraceFormatError(f"{where}: order {order} is above this machine's "
                                           f"largest ({m.geom.nr_orders - 1})")
                gfp = str(fields.get("gfp_flags", ""))
                highest = zone_idx.get(gfp_zone_name(gfp), normal) if gfp else normal
                flags = ALLOC_CMA if mt == MIGRATE_MOVABLE and m.geom.cma else 0
                if tracer is not None:
                    tracer.gfp_flags = gfp or None
                pfn = call(ev.cpu, alloc_pages, m, order, mt, highest, flags)
                res.allocs += 1
                if pfn < 0:
                    res.alloc_failures += 1
                    held.pop(log_pfn, None)
                    continue
                if log_pfn in held:
                    res.reallocated += 1
                held[log_pfn] = (pfn, order)
            else:
                entry = held.pop(log_pfn, None)
                if entry is None:
                    res.frees_unknown += 1
                    continue
                pfn, alloc_order = entry
                if alloc_order != order:
                    res.order_mismatches += 1
                if tracer is not None:
                    tracer.gfp_flags = None
                try:
                    call(ev.cpu, __free_pages, m, pfn, alloc_order)
                except BadPage as e:
                    raise TraceFormatError(f"{where}: the model refused the free: {e}") from e
                res.frees += 1
    finally:
        m.tracer = None
        if tracer is not None:
            tracer.gfp_flags = None
    for zone in m.zones:
        if zone.present_pages and not zone.boot_pageset:
            res.pcp_pages[zone.name] = sum(zone.per_cpu_pageset[c].count
                                           for c in range(m.nr_cpus))
    res.still_held = len(held)
    if tracer is not None:
        res.model_events = Counter(ev.name for ev in tracer.events)
    return res
