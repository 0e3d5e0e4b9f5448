# SPDX-License-Identifier: GPL-2.0-only
"""Machines from /proc files, and /proc files from machines.

A real /proc/zoneinfo says how big each zone is, its watermarks and every CPU's pcp
state; /proc/pagetypeinfo (or, less precisely, /proc/buddyinfo) says how many free
blocks of each order and migratetype there are and how many pageblocks of each type.
None of them says *where* anything is. The importer therefore synthesises a layout that
reproduces every number in the files and is a state the allocator could be in:

* holes (spanned - present): whole absent sections at the top of the zone, which is
  where the PCI hole of DMA32 really is, and the rest at the bottom, like the legacy
  BIOS hole of DMA;
* pageblock types are assigned from the bottom in the order Unmovable, Reclaimable,
  HighAtomic, CMA, Isolate, Movable (boot allocations are unmovable and low);
* free blocks are placed largest first, each in a pageblock of its own type when one has
  room, never next to a free buddy of the same order (it would have merged), and never
  across a reserved page or a hole;
* every CPU's pcp ``count`` becomes that many order-0 pages on its pcplist; then the
  reserved pages (present - managed) take the lowest pfns left, and what remains is
  allocated (migratable in Movable blocks). Reserved pages come last because a zone can
  be almost entirely free: only the real free blocks' positions leave room for them.

The machine is then checked with :func:`pagesim.model.invariants.check_invariants`, and
its own /proc output reproduces the file's free lists, pageblock counts and pcp state.
"""

from __future__ import annotations

import copy
import itertools
from array import array
from dataclasses import dataclass

from pagesim.model.build import LayoutError, build_machine
from pagesim.model.geometry import X86_64, Geometry, GeometryError
from pagesim.model.kernels import Kernel, kernel
from pagesim.model.mmzone import (
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    MIGRATETYPE_NAMES,
    ZONE_NAMES,
    Machine,
    PB_migrate_isolate,
    PG_hole,
    PG_lru,
    PG_offline,
    PG_pcp,
    PG_reserved,
    Zone,
    ZoneLayout,
    order_to_pindex,
)
from pagesim.model.page_alloc import (
    __mod_zone_freepage_state,
    add_to_free_list_tail,
    set_buddy_order,
)
from pagesim.procfs.types import Buddyinfo, Pagetypeinfo, ZoneInfo, Zoneinfo

#: pageblock types are laid out from the bottom of each zone in this order
_TYPE_ORDER = (MIGRATE_UNMOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_HIGHATOMIC, MIGRATE_CMA,
               MIGRATE_ISOLATE, MIGRATE_MOVABLE)


class MachineImportError(ValueError):
    """The files describe a state no machine can be in (message names file and zone)."""


@dataclass
class ProcSources:
    """The parsed files and their paths (for error messages)."""

    zoneinfo: Zoneinfo
    zoneinfo_path: str = "<zoneinfo>"
    buddyinfo: Buddyinfo | None = None
    buddyinfo_path: str = "<buddyinfo>"
    pagetypeinfo: Pagetypeinfo | None = None
    pagetypeinfo_path: str = "<pagetypeinfo>"


