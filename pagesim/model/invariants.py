# SPDX-License-Identifier: GPL-2.0-only
"""What must hold whenever no lock is held: the structural invariants of the allocator.

``check_invariants(m)`` walks every list once and every pfn once, so it is O(pages) and
meant for small machines after every operation (tests, the checker) and for big ones on
demand. It raises :class:`InvariantViolation` naming the first broken rule, the zone and
the pfn, because a counterexample that says "counters differ" without saying where is
no use to anyone.

The rules:

1. every pfn of a zone is in exactly one place: a free buddy block (head or inside it),
   a pcplist entry, an allocated block, a block a CPU holds in transit (freed and not
   yet on a list, or taken and not yet handed out), a reserved page, a hole, or an
   offline page (pfns inside a zone's span that belong to another zone, which memory
   hotplug can produce, are that zone's to check);
2. counters equal list contents: ``nr_free[order]``, ``NR_FREE_PAGES`` (isolated free
   pages excluded), ``NR_FREE_CMA_PAGES``, every pcp ``count``;
3. buddy blocks are well formed (aligned, one zone, PageBuddy and order on the head only)
   and fully merged, unless the merge rules forbid it (an isolated pageblock never merges
   with a non-isolated neighbour above pageblock size). Two free buddies of at least
   pageblock size that are both isolated need not have merged: isolation moves free
   blocks between lists without merging them (6.10+ even splits them), and
   unset_migratetype_isolate() re-frees such a block so it merges when it is un-isolated;
4. nothing free of an isolated pageblock is outside the ISOLATE free lists, and the ISOLATE
   lists hold nothing else; ``nr_isolate_pageblock`` counts the isolated pageblocks of
   online sections. Before 6.10 a free block larger than a pageblock is judged by its
   first pageblock only: move_freepages_block() moves a buddy by its head, so while a
   range is being (un)isolated one block at a time, the later pageblocks of such a buddy
   have not changed yet (the kernel's own free counts are off by those pages until the
   range is done; 6.10+ splits the buddy instead). Pages of isolated blocks on pcplists
   are *not* checked here: that is the race the checker looks for (see
   :func:`isolation_safety` and :func:`isolated_pages_on_pcplists`);
5. since 6.10 (``freelist_hygiene``), every other free block is on the list of its
   pageblock's type (the kernel warns in del_page_from_free_list otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from pagesim.model.mmzone import (
    MIGRATE_CMA,
    MIGRATE_ISOLATE,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    Machine,
    PG_buddy,
    PG_hole,
    PG_offline,
    PG_pcp,
    PG_reserved,
    PG_transit,
    Zone,
    pindex_to_order,
)
from pagesim.model.page_alloc import free_list_pfns, get_pageblock_migratetype


class InvariantViolation(AssertionError):
    """An invariant of the allocator state does not hold; the message says which."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


def check_invariants(m: Machine) -> None:
    """Raise :class:`InvariantViolation` unless every rule of the module docstring holds."""
    for zone in m.zones:
        if zone.spanned_pages:
            _check_zone(m, zone)
    for pcp in m.boot_pagesets:
        if pcp.count or any(pcp.lists):
            raise InvariantViolation(
                "pcp", f"{pcp.name} holds {pcp.count} pages; with high 0 every addition "
                "must have been flushed")


