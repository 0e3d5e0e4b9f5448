# SPDX-License-Identifier: GPL-2.0-only
"""The machine as a flat mapping of named facts, for step-by-step replays and traces.

A counterexample is read step by step, and what a reader needs at each step is what it
changed: "cpu1's pcplist gained pfn 17 and its count went from 0 to 1", not the whole
machine again. A flat mapping makes that a plain dictionary difference
(:func:`pagesim.runtime.executor.snapshot_diff`), which the runtime computes without
knowing the model (:attr:`~pagesim.runtime.executor.Program.snapshot`), and which a
trace viewer can show for any step.

The names are stable, readable and sort the way a person scans them::

    Normal nr_free                      -> 28
    Normal lock                         -> None, or the owner ('cpu0')
    Normal free_area[2] nr_free         -> 3
    Normal free_area[2] MOVABLE         -> (16, 24)      # the list, head first
    Normal cpu1 pcp count               -> 2
    Normal cpu1 pcp high / batch        -> 3 / 2
    Normal cpu1 pcp list[MOVABLE]       -> (17, 18)      # order-0 list, head first
    Normal cpu1 pcp list[MOVABLE order 2]                # 5.13+: one list per order
    Normal in transit                   -> (5,)          # held by a CPU between lists
    pageblock 4 (pfn 16-19)             -> 'ISOLATE'
    lock pcp_batch_high_lock            -> None

Values are ints, strings, ``None`` and tuples of ints, so they compare by value and
print as JSON. Every list and counter is included, empty or not, so that a fact that
becomes empty shows as a change to ``()`` rather than disappearing. A snapshot reads the
whole machine: linear in its pages, meant for the short counterexamples of the small
scenario machines, not for every step of a search.
"""

from __future__ import annotations

from pagesim.model.geometry import PAGE_ALLOC_COSTLY_ORDER
from pagesim.model.mmzone import (
    MIGRATE_PCPTYPES,
    MIGRATETYPE_NAMES,
    Machine,
    PB_migrate_isolate,
    PB_migratetype_mask,
    PG_offline,
    PG_transit,
    Zone,
    migratetypes,
    pindex_to_order,
)
from pagesim.model.page_alloc import free_list_pfns

#: migratetype names as the kernel spells the enum (MIGRATE_MOVABLE -> "MOVABLE")
MT_NAMES = tuple(name.upper() for name in MIGRATETYPE_NAMES)


def machine_snapshot(m: Machine) -> dict[str, object]:
    """Every fact of ``m`` that the allocator's paths change, by name (module
    docstring)."""
    facts: dict[str, object] = {}
    for zone in m.zones:
        if zone.present_pages:
            _zone_facts(m, zone, facts)
    _pageblock_facts(m, facts)
    locks = [m.pcp_batch_high_lock, m.pcpu_drain_mutex, m.ptl]
    if m.hotplug is not None:
        locks.append(m.hotplug.lock)
    for lock in locks:
        facts[f"lock {lock.name}"] = _owner(lock.owner)
    for pfn in sorted(m.owners):
        held = m.owners[pfn]
        facts[f"held {held.name}"] = (held.pfn, held.order)
    return facts


def pcp_list_label(m: Machine, pindex: int) -> str:
    """A pcplist's name: its migratetype, and its order when not 0 (5.13+ keeps a list
    per order; the THP order's two lists hold MOVABLE and the other two types)."""
    order = pindex_to_order(m.kernel, m.geom, pindex)
    first_thp = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
    if m.kernel.pcp_high_order_lists and pindex >= first_thp:
        mt = ("MOVABLE" if pindex - first_thp == 1
              else f"{MT_NAMES[0]}+{MT_NAMES[2]}")
    else:
        mt = MT_NAMES[pindex % MIGRATE_PCPTYPES]
    return mt if order == 0 else f"{mt} order {order}"


def _zone_facts(m: Machine, zone: Zone, facts: dict[str, object]) -> None:
    z = zone.name
    facts[f"{z} nr_free"] = zone.nr_free_pages
    if m.geom.cma:
        facts[f"{z} nr_free_cma"] = zone.nr_free_cma
    facts[f"{z} nr_isolate_pageblock"] = zone.nr_isolate_pageblock
    facts[f"{z} lock"] = _owner(zone.lock.owner)
    facts[f"{z} pagesets"] = "boot" if zone.boot_pageset else "per-cpu"
    facts[f"{z} pcp disabled"] = zone.pcp_disabled
    types = migratetypes(m.geom)
    for order in range(len(zone.nr_free)):
        facts[f"{z} free_area[{order}] nr_free"] = zone.nr_free[order]
        for mt in types:
            facts[f"{z} free_area[{order}] {MT_NAMES[mt]}"] = tuple(
                free_list_pfns(m, zone, order, mt))
    k = m.kernel
    for cpu, pcp in enumerate(zone.per_cpu_pageset):
        p = f"{z} cpu{cpu} pcp"
        facts[f"{p} count"] = pcp.count
        facts[f"{p} high"] = pcp.high
        facts[f"{p} batch"] = pcp.batch
        if k.pcp_high_autotune:
            facts[f"{p} high_min"] = pcp.high_min
            facts[f"{p} high_max"] = pcp.high_max
        if k.pcp_free_scaling:
            facts[f"{p} free_count"] = pcp.free_count
        if k.pcp_spinlock:
            facts[f"{p} lock"] = _owner(pcp.lock.owner)
        for pindex, lst in enumerate(pcp.lists):
            facts[f"{p} list[{pcp_list_label(m, pindex)}]"] = tuple(lst)
    start, end = zone.zone_start_pfn, zone.zone_end_pfn
    flags = m.flags[start:end]
    facts[f"{z} in transit"] = tuple(start + i for i, f in enumerate(flags)
                                     if f & PG_transit)
    facts[f"{z} offline"] = tuple(start + i for i, f in enumerate(flags) if f & PG_offline)


def _pageblock_facts(m: Machine, facts: dict[str, object]) -> None:
    size = m.geom.pageblock_nr_pages
    isolate_bit = m.kernel.isolate_bit
    for idx, bits in enumerate(m.pageblock_flags):
        first = idx * size
        if first >= m.end_pfn or m.zone_id[first] == 0xff:
            continue  # no zone: a hole the machine was built with
        name = MT_NAMES[bits & PB_migratetype_mask]
        if isolate_bit and bits & PB_migrate_isolate:
            name = f"ISOLATE over {name}"  # 6.17+: the type survives under the bit
        facts[f"pageblock {idx} (pfn {first}-{first + size - 1})"] = name


def _owner(owner: object) -> str | None:
    return None if owner is None else str(owner)