def machine_from_proc(src: ProcSources, kern: Kernel | str, nr_cpus: int | None = None,
                      geom: Geometry | None = None) -> Machine:
    """Build a machine reproducing the files (see the module docstring)."""
    k = kernel(kern)
    zi = src.zoneinfo
    if not zi.zones:
        raise MachineImportError(f"{src.zoneinfo_path}: no zones")
    pti = src.pagetypeinfo
    if geom is None:
        geom = X86_64
        if pti is not None:
            try:
                geom = Geometry(pageblock_order=pti.pageblock_order, nr_orders=pti.nr_orders,
                                cma="CMA" in pti.migratetypes)
            except GeometryError as e:
                raise MachineImportError(f"{src.pagetypeinfo_path}: {e}") from None
    file_cpus = _file_cpus(zi)
    if nr_cpus is None:
        if file_cpus != list(range(len(file_cpus))):
            # an offline CPU: counting it would change the pcp formulas, dropping it
            # would renumber the pcps after it; neither is the file's machine
            raise MachineImportError(
                f"{src.zoneinfo_path}: pagesets of CPUs {', '.join(map(str, file_cpus))}: "
                "a CPU in between is offline, and pagesim's CPUs are 0..N-1, all online; "
                "give --cpus N to choose the machine's CPUs")
        nr_cpus = max(1, len(file_cpus))
    nodes = {z.node for z in zi.zones}
    if len(nodes) != 1:
        raise MachineImportError(f"{src.zoneinfo_path}: {len(nodes)} NUMA nodes; pagesim models "
                           "one node (give the zoneinfo of a single-node machine)")
    _check_zoneinfo(zi, src.zoneinfo_path)
    _check_other_files(src, geom)
    zone_names = tuple(z.name for z in zi.zones)
    layouts = []
    for z in zi.zones:
        if not z.present:
            continue
        if z.start_pfn is None:
            raise MachineImportError(f"{src.zoneinfo_path}: zone {z.name} has no start_pfn line")
        layouts.append(_layout(z, geom, src.zoneinfo_path))
    try:
        m = build_machine(layouts, kern=k, geom=geom, nr_cpus=nr_cpus,
                          zone_names=zone_names, min_free_kbytes=0, free_memory=False)
    except LayoutError as e:
        raise MachineImportError(f"{src.zoneinfo_path}: {e}") from e
    m.min_free_kbytes = _min_free_kbytes(zi, geom)
    for z in zi.zones:
        zone = m.zone(z.name)
        zone._watermark = [z.min - (z.boost or 0), z.low - (z.boost or 0),
                           z.high - (z.boost or 0), (z.promo or 0) - (z.boost or 0)]
        zone.watermark_boost = z.boost or 0
        zone.lowmem_reserve = list(z.protection)
        if not z.present:
            continue
        lay = next(lay for lay in layouts if lay.name == z.name)
        _populate(m, zone, lay, z, src)
        _load_pagesets(m, zone, z)
    m.extra["zoneinfo"] = copy.deepcopy(zi)
    return m


def _check_zoneinfo(zi: Zoneinfo, path: str) -> None:
    """What the parser cannot see: zone names and order, and each zone's numbers
    against each other."""
    known = [name for name in ZONE_NAMES if name in {z.name for z in zi.zones}]
    for z in zi.zones:
        if z.name not in ZONE_NAMES:
            raise MachineImportError(f"{path}: zone {z.name!r}: not a zone of x86-64 "
                                     f"(one of {', '.join(ZONE_NAMES)})")
    names = [z.name for z in zi.zones]
    if names != known:
        raise MachineImportError(f"{path}: zones {', '.join(names)}: the kernel prints "
                                 f"each zone once, in the order {', '.join(ZONE_NAMES)}")
    for z in zi.zones:
        where = f"{path}: zone {z.name}"
        if len(z.protection) != len(zi.zones):
            raise MachineImportError(f"{where}: protection lists {len(z.protection)} "
                                     f"values, one per zone ({len(zi.zones)}) expected")
        if z.free > z.managed:
            raise MachineImportError(f"{where}: pages free {z.free} > managed {z.managed}")
        marks = [("min", z.min), ("low", z.low), ("high", z.high)]
        if z.promo is not None:
            marks.append(("promo", z.promo))
        for (a, va), (b, vb) in itertools.pairwise(marks):
            if va > vb:
                raise MachineImportError(f"{where}: watermark {a} {va} > {b} {vb}")
        if z.boost is not None and z.boost > z.min:
            raise MachineImportError(f"{where}: boost {z.boost} > min {z.min} (the "
                                     "printed watermarks include the boost)")