def _check_zone(m: Machine, zone: Zone) -> None:
    geom = m.geom
    start, end = zone.zone_start_pfn, zone.zone_end_pfn
    # 0 = not yet covered; filled with a one-letter owner as we go
    owner = bytearray(end - start)
    free_pages = 0
    free_cma = 0
    for order in range(geom.nr_orders):
        blocks = 0
        for mt in range(MIGRATE_TYPES):
            for pfn in free_list_pfns(m, zone, order, mt):
                blocks += 1
                _check_free_block(m, zone, pfn, order, mt, owner)
                if mt != MIGRATE_ISOLATE:
                    free_pages += 1 << order
                if mt == MIGRATE_CMA:
                    free_cma += 1 << order
        if blocks != zone.nr_free[order]:
            raise InvariantViolation(
                "counters", f"zone {zone.name}: free_area[{order}].nr_free is "
                f"{zone.nr_free[order]} but its lists hold {blocks} blocks")
    if free_pages != zone.nr_free_pages:
        raise InvariantViolation(
            "counters", f"zone {zone.name}: NR_FREE_PAGES is {zone.nr_free_pages} but the "
            f"non-isolated free lists hold {free_pages} pages")
    if free_cma != zone.nr_free_cma:
        raise InvariantViolation(
            "counters", f"zone {zone.name}: NR_FREE_CMA_PAGES is {zone.nr_free_cma} but the "
            f"CMA lists hold {free_cma} pages")
    _check_pcplists(m, zone, owner)
    _check_remaining(m, zone, owner)
    _check_merged(m, zone)
    _check_isolation_counts(m, zone)


def _claim(zone: Zone, owner: bytearray, pfn: int, n: int, what: int, desc: str) -> None:
    start = zone.zone_start_pfn
    if pfn < start or pfn + n > zone.zone_end_pfn:
        raise InvariantViolation(
            "one place", f"zone {zone.name}: {desc} at pfn {pfn:#x} (+{n}) lies outside the "
            f"zone [{start:#x}, {zone.zone_end_pfn:#x})")
    i = pfn - start
    seg = owner[i:i + n]
    if seg.count(0) != n:
        j = next(k for k, v in enumerate(seg) if v)
        raise InvariantViolation(
            "one place", f"zone {zone.name}: pfn {pfn + j:#x} is in two places: "
            f"{_OWNER_NAMES[seg[j]]} and {desc}")
    owner[i:i + n] = bytes([what]) * n


_OWN_FREE, _OWN_PCP, _OWN_ALLOC, _OWN_RESERVED, _OWN_HOLE, _OWN_OFFLINE = 1, 2, 3, 4, 5, 6
#: flag bytes that a tail page of a free block (or a plain allocated page) must not have
_NOT_TAIL = bytes(1 if v & (PG_buddy | PG_pcp | PG_reserved | PG_hole | PG_offline
                            | PG_transit) else 0 for v in range(256))
_NONZERO = re.compile(rb"[^\x00]")
#: per zone index: a translation table marking the bytes of any other zone's index
_OTHER_ZONE: dict[int, bytes] = {}
_OWN_TRANSIT, _OWN_OTHER_ZONE = 7, 8
_OWNER_NAMES = {1: "a free block", 2: "a pcplist", 3: "an allocated block",
                4: "reserved", 5: "a hole", 6: "offline", 7: "in transit",
                8: "another zone"}


