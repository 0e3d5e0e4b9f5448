# SPDX-License-Identifier: GPL-2.0-only
"""A machine's own /proc/zoneinfo, /proc/buddyinfo and /proc/pagetypeinfo.

Everything the model keeps is printed from the model: zone sizes, watermarks, lowmem
reserves, free counters, free lists, pageblock types and every CPU's pcp fields. What the
model does not keep (page cache, slab, NUMA event counters, the per-node block) is
printed from the file the machine was imported from, or as 0 for a machine built from
scratch, in the lines and order the generation prints (:mod:`pagesim.procfs.layout`).
"""

from __future__ import annotations

from pagesim.model.kernels import Kernel, kernel
from pagesim.model.mmzone import (
    MIGRATE_ISOLATE,
    MIGRATE_TYPES,
    MIGRATETYPE_NAMES,
    Machine,
    PG_hole,
    PG_offline,
    Zone,
    migratetypes,
)
from pagesim.model.page_alloc import free_list_pfns, get_pageblock_migratetype
from pagesim.procfs.layout import BuildConfig, ZoneinfoLayout, zoneinfo_layout
from pagesim.procfs.types import (
    Buddyinfo,
    BuddyinfoZone,
    PagesetInfo,
    Pagetypeinfo,
    PagetypeinfoZone,
    ZoneInfo,
    Zoneinfo,
)

#: pagetypeinfo stops counting a list at this many entries and prints ">100000"
PAGETYPEINFO_CAP = 100000


def machine_layout(m: Machine) -> ZoneinfoLayout:
    """The zoneinfo layout of the machine's generation and build (CMA as configured)."""
    return zoneinfo_layout(m.kernel, BuildConfig(cma=m.geom.cma))


def calculate_normal_threshold(m: Machine, zone: Zone) -> int:
    """The per-CPU vmstat threshold zoneinfo prints (mm/vmstat.c
    calculate_normal_threshold): grows with the CPU count and the zone's size in 128 MiB
    units, capped at 125."""
    mem = zone.managed_pages >> (27 - m.geom.page_shift)
    threshold = 2 * m.nr_cpus.bit_length() * (1 + mem.bit_length())
    return min(125, threshold)


def nr_free_pages_blocks(m: Machine, zone: Zone) -> int:
    """NR_FREE_PAGES_BLOCKS (6.17+): free pages in blocks of at least a pageblock."""
    total = 0
    for order in range(m.geom.pageblock_order, m.geom.nr_orders):
        for mt in range(MIGRATE_TYPES):
            if mt != MIGRATE_ISOLATE:
                total += len(free_list_pfns(m, zone, order, mt)) << order
    return total


def zoneinfo_of(m: Machine, layout: ZoneinfoLayout | None = None) -> Zoneinfo:
    """The machine's /proc/zoneinfo as records (render with render_zoneinfo)."""
    lay = layout or machine_layout(m)
    source = m.extra.get("zoneinfo")
    base = {z.name: z for z in source.zones} if isinstance(source, Zoneinfo) else {}
    zones = []
    first_populated = True
    for zone in m.zones:
        old = base.get(zone.name)
        populated = zone.present_pages > 0
        wm = zone._watermark
        boost = zone.watermark_boost
        zi = ZoneInfo(
            node=0, name=zone.name, per_node_stats=None,
            free=zone.nr_free_pages,
            min=wm[0] + boost, low=wm[1] + boost, high=wm[2] + boost,
            spanned=zone.spanned_pages, present=zone.present_pages,
            managed=zone.managed_pages,
            protection=_protection(m, zone, lay),
            boost=boost if lay.boost else None,
            promo=wm[3] + boost if lay.promo else None,
            cma=0 if lay.cma else None,
            populated=populated,
        )
        if populated:
            if first_populated:
                zi.per_node_stats = (list(old.per_node_stats) if old is not None
                                     and old.per_node_stats else
                                     [(name, 0) for name in lay.node_stats])
                first_populated = False
            zi.stats = _zone_stats(m, zone, lay, old)
            zi.pagesets = _pagesets(m, zone, lay, old)
            zi.node_unreclaimable = old.node_unreclaimable if old is not None and \
                old.node_unreclaimable is not None else 0
            zi.start_pfn = zone.zone_start_pfn
            if "reserved_highatomic" in lay.trailer:
                zi.reserved_highatomic = zone.nr_reserved_highatomic
            if "free_highatomic" in lay.trailer:
                zi.free_highatomic = 0
        zones.append(zi)
    return Zoneinfo(zones)


def _protection(m: Machine, zone: Zone, lay: ZoneinfoLayout) -> list[int]:
    values = list(zone.lowmem_reserve) or [0] * len(m.zones)
    return values[:len(m.zones)]


def _zone_stats(m: Machine, zone: Zone, lay: ZoneinfoLayout,
                old: ZoneInfo | None) -> list[tuple[str, int]]:
    modelled = {"nr_free_pages": zone.nr_free_pages, "nr_free_cma": zone.nr_free_cma,
                "nr_free_pages_blocks": nr_free_pages_blocks(m, zone)}
    if old is not None and old.stats:
        names = [name for name, _ in old.stats]
        values = dict(old.stats)
    else:
        names = list(lay.stats)
        values = {}
    return [(name, modelled.get(name, values.get(name, 0))) for name in names]


