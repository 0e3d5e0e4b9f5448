# SPDX-License-Identifier: GPL-2.0-only
"""Pageblock isolation (mm/page_isolation.c, and the free-list helpers of mm/page_alloc.c
that only isolation users call).

An isolated pageblock is one the allocator must not hand out pages from: its free pages
sit on the MIGRATE_ISOLATE free lists, which no allocation ever searches, and pages freed
into it later are sent there too (5.x: by the type cached at free time or re-read under
``zone->lock`` when the zone has isolated blocks; 6.10+: always re-read). What isolation
does *not* control are pages already on, or on their way to, a pcplist: that is the
subject of spec §6 and of zone_pcp_disable() in :mod:`pagesim.model.pageset`.

Generations ([K510] 5.10.7, [K511] 5.11, [K600] 6.0.8, [K619] 6.19):

* 5.8-5.10: set_migratetype_isolate() drains the pcplists of the zone (non-forced) after
  isolating each block (``isolation_users_drain`` off); 5.11+ leaves that to its users.
* 5.x-6.9: isolation writes MIGRATE_ISOLATE into the block's 3 type bits, moves the
  block's free buddies (by their head, without splitting) to the ISOLATE lists and takes
  them out of NR_FREE_PAGES; undo writes back the type the caller names.
* 6.10+ (``freelist_hygiene``): move_freepages_block_isolate() first splits a free buddy
  larger than a pageblock that covers the block, so every pageblock's free pages are on
  its own lists.
* 6.17+ (``isolate_bit``): isolation is a separate bit and the 3-bit type survives it; the
  undo restores that type and ignores the caller's.

Every ``zone->lock`` section here is a ``spin_lock_irqsave`` in the kernel, so it also
takes this CPU's section token: no pcplist user of the same CPU can start inside it and
then spin on the lock we hold.

Not modelled: hugetlb and THP pages (the model's allocations are plain blocks),
HWPoison and driver PageOffline pages, unaccepted memory, and the 5.19+
isolate_single_pageblock() treatment of range ends that cut a larger free or in-use page.
The model's callers isolate ranges aligned to max-order blocks (offline: whole sections;
alloc_contig_range: rounded out as 5.x does), where no page crosses the range's ends, so
that treatment would find nothing to do.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pagesim.model.mmzone import (
    ALLOC_CMA,
    FPI_NONE,
    FPI_TO_TAIL,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    NO_ZONE,
    Machine,
    PB_migratetype_mask,
    PG_buddy,
    PG_hole,
    PG_lru,
    PG_offline,
    PG_reserved,
    PG_transit,
    Zone,
    page_zone,
)
from pagesim.model.page_alloc import (
    __free_one_page,
    __mod_zone_freepage_state,
    _mergeable,
    _trace,
    del_page_from_free_list,
    drain_all_pages,
    get_pageblock_migratetype,
    get_pfnblock_migratetype,
    move_freepages_block,
    page_is_buddy,
    set_pageblock_migratetype,
    split_large_buddy,
    zone_watermark_ok,
)
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    ModelError,
    local_irq_restore,
    local_irq_save,
    spin_lock,
    spin_unlock,
    touch_range,
)

Gen = Generator[Any, Any, Any]

# errno values (include/uapi/asm-generic/errno-base.h); functions return them negated
ENOENT = 2
EINTR = 4
EAGAIN = 11
ENOMEM = 12
EBUSY = 16
EINVAL = 22

# isolation flags (5.x include/linux/page-isolation.h; 6.x enum pb_isolate_mode)
MEMORY_OFFLINE = 0x1
REPORT_FAILURE = 0x2


# =======================================================================================
# Which pages exist


def pfn_to_online_page(m: Machine, pfn: int) -> bool:
    """Whether ``pfn`` has a struct page in an online section that belongs to a zone
    ([K510] include/linux/memory_hotplug.h:24 pfn_to_online_page).

    Holes inside an online section have struct pages (reserved ones) in the kernel, so
    they count; pfns of offline sections (PG_offline) and pfns in no zone do not."""
    return (0 <= pfn < m.end_pfn and not m.flags[pfn] & PG_offline
            and m.zone_id[pfn] != NO_ZONE)


def __first_valid_page(m: Machine, pfn: int, nr_pages: int) -> int:
    """The first online pfn of ``[pfn, pfn + nr_pages)``, or -1 ([K510] page_isolation.c
    __first_valid_page)."""
    for p in range(pfn, min(pfn + nr_pages, m.end_pfn)):
        if pfn_to_online_page(m, p):
            return p
    return -1


# =======================================================================================
# What may be isolated


def has_unmovable_pages(m: Machine, zone: Zone, pfn: int, migratetype: int,
                        flags: int) -> int:
    """The first page from ``pfn`` to the end of its pageblock that would keep the block
    from ever becoming free, or -1 ([K511] mm/page_alloc.c :8349-8456; [K619]
    mm/page_isolation.c :33-147).

    Reserved pages (and holes, which the kernel marks reserved) are unmovable. In
    ZONE_MOVABLE everything else is assumed movable. A page with refcount 0 is harmless:
    a free buddy (skipped whole), a page on a pcplist, a page being freed, a tail of an
    allocated block. An allocated page is movable if it is on the LRU (PG_lru here).
    A CMA block is acceptable only to a CMA allocation. Called with ``zone->lock`` held.
    """
    if get_pageblock_migratetype(m, pfn) == MIGRATE_CMA:
        return -1 if migratetype == MIGRATE_CMA else pfn
    pb = m.geom.pageblock_nr_pages
    end = (pfn | (pb - 1)) + 1
    movable_zone = zone.name == "Movable"
    flags_ = m.flags
    refcount = m.refcount
    p = pfn
    while p < end:
        f = flags_[p]
        if f & (PG_reserved | PG_hole):
            return p
        if movable_zone:
            p += 1
            continue
        if not refcount[p]:
            p += (1 << m.private[p]) if f & PG_buddy else 1
            continue
        if f & PG_lru:
            p += 1
            continue
        return p
    return -1


# =======================================================================================
# Free-list helpers of mm/page_alloc.c used by isolation users


def _move_free_pages(m: Machine, zone: Zone, pfn: int, old_mt: int, new_mt: int) -> int:
    """Move the free buddies of ``pfn``'s pageblock to the ``new_mt`` lists and fix the
    free counters (isolated pages are not counted). Returns the pages moved."""
    moved, _ = move_freepages_block(m, zone, pfn, new_mt)
    if old_mt != MIGRATE_ISOLATE:
        __mod_zone_freepage_state(zone, -moved, old_mt)
    if new_mt != MIGRATE_ISOLATE:
        __mod_zone_freepage_state(zone, moved, new_mt)
    return moved


@kernel
def __isolate_free_page(m: Machine, zone: Zone, pfn: int, order: int) -> Gen:
    """Take a free buddy off its list for the caller, with ``zone->lock`` held; returns
    its size, or 0 if a non-isolated block is below its watermark ([K510] :3277-3318;
    [K619] :3133-3172).

    Pages of isolated blocks are taken without a watermark check and without touching
    the free counters (they were never counted). A page of at least half a pageblock
    retypes the mergeable blocks it covers to MOVABLE (6.10+ moving their other free
    pages along). The page is held in transit until the caller places it.
    """
    mt = get_pageblock_migratetype(m, pfn)
    if mt != MIGRATE_ISOLATE:
        watermark = zone._watermark[0] + (1 << order)
        if not (yield from zone_watermark_ok(m, zone, 0, watermark, 0, ALLOC_CMA)):
            return 0
        __mod_zone_freepage_state(zone, -(1 << order), mt)
    del_page_from_free_list(m, zone, pfn, order)
    m.flags[pfn] |= PG_transit
    m.private[pfn] = order
    pb_order = m.geom.pageblock_order
    if order >= pb_order - 1:
        k = m.kernel
        end = pfn + (1 << order) - 1
        for block in range(pfn, end, m.geom.pageblock_nr_pages):
            bmt = get_pageblock_migratetype(m, block)
            if k.freelist_hygiene:
                if _mergeable(bmt) and bmt != MIGRATE_MOVABLE:
                    _move_free_pages(m, zone, block, bmt, MIGRATE_MOVABLE)
                    yield from set_pageblock_migratetype(m, block, MIGRATE_MOVABLE)
            elif bmt not in (MIGRATE_ISOLATE, MIGRATE_CMA, MIGRATE_HIGHATOMIC):
                yield from set_pageblock_migratetype(m, block, MIGRATE_MOVABLE)
    return 1 << order


@kernel
def __putback_isolated_page(m: Machine, zone: Zone, pfn: int, order: int, mt: int) -> Gen:
    """Return a page taken with __isolate_free_page to the tail of the free lists, where
    it merges with its buddies again ([K510] :3334-3344)."""
    yield from __free_one_page(m, pfn, zone, order, mt, FPI_TO_TAIL)


def find_large_buddy(m: Machine, start_pfn: int) -> int:
    """The head of a free buddy that covers ``start_pfn`` from before it, else
    ``start_pfn`` ([K619] mm/page_alloc.c :2068-2095)."""
    max_order = m.geom.max_order
    order = ((start_pfn & -start_pfn).bit_length() - 1) if start_pfn else max_order
    pfn = start_pfn
    while not m.flags[pfn] & PG_buddy:
        order += 1
        if order > max_order:
            return start_pfn
        pfn &= ~0 << order
    if pfn + (1 << m.private[pfn]) > start_pfn:
        return pfn
    return start_pfn


def _saved_migratetype(m: Machine, pfn: int) -> int:
    """6.17+: the 3-bit type an isolated block keeps under its isolate bit."""
    return m.pageblock_flags[pfn >> m.geom.pageblock_order] & PB_migratetype_mask


@kernel
def move_freepages_block_isolate(m: Machine, zone: Zone, pfn: int, new_mt: int) -> Gen:
    """6.10+: move ``pfn``'s pageblock between its type's lists and the ISOLATE lists and
    set its type, with ``zone->lock`` held; False if the zone does not span the whole
    block ([K619] __move_freepages_block_isolate :2124-2174, which 6.17+ calls as
    pageblock_(un)isolate_and_move_free_pages).

    If a free buddy larger than a pageblock covers the block, it is taken off its list
    and freed again in pageblock-sized pieces after the block's type changed, so each
    piece lands on its own block's list (and merges with its neighbours where the
    merge rules allow). Otherwise the block's free pages move as a whole.
    """
    geom = m.geom
    pb = geom.pageblock_nr_pages
    start = pfn & ~(pb - 1)
    if start < zone.zone_start_pfn or start + pb > zone.zone_end_pfn:
        return False
    if geom.pageblock_order != geom.max_order:
        buddy = find_large_buddy(m, start)
        if m.flags[buddy] & PG_buddy and m.private[buddy] > geom.pageblock_order:
            order = m.private[buddy]
            old_mt = get_pageblock_migratetype(m, buddy)
            del_page_from_free_list(m, zone, buddy, order)
            if old_mt != MIGRATE_ISOLATE:
                __mod_zone_freepage_state(zone, -(1 << order), old_mt)
            m.flags[buddy] |= PG_transit
            m.private[buddy] = order
            yield from set_pageblock_migratetype(m, start, new_mt)
            yield from split_large_buddy(m, zone, buddy, order, FPI_NONE)
            return True
    old_mt = get_pageblock_migratetype(m, start)
    _move_free_pages(m, zone, start, old_mt, new_mt)
    yield from set_pageblock_migratetype(m, start, new_mt)
    return True


# =======================================================================================
# Isolating and un-isolating one pageblock


@kernel
def set_migratetype_isolate(m: Machine, pfn: int, migratetype: int, isol_flags: int) -> Gen:
    """Isolate ``pfn``'s pageblock; 0, or -EBUSY if it is already isolated (an
    overlapping isolator) or holds an unmovable page ([K510] page_isolation.c :18-65;
    [K511] :18-64; [K619] :154-210).

    Under ``zone->lock`` with interrupts off: 5.x-6.9 write MIGRATE_ISOLATE into the
    type bits, count the block, move its free buddies to the ISOLATE lists and take them
    out of NR_FREE_PAGES; 6.10+ do the same through move_freepages_block_isolate (which
    splits a larger covering buddy), then count the block. The block's old type is not
    returned: the undo takes the type to restore from its caller (5.x-6.16) or from the
    bits (6.17+). 5.8-5.10 then drain the zone's pcplists, non-forced, after unlocking.
    ``migratetype`` matters here only for CMA blocks (see has_unmovable_pages).
    """
    k = m.kernel
    zone = page_zone(m, pfn)
    yield local_irq_save()
    yield spin_lock(zone.lock)
    if get_pageblock_migratetype(m, pfn) == MIGRATE_ISOLATE:
        yield spin_unlock(zone.lock)
        yield local_irq_restore()
        return -EBUSY
    # has_unmovable_pages reads the block's refcounts without a lock (zone->lock does
    # not protect them): one step with their footprint
    first = pfn & ~(m.geom.pageblock_nr_pages - 1)
    yield touch_range(m.refcount, first, first + m.geom.pageblock_nr_pages, "refcount")
    unmovable = has_unmovable_pages(m, zone, pfn, migratetype, isol_flags)
    if unmovable >= 0:
        yield spin_unlock(zone.lock)
        yield local_irq_restore()
        return -EBUSY
    if k.freelist_hygiene:
        if not (yield from move_freepages_block_isolate(m, zone, pfn, MIGRATE_ISOLATE)):
            yield spin_unlock(zone.lock)
            yield local_irq_restore()
            return -EBUSY
        zone.nr_isolate_pageblock += 1
    else:
        mt = get_pageblock_migratetype(m, pfn)
        yield from set_pageblock_migratetype(m, pfn, MIGRATE_ISOLATE)
        zone.nr_isolate_pageblock += 1
        _move_free_pages(m, zone, pfn, mt, MIGRATE_ISOLATE)
    yield spin_unlock(zone.lock)
    yield local_irq_restore()
    if not k.isolation_users_drain:
        yield from drain_all_pages(m, zone)
    return 0


@kernel
def unset_migratetype_isolate(m: Machine, pfn: int, migratetype: int) -> Gen:
    """Make ``pfn``'s pageblock allocatable again ([K510] :68-125; [K511] :67-124;
    [K619] :212-273). Nothing happens if it is not isolated.

    A free buddy of at least pageblock size at the block's start could not merge with its
    non-isolated buddy while isolated; if that buddy is free and not isolated, the page
    is pulled off the ISOLATE list, the block retyped, and the page freed again to the
    list tail (__putback_isolated_page), where it now merges. Otherwise the block's free
    pages move to the lists of the restored type and count as free again. The restored
    type is ``migratetype`` (5.x-6.16) or the one kept under the isolate bit (6.17+).

    The pull is limited to orders below the largest, as 5.11+ do (2484be0f88dc); 5.10
    also pulled a max-order page, with the same result as moving it since it cannot
    merge further. The buddy must be a free buddy of the same order (6.x
    find_buddy_page_pfn); 5.11-5.17 pulled whenever the buddy's block was not isolated,
    which without a free buddy to merge with again ends as the move would.
    """
    k = m.kernel
    geom = m.geom
    zone = page_zone(m, pfn)
    yield local_irq_save()
    yield spin_lock(zone.lock)
    if get_pageblock_migratetype(m, pfn) == MIGRATE_ISOLATE:
        target = _saved_migratetype(m, pfn) if k.isolate_bit else migratetype
        isolated_page = False
        order = 0
        if m.flags[pfn] & PG_buddy:
            order = m.private[pfn]
            if geom.pageblock_order <= order < geom.max_order:
                buddy = pfn ^ (1 << order)
                if (page_is_buddy(m, pfn, buddy, order)
                        and get_pageblock_migratetype(m, buddy) != MIGRATE_ISOLATE):
                    isolated_page = bool((yield from __isolate_free_page(m, zone, pfn,
                                                                         order)))
        if not isolated_page:
            if k.freelist_hygiene:
                yield from move_freepages_block_isolate(m, zone, pfn, target)
            else:
                _move_free_pages(m, zone, pfn, MIGRATE_ISOLATE, target)
                yield from set_pageblock_migratetype(m, pfn, target)
        else:
            yield from set_pageblock_migratetype(m, pfn, target)
            yield from __putback_isolated_page(m, zone, pfn, order, target)
        zone.nr_isolate_pageblock -= 1
    yield spin_unlock(zone.lock)
    yield local_irq_restore()


# =======================================================================================
# Ranges


def _check_aligned(m: Machine, start_pfn: int, end_pfn: int, who: str) -> None:
    pb = m.geom.pageblock_nr_pages
    if start_pfn % pb or end_pfn % pb:
        raise ModelError(f"{who}: [{start_pfn:#x}, {end_pfn:#x}) is not aligned to "
                         f"pageblocks of {pb} pages (a BUG_ON in the kernel)")


@kernel
def start_isolate_page_range(m: Machine, start_pfn: int, end_pfn: int, migratetype: int,
                             flags: int) -> Gen:
    """Isolate every pageblock of a pageblock-aligned range that has online memory; on
    the first failure un-isolate those done so far and return -EBUSY ([K510] :183-219).

    Nothing here synchronises with pcplists: pages may be parked on one, or about to be
    committed to one, when their block is isolated (spec §6). 5.x users rely on the
    drains in set_migratetype_isolate (5.8-5.10) or after this returns (5.11+ CMA), or
    disable the pcplists first (5.11+ offline).
    """
    _check_aligned(m, start_pfn, end_pfn, "start_isolate_page_range")
    pb = m.geom.pageblock_nr_pages
    for pfn in range(start_pfn, end_pfn, pb):
        page = __first_valid_page(m, pfn, pb)
        if page < 0:
            continue
        if (yield from set_migratetype_isolate(m, page, migratetype, flags)):
            for undo in range(start_pfn, pfn, pb):
                if pfn_to_online_page(m, undo):
                    yield from unset_migratetype_isolate(m, undo, migratetype)
            return -EBUSY
    return 0


@kernel
def undo_isolate_page_range(m: Machine, start_pfn: int, end_pfn: int,
                            migratetype: int) -> Gen:
    """Un-isolate every isolated pageblock of the range ([K510] :221-240). The check
    "isolated?" is a lockless read of the block's bits, repeated under the lock."""
    _check_aligned(m, start_pfn, end_pfn, "undo_isolate_page_range")
    pb = m.geom.pageblock_nr_pages
    for pfn in range(start_pfn, end_pfn, pb):
        page = __first_valid_page(m, pfn, pb)
        if page < 0:
            continue
        if (yield from get_pfnblock_migratetype(m, page)) != MIGRATE_ISOLATE:
            continue
        yield from unset_migratetype_isolate(m, page, migratetype)