def _check_other_files(src: ProcSources, geom: Geometry) -> None:
    """The buddyinfo and pagetypeinfo describe the zoneinfo's machine: one entry for
    each populated zone, in the same order (the kernel prints populated zones only),
    with the geometry's number of orders."""
    want = [(z.node, z.name) for z in src.zoneinfo.zones if z.present]
    listed = ", ".join(name for _, name in want) or "none"
    bi = src.buddyinfo
    if bi is not None:
        path = src.buddyinfo_path
        for i, (node, name) in enumerate(want):
            if i >= len(bi.zones):
                raise MachineImportError(
                    f"{path}:{i + 1}: unexpected end of file: expected zone {name} (the "
                    f"zoneinfo's populated zones are {listed})")
            bz = bi.zones[i]
            if (bz.node, bz.name) != (node, name):
                raise MachineImportError(
                    f"{path}:{i + 1}: node {bz.node} zone {bz.name}, expected node {node} "
                    f"zone {name} (the zoneinfo's populated zones are {listed})")
            if len(bz.nr_free) != geom.nr_orders:
                raise MachineImportError(
                    f"{path}:{i + 1}: {len(bz.nr_free)} orders, the machine has "
                    f"{geom.nr_orders}")
        if len(bi.zones) > len(want):
            bz = bi.zones[len(want)]
            raise MachineImportError(
                f"{path}:{len(want) + 1}: node {bz.node} zone {bz.name}: not a populated "
                f"zone of the zoneinfo ({listed})")
    pti = src.pagetypeinfo
    if pti is not None:
        path = src.pagetypeinfo_path
        got = [(p.node, p.name) for p in pti.zones]
        if got != want:
            raise MachineImportError(
                f"{path}: lists zones {', '.join(name for _, name in got) or 'none'}; "
                f"the zoneinfo's populated zones are {listed}")
        for name in pti.migratetypes:
            if name not in MIGRATETYPE_NAMES:
                raise MachineImportError(
                    f"{path}: unknown migratetype {name!r} (the kernel's are "
                    f"{', '.join(MIGRATETYPE_NAMES)})")


def _file_cpus(zi: Zoneinfo) -> list[int]:
    cpus: set[int] = set()
    for z in zi.zones:
        cpus.update(p.cpu for p in z.pagesets)
    return sorted(cpus)


def _layout(z: ZoneInfo, geom: Geometry, path: str) -> ZoneLayout:
    start = z.start_pfn or 0
    if z.present > z.spanned:
        raise MachineImportError(
            f"{path}: zone {z.name}: present {z.present} > spanned {z.spanned}")
    if z.managed > z.present:
        raise MachineImportError(
            f"{path}: zone {z.name}: managed {z.managed} > present {z.present}")
    end = start + z.spanned
    hole = z.spanned - z.present
    sec = geom.pages_per_section
    whole = hole // sec if end % sec == 0 else 0
    part = hole - whole * sec
    holes = []
    if part:
        holes.append((start, start + part))
    if whole:
        holes.append((end - whole * sec, end))
    return ZoneLayout(z.name, start, z.spanned, tuple(holes))


def _min_free_kbytes(zi: Zoneinfo, geom: Geometry) -> int:
    """The min_free_kbytes that yields the file's min watermarks: the sum of the
    non-movable zones' min, in KiB (inverse of __setup_per_zone_wmarks)."""
    pages = sum(z.min - (z.boost or 0) for z in zi.zones if z.name != "Movable")
    return pages << (geom.page_shift - 10)


# ---------------------------------------------------------------------------------------


def _blocks_of_zone(m: Machine, zone: Zone) -> list[int]:
    """The pageblocks pagetypeinfo counts: stepping from zone_start_pfn by a pageblock,
    skipping pfns whose section has no present memory (pfn_to_online_page fails)."""
    geom = m.geom
    sec = geom.section_order
    present_sections: set[int] = set()
    start, end = zone.zone_start_pfn, zone.zone_end_pfn
    for s in range(start >> sec, ((end - 1) >> sec) + 1):
        lo, hi = max(start, s << sec), min(end, (s + 1) << sec)
        if m.flags[lo:hi].translate(_ABSENT).count(1) != hi - lo:
            present_sections.add(s)
    return [pfn >> geom.pageblock_order for pfn in range(start, end, geom.pageblock_nr_pages)
            if pfn >> sec in present_sections]


