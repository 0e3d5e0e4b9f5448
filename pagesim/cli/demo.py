# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim demo``: the model on a real machine, in under a second per generation.

It imports the bundled /proc files of a Debian 6.1 guest, shows what each kernel
generation's formulas make of that machine's pcp limits, then runs the same seeded burst
of allocations and frees on both CPUs under each generation, counting pcplist refills
and flushes from the model's tracepoints and checking every invariant after the burst.
"""

from __future__ import annotations

import random
from collections import Counter
from importlib import resources

from pagesim.model.invariants import check_invariants
from pagesim.model.kernels import Kernel
from pagesim.model.mmzone import MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, Machine
from pagesim.model.page_alloc import __free_pages, alloc_pages
from pagesim.model.pageset import zone_pcp_limits, zone_pcp_update
from pagesim.procfs.buddyinfo import parse_buddyinfo
from pagesim.procfs.machine import ProcSources, machine_from_proc
from pagesim.procfs.pagetypeinfo import parse_pagetypeinfo
from pagesim.procfs.zoneinfo import parse_zoneinfo
from pagesim.runtime.sequential import call

BUNDLED = "debian-6.1-2cpu"
OPERATIONS = 20000


def bundled_sources() -> ProcSources:
    base = resources.files("pagesim") / "data"

    def read(kind: str) -> str:
        return (base / f"{BUNDLED}.{kind}.txt").read_text()

    return ProcSources(
        parse_zoneinfo(read("zoneinfo"), f"{BUNDLED}.zoneinfo.txt"), f"{BUNDLED}.zoneinfo.txt",
        parse_buddyinfo(read("buddyinfo"), f"{BUNDLED}.buddyinfo.txt"),
        f"{BUNDLED}.buddyinfo.txt",
        parse_pagetypeinfo(read("pagetypeinfo"), f"{BUNDLED}.pagetypeinfo.txt"),
        f"{BUNDLED}.pagetypeinfo.txt")


def _limits_text(m: Machine) -> str:
    parts = []
    for zone in m.zones:
        if not zone.present_pages:
            continue
        lim = zone_pcp_limits(m, zone)
        if lim.high_min is not None:
            parts.append(f"{zone.name} batch {lim.batch} high {lim.high_min}..{lim.high_max}")
        else:
            parts.append(f"{zone.name} batch {lim.batch} high {lim.high}")
    return "; ".join(parts)


def burst(m: Machine, seed: int = 1, operations: int = OPERATIONS) -> Counter[str]:
    """Seeded allocations (orders 0-3, three types) and frees on every CPU."""
    events: Counter[str] = Counter()
    m.tracer = lambda event, fields: events.update((event,))
    rnd = random.Random(seed)
    held: list[tuple[int, int]] = []
    for _ in range(operations):
        cpu = rnd.randrange(m.nr_cpus)
        if held and (len(held) > 3000 or rnd.random() < 0.45):
            pfn, order = held.pop(rnd.randrange(len(held)))
            call(cpu, __free_pages, m, pfn, order)
        else:
            order = rnd.choice((0, 0, 0, 0, 1, 2, 3))
            mt = rnd.choice((MIGRATE_MOVABLE, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE,
                             MIGRATE_RECLAIMABLE))
            pfn = call(cpu, alloc_pages, m, order, mt, 2)
            if pfn >= 0:
                held.append((pfn, order))
    for pfn, order in held:
        call(0, __free_pages, m, pfn, order)
    m.tracer = None
    return events


def run_demo(kernels: list[Kernel]) -> str:
    src = bundled_sources()
    out = [f"pagesim demo: a Debian 6.1 guest (2 CPUs, 1 GiB), imported from its /proc "
           f"({BUNDLED}.*.txt)", ""]
    real = machine_from_proc(src, "v6.1")
    for zone in real.zones:
        if zone.present_pages:
            p = zone.per_cpu_pageset[0]
            out.append(f"  as captured: {zone.name:6} managed {zone.managed_pages:7} low wmark "
                       f"{zone.low_wmark_pages():6}  cpu0 pcp count {p.count:5} high {p.high:5}"
                       f" batch {p.batch}")
    out.append("")
    out.append(f"Each generation's pcp limits for this machine, then {OPERATIONS} seeded "
               "allocations/frees (orders 0-3) spread over both CPUs:")
    for k in kernels:
        m = machine_from_proc(src, k)
        for zone in m.zones:
            if zone.present_pages:
                call(0, zone_pcp_update, m, zone)
        events = burst(m)
        check_invariants(m)
        on_pcp = sum(z.per_cpu_pageset[c].count for z in m.zones if not z.boot_pageset
                     for c in range(m.nr_cpus))
        out.append(f"  {k}: {_limits_text(m)}")
        out.append(f"         {events['mm_page_alloc']} allocations, {events['mm_page_free']} "
                   f"frees, {events['mm_page_alloc_zone_locked']} blocks taken from the buddy, "
                   f"{events['mm_page_pcpu_drain']} pages flushed back; "
                   f"{on_pcp} pages left on pcplists; invariants hold")
    out.append("")
    out.append("Next: pagesim zoneinfo --from /proc/zoneinfo --recompute   (your own machine)")
    return "\n".join(out) + "\n"