def __test_page_isolated_in_pageblock(m: Machine, pfn: int, end_pfn: int,
                                      flags: int) -> int:
    """Walk free buddies from ``pfn``; return where the walk stopped ([K510] :246-281).
    Anything that is not PageBuddy stops it, in particular a free page parked on a
    pcplist (HWPoison and driver-offlined pages, which MEMORY_OFFLINE would skip, do not
    exist in the model)."""
    while pfn < end_pfn:
        if m.flags[pfn] & PG_buddy:
            pfn += 1 << m.private[pfn]
        else:
            break
    return pfn


@kernel
def test_pages_isolated(m: Machine, start_pfn: int, end_pfn: int, isol_flags: int) -> Gen:
    """0 if every pageblock of the range with online memory is isolated and every page
    of it is a free buddy, else -EBUSY ([K510] :284-311; [K619] :597-650).

    The block types are read locklessly; the walk runs under ``zone->lock``. A page on a
    pcplist is free but not PageBuddy, so it makes the test fail: the symptom offline
    loops on. Emits the test_pages_isolated tracepoint with the kernel's fields (it
    prints "success" when fin_pfn reached end_pfn); as in 6.x also when a block of the
    range is not isolated, where 5.x returned without tracing.
    """
    pb = m.geom.pageblock_nr_pages
    pfn = start_pfn
    busy = False
    while pfn < end_pfn:
        page = __first_valid_page(m, pfn, pb)
        if page >= 0 and (yield from get_pfnblock_migratetype(m, page)) != MIGRATE_ISOLATE:
            busy = True
            break
        pfn += pb
    first = __first_valid_page(m, start_pfn, end_pfn - start_pfn)
    if busy or first < 0:
        if m.tracer is not None:
            _trace(m, "test_pages_isolated", start_pfn=start_pfn, end_pfn=end_pfn,
                   fin_pfn=pfn)
        return -EBUSY
    zone = page_zone(m, first)
    yield local_irq_save()
    yield spin_lock(zone.lock)
    pfn = __test_page_isolated_in_pageblock(m, start_pfn, end_pfn, isol_flags)
    yield spin_unlock(zone.lock)
    yield local_irq_restore()
    if m.tracer is not None:
        _trace(m, "test_pages_isolated", start_pfn=start_pfn, end_pfn=end_pfn, fin_pfn=pfn)
    return -EBUSY if pfn < end_pfn else 0