def _populate(m: Machine, zone: Zone, lay: ZoneLayout, z: ZoneInfo, src: ProcSources) -> None:
    geom = m.geom
    blocks = _blocks_of_zone(m, zone)
    if src.pagetypeinfo is not None:
        _mark_offline_sections(m, zone, z, src, blocks)
        blocks = _blocks_of_zone(m, zone)
    wanted_blocks, free = _wanted(m, zone, z, src, len(blocks))
    # pageblock types from the bottom, in _TYPE_ORDER
    block_type: dict[int, int] = {}
    i = 0
    for mt in _TYPE_ORDER:
        for _ in range(wanted_blocks.get(mt, 0)):
            block_type[blocks[i]] = mt
            i += 1
    for b in blocks[i:]:
        block_type[b] = MIGRATE_MOVABLE
    for b, mt in block_type.items():
        m.pageblock_flags[b] = mt if mt != MIGRATE_ISOLATE else _isolate_bits(m, b)
        if mt == MIGRATE_ISOLATE:
            zone.nr_isolate_pageblock += 1
    # usable pfns: neither hole nor reserved; allocated pages of Movable blocks are
    # migratable (PG_lru), which placing free and pcp pages below overwrites
    start, end = zone.zone_start_pfn, zone.zone_end_pfn
    used = m.flags[start:end].translate(_USED)
    pb_pages = geom.pageblock_nr_pages
    for b, mt in block_type.items():
        if mt == MIGRATE_MOVABLE:
            a, e = max(start, b * pb_pages), min(end, (b + 1) * pb_pages)
            m.flags[a:e] = m.flags[a:e].translate(_MARK_LRU)
    by_type: dict[int, list[int]] = {mt: [] for mt in range(MIGRATE_TYPES)}
    for b in sorted(block_type):
        by_type[block_type[b]].append(b)
    heads: dict[int, int] = {}  # pfn -> order of placed free blocks
    placer = _Placer(m, zone, used, heads, sorted(block_type))
    for order in range(geom.max_order, -1, -1):
        for mt in _TYPE_ORDER:
            for _ in range(free[mt][order]):
                pfn = placer.place(order, mt, by_type[mt])
                if pfn < 0:
                    raise MachineImportError(
                        f"{src.pagetypeinfo_path if src.pagetypeinfo else src.zoneinfo_path}: "
                        f"zone {zone.name}: no room for a free {MIGRATETYPE_NAMES[mt]} block "
                        f"of order {order} (the free lists exceed what the managed pages "
                        "can hold)")
                n = 1 << order
                m.flags[pfn:pfn + n] = bytes(n)
                m.refcount[pfn:pfn + n] = array("i", bytes(4 * n))
                set_buddy_order(m, pfn, order)
                add_to_free_list_tail(m, zone, pfn, order, mt)
                if mt != MIGRATE_ISOLATE:
                    __mod_zone_freepage_state(zone, 1 << order, mt)
    # pcp pages, then the reserved pages, in the lowest pfns left; the rest is allocated
    cursor = 0

    def take(n: int, what: str) -> list[int]:
        nonlocal cursor
        out = []
        for _ in range(n):
            cursor = used.find(0, cursor)
            if cursor < 0:
                raise MachineImportError(f"{src.zoneinfo_path}: zone {zone.name}: no room left for "
                                   f"{what} after the free lists")
            used[cursor] = 1
            out.append(start + cursor)
        return out

    for p in z.pagesets:
        if p.cpu >= m.nr_cpus or not p.count or zone.boot_pageset:
            continue
        pcp = zone.per_cpu_pageset[p.cpu]
        pindex = order_to_pindex(m.kernel, geom, MIGRATE_MOVABLE, 0)
        for pfn in take(p.count, f"the {p.count} pages on cpu {p.cpu}'s pcplists"):
            m.flags[pfn] = PG_pcp
            m.refcount[pfn] = 0
            m.index[pfn] = MIGRATE_MOVABLE
            pcp.lists[pindex].append(pfn)
        pcp.count += p.count
    offline = m.flags[start:end].count(PG_offline)
    reserved = z.present - z.managed - offline
    for pfn in take(reserved, f"{reserved} reserved pages (present - managed)"):
        m.flags[pfn] = PG_reserved
    zone.managed_pages = z.managed


