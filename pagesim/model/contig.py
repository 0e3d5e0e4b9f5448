# SPDX-License-Identifier: GPL-2.0-only
"""Contiguous allocation: alloc_contig_range() and free_contig_range() (mm/page_alloc.c,
CONFIG_CONTIG_ALLOC; isolate_freepages_range() of mm/compaction.c).

These live in mm/page_alloc.c, but they sit on top of isolation and migration, which
themselves call into the allocator; a module of their own keeps
:mod:`pagesim.model.page_alloc` free of imports from the layers above it.

alloc_contig_range() is the isolation user that never disables pcplists, in 5.11 or in
6.19 (spec §3.8, §6.6): it isolates, drains once without forcing (5.8-5.10: the drains
inside set_migratetype_isolate), migrates the range, and then lets test_pages_isolated()
decide. A page left on, or freed after the drain onto, a pcplist makes it fail with
-EBUSY instead of corrupting anything.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pagesim.model.migrate import do_migrate_range, scan_movable_pages
from pagesim.model.mmzone import (
    FPI_NONE,
    MIGRATE_MOVABLE,
    Machine,
    PG_buddy,
    PG_transit,
    Zone,
    page_zone,
)
from pagesim.model.page_alloc import (
    __free_one_page,
    __free_pages,
    drain_all_pages,
    get_pageblock_migratetype,
)
from pagesim.model.page_isolation import (
    EBUSY,
    ENOMEM,
    __isolate_free_page,
    start_isolate_page_range,
    test_pages_isolated,
    undo_isolate_page_range,
)
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    ModelError,
    local_irq_restore,
    local_irq_save,
    spin_lock,
    spin_unlock,
)

Gen = Generator[Any, Any, Any]

#: __alloc_contig_migrate_range() gives up after this many rounds that left pages behind
MIGRATE_TRIES = 5


def pfn_max_align_down(m: Machine, pfn: int) -> int:
    """Round down to the larger of a pageblock and a max-order block ([K511] :8458)."""
    size = max(m.geom.max_order_nr_pages, m.geom.pageblock_nr_pages)
    return pfn & ~(size - 1)


def pfn_max_align_up(m: Machine, pfn: int) -> int:
    """Round up to the larger of a max-order block and a pageblock ([K510]
    mm/page_alloc.c:8399-8403), the unit alloc_contig_range isolates in."""
    size = max(m.geom.max_order_nr_pages, m.geom.pageblock_nr_pages)
    return (pfn + size - 1) & ~(size - 1)


@kernel
def __alloc_contig_migrate_range(m: Machine, start: int, end: int) -> Gen:
    """Migrate every movable page out of ``[start, end)``; 0, or -EBUSY (-ENOMEM when no
    target could be allocated) after MIGRATE_TRIES rounds that left pages behind
    ([K511] :8472-8516, with the scan of memory offline in place of compaction's
    isolate_migratepages_range)."""
    pfn = start
    tries = 0
    while True:
        pfn = yield from scan_movable_pages(m, pfn, end)
        if pfn < 0:
            return 0
        rc = yield from do_migrate_range(m, pfn, end)
        if rc:
            tries += 1
            if tries == MIGRATE_TRIES:
                return -ENOMEM if rc == -ENOMEM else -EBUSY


@kernel
def isolate_freepages_range(m: Machine, zone: Zone, start_pfn: int, end_pfn: int) -> Gen:
    """Take every free buddy of ``[start_pfn, end_pfn)`` out of the buddy and hand its
    pages out one by one (refcount 1, order 0); returns the pfn after the last block
    taken, or 0 if some page of the range was not free (everything taken goes back)
    (mm/compaction.c isolate_freepages_range with strict isolation, then split_map_pages).

    The kernel takes ``zone->lock`` once per pageblock; the model takes it once for the
    range. The blocks are isolated, so nothing else takes their free pages meanwhile.
    """
    taken: list[tuple[int, int]] = []
    yield local_irq_save()
    yield spin_lock(zone.lock)
    pfn = start_pfn
    ok = True
    while pfn < end_pfn:
        if not m.flags[pfn] & PG_buddy:
            ok = False
            break
        order = m.private[pfn]
        if not (yield from __isolate_free_page(m, zone, pfn, order)):
            ok = False
            break
        taken.append((pfn, order))
        pfn += 1 << order
    if not ok:
        for head, order in taken:
            yield from __free_one_page(m, head, zone, order,
                                       get_pageblock_migratetype(m, head), FPI_NONE)
        pfn = 0
    else:
        for head, order in taken:
            m.flags[head] &= ~PG_transit
            for p in range(head, head + (1 << order)):
                m.refcount[p] = 1
                m.private[p] = 0
    yield spin_unlock(zone.lock)
    yield local_irq_restore()
    return pfn


@kernel
def free_contig_range(m: Machine, pfn: int, nr_pages: int) -> Gen:
    """Free pages handed out by alloc_contig_range, one order-0 page at a time ([K511]
    :8778-8790)."""
    for p in range(pfn, pfn + nr_pages):
        yield from __free_pages(m, p, 0)


@kernel
def alloc_contig_range(m: Machine, start: int, end: int,
                       migratetype: int = MIGRATE_MOVABLE) -> Gen:
    """Allocate every page of ``[start, end)`` (one zone) as order-0 pages; 0, -EBUSY or
    another error ([K510] :8475-8605; [K511] :8541-8673; [K619] :6974-7112).

    1. Isolate the range rounded out to max-order blocks (5.x pfn_max_align_*; 6.x
       isolates by pageblock and splits the pages that cross the ends, which for such
       rounded ranges finds nothing, so the model rounds in every generation);
    2. 5.11+ (``isolation_users_drain``): one non-forced drain_all_pages(zone);
    3. migrate the range's pages away; an error other than -EBUSY ends here;
    4. find the free buddy that holds ``start`` (outer_start) and test_pages_isolated
       from there: a page still on a pcplist makes this -EBUSY;
    5. take the free pages, and free again those outside ``[start, end)``;
    6. always un-isolate the rounded range.
    """
    k = m.kernel
    if not 0 <= start < end <= m.end_pfn:
        raise ModelError(f"alloc_contig_range: bad range [{start:#x}, {end:#x})")
    zone = page_zone(m, start)
    iso_start = pfn_max_align_down(m, start)
    iso_end = pfn_max_align_up(m, end)
    ret = yield from start_isolate_page_range(m, iso_start, iso_end, migratetype, 0)
    if ret:
        return ret
    if k.isolation_users_drain:
        yield from drain_all_pages(m, zone)
    ret = yield from __alloc_contig_migrate_range(m, start, end)
    if not ret or ret == -EBUSY:
        ret = 0
        outer_start = _outer_start(m, start)
        if (yield from test_pages_isolated(m, outer_start, end, 0)):
            ret = -EBUSY
        else:
            outer_end = yield from isolate_freepages_range(m, zone, outer_start, end)
            if not outer_end:
                ret = -EBUSY
            else:
                if start != outer_start:
                    yield from free_contig_range(m, outer_start, start - outer_start)
                if end != outer_end:
                    yield from free_contig_range(m, end, outer_end - end)
    yield from undo_isolate_page_range(m, iso_start, iso_end, migratetype)
    return ret


def _outer_start(m: Machine, start: int) -> int:
    """The head of the free buddy containing ``start``, or ``start`` ([K511] :8626-8646;
    read without the lock, as the kernel does: the blocks are isolated)."""
    order = 0
    outer = start
    while not m.flags[outer] & PG_buddy:
        order += 1
        if order >= m.geom.nr_orders:
            return start
        outer &= ~0 << order
    if outer != start and outer + (1 << m.private[outer]) <= start:
        return start
    return outer