def _check_free_block(m: Machine, zone: Zone, pfn: int, order: int, mt: int,
                      owner: bytearray) -> None:
    where = f"zone {zone.name} free_area[{order}] list {mt}"
    if pfn & ((1 << order) - 1):
        raise InvariantViolation("buddy", f"{where}: block {pfn:#x} not aligned to its order")
    if not m.flags[pfn] & PG_buddy or m.private[pfn] != order:
        raise InvariantViolation(
            "buddy", f"{where}: head {pfn:#x} lacks PageBuddy or has order {m.private[pfn]}")
    if m.refcount[pfn]:
        raise InvariantViolation("buddy", f"{where}: free page {pfn:#x} has a refcount")
    n = 1 << order
    if n > 1:
        # the tail pages in bulk (a real machine has millions): no list flags, no refcount
        marks = m.flags[pfn + 1:pfn + n].translate(_NOT_TAIL)
        counts = m.refcount[pfn + 1:pfn + n]
        if marks.count(0) != n - 1 or counts.count(0) != n - 1:
            p = pfn + 1 + next(k for k in range(n - 1) if marks[k] or counts[k])
            raise InvariantViolation("buddy", f"{where}: pfn {p:#x} inside free block "
                                     f"{pfn:#x} is not a plain tail page")
    if m.zone_id[pfn] != zone.idx or m.zone_id[pfn + n - 1] != zone.idx:
        raise InvariantViolation("buddy", f"{where}: block {pfn:#x} crosses the zone")
    pb_order = m.geom.pageblock_order
    hygiene = m.kernel.freelist_hygiene
    first = pfn >> pb_order
    for b in range(first, ((pfn + n - 1) >> pb_order) + 1):
        block_mt = get_pageblock_migratetype(m, b << pb_order)
        isolated = block_mt == MIGRATE_ISOLATE
        if isolated != (mt == MIGRATE_ISOLATE) and (hygiene or b == first):
            raise InvariantViolation(
                "isolation", f"{where}: free block {pfn:#x} is on the "
                f"{'ISOLATE' if mt == MIGRATE_ISOLATE else 'non-ISOLATE'} list but its "
                f"pageblock {b} is {'isolated' if isolated else 'not isolated'}")
        if hygiene and block_mt != mt:
            raise InvariantViolation(
                "hygiene", f"{where}: free block {pfn:#x} is on the list of type {mt} but "
                f"its pageblock {b} has type {block_mt}")
    _claim(zone, owner, pfn, n, _OWN_FREE, f"free block order {order}")


def _check_pcplists(m: Machine, zone: Zone, owner: bytearray) -> None:
    if zone.boot_pageset:
        return  # shared by every such zone; check_invariants checks they are empty
    for pcp in zone.per_cpu_pageset:
        total = 0
        for pindex, lst in enumerate(pcp.lists):
            order = pindex_to_order(m.kernel, m.geom, pindex)
            for pfn in lst:
                if m.zone_id[pfn] != zone.idx:
                    raise InvariantViolation(
                        "one place", f"{pcp.name} of zone {zone.name} holds pfn {pfn:#x} "
                        f"of another zone")
                if not m.flags[pfn] & PG_pcp or m.flags[pfn] & PG_buddy or m.refcount[pfn]:
                    raise InvariantViolation(
                        "pcp", f"{pcp.name}: pfn {pfn:#x} on a pcplist is not a free "
                        "non-buddy page")
                if m.private[pfn] != order:
                    raise InvariantViolation(
                        "pcp", f"{pcp.name}: pfn {pfn:#x} of order {m.private[pfn]} on the "
                        f"order-{order} list {pindex}")
                _claim(zone, owner, pfn, 1 << order, _OWN_PCP, f"{pcp.name} list {pindex}")
                total += 1 << order
        if total != pcp.count:
            raise InvariantViolation(
                "counters", f"{pcp.name}: count is {pcp.count} but its lists hold {total} "
                "pages")


def _allocated_run(m: Machine, zone: Zone, owner: bytearray, i: int, pfn: int) -> int:
    """How many unclaimed pages from ``i`` on are plain allocated order-0 pages of the
    zone, each claimed here at once (0 if page ``i`` is not one): on a busy machine most
    pages are, and checking them in bulk instead of page by page is what keeps a check
    of millions of pages to a fraction of a second. The window grows from 64 pages, so
    the bytes scanned stay proportional to the pages claimed."""
    if (m.refcount[pfn] <= 0 or m.private[pfn] or _NOT_TAIL[m.flags[pfn]]
            or m.zone_id[pfn] != zone.idx):
        return 0
    n = len(owner)
    other_zone = _OTHER_ZONE.get(zone.idx)
    if other_zone is None:
        other_zone = _OTHER_ZONE[zone.idx] = bytes(v != zone.idx for v in range(256))
    total = 0
    width = 64
    while i + total < n:
        lo = i + total
        k = min(n, lo + width) - lo
        p = pfn + total
        first = k
        for seg in (owner[lo:lo + k], m.flags[p:p + k].translate(_NOT_TAIL),
                    m.zone_id[p:p + k].translate(other_zone), m.private[p:p + k]):
            hit = _NONZERO.search(seg, 0, first)
            if hit is not None:
                first = hit.start()
        counts = m.refcount[p:p + first]
        if first and min(counts) <= 0:
            first = next(j for j, c in enumerate(counts) if c <= 0)
        total += first
        if first < k:
            break
        width *= 2
    owner[i:i + total] = bytes([_OWN_ALLOC]) * total
    return total