def _mark_offline_sections(m: Machine, zone: Zone, z: ZoneInfo, src: ProcSources,
                           blocks: list[int]) -> None:
    """Present memory that pagetypeinfo does not count is offline (its sections are not
    online: a memory block added but not onlined, or offlined and still present). Such
    sections are taken from the top of the zone, below any absent ones."""
    assert src.pagetypeinfo is not None
    pz = next((p for p in src.pagetypeinfo.zones if p.name == z.name), None)
    if pz is None:
        return
    counted = sum(pz.blocks.values())
    missing = len(blocks) - counted
    if missing <= 0:
        return
    geom = m.geom
    per_section = geom.pages_per_section >> geom.pageblock_order
    if missing % per_section:
        raise MachineImportError(
            f"{src.pagetypeinfo_path}: zone {z.name}: counts {counted} pageblocks where the "
            f"zoneinfo implies {len(blocks)}; the difference is not whole sections")
    sec = geom.section_order
    todo = missing // per_section
    s = (zone.zone_end_pfn - 1) >> sec
    while todo and s >= zone.zone_start_pfn >> sec:
        lo, hi = max(zone.zone_start_pfn, s << sec), min(zone.zone_end_pfn, (s + 1) << sec)
        if m.flags[lo:hi].count(PG_hole) != hi - lo:
            m.flags[lo:hi] = bytes([PG_offline]) * (hi - lo)
            m.refcount[lo:hi] = array("i", bytes(4 * (hi - lo)))
            todo -= 1
        s -= 1


def _isolate_bits(m: Machine, block: int) -> int:
    if m.kernel.isolate_bit:
        return PB_migrate_isolate | MIGRATE_MOVABLE
    return MIGRATE_ISOLATE


#: bytes.translate tables over struct page flags
_USED = bytes(1 if f & (PG_hole | PG_reserved | PG_offline) else 0 for f in range(256))
_ABSENT = bytes(1 if f & (PG_hole | PG_offline) else 0 for f in range(256))
_MARK_LRU = bytes(PG_lru if f == 0 else f for f in range(256))


def _wanted(m: Machine, zone: Zone, z: ZoneInfo, src: ProcSources,
            nblocks: int) -> tuple[dict[int, int], list[list[int]]]:
    """Pageblock counts per type and free blocks per (type, order) from the files."""
    geom = m.geom
    free = [[0] * geom.nr_orders for _ in range(MIGRATE_TYPES)]
    blocks: dict[int, int] = {}
    pti = src.pagetypeinfo
    bi = src.buddyinfo
    bz = next((b for b in bi.zones if b.name == z.name), None) if bi else None
    pz = next((p for p in pti.zones if p.name == z.name), None) if pti else None
    if pz is not None:
        assert pti is not None
        for name, counts in pz.free.items():
            mt = MIGRATETYPE_NAMES.index(name)
            for order, n in enumerate(counts):
                if (name, order) in pz.capped:
                    if bz is None:
                        raise MachineImportError(
                            f"{src.pagetypeinfo_path}: zone {z.name}: the {name} count at "
                            f"order {order} is capped (>100000); give the buddyinfo too")
                    others = sum(c[order] for nm, c in pz.free.items() if nm != name)
                    n = bz.nr_free[order] - others
                free[mt][order] = n
        for name, n in pz.blocks.items():
            blocks[MIGRATETYPE_NAMES.index(name)] = n
        total = sum(blocks.values())
        if total != nblocks:
            raise MachineImportError(
                f"{src.pagetypeinfo_path}: zone {z.name}: {total} pageblocks counted by type, "
                f"but a zone of {z.spanned} pages from pfn {z.start_pfn} with {z.present} "
                f"present has {nblocks}")
    elif bz is not None:
        for order, n in enumerate(bz.nr_free):
            free[MIGRATE_MOVABLE][order] = n
    else:
        _free_from_counters(z, geom, free[MIGRATE_MOVABLE])
    return blocks, free