def _pagesets(m: Machine, zone: Zone, lay: ZoneinfoLayout,
              old: ZoneInfo | None) -> list[PagesetInfo]:
    thresholds = {p.cpu: p.vm_stats_threshold for p in old.pagesets} if old else {}
    out = []
    for cpu in range(m.nr_cpus):
        pcp = zone.per_cpu_pageset[cpu]
        threshold = thresholds.get(cpu)
        if threshold is None:
            threshold = calculate_normal_threshold(m, zone)
        out.append(PagesetInfo(
            cpu=cpu, count=pcp.count, high=pcp.high, batch=pcp.batch,
            high_min=pcp.high_min if lay.pageset_high_min_max else None,
            high_max=pcp.high_max if lay.pageset_high_min_max else None,
            vm_stats_threshold=threshold if lay.vm_stats_threshold else None))
    return out


def buddyinfo_of(m: Machine) -> Buddyinfo:
    """free_area[order].nr_free of each populated zone (all types, isolated included)."""
    return Buddyinfo([BuddyinfoZone(0, z.name, list(z.nr_free))
                      for z in m.zones if z.present_pages])


def pageblock_counts(m: Machine, zone: Zone) -> list[int]:
    """Pageblocks per migratetype as pagetypeinfo counts them: step from the zone start
    by a pageblock, skipping pfns with no online memory (mm/vmstat.c
    pagetypeinfo_showblockcount_print)."""
    counts = [0] * MIGRATE_TYPES
    geom = m.geom
    sec = geom.section_order
    online: dict[int, bool] = {}
    for pfn in range(zone.zone_start_pfn, zone.zone_end_pfn, geom.pageblock_nr_pages):
        s = pfn >> sec
        if s not in online:
            lo = max(zone.zone_start_pfn, s << sec)
            hi = min(zone.zone_end_pfn, (s + 1) << sec)
            seg = m.flags[lo:hi]
            online[s] = any(not f & (PG_hole | PG_offline) for f in seg)
        if not online[s] or m.zone_id[pfn] != zone.idx:
            continue
        counts[get_pageblock_migratetype(m, pfn)] += 1
    return counts


def pagetypeinfo_of(m: Machine) -> Pagetypeinfo:
    """Free blocks per migratetype and order, and pageblocks per type."""
    types = migratetypes(m.geom)
    names = [MIGRATETYPE_NAMES[t] for t in types]
    zones = []
    for zone in m.zones:
        if not zone.present_pages:
            continue
        free: dict[str, list[int]] = {}
        capped: set[tuple[str, int]] = set()
        for t, name in zip(types, names, strict=True):
            row = []
            for order in range(m.geom.nr_orders):
                n = len(free_list_pfns(m, zone, order, t))
                if n >= PAGETYPEINFO_CAP:
                    capped.add((name, order))
                    n = PAGETYPEINFO_CAP + 1
                row.append(n)
            free[name] = row
        counts = pageblock_counts(m, zone)
        blocks = {name: counts[t] for t, name in zip(types, names, strict=True)}
        zones.append(PagetypeinfoZone(0, zone.name, free, blocks, capped))
    return Pagetypeinfo(m.geom.pageblock_order, m.geom.pageblock_nr_pages, m.geom.nr_orders,
                        names, zones)


def matching_kernels(zi: Zoneinfo) -> list[Kernel]:
    """Every modelled release whose zoneinfo layout the file has, oldest first.

    Layouts change often enough (stat names come and go) that a capture usually pins
    its generation to a short range.
    """
    sample = next((z for z in zi.zones if z.populated and z.pagesets), None)
    found = []
    for major, minor in sorted({(a, b) for a in (5, 6) for b in range(20)}):
        if not (5, 8) <= (major, minor) <= (6, 19):
            continue
        k = kernel(f"v{major}.{minor}")
        if sample is None or _matches(zoneinfo_layout(k), zi, sample):
            found.append(k)
    return found


def guess_kernel(zi: Zoneinfo) -> Kernel:
    """A release whose zoneinfo layout the file has: the oldest one whose layout was read
    from a real tree or capture (the start of the range the file fits), else the oldest
    match, else the newest release modelled. Callers should say which range matched."""
    found = matching_kernels(zi)
    exact = [k for k in found if zoneinfo_layout(k).exact]
    if exact:
        return exact[0]
    return found[0] if found else kernel("v6.19")


def _matches(lay: ZoneinfoLayout, zi: Zoneinfo, z: ZoneInfo) -> bool:
    if (z.boost is not None) != lay.boost or (z.promo is not None) != lay.promo:
        return False
    if (z.cma is not None) != lay.cma:
        return False
    if (z.pagesets[0].high_min is not None) != lay.pageset_high_min_max:
        return False
    if (z.reserved_highatomic is not None) != ("reserved_highatomic" in lay.trailer):
        return False
    if [name for name, _ in z.stats] != list(lay.stats):
        return False
    first = next((x for x in zi.zones if x.per_node_stats), None)
    return first is None or [n for n, _ in first.per_node_stats or []] == list(lay.node_stats)