def _same_run(m: Machine, owner: bytearray, i: int, pfn: int, f: int, z: int) -> int:
    """How many pages from ``i`` on are unclaimed with flag byte ``f`` and zone byte
    ``z`` (at least 1); the window grows from 64 pages, as in :func:`_allocated_run`."""
    n = len(owner)
    total = 0
    width = 64
    fb, zb = bytes([f]), bytes([z])
    while i + total < n:
        lo = i + total
        k = min(n, lo + width) - lo
        p = pfn + total
        first = k
        for seg, value in ((owner[lo:lo + k], b"\0"), (m.flags[p:p + k], fb),
                           (m.zone_id[p:p + k], zb)):
            first = min(first, len(seg) - len(seg.lstrip(value)))
        total += first
        if first < k:
            break
        width *= 2
    return total


def _check_remaining(m: Machine, zone: Zone, owner: bytearray) -> None:
    start = zone.zone_start_pfn
    i = 0
    n = len(owner)
    flags = m.flags
    while i < n:
        if owner[i]:
            i = owner.find(0, i)  # skip what the lists claimed, in bulk
            if i < 0:
                break
            continue
        pfn = start + i
        run = _allocated_run(m, zone, owner, i, pfn)
        if run:
            i += run
            continue
        f = flags[pfn]
        z = m.zone_id[pfn]
        if z != zone.idx or f & (PG_hole | PG_offline | PG_reserved):
            # a place of its own, and usually a long run of them (a hole, an offline
            # memory block): every page of the run with the same flags and zone byte
            what = (_OWN_OTHER_ZONE if z != zone.idx else _OWN_HOLE if f & PG_hole
                    else _OWN_OFFLINE if f & PG_offline else _OWN_RESERVED)
            k = _same_run(m, owner, i, pfn, f, z)
            owner[i:i + k] = bytes([what]) * k
            i += k
            continue
        if m.refcount[pfn] > 0:
            order = m.private[pfn]
            _claim(zone, owner, pfn, 1 << order, _OWN_ALLOC, f"allocated block order {order}")
            i += 1 << order
            continue
        elif f & PG_transit:
            order = m.private[pfn]
            _claim(zone, owner, pfn, 1 << order, _OWN_TRANSIT,
                   f"a block of order {order} a CPU holds in transit")
            i += 1 << order
            continue
        elif f & (PG_buddy | PG_pcp):
            raise InvariantViolation(
                "one place", f"zone {zone.name}: pfn {pfn:#x} is marked "
                f"{'PageBuddy' if f & PG_buddy else 'on a pcplist'} but is on no list")
        else:
            raise InvariantViolation(
                "one place", f"zone {zone.name}: pfn {pfn:#x} is lost: not free, not on a "
                "pcplist, not allocated, not reserved")


def _check_merged(m: Machine, zone: Zone) -> None:
    geom = m.geom
    k = m.kernel
    for order in range(geom.max_order):
        for mt in range(MIGRATE_TYPES):
            for pfn in free_list_pfns(m, zone, order, mt):
                buddy = pfn ^ (1 << order)
                if not (buddy < m.end_pfn and m.flags[buddy] & PG_buddy
                        and m.private[buddy] == order and m.zone_id[buddy] == zone.idx):
                    continue
                if pfn > buddy:
                    continue  # report each pair once
                if order >= geom.pageblock_order:
                    a = get_pageblock_migratetype(m, pfn)
                    b = get_pageblock_migratetype(m, buddy)
                    if a == b == MIGRATE_ISOLATE:
                        continue
                    if k.no_pcp_migratetype_cache:
                        if a != b and not (a < MIGRATE_PCPTYPES and b < MIGRATE_PCPTYPES):
                            continue
                    elif a != b and MIGRATE_ISOLATE in (a, b):
                        continue
                raise InvariantViolation(
                    "merged", f"zone {zone.name}: free blocks {pfn:#x} and {buddy:#x} of "
                    f"order {order} are buddies and should have merged")


