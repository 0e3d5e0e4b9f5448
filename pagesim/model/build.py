# SPDX-License-Identifier: GPL-2.0-only
"""Boot a machine: lay out zones, free all managed memory, compute watermarks and pcp
limits, as the kernel does between memmap_init and the first allocation.

Freeing page by page through ``__free_one_page`` would take minutes for 16 Mi pages, so
boot frees each maximal run of managed pages as its canonical decomposition into aligned
blocks (largest first, ascending, each added at the list tail as ``__free_pages_core``
with FPI_TO_TAIL would leave them). That decomposition is exactly the fully merged state:
two buddies of order k both in it would have been taken as one block of order k + 1.
A test checks it against freeing every page one at a time on small zones.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from itertools import pairwise

from pagesim.model import watermarks
from pagesim.model.geometry import X86_64, Geometry
from pagesim.model.kernels import Kernel, kernel
from pagesim.model.mmzone import (
    MIGRATE_MOVABLE,
    ZONE_NAMES,
    Machine,
    PG_hole,
    PG_reserved,
    Zone,
    ZoneLayout,
)
from pagesim.model.page_alloc import add_to_free_list_tail, set_buddy_order
from pagesim.model.pageset import setup_zone_pageset
from pagesim.runtime.sequential import call

#: bytes.translate table: a present page (flags 0) becomes reserved, holes stay holes
_RESERVE = bytes(PG_reserved if f == 0 else f for f in range(256))


class LayoutError(ValueError):
    """Zones that overlap, leave the memmap, or are not in zone order."""


def build_machine(
    layouts: Sequence[ZoneLayout],
    *,
    kern: Kernel | str = "v6.19",
    geom: Geometry = X86_64,
    nr_cpus: int = 2,
    zone_names: tuple[str, ...] = ZONE_NAMES,
    min_free_kbytes: int | None = None,
    watermark_scale_factor: int = 10,
    percpu_pagelist_fraction: int = 0,
    free_memory: bool = True,
) -> Machine:
    """A booted machine with the given zones (a layout per zone that has memory)."""
    k = kernel(kern)
    _check_layouts(layouts, zone_names, geom)
    end_pfn = max((lay.end_pfn for lay in layouts), default=0)
    # the memmap covers whole sections, like SPARSEMEM
    sec = geom.pages_per_section
    end_pfn = max(sec, (end_pfn + sec - 1) // sec * sec)
    m = Machine(k, geom, nr_cpus, end_pfn, zone_names)
    m.watermark_scale_factor = watermark_scale_factor
    m.percpu_pagelist_fraction = percpu_pagelist_fraction
    # pfns in no zone (pfn 0 on x86, the tail of the last section) have no memory
    m.flags[:] = bytes([PG_hole]) * end_pfn
    for lay in layouts:
        zone = m.zone(lay.name)
        _init_zone(m, zone, lay)
        if free_memory:
            free_zone_memory(m, zone, lay)
    if min_free_kbytes is None:
        init_per_zone_wmark_min(m, boot=True)
    else:
        m.min_free_kbytes = min_free_kbytes
        apply_watermarks(m)
    for zone in m.zones:
        if zone.present_pages:
            call(0, setup_zone_pageset, m, zone)
    return m


def _check_layouts(layouts: Sequence[ZoneLayout], zone_names: tuple[str, ...],
                   geom: Geometry) -> None:
    last_end = 0
    last_idx = -1
    for lay in layouts:
        if lay.name not in zone_names:
            raise LayoutError(f"zone {lay.name!r}: not one of {', '.join(zone_names)}")
        idx = zone_names.index(lay.name)
        if idx <= last_idx:
            raise LayoutError(f"zone {lay.name}: zones must be given in zone order, once each")
        if lay.start_pfn < 0 or lay.spanned <= 0:
            raise LayoutError(f"zone {lay.name}: start {lay.start_pfn}, spanned {lay.spanned}:"
                              " a zone needs a non-negative start and at least one page")
        if lay.start_pfn < last_end:
            raise LayoutError(f"zone {lay.name}: starts at pfn {lay.start_pfn:#x}, inside the "
                              f"previous zone (which ends at {last_end:#x})")
        for what, ranges in (("hole", lay.holes), ("reserved range", lay.reserved)):
            for s, e in ranges:
                if not lay.start_pfn <= s < e <= lay.end_pfn:
                    raise LayoutError(f"zone {lay.name}: {what} [{s:#x}, {e:#x}) is not inside"
                                      f" the zone [{lay.start_pfn:#x}, {lay.end_pfn:#x})")
        # present = spanned - the hole lengths, so a pfn in two holes would be subtracted
        # twice (reserved ranges may overlap: their pages are counted from the memmap)
        holes = sorted(lay.holes)
        for (s0, e0), (s1, e1) in pairwise(holes):
            if s1 < e0:
                raise LayoutError(f"zone {lay.name}: holes [{s0:#x}, {e0:#x}) and "
                                  f"[{s1:#x}, {e1:#x}) overlap")
        last_end = lay.end_pfn
        last_idx = idx


def _init_zone(m: Machine, zone: Zone, lay: ZoneLayout) -> None:
    """memmap_init for the zone: every page belongs to it, present pages are reserved
    until freed, holes stay holes, every pageblock starts MOVABLE."""
    s, e = lay.start_pfn, lay.end_pfn
    zone.zone_start_pfn = s
    zone.spanned_pages = lay.spanned
    zone.present_pages = lay.present
    m.zone_id[s:e] = bytes([zone.idx]) * (e - s)
    m.flags[s:e] = bytes(e - s)
    for hs, he in lay.holes:
        m.flags[hs:he] = bytes([PG_hole]) * (he - hs)
    # until memblock_free_all, every present page is allocated (refcount 1)
    m.refcount[s:e] = array("i", [1]) * (e - s)
    for hs, he in lay.holes:
        m.refcount[hs:he] = array("i", bytes(4 * (he - hs)))
    reserved = 0
    for rs, re_ in lay.reserved:
        seg = m.flags[rs:re_]
        reserved += seg.count(0)
        m.flags[rs:re_] = seg.translate(_RESERVE)
    zone.managed_pages = lay.present - reserved
    zone.lowmem_reserve = [0] * len(m.zones)
    pb = m.geom.pageblock_order
    first, last = s >> pb, (e - 1) >> pb
    m.pageblock_flags[first:last + 1] = bytes([MIGRATE_MOVABLE]) * (last - first + 1)


def managed_runs(m: Machine, lay: ZoneLayout) -> list[tuple[int, int]]:
    """The maximal [start, end) runs of the zone that hold neither holes nor reserved
    pages."""
    cuts = sorted([*lay.holes, *lay.reserved])
    runs = []
    pos = lay.start_pfn
    for s, e in cuts:
        if s > pos:
            runs.append((pos, s))
        pos = max(pos, e)
    if pos < lay.end_pfn:
        runs.append((pos, lay.end_pfn))
    return runs


def aligned_blocks(start: int, end: int, max_order: int) -> Iterable[tuple[int, int]]:
    """The canonical decomposition of [start, end) into aligned blocks, ascending."""
    pfn = start
    while pfn < end:
        order = max_order
        while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
            order -= 1
        yield pfn, order
        pfn += 1 << order


def free_zone_memory(m: Machine, zone: Zone, lay: ZoneLayout) -> None:
    """memblock_free_all for one zone, as the fully merged result (module docstring)."""
    for s, e in managed_runs(m, lay):
        m.refcount[s:e] = array("i", bytes(4 * (e - s)))
        for pfn, order in aligned_blocks(s, e, m.geom.max_order):
            set_buddy_order(m, pfn, order)
            add_to_free_list_tail(m, zone, pfn, order, MIGRATE_MOVABLE)
            zone.nr_free_pages += 1 << order


def _wmark_zones(m: Machine) -> list[watermarks.WmarkZone]:
    return [watermarks.WmarkZone.of(z.name, z.managed_pages, z.present_pages) for z in m.zones]


def apply_watermarks(m: Machine) -> None:
    """__setup_per_zone_wmarks for the machine's min_free_kbytes, and the lowmem
    reserves (setup_per_zone_lowmem_reserve)."""
    zones = _wmark_zones(m)
    wms = watermarks.setup_per_zone_wmarks(m.kernel, zones, m.min_free_kbytes,
                                           m.watermark_scale_factor,
                                           page_shift=m.geom.page_shift)
    _store(m, wms)


def init_per_zone_wmark_min(m: Machine, boot: bool = False) -> None:
    """The recomputation after boot or a memory on/offline: min_free_kbytes from the
    square root of lowmem, or khugepaged's recommendation (THP is on in the distro
    configs pagesim models), then every zone's watermarks and lowmem reserve."""
    zones = _wmark_zones(m)
    setup = watermarks.init_per_zone_wmark_min(
        m.kernel, zones, prev_high=None if boot else [z._watermark[2] for z in m.zones],
        min_free_kbytes=m.min_free_kbytes, boot=boot,
        watermark_scale_factor=m.watermark_scale_factor,
        pageblock_order=m.geom.pageblock_order, page_shift=m.geom.page_shift)
    m.min_free_kbytes = setup.min_free_kbytes
    _store(m, setup.watermarks)


def _store(m: Machine, wms: Sequence[watermarks.Watermarks]) -> None:
    for zone, wm in zip(m.zones, wms, strict=True):
        zone._watermark = [wm.min, wm.low, wm.high, wm.promo or 0]
        zone.watermark_boost = 0
    for zone, reserve in zip(m.zones, watermarks.lowmem_reserve(m.kernel, _wmark_zones(m)),
                             strict=True):
        zone.lowmem_reserve = list(reserve)


def simple_machine(
    *,
    kern: Kernel | str = "v6.19",
    geom: Geometry = X86_64,
    nr_cpus: int = 2,
    zones: Sequence[tuple[str, int]] = (("Normal", 1 << 15),),
    start_pfn: int | None = None,
    **kwargs: object,
) -> Machine:
    """A machine whose zones follow each other without holes: (name, pages) pairs."""
    pos = start_pfn if start_pfn is not None else 0
    layouts = []
    for name, pages in zones:
        layouts.append(ZoneLayout(name, pos, pages))
        pos += pages
    return build_machine(layouts, kern=kern, geom=geom, nr_cpus=nr_cpus,
                         **kwargs)  # type: ignore[arg-type]