def _free_from_counters(z: ZoneInfo, geom: Geometry, row: list[int]) -> None:
    """Free blocks per order when only the zoneinfo is known: the free pages in whole
    pageblocks or more (nr_free_pages_blocks, 6.17+; else as many as possible) as the
    largest blocks, the rest spread evenly over as few pageblocks as hold it, each
    pageblock's share in binary (one block per order, so none of them are buddies)."""
    total = z.stat("nr_free_pages")
    if total is None:
        total = z.free
    pb = geom.pageblock_order
    big = z.stat("nr_free_pages_blocks")
    if big is None or big > total:
        big = total >> pb << pb
    rest = total - big
    for order in range(geom.max_order, pb - 1, -1):
        row[order], big = divmod(big, 1 << order)
    rest += big
    per_block = (1 << pb) - 1
    if rest:
        nblocks = -(-rest // per_block)
        share, extra = divmod(rest, nblocks)
        for i in range(nblocks):
            q = share + (1 if i < extra else 0)
            for order in range(pb):
                if q >> order & 1:
                    row[order] += 1


class _Placer:
    """First fit for free blocks (see the module docstring).

    Placing blocks only ever makes positions unusable (pages get used, heads appear
    whose buddies may not be free blocks of the same order), so a position that does not
    fit now never will: each search resumes where the last one of its kind stopped, and
    placing a zone's blocks costs one pass over its pageblocks per order and type.
    """

    def __init__(self, m: Machine, zone: Zone, used: bytearray, heads: dict[int, int],
                 all_blocks: list[int]) -> None:
        self.m = m
        self.zone = zone
        self.used = used
        self.heads = heads
        self.start = zone.zone_start_pfn
        self.all_blocks = all_blocks
        self.cursor: dict[tuple[int, int], int] = {}
        self.block_sets: dict[int, set[int]] = {}

    def _fits(self, pfn: int, order: int) -> bool:
        i = pfn - self.start
        n = 1 << order
        if i < 0 or i + n > len(self.used):
            return False
        if self.used[i:i + n].count(0) != n:
            return False
        buddy = pfn ^ n
        return self.heads.get(buddy) != order or order == self.m.geom.max_order

    def place(self, order: int, mt: int, own_blocks: list[int]) -> int:
        pfn = self._first_fit(order, own_blocks, mt)
        if pfn < 0:
            pfn = self._first_fit(order, self.all_blocks, -1)
        if pfn >= 0:
            i = pfn - self.start
            self.used[i:i + (1 << order)] = b"\x01" * (1 << order)
            self.heads[pfn] = order
        return pfn

    def _first_fit(self, order: int, blocks: list[int], key: int) -> int:
        pb = self.m.geom.pageblock_order
        n = 1 << order
        ck = (key, order)
        i = self.cursor.get(ck, 0)
        if order >= pb:
            span = 1 << (order - pb)
            bset = self.block_sets.get(key)
            if bset is None:
                bset = self.block_sets[key] = set(blocks)
            while i < len(blocks):
                b = blocks[i]
                if not (b % span or any(b + j not in bset for j in range(span))) and \
                        self._fits(b << pb, order):
                    self.cursor[ck] = i
                    return b << pb
                i += 1
            self.cursor[ck] = i
            return -1
        while i < len(blocks):
            base = blocks[i] << pb
            for off in range(0, 1 << pb, n):
                if self._fits(base + off, order):
                    self.cursor[ck] = i
                    return base + off
            i += 1
        self.cursor[ck] = i
        return -1


def _load_pagesets(m: Machine, zone: Zone, z: ZoneInfo) -> None:
    """The pcp limits as the file shows them; CPUs beyond the file's get CPU 0's."""
    if zone.boot_pageset or not z.pagesets:
        return
    by_cpu = {p.cpu: p for p in z.pagesets}
    first = z.pagesets[0]
    for pcp in zone.per_cpu_pageset:
        p = by_cpu.get(pcp.cpu, first)
        pcp.high = p.high if pcp.cpu in by_cpu else (first.high_min or first.high)
        pcp.batch = p.batch
        pcp.high_min = p.high_min if p.high_min is not None else p.high
        pcp.high_max = p.high_max if p.high_max is not None else p.high
    zone.pageset_high = first.high
    zone.pageset_batch = first.batch
    zone.pageset_high_min = first.high_min if first.high_min is not None else first.high
    zone.pageset_high_max = first.high_max if first.high_max is not None else first.high