def _check_isolation_counts(m: Machine, zone: Zone) -> None:
    pb_order = m.geom.pageblock_order
    first = zone.zone_start_pfn >> pb_order
    last = (zone.zone_end_pfn - 1) >> pb_order
    isolated = sum(1 for b in range(first, last + 1)
                   if get_pageblock_migratetype(m, max(b << pb_order, zone.zone_start_pfn))
                   == MIGRATE_ISOLATE and _block_in_zone(m, zone, b))
    if isolated != zone.nr_isolate_pageblock:
        raise InvariantViolation(
            "isolation", f"zone {zone.name}: nr_isolate_pageblock is "
            f"{zone.nr_isolate_pageblock} but {isolated} pageblocks are isolated")


def _block_in_zone(m: Machine, zone: Zone, block: int) -> bool:
    pfn = max(block << m.geom.pageblock_order, zone.zone_start_pfn)
    return m.zone_id[pfn] == zone.idx and not m.flags[pfn] & PG_offline


def isolated_pages_on_pcplists(m: Machine) -> list[tuple[str, int]]:
    """(pcp name, pfn) of every pcplist page whose pageblock is isolated: the state the
    2020 fix makes impossible outside a pcp critical section (spec §7, I2)."""
    found = []
    for zone in m.zones:
        if zone.boot_pageset:
            continue
        for pcp in zone.per_cpu_pageset:
            for lst in pcp.lists:
                for pfn in lst:
                    if get_pageblock_migratetype(m, pfn) == MIGRATE_ISOLATE:
                        found.append((pcp.name, pfn))
    return found


def isolation_safety(m: Machine, busy_cpus: Collection[int] = (),
                     strict: bool = False) -> str | None:
    """The isolation safety property of spec §7, as a check: None if it holds, else what
    breaks it (the runtime's ``checks`` take exactly that).

    For every zone whose pcplists are disabled (from the return of zone_pcp_disable()
    to the start of zone_pcp_enable(), ``zone.pcp_disabled``) and every CPU not inside a
    pcp critical section, no pcplist of the zone holds a page of an isolated pageblock.
    With ``strict``, the lists must be empty altogether (I2): that is what the argument
    beside zone_pcp_disable() proves, and it is stronger, because pages of blocks that
    are not isolated yet would be just as dangerous one isolation later.

    ``busy_cpus`` are the CPUs whose pcp section is open now, which only the runtime
    knows for 5.x (interrupts off: the CPU's section token); a CPU whose ``pcp->lock``
    is held (6.x) counts as busy by itself. Inside a section the lists may hold pages
    for a moment: a commit adds its page before it reads ``high`` and flushes.
    """
    for zone in m.zones:
        if not zone.pcp_disabled or zone.boot_pageset:
            continue
        for cpu, pcp in enumerate(zone.per_cpu_pageset):
            if cpu in busy_cpus or pcp.lock.owner is not None:
                continue
            for lst in pcp.lists:
                for pfn in lst:
                    if strict:
                        return (f"{pcp.name} holds pfn {pfn:#x} while the pcplists of "
                                f"zone {zone.name} are disabled")
                    if get_pageblock_migratetype(m, pfn) == MIGRATE_ISOLATE:
                        return (f"{pcp.name} holds pfn {pfn:#x} of an isolated pageblock "
                                f"while the pcplists of zone {zone.name} are disabled")
    return None
