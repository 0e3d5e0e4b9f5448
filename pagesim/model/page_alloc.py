# SPDX-License-Identifier: GPL-2.0-only
"""The buddy allocator and its per-CPU page lists (mm/page_alloc.c).

Every function keeps its kernel name and cites the tree it follows ([K510] 5.10.7,
[K511] 5.11, [K600] 6.0.8, [K606] 6.6, [K619] 6.19; see the spec's source table). Where
generations differ, the branch reads a feature of ``m.kernel`` named after the change in
:mod:`pagesim.model.kernels`, so the history is in one table, not in version checks.

Atomicity is explicit. A ``@kernel`` function is a generator; each ``yield`` is a point
where another CPU may run:

* ``local_irq_save()`` / ``local_irq_restore()``: 5.x pcplist sections. They exclude
  other work on *this* CPU (the drain work item, the task) but not other CPUs, which
  interleave at every later yield of the section;
* ``spin_lock(zone.lock)`` ... ``spin_unlock``: the free areas. Code between them touches
  only state that every other user also touches under ``zone->lock``, so it needs no
  further points;
* ``spin_trylock(pcp.lock)``: 6.x pcplist sections;
* ``READ_ONCE`` / ``WRITE_ONCE``: fields shared without a common lock: ``pcp->count``
  (read remotely by ``drain_all_pages``), ``pcp->high``/``batch`` (rewritten by
  ``pageset_update`` on another CPU), the pageblock bits (read without ``zone->lock`` by
  the free path).

Code that runs with ``zone->lock`` held reads pageblock bits with plain loads: every
writer of those bits holds the same lock. The vmstat counters (``NR_FREE_PAGES``) are
updated under ``zone->lock`` here, where the kernel folds per-CPU deltas later; the totals
agree whenever the lock is free, which is when the invariants are checked.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pagesim.model import pcp_limits
from pagesim.model.mmzone import (
    ALLOC_CMA,
    ALLOC_HARDER,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MIN,
    FALLBACKS,
    FPI_NONE,
    FPI_TO_TAIL,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    Machine,
    PB_migrate_isolate,
    PB_migratetype_mask,
    PerCpuPages,
    PG_buddy,
    PG_hole,
    PG_lru,
    PG_offline,
    PG_pcp,
    PG_reserved,
    PG_transit,
    Zone,
    high_wmark_pages,
    page_zone,
    pcp_allowed,
    pcp_pindex,
    pindex_to_order,
)
from pagesim.runtime.kernelfn import inline, kernel
from pagesim.runtime.linker import link
from pagesim.runtime.ops import (
    ATOMIC_ADD_IDX,
    READ_ONCE,
    READ_ONCE_IDX,
    WRITE_ONCE,
    WRITE_ONCE_IDX,
    ModelError,
    Work,
    flush_work,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    mutex_trylock,
    mutex_unlock,
    point,
    preempt_disable,
    preempt_enable,
    queue_work_on,
    spin_lock,
    spin_trylock,
    spin_unlock,
    this_cpu,
)

Gen = Generator[Any, Any, Any]

#: SWAP_CLUSTER_MAX: free_unref_page_list re-enables interrupts every this many pages.
SWAP_CLUSTER_MAX = 32


class BadPage(ModelError):
    """bad_page(): a page in a state its caller must never see (double free, freeing a
    free page, freeing with the wrong order). For the checker this is a violation of
    "no page lost or double-used"."""


# =======================================================================================
# Pageblock migratetype bits (mm/page_alloc.c get_pfnblock_flags_mask /
# set_pfnblock_flags_mask; 6.17+ adds the separate isolate bit, [K619] :471-600)


@inline
def get_pageblock_migratetype(m: Machine, pfn: int) -> int:
    """The block's type, read with ``zone->lock`` held (every writer holds it too)
    ([K510] include/linux/mmzone.h:93 get_pageblock_migratetype)."""
    return m.pb_type[m.pageblock_flags[pfn >> m.pageblock_order]]


@kernel
def get_pfnblock_migratetype(m: Machine, pfn: int) -> Gen:
    """The block's type, read locklessly (the free path reads it with IRQs on)
    ([K510] mm/page_alloc.c:532-535 get_pfnblock_migratetype; [K619] :471-484, where
    the isolate bit of 6.17+ wins)."""
    bits = yield READ_ONCE_IDX(m.pageblock_flags, pfn >> m.pageblock_order, "pageblock")
    return m.pb_type[bits]


@kernel
def set_pageblock_migratetype(m: Machine, pfn: int, mt: int) -> Gen:
    """Write a block's type (callers hold ``zone->lock``; lockless readers may race).

    Since 6.17 isolation is a separate bit: writing MIGRATE_ISOLATE sets it and keeps the
    3-bit type; writing any other type clears it (mm/page_alloc.c set_pageblock_migratetype,
    set_pageblock_isolate / clear_pageblock_isolate in [K619]).
    """
    idx = pfn >> m.geom.pageblock_order
    old = m.pageblock_flags[idx]
    if m.kernel.isolate_bit:
        if mt == MIGRATE_ISOLATE:
            new = old | PB_migrate_isolate
        else:
            new = (old & ~(PB_migrate_isolate | PB_migratetype_mask)) | mt
    else:
        new = (old & ~PB_migratetype_mask) | mt
    yield WRITE_ONCE_IDX(m.pageblock_flags, idx, new, "pageblock")


def has_isolate_pageblock(zone: Zone) -> bool:
    """5.x: whether the zone has isolated blocks (protected by ``zone->lock``) ([K510]
    include/linux/page-isolation.h:6-9)."""
    return zone.nr_isolate_pageblock > 0


# =======================================================================================
# Free-list primitives (mm/page_alloc.c helpers near __free_one_page). Called with
# zone->lock held; no scheduling points.


def set_buddy_order(m: Machine, pfn: int, order: int) -> None:
    """Mark a free block's head with its order ([K510] mm/page_alloc.c:797-801)."""
    m.private[pfn] = order
    m.flags[pfn] = (m.flags[pfn] & ~PG_transit) | PG_buddy


def buddy_order(m: Machine, pfn: int) -> int:
    """[K510] mm/internal.h:275-279."""
    return m.private[pfn]


def page_is_buddy(m: Machine, pfn: int, buddy: int, order: int) -> bool:
    """The buddy is a free block of exactly this order in the same zone ([K510]
    mm/page_alloc.c:816-835)."""
    return (buddy < m.end_pfn and m.flags[buddy] & PG_buddy != 0
            and m.private[buddy] == order and m.zone_id[buddy] == m.zone_id[pfn])


def __add_to_free_list(m: Machine, zone: Zone, pfn: int, order: int, mt: int,
                       tail: bool) -> None:
    head = zone.free_list_base + order * MIGRATE_TYPES + mt
    nxt = m.lru_next
    prv = m.lru_prev
    if tail:
        last = prv[head]
        nxt[last] = pfn
        prv[pfn] = last
        nxt[pfn] = head
        prv[head] = pfn
    else:
        first = nxt[head]
        nxt[head] = pfn
        prv[pfn] = head
        nxt[pfn] = first
        prv[first] = pfn
    zone.nr_free[order] += 1


def add_to_free_list(m: Machine, zone: Zone, pfn: int, order: int, mt: int) -> None:
    """At the head of free_list[mt] ([K510] mm/page_alloc.c:888-895)."""
    __add_to_free_list(m, zone, pfn, order, mt, False)


def add_to_free_list_tail(m: Machine, zone: Zone, pfn: int, order: int, mt: int) -> None:
    """At the tail, where it stays longest ([K510] mm/page_alloc.c:898-905)."""
    __add_to_free_list(m, zone, pfn, order, mt, True)


def _unlink(m: Machine, pfn: int) -> None:
    nxt = m.lru_next
    prv = m.lru_prev
    n = nxt[pfn]
    p = prv[pfn]
    nxt[p] = n
    prv[n] = p
    nxt[pfn] = 0  # off every list, as a page that never was on one (see Machine)
    prv[pfn] = 0


def move_to_free_list(m: Machine, zone: Zone, pfn: int, order: int, mt: int) -> None:
    """list_move_tail onto free_list[mt] of this order ([K510] mm/page_alloc.c:912-918
    move_to_free_list)."""
    _unlink(m, pfn)
    head = zone.free_list_base + order * MIGRATE_TYPES + mt
    last = m.lru_prev[head]
    m.lru_next[last] = pfn
    m.lru_prev[pfn] = last
    m.lru_next[pfn] = head
    m.lru_prev[head] = pfn


def del_page_from_free_list(m: Machine, zone: Zone, pfn: int, order: int) -> None:
    """Unlink, clear PageBuddy and the order, nr_free-- ([K510] mm/page_alloc.c:
    920-931)."""
    _unlink(m, pfn)
    m.flags[pfn] &= ~PG_buddy
    m.private[pfn] = 0
    zone.nr_free[order] -= 1


def get_page_from_free_area(m: Machine, zone: Zone, order: int, mt: int) -> int:
    """The first block on free_list[mt] of this order, or -1 ([K510]
    include/linux/mmzone.h:101-106)."""
    head = zone.free_list_base + order * MIGRATE_TYPES + mt
    first = m.lru_next[head]
    return -1 if first == head else first


def free_area_empty(m: Machine, zone: Zone, order: int, mt: int) -> bool:
    """[K510] include/linux/mmzone.h:108-111."""
    head = zone.free_list_base + order * MIGRATE_TYPES + mt
    return m.lru_next[head] == head


def free_list_pfns(m: Machine, zone: Zone, order: int, mt: int) -> list[int]:
    """The blocks on one free list, head first (for printing and invariants)."""
    head = zone.free_list_base + order * MIGRATE_TYPES + mt
    out = []
    p = m.lru_next[head]
    limit = m.end_pfn + 1
    while p != head:
        out.append(p)
        p = m.lru_next[p]
        if len(out) > limit:
            raise ModelError(f"free list {zone.name}/{order}/{mt} is not a closed list")
    return out


def __mod_zone_freepage_state(zone: Zone, nr_pages: int, mt: int) -> None:
    """Account free pages; callers skip MIGRATE_ISOLATE ([K510] :1005-1006)."""
    zone.nr_free_pages += nr_pages
    if mt == MIGRATE_CMA:
        zone.nr_free_cma += nr_pages


def set_pcppage_migratetype(m: Machine, pfn: int, mt: int) -> None:
    """5.x-6.9: cache the type in page->index (removed in 6.10, [M-hannes])."""
    m.index[pfn] = mt


@inline
def get_pcppage_migratetype(m: Machine, pfn: int) -> int:
    """The type the pcp free path cached ([K510] mm/page_alloc.c:226-229)."""
    return m.index[pfn]


# =======================================================================================
# Tracepoints (include/trace/events/kmem.h). The sink reads the CPU from the runtime.


def _trace(m: Machine, event: str, **fields: int) -> None:
    tracer = m.tracer
    if tracer is not None:
        tracer(event, fields)


# =======================================================================================
# Freeing into the buddy


@kernel
def __free_one_page(m: Machine, pfn: int, zone: Zone, order: int, mt: int, fpi: int) -> Gen:
    """Insert a block and merge it with free buddies, with ``zone->lock`` held.

    [K510] :987-1076 / [K511] :996-1085 (merge bounded at pageblock_order; crossing a
    pageblock boundary only when neither side is isolated, or types agree); [K619]
    :979-1065 (6.10+: merge to the largest order, refusing to join blocks whose types
    differ unless both are mergeable, and retyping the buddy's blocks otherwise).
    """
    geom = m.geom
    max_page_order = geom.max_order
    k = m.kernel
    m.flags[pfn] &= ~PG_transit  # the caller's page lands here (as head or inside)
    m.private[pfn] = 0
    if mt != MIGRATE_ISOLATE:
        __mod_zone_freepage_state(zone, 1 << order, mt)
    if k.no_pcp_migratetype_cache:
        # 6.10+ ([K619]): types decide merges above pageblock size
        while order < max_page_order:
            buddy = pfn ^ (1 << order)
            if not page_is_buddy(m, pfn, buddy, order):
                break
            buddy_mt = mt
            if order >= geom.pageblock_order:
                buddy_mt = get_pageblock_migratetype(m, buddy)
                if buddy_mt != mt and not (_mergeable(mt) and _mergeable(buddy_mt)):
                    break
            del_page_from_free_list(m, zone, buddy, order)
            if buddy_mt != mt:
                # both are pcp types: no free counter changes, only the block bits
                yield from change_pageblock_range(m, buddy, order, mt)
            pfn &= buddy
            order += 1
    else:
        # 5.x-6.9: merge up to pageblock_order, then one order at a time across
        # pageblocks unless an isolated block would join a non-isolated one
        max_order = min(max_page_order, geom.pageblock_order)
        while True:
            while order < max_order:
                buddy = pfn ^ (1 << order)
                if not page_is_buddy(m, pfn, buddy, order):
                    break
                del_page_from_free_list(m, zone, buddy, order)
                pfn &= buddy
                order += 1
            else:
                if order < max_page_order:
                    if has_isolate_pageblock(zone):
                        buddy = pfn ^ (1 << order)
                        buddy_mt = get_pageblock_migratetype(m, buddy)
                        if (mt != buddy_mt and (mt == MIGRATE_ISOLATE
                                                or buddy_mt == MIGRATE_ISOLATE)):
                            break
                    max_order = order + 1
                    continue
            break
    set_buddy_order(m, pfn, order)
    to_tail = True
    if not fpi & FPI_TO_TAIL:
        to_tail = buddy_merge_likely(m, pfn, order)
    if to_tail:
        add_to_free_list_tail(m, zone, pfn, order, mt)
    else:
        add_to_free_list(m, zone, pfn, order, mt)


def _mergeable(mt: int) -> bool:
    """migratetype_is_mergeable ([K619]): only the pcp types merge with each other."""
    return mt < MIGRATE_PCPTYPES


def buddy_merge_likely(m: Machine, pfn: int, order: int) -> bool:
    """Put the block at the tail when the next-larger buddy looks free, so it stays free
    long enough to merge ([K510] buddy_merge_likely)."""
    if order >= m.geom.max_order - 1:
        return False
    buddy = pfn ^ (1 << order)
    if buddy >= m.end_pfn:
        return False
    combined = buddy & pfn
    higher_buddy = combined ^ (1 << (order + 1))
    return page_is_buddy(m, combined, higher_buddy, order + 1)


@kernel
def free_one_page(m: Machine, zone: Zone, pfn: int, order: int, mt: int, fpi: int) -> Gen:
    """Free straight to the buddy, taking ``zone->lock``.

    5.x ([K510] :1426-1437): re-read the block type under the lock when the zone has
    isolated blocks or the caller's type is ISOLATE. 6.10+ ([K619] :1567-1601, via
    split_large_buddy): always read under the lock, piecewise per pageblock.
    """
    yield spin_lock(zone.lock)
    if m.kernel.no_pcp_migratetype_cache:
        yield from split_large_buddy(m, zone, pfn, order, fpi)
    else:
        if has_isolate_pageblock(zone) or mt == MIGRATE_ISOLATE:
            mt = get_pageblock_migratetype(m, pfn)
        yield from __free_one_page(m, pfn, zone, order, mt, fpi)
    yield spin_unlock(zone.lock)


@kernel
def split_large_buddy(m: Machine, zone: Zone, pfn: int, order: int, fpi: int) -> Gen:
    """6.10+: free a block larger than a pageblock in pageblock-sized pieces, each with
    its own block's current type ([K619] split_large_buddy)."""
    piece = min(order, m.geom.pageblock_order)
    end = pfn + (1 << order)
    while pfn < end:
        mt = get_pageblock_migratetype(m, pfn)
        yield from __free_one_page(m, pfn, zone, piece, mt, fpi)
        pfn += 1 << piece


def free_pages_prepare(m: Machine, pfn: int, order: int) -> bool:
    """Check that the block may be freed and clear its allocated state ([K510]
    mm/page_alloc.c:1205-1283).

    The kernel's checks find a page that is already free, or still mapped; here a free
    of a block that is not an allocated block of that order is ``bad_page``.
    """
    flags = m.flags[pfn]
    if flags & (PG_buddy | PG_pcp | PG_hole | PG_offline | PG_reserved | PG_transit):
        raise BadPage(f"pfn {pfn:#x}: freeing a page that is not allocated "
                      f"(flags {_flag_names(flags)})")
    if m.refcount[pfn] != 0:
        raise BadPage(f"pfn {pfn:#x}: freeing a page with refcount {m.refcount[pfn]}")
    if m.private[pfn] != order:
        raise BadPage(f"pfn {pfn:#x}: freed with order {order}, allocated with order "
                      f"{m.private[pfn]}")
    if m.tracer is not None:
        _trace(m, "mm_page_free", pfn=pfn, order=order)
    m.flags[pfn] = (flags & ~PG_lru) | PG_transit
    return True


def _flag_names(flags: int) -> str:
    names = [n for bit, n in ((PG_buddy, "buddy"), (PG_pcp, "pcp"), (PG_hole, "hole"),
                              (PG_offline, "offline"), (PG_reserved, "reserved"),
                              (PG_transit, "in transit"),
                              (PG_lru, "lru")) if flags & bit]
    return "|".join(names) or "none"


@kernel
def __free_pages_ok(m: Machine, pfn: int, order: int, fpi: int) -> Gen:
    """Free a block that bypasses the pcplists ([K510] :1514-1530; [K619])."""
    if not free_pages_prepare(m, pfn, order):
        return
    mt = yield from get_pfnblock_migratetype(m, pfn)  # IRQs on, lockless
    yield point("__free_pages_ok: preemptible before disabling interrupts")
    zone = page_zone(m, pfn)
    if m.kernel.pcp_spinlock:
        yield from free_one_page(m, zone, pfn, order, mt, fpi)
    else:
        yield local_irq_save()
        yield from free_one_page(m, zone, pfn, order, mt, fpi)
        yield local_irq_restore()


@kernel
def free_unref_page_prepare(m: Machine, pfn: int, order: int) -> Gen:
    """The preemptible half of an order-0 (5.13+: pcp-order) free: checks, then the
    lockless read of the block type, cached in page->index until 6.10
    ([K510] :3156-3166)."""
    if not free_pages_prepare(m, pfn, order):
        return False
    mt = yield from get_pfnblock_migratetype(m, pfn)
    set_pcppage_migratetype(m, pfn, mt)
    return True


@kernel
def free_unref_page(m: Machine, pfn: int, order: int = 0) -> Gen:
    """Free a page through this CPU's pcplist.

    5.x ([K510] :3205-3216): prepare with IRQs on; a preemption window; then the commit
    inside an interrupts-off section of whichever CPU the task runs on by then.
    6.0+ ([K600], [K619] __free_frozen_pages): the ISOLATE bypass is decided before the
    lock; then pin the task and trylock this CPU's ``pcp->lock``; if a remote drain
    holds it, free straight to the buddy.
    """
    k = m.kernel
    if not pcp_allowed(m, order):
        yield from __free_pages_ok(m, pfn, order, FPI_NONE)
        return
    if not (yield from free_unref_page_prepare(m, pfn, order)):
        return
    yield point("free_unref_page: preemptible between prepare and commit")
    if not k.pcp_spinlock:
        cpu = yield local_irq_save()
        yield from free_unref_page_commit(m, cpu, pfn, order)
        yield local_irq_restore()
        return
    zone = page_zone(m, pfn)
    mt = get_pcppage_migratetype(m, pfn)
    if mt >= MIGRATE_PCPTYPES:
        if mt == MIGRATE_ISOLATE:
            yield from free_one_page(m, zone, pfn, order, mt, FPI_NONE)
            return
        mt = MIGRATE_MOVABLE
        set_pcppage_migratetype(m, pfn, mt)
    cpu = yield (preempt_disable() if k.pcp_irqs_enabled else local_irq_save())
    pcp = zone.per_cpu_pageset[cpu]
    if (yield spin_trylock(pcp.lock)):
        if (yield from free_unref_page_commit(m, cpu, pfn, order)):
            yield spin_unlock(pcp.lock)
    else:
        yield from free_one_page(m, zone, pfn, order, mt, FPI_NONE)
    yield (preempt_enable() if k.pcp_irqs_enabled else local_irq_restore())


@kernel
def free_unref_page_commit(m: Machine, cpu: int, pfn: int, order: int) -> Gen:
    """Add the page to ``cpu``'s pcplist and flush if the list is now too long.

    Runs with interrupts off (5.x) or ``pcp->lock`` held (6.x). The list add and the
    count increment come *before* the read of ``high`` ([K510] :3168-3200, [K511]
    :3208-3240): a concurrent ``zone_pcp_disable`` that stores high = 0 either is seen
    here, and this very commit flushes, or is ordered after this section, and its
    forced drain finds the page (spec §6.4).

    Returns whether ``pcp->lock`` is still held (6.7+ may drop it between chunks).
    """
    k = m.kernel
    zone = page_zone(m, pfn)
    mt = get_pcppage_migratetype(m, pfn)
    if not k.pcp_spinlock and mt >= MIGRATE_PCPTYPES:
        if mt == MIGRATE_ISOLATE:
            yield from free_one_page(m, zone, pfn, order, mt, FPI_NONE)
            return True
        mt = MIGRATE_MOVABLE
        set_pcppage_migratetype(m, pfn, mt)
    pcp = zone.per_cpu_pageset[cpu]
    if k.pcp_high_autotune:
        pcp.alloc_factor >>= 1
    pindex = pcp_pindex(m, mt, order)
    pcp.lists[pindex].appendleft(pfn)
    m.flags[pfn] = (m.flags[pfn] & ~PG_transit) | PG_pcp
    m.private[pfn] = order
    yield WRITE_ONCE(pcp, "count", pcp.count + (1 << order))
    if k.pcp_high_autotune:
        return (yield from _commit_flush_tuned(m, zone, pcp, pindex, order))
    free_high = False
    high = yield READ_ONCE(pcp, "high")
    if k.zone_highsize:
        # 5.14-6.6 ([K514], [K600], [K606] nr_pcp_high): no reclaim in the model
        free_high = pcp_limits.free_high_scaled(k, pcp.free_count, order)
        high = pcp_limits.nr_pcp_high_scaled(high, 0, reclaim_active=False,
                                             free_high=free_high)
    if pcp.count >= high:
        batch = yield READ_ONCE(pcp, "batch")
        nr = batch
        if k.zone_highsize:
            nr, pcp.free_count = pcp_limits.nr_pcp_free_scaled(
                pcp.count, high, batch, pcp.free_count, free_high=free_high)
        yield from free_pcppages_bulk(m, zone, nr, pcp, pindex)
    return True


@kernel
def _commit_flush_tuned(m: Machine, zone: Zone, pcp: PerCpuPages, pindex: int,
                        order: int) -> Gen:
    """The flush of a 6.7+ commit ([K619] free_frozen_page_commit): retune ``pcp->high``
    within [high_min, high_max], then free in ``batch`` chunks, dropping the pcp lock
    between chunks; if the trylock to continue fails, stop (the lock is then not held).
    ZONE_BELOW_HIGH is taken as "free pages below the high watermark" at this moment."""
    k = m.kernel
    batch = yield READ_ONCE(pcp, "batch")
    high_min = yield READ_ONCE(pcp, "high_min")
    high_max = yield READ_ONCE(pcp, "high_max")
    fc = pcp_limits.pcp_free_commit(k, order, pcp.count, pcp.free_count, batch, high_min,
                                    pcp.flags)
    free_high, pcp.flags, pcp.free_count = fc
    nr_free = yield READ_ONCE(zone, "nr_free_pages")
    hi = pcp_limits.nr_pcp_high(pcp.high, high_min, high_max, pcp.count, pcp.free_count,
                                batch, free_high=free_high, reclaim_active=False,
                                below_high=nr_free < high_wmark_pages(zone))
    threshold, pcp.high = hi
    if pcp.count < threshold:
        return True
    to_free = pcp_limits.nr_pcp_free(pcp.count, pcp.free_count, batch, threshold,
                                     free_high=free_high)
    while to_free > 0 and pcp.count > 0:
        chunk = min(to_free, batch)
        yield from free_pcppages_bulk(m, zone, chunk, pcp, pindex)
        to_free -= chunk
        if to_free > 0 and pcp.count > 0:
            yield spin_unlock(pcp.lock)
            if not (yield spin_trylock(pcp.lock)):
                return False
    return True


@kernel
def free_pcppages_bulk(m: Machine, zone: Zone, count: int, pcp: PerCpuPages,
                       pindex: int = 0) -> Gen:
    """Return ``count`` pages from the pcplists to the buddy, oldest first.

    Phase 1 (no zone lock, still in the pcp section): visit the lists round-robin,
    taking from each list's tail, favouring fuller lists ([K510] :1344-1424; 6.x starts
    the round at the list just added to, [K619] :1481-1532). Phase 2 under
    ``zone->lock``: free each page with its type; in 5.x the cached type is replaced by
    the block's current type when the zone has isolated blocks, which is what sends a
    stale page of an isolated block to the ISOLATE list; 6.10+ always reads the block.

    The per-page ``pcp->count--`` stores are folded into one store after phase 1:
    remote readers only ever test ``count`` for zero, and every intermediate value is
    non-zero.
    """
    k = m.kernel
    count = min(pcp.count, count)
    if k.pcp_bulk_single_pass:
        yield from _free_pcppages_bulk_single_pass(m, zone, count, pcp, pindex)
        return
    nr_lists = len(pcp.lists)
    taken: list[tuple[int, int]] = []
    # Phase 1: 5.x-5.17 start after list 0 (MOVABLE first) and use the batch_free
    # heuristic: each empty list skipped lets the next non-empty one give up more pages
    cursor = 0
    batch_free = 0
    while count > 0:
        cursor, visited = _next_nonempty_list(pcp.lists, cursor)
        batch_free += visited
        lst = pcp.lists[cursor]
        if batch_free == nr_lists:
            batch_free = count  # the only non-empty list: take everything from it
        order = pindex_to_order(k, m.geom, cursor)
        while True:
            pfn = lst.pop()
            taken.append((pfn, order))
            count -= 1 << order
            batch_free -= 1
            if count <= 0 or batch_free <= 0 or not lst:
                break
    freed = 0
    for pfn, order in taken:
        m.flags[pfn] = (m.flags[pfn] & ~PG_pcp) | PG_transit
        freed += 1 << order
    yield WRITE_ONCE(pcp, "count", pcp.count - freed)
    # Phase 2: under zone->lock
    yield spin_lock(zone.lock)
    isolated_pageblocks = has_isolate_pageblock(zone)
    for pfn, order in taken:
        mt = get_pcppage_migratetype(m, pfn)
        if mt == MIGRATE_ISOLATE:
            raise ModelError(f"pfn {pfn:#x}: a pcplist page cached as MIGRATE_ISOLATE")
        if isolated_pageblocks:
            mt = get_pageblock_migratetype(m, pfn)
        yield from __free_one_page(m, pfn, zone, order, mt, FPI_NONE)
        if m.tracer is not None:
            _trace(m, "mm_page_pcpu_drain", pfn=pfn, order=order, migratetype=mt)
    yield spin_unlock(zone.lock)


def _next_nonempty_list(lists: list[Any], cursor: int) -> tuple[int, int]:
    """The round-robin step of free_pcppages_bulk: the next non-empty list after
    ``cursor`` (wrapping), and how many lists were visited to find it. The caller
    guarantees some list is non-empty (count > 0)."""
    visited = 0
    nr_lists = len(lists)
    while True:
        visited += 1
        cursor += 1
        if cursor >= nr_lists:
            cursor = 0
        if lists[cursor]:
            return cursor, visited


@kernel
def _free_pcppages_bulk_single_pass(m: Machine, zone: Zone, count: int, pcp: PerCpuPages,
                                    pindex: int) -> Gen:
    """5.18+ form of free_pcppages_bulk ([K619] :1481-1532): under ``zone->lock``, empty
    list after list starting at ``pindex``, each page freed with its block's type (the
    cached type until 6.10, re-read when the zone has isolated blocks)."""
    k = m.kernel
    cursor = pindex - 1
    freed = 0
    yield spin_lock(zone.lock)
    isolated_pageblocks = has_isolate_pageblock(zone)
    while count > 0:
        cursor, _ = _next_nonempty_list(pcp.lists, cursor)
        lst = pcp.lists[cursor]
        order = pindex_to_order(k, m.geom, cursor)
        nr_pages = 1 << order
        while True:
            pfn = lst.pop()
            m.flags[pfn] = (m.flags[pfn] & ~PG_pcp) | PG_transit
            if k.no_pcp_migratetype_cache or isolated_pageblocks:
                mt = get_pageblock_migratetype(m, pfn)
            else:
                mt = get_pcppage_migratetype(m, pfn)
            count -= nr_pages
            freed += nr_pages
            yield from __free_one_page(m, pfn, zone, order, mt, FPI_NONE)
            if m.tracer is not None:
                _trace(m, "mm_page_pcpu_drain", pfn=pfn, order=order, migratetype=mt)
            if count <= 0 or not lst:
                break
    yield WRITE_ONCE(pcp, "count", pcp.count - freed)
    yield spin_unlock(zone.lock)


@kernel
def free_unref_page_list(m: Machine, pfns: list[int]) -> Gen:
    """Free a batch of order-0 pages ([K510] :3221-3254; 6.10+ free_unref_folios).

    Every page's block type is sampled up front, with interrupts on; then the commits
    run in one interrupts-off section that is briefly reopened every SWAP_CLUSTER_MAX
    pages. This is the path of the original race report (exit_mmap -> release_pages).
    """
    k = m.kernel
    todo = []
    for pfn in pfns:
        if (yield from free_unref_page_prepare(m, pfn, 0)):
            todo.append(pfn)
    yield point("free_unref_page_list: preemptible after sampling every block type")
    if k.pcp_spinlock:
        for pfn in todo:
            yield from _free_unref_page_locked(m, pfn)
        return
    yield local_irq_save()
    batch_count = 0
    for pfn in todo:
        cpu = yield this_cpu()
        if m.tracer is not None:
            _trace(m, "mm_page_free_batched", pfn=pfn, order=0)
        yield from free_unref_page_commit(m, cpu, pfn, 0)
        batch_count += 1
        if batch_count == SWAP_CLUSTER_MAX:
            yield local_irq_restore()
            batch_count = 0
            yield local_irq_save()
    yield local_irq_restore()


@kernel
def _free_unref_page_locked(m: Machine, pfn: int) -> Gen:
    """6.x batched free of one prepared page: bypass isolated blocks, else trylock this
    CPU's pcp (failure: buddy) (the second loop of free_unref_page_list in 6.0-6.9,
    free_unref_folios in [K619] mm/page_alloc.c:3017-3108). The kernel keeps one lock
    across pages of a zone; the model takes it per page, which only adds
    interleavings."""
    k = m.kernel
    zone = page_zone(m, pfn)
    mt = get_pcppage_migratetype(m, pfn)
    if k.no_pcp_migratetype_cache:
        mt = yield from get_pfnblock_migratetype(m, pfn)
    if mt == MIGRATE_ISOLATE:
        yield from free_one_page(m, zone, pfn, 0, mt, FPI_NONE)
        return
    if mt >= MIGRATE_PCPTYPES:
        mt = MIGRATE_MOVABLE
    set_pcppage_migratetype(m, pfn, mt)
    cpu = yield (preempt_disable() if k.pcp_irqs_enabled else local_irq_save())
    pcp = zone.per_cpu_pageset[cpu]
    if (yield spin_trylock(pcp.lock)):
        if m.tracer is not None:
            _trace(m, "mm_page_free_batched", pfn=pfn, order=0)
        if (yield from free_unref_page_commit(m, cpu, pfn, 0)):
            yield spin_unlock(pcp.lock)
    else:
        yield from free_one_page(m, zone, pfn, 0, mt, FPI_NONE)
    yield (preempt_enable() if k.pcp_irqs_enabled else local_irq_restore())


@kernel
def __free_pages(m: Machine, pfn: int, order: int) -> Gen:
    """Drop a reference; free the block when it was the last ([K510] :5005-5020).

    The decrement is an atomic op of its own (put_page_testzero): migration takes and
    tests references from another CPU, and the free that follows a drop to zero starts
    in the same step (free_pages_prepare clears the flags a concurrent scan reads)."""
    ref = yield ATOMIC_ADD_IDX(m.refcount, pfn, -1, "refcount")
    if ref < 0:
        m.refcount[pfn] = 0
        raise BadPage(f"pfn {pfn:#x}: put_page on a page with refcount 0")
    if ref:
        return
    yield from free_the_page(m, pfn, order)


@kernel
def free_the_page(m: Machine, pfn: int, order: int) -> Gen:
    """Free a block whose last reference is gone: the pcplists for pcp orders, else
    the buddy ([K510] mm/page_alloc.c free_the_page)."""
    if pcp_allowed(m, order):
        yield from free_unref_page(m, pfn, order)
    else:
        yield from __free_pages_ok(m, pfn, order, FPI_NONE)


# =======================================================================================
# Allocation


def expand(m: Machine, zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
    """Split a block of order ``high`` down to ``low``, returning the upper halves to
    the head of their lists ([K510] expand)."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        add_to_free_list(m, zone, pfn + size, high, mt)
        set_buddy_order(m, pfn + size, high)


def __rmqueue_smallest(m: Machine, zone: Zone, order: int, mt: int) -> int:
    """Take the smallest block of type ``mt`` that fits, splitting it ([K510]
    :2309-2330). Returns the pfn or -1."""
    nr_orders = m.geom.nr_orders
    base = zone.free_list_base + mt
    nxt = m.lru_next
    for current_order in range(order, nr_orders):
        head = base + current_order * MIGRATE_TYPES
        pfn = nxt[head]
        if pfn == head:
            continue
        del_page_from_free_list(m, zone, pfn, current_order)
        __mod_zone_freepage_state(zone, -(1 << order), mt)
        expand(m, zone, pfn, order, current_order, mt)
        m.flags[pfn] |= PG_transit
        m.private[pfn] = order
        set_pcppage_migratetype(m, pfn, mt)
        if m.tracer is not None and m.kernel.no_pcp_migratetype_cache:
            _trace(m, "mm_page_alloc_zone_locked", pfn=pfn, order=order, migratetype=mt,
                   percpu_refill=int(pcp_allowed(m, order) and mt < MIGRATE_PCPTYPES))
        return pfn
    return -1


def can_steal_fallback(m: Machine, order: int, start_mt: int) -> bool:
    """Whether a fallback may take whole pageblocks ([K510] can_steal_fallback)."""
    if order >= m.geom.pageblock_order:
        return True
    return (order >= m.geom.pageblock_order // 2
            or start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE))


def find_suitable_fallback(m: Machine, zone: Zone, order: int, mt: int,
                           only_stealable: bool) -> tuple[int, bool]:
    """The first non-empty fallback list of this order, and whether it may be stolen
    ([K510] find_suitable_fallback). Returns (-1, False) if none."""
    if zone.nr_free[order] == 0:
        return -1, False
    can_steal = False
    for fallback_mt in FALLBACKS[mt]:
        if free_area_empty(m, zone, order, fallback_mt):
            continue
        if can_steal_fallback(m, order, mt):
            can_steal = True
        if not only_stealable or can_steal:
            return fallback_mt, can_steal
    return -1, can_steal


def move_freepages_block(m: Machine, zone: Zone, pfn: int, mt: int) -> tuple[int, int]:
    """Move every free buddy block of ``pfn``'s pageblock to the ``mt`` lists (tail).

    Returns (pages moved, movable pages seen) ([K510] :2365-2428). pcplist pages are not
    PageBuddy and stay where they are. Accounting is the caller's, as in 5.x.
    """
    pb = m.geom.pageblock_nr_pages
    start = pfn & ~(pb - 1)
    end = start + pb
    if start < zone.zone_start_pfn:
        start = pfn
    if end > zone.zone_end_pfn:
        return 0, 0
    moved = 0
    movable = 0
    p = start
    flags = m.flags
    while p < end:
        f = flags[p]
        if f & PG_buddy:
            order = m.private[p]
            move_to_free_list(m, zone, p, order, mt)
            p += 1 << order
            moved += 1 << order
            continue
        if f & PG_lru:
            movable += 1
        p += 1
    return moved, movable


@kernel
def change_pageblock_range(m: Machine, pfn: int, order: int, mt: int) -> Gen:
    """Retype every pageblock a block of ``order`` covers ([K510])."""
    nr = 1 << max(0, order - m.geom.pageblock_order)
    for i in range(nr):
        yield from set_pageblock_migratetype(m, pfn + i * m.geom.pageblock_nr_pages, mt)


@kernel
def steal_suitable_fallback(m: Machine, zone: Zone, pfn: int, order: int, alloc_flags: int,
                            start_type: int, whole_block: bool) -> Gen:
    """Take the fallback block ``pfn`` for an ``order`` request of ``start_type``: claim
    its pageblock(s) when big enough or when most of the block is free or compatible,
    else take less ([K510] steal_suitable_fallback). Watermark boosting is not modelled
    (kswapd, which undoes it, is not either).

    Returns -1 when blocks were moved to ``start_type``'s lists (the caller takes the page
    from there with __rmqueue_smallest), or the pfn of the page taken here.

    5.x-6.9: the block's free pages move to ``start_type``'s lists even when the block
    is not claimed, and an unclaimable block moves alone. 6.10+ (``freelist_hygiene``;
    the 6.11 and 6.13 trees, and __rmqueue_steal in [K619]): free pages move only
    together with the block's type, so an unclaimed block gives just the page asked for
    and the rest of it goes back to the block's own type (``single_page``:
    page_del_and_expand), and a pageblock the zone does not span entirely is not
    claimed (prep_move_freepages_block).
    """
    k = m.kernel
    geom = m.geom
    old_block_type = get_pageblock_migratetype(m, pfn)
    current_order = buddy_order(m, pfn)
    if old_block_type != MIGRATE_HIGHATOMIC:
        if current_order >= geom.pageblock_order:
            yield from change_pageblock_range(m, pfn, current_order, start_type)
            _move_block_type(m, zone, pfn, current_order, old_block_type, start_type)
            return -1
        if whole_block and k.freelist_hygiene:
            counts = prep_move_freepages_block(m, zone, pfn)
            if counts is not None:
                free_pages, movable_pages = counts
                alike_pages = _alike_pages(m, start_type, old_block_type, free_pages,
                                           movable_pages)
                if free_pages + alike_pages >= (1 << (geom.pageblock_order - 1)):
                    moved, _ = move_freepages_block(m, zone, pfn, start_type)
                    _account_list_move(m, zone, moved, old_block_type, start_type)
                    yield from set_pageblock_migratetype(m, pfn, start_type)
                    return -1
        elif whole_block:
            free_pages, movable_pages = move_freepages_block(m, zone, pfn, start_type)
            alike_pages = _alike_pages(m, start_type, old_block_type, free_pages,
                                       movable_pages)
            if free_pages:
                _account_list_move(m, zone, free_pages, old_block_type, start_type)
                if free_pages + alike_pages >= (1 << (geom.pageblock_order - 1)):
                    yield from set_pageblock_migratetype(m, pfn, start_type)
                return -1
    if k.freelist_hygiene:
        # single_page: this block only, split on its own type's lists
        del_page_from_free_list(m, zone, pfn, current_order)
        __mod_zone_freepage_state(zone, -(1 << order), old_block_type)
        expand(m, zone, pfn, order, current_order, old_block_type)
        return pfn
    _move_block_type(m, zone, pfn, current_order, old_block_type, start_type)
    return -1


def _alike_pages(m: Machine, start_type: int, block_type: int, free_pages: int,
                 movable_pages: int) -> int:
    """Pages of the block compatible with ``start_type`` ([K510] steal_suitable_fallback):
    the movable ones for a movable request; for an unmovable or reclaimable one every
    non-free non-movable page of a MOVABLE block, none of any other block."""
    if start_type == MIGRATE_MOVABLE:
        return movable_pages
    if block_type == MIGRATE_MOVABLE:
        return m.geom.pageblock_nr_pages - (free_pages + movable_pages)
    return 0


def prep_move_freepages_block(m: Machine, zone: Zone, pfn: int) -> tuple[int, int] | None:
    """6.10+: the free and the movable pages of ``pfn``'s pageblock, without moving
    anything; None if the zone does not span the whole block ([K619]
    prep_move_freepages_block)."""
    pb = m.geom.pageblock_nr_pages
    start = pfn & ~(pb - 1)
    end = start + pb
    if start < zone.zone_start_pfn or end > zone.zone_end_pfn:
        return None
    free = 0
    movable = 0
    p = start
    flags = m.flags
    while p < end:
        f = flags[p]
        if f & PG_buddy:
            free += 1 << m.private[p]
            p += 1 << m.private[p]
            continue
        if f & PG_lru:
            movable += 1
        p += 1
    return free, movable


def _move_block_type(m: Machine, zone: Zone, pfn: int, order: int, old_mt: int,
                     new_mt: int) -> None:
    move_to_free_list(m, zone, pfn, order, new_mt)
    _account_list_move(m, zone, 1 << order, old_mt, new_mt)


def _account_list_move(m: Machine, zone: Zone, nr: int, old_mt: int, new_mt: int) -> None:
    """Keep NR_FREE_CMA exact when free pages change lists (CMA lists are never stolen
    from, so this only matters for consistency checks)."""
    if old_mt == MIGRATE_CMA and new_mt != MIGRATE_CMA:
        zone.nr_free_cma -= nr
    elif new_mt == MIGRATE_CMA and old_mt != MIGRATE_CMA:
        zone.nr_free_cma += nr


@kernel
def __rmqueue_fallback(m: Machine, zone: Zone, order: int, start_mt: int,
                       alloc_flags: int) -> Gen:
    """Steal from another type's lists, largest blocks first ([K510] :2762-2839; the
    same search in 6.10-6.14). Returns None if no fallback block exists, else what
    steal_suitable_fallback returns (-1: retry from ``start_mt``'s lists; a pfn)."""
    geom = m.geom
    min_order = geom.pageblock_order if alloc_flags & ALLOC_NOFRAGMENT else order
    fallback_mt = -1
    can_steal = False
    for current_order in range(geom.max_order, min_order - 1, -1):
        fallback_mt, can_steal = find_suitable_fallback(m, zone, current_order, start_mt,
                                                        False)
        if fallback_mt == -1:
            continue
        if not can_steal and start_mt == MIGRATE_MOVABLE and current_order > order:
            break  # find_smallest
        pfn = get_page_from_free_area(m, zone, current_order, fallback_mt)
        return (yield from steal_suitable_fallback(m, zone, pfn, order, alloc_flags,
                                                   start_mt, can_steal))
    else:
        return None
    for current_order in range(order, geom.nr_orders):
        fallback_mt, can_steal = find_suitable_fallback(m, zone, current_order, start_mt,
                                                        False)
        if fallback_mt != -1:
            pfn = get_page_from_free_area(m, zone, current_order, fallback_mt)
            return (yield from steal_suitable_fallback(m, zone, pfn, order, alloc_flags,
                                                       start_mt, can_steal))
    return None


@kernel
def __rmqueue(m: Machine, zone: Zone, order: int, mt: int, alloc_flags: int) -> Gen:
    """Take a block of ``mt`` with ``zone->lock`` held, falling back to CMA and then to
    other types ([K510] :2844-2878). Returns the pfn or -1."""
    while True:
        pfn = -1
        if (alloc_flags & ALLOC_CMA and zone.nr_free_cma > zone.nr_free_pages // 2):
            pfn = __rmqueue_smallest(m, zone, order, MIGRATE_CMA)
        if pfn < 0:
            pfn = __rmqueue_smallest(m, zone, order, mt)
        if pfn < 0 and alloc_flags & ALLOC_CMA:
            pfn = __rmqueue_smallest(m, zone, order, MIGRATE_CMA)
        if pfn < 0:
            stolen = yield from __rmqueue_fallback(m, zone, order, mt, alloc_flags)
            if stolen is not None:
                if stolen < 0:
                    continue  # blocks moved to mt's lists: take from there
                pfn = stolen
        break
    if m.tracer is not None and not m.kernel.no_pcp_migratetype_cache and (
            pfn >= 0 or not m.kernel.trace_zone_locked_found_only):
        _trace(m, "mm_page_alloc_zone_locked", pfn=pfn, order=order, migratetype=mt,
               percpu_refill=int(order == 0))
    return pfn


@kernel
def rmqueue_bulk(m: Machine, zone: Zone, order: int, count: int, lst: Any, mt: int,
                 alloc_flags: int) -> Gen:
    """Move up to ``count`` blocks from the buddy to the tail of a pcplist under
    ``zone->lock`` ([K510] :2883-2926). Returns how many; the caller adds them to
    ``pcp->count`` after the lock is dropped, which is the window of spec §6.5."""
    yield spin_lock(zone.lock)
    alloced = 0
    flags = m.flags
    private = m.private
    for _ in range(count):
        pfn = yield from __rmqueue(m, zone, order, mt, alloc_flags)
        if pfn < 0:
            break
        lst.append(pfn)
        flags[pfn] = (flags[pfn] & ~PG_transit) | PG_pcp
        private[pfn] = order
        alloced += 1
    yield spin_unlock(zone.lock)
    return alloced


@kernel
def __rmqueue_pcplist(m: Machine, zone: Zone, order: int, mt: int, alloc_flags: int,
                      pcp: PerCpuPages, lst: Any) -> Gen:
    """Take the most recently added page, refilling the list if empty ([K510]
    :3374-3396). The refill size is read before the refill (5.11: READ_ONCE of batch)."""
    if not lst:
        k = m.kernel
        batch = yield READ_ONCE(pcp, "batch")
        if k.pcp_high_autotune:
            # 6.7+ ([K619] nr_pcp_alloc): grows with refills in a row (alloc_factor)
            high_min = yield READ_ONCE(pcp, "high_min")
            high_max = yield READ_ONCE(pcp, "high_max")
            nr_free = yield READ_ONCE(zone, "nr_free_pages")
            pa = pcp_limits.nr_pcp_alloc(pcp.high, high_min, high_max, pcp.count,
                                         pcp.alloc_factor, batch, order,
                                         below_high=nr_free < high_wmark_pages(zone))
            batch, pcp.high, pcp.alloc_factor = pa
        else:
            batch = pcp_limits.nr_pcp_refill(k, batch, order)
        alloced = yield from rmqueue_bulk(m, zone, order, batch, lst, mt, alloc_flags)
        yield WRITE_ONCE(pcp, "count", pcp.count + (alloced << order))
        if not lst:
            return -1
    pfn = lst.popleft()
    m.flags[pfn] = (m.flags[pfn] & ~PG_pcp) | PG_transit
    yield WRITE_ONCE(pcp, "count", pcp.count - (1 << order))
    return pfn


@kernel
def rmqueue_pcplist(m: Machine, zone: Zone, order: int, mt: int, alloc_flags: int) -> Gen:
    """Allocate from this CPU's pcplist: interrupts off (5.x, [K510] :3399-3418) or a
    trylock of ``pcp->lock`` (6.x, [K619] :3350-3378; failure returns nothing and the
    caller goes to the buddy)."""
    k = m.kernel
    if not k.pcp_spinlock:
        cpu = yield local_irq_save()
        pcp = zone.per_cpu_pageset[cpu]
        if k.pcp_free_scaling:
            pcp.free_count >>= 1  # 5.14-6.6: free_factor decays on allocation
        lst = pcp.lists[pcp_pindex(m, mt, order)]
        pfn = yield from __rmqueue_pcplist(m, zone, order, mt, alloc_flags, pcp, lst)
        yield local_irq_restore()
        return pfn
    cpu = yield (preempt_disable() if k.pcp_irqs_enabled else local_irq_save())
    pcp = zone.per_cpu_pageset[cpu]
    if not (yield spin_trylock(pcp.lock)):
        yield (preempt_enable() if k.pcp_irqs_enabled else local_irq_restore())
        return -1
    pcp.free_count >>= 1
    lst = pcp.lists[pcp_pindex(m, mt, order)]
    pfn = yield from __rmqueue_pcplist(m, zone, order, mt, alloc_flags, pcp, lst)
    yield spin_unlock(pcp.lock)
    yield (preempt_enable() if k.pcp_irqs_enabled else local_irq_restore())
    return pfn


@kernel
def rmqueue_buddy(m: Machine, zone: Zone, order: int, mt: int, alloc_flags: int) -> Gen:
    """Allocate straight from the buddy under ``zone->lock`` ([K510] :3423-3485 for
    order > 0; [K619] :3222-3265)."""
    k = m.kernel
    if not k.pcp_spinlock:
        yield local_irq_save()
    yield spin_lock(zone.lock)
    pfn = -1
    if order > 0 and alloc_flags & ALLOC_HARDER:
        pfn = __rmqueue_smallest(m, zone, order, MIGRATE_HIGHATOMIC)
        if pfn >= 0 and m.tracer is not None and not m.kernel.no_pcp_migratetype_cache:
            _trace(m, "mm_page_alloc_zone_locked", pfn=pfn, order=order, migratetype=mt,
                   percpu_refill=int(order == 0))
    if pfn < 0:
        pfn = yield from __rmqueue(m, zone, order, mt, alloc_flags)
    yield spin_unlock(zone.lock)
    if not k.pcp_spinlock:
        yield local_irq_restore()
    return pfn


@kernel
def rmqueue(m: Machine, zone: Zone, order: int, mt: int, alloc_flags: int) -> Gen:
    """Take a block from ``zone``: pcplist for pcp orders, else the buddy ([K510]
    mm/page_alloc.c:3423-3491; [K619] :3393-3420)."""
    k = m.kernel
    pfn = -1
    if pcp_allowed(m, order) and (
            not m.geom.cma or alloc_flags & ALLOC_CMA or mt != MIGRATE_MOVABLE):
        pfn = yield from rmqueue_pcplist(m, zone, order, mt, alloc_flags)
        if pfn >= 0 or not k.pcp_spinlock:
            return pfn
    return (yield from rmqueue_buddy(m, zone, order, mt, alloc_flags))


def prep_new_page(m: Machine, pfn: int, order: int, mt: int) -> None:
    """The allocated block (its caller has set the refcount to 1; [K510]
    mm/page_alloc.c:2282-2303): the order remembered as compound pages do, and
    movable allocations marked migratable (a model assumption: a page allocated
    MOVABLE is on the LRU or __PageMovable)."""
    m.private[pfn] = order
    m.flags[pfn] = (m.flags[pfn] & ~PG_transit) | (PG_lru if mt == MIGRATE_MOVABLE else 0)


@kernel
def zone_watermark_ok(m: Machine, zone: Zone, order: int, mark: int, highest_zoneidx: int,
                      alloc_flags: int) -> Gen:
    """__zone_watermark_ok, simplified ([K510] mm/page_alloc.c:3596-3658; [K619]
    :3585-3661): enough free pages above the mark and the lowmem reserve, and for
    order > 0 a free block that large on a usable list. The counter is read
    locklessly, as the kernel does. Left out: the ALLOC_HIGH/HARDER/OOM discounts of
    the mark (no caller in the model sets those flags) and the highatomic reserve (the
    model never reserves highatomic blocks: nr_reserved_highatomic stays 0)."""
    free_pages = yield READ_ONCE(zone, "nr_free_pages")
    free_pages -= (1 << order) - 1
    if not alloc_flags & ALLOC_CMA:
        free_pages -= zone.nr_free_cma
    reserve = zone.lowmem_reserve[highest_zoneidx] if highest_zoneidx < len(
        zone.lowmem_reserve) else 0
    if free_pages <= mark + reserve:
        return False
    if not order:
        return True
    for o in range(order, m.geom.nr_orders):
        for mt in range(MIGRATE_PCPTYPES):
            if not free_area_empty(m, zone, o, mt):
                return True
        if alloc_flags & ALLOC_CMA and not free_area_empty(m, zone, o, MIGRATE_CMA):
            return True
    return False


@kernel
def get_page_from_freelist(m: Machine, order: int, mt: int, highest_zoneidx: int,
                           alloc_flags: int) -> Gen:
    """Try each populated zone from ``highest_zoneidx`` down (a one-node zonelist)
    ([K510] mm/page_alloc.c:3790-3938; [K619] :3790-3986, without the dirty-limit,
    node-reclaim and fragmentation-avoidance branches)."""
    for idx in range(min(highest_zoneidx, len(m.zones) - 1), -1, -1):
        zone = m.zones[idx]
        if not zone.present_pages:
            continue
        if not alloc_flags & ALLOC_NO_WATERMARKS:
            mark = zone._watermark[alloc_flags & 3] + zone.watermark_boost
            if not (yield from zone_watermark_ok(m, zone, order, mark, highest_zoneidx,
                                                 alloc_flags)):
                continue
        pfn = yield from rmqueue(m, zone, order, mt, alloc_flags)
        if pfn >= 0:
            # set_page_refcounted(): the step from which lockless readers of the
            # refcount (migration's scan, get_page_unless_zero) see the page in use;
            # the flags prep_new_page() sets change in the same step
            yield WRITE_ONCE_IDX(m.refcount, pfn, 1, "refcount")
            prep_new_page(m, pfn, order, mt)
            return pfn
    return -1


@kernel
def alloc_pages(m: Machine, order: int, mt: int = MIGRATE_MOVABLE,
                highest_zoneidx: int = 2, alloc_flags: int = 0) -> Gen:
    """Allocate a block; returns its pfn or -1 (__alloc_pages_nodemask, [K510]
    mm/page_alloc.c:4919-4980; __alloc_frozen_pages_noprof, [K619] :5204-5266).

    The fast path checks the low watermark; the model's slow path retries against the
    min watermark and gives up (no reclaim, compaction or OOM: the model has no page
    cache to reclaim). ``highest_zoneidx`` is what the gfp zone modifiers select (2 =
    ZONE_NORMAL for GFP_KERNEL, 3 = ZONE_MOVABLE for GFP_HIGHUSER_MOVABLE).
    """
    pfn = yield from get_page_from_freelist(m, order, mt, highest_zoneidx,
                                            alloc_flags | ALLOC_WMARK_LOW)
    if pfn < 0:
        pfn = yield from get_page_from_freelist(m, order, mt, highest_zoneidx,
                                                alloc_flags | ALLOC_WMARK_MIN)
    if m.tracer is not None:
        _trace(m, "mm_page_alloc", pfn=pfn, order=order, migratetype=mt)  # -1: NULL
    return pfn


# =======================================================================================
# Draining


@kernel
def drain_pages_zone(m: Machine, cpu: int, zone: Zone) -> Gen:
    """Empty ``cpu``'s pcplists of ``zone``.

    5.x ([K510] :2957-2970): an interrupts-off section on ``cpu`` itself; only valid on
    the local CPU (or a dead one), so the caller runs it there. 6.0-6.10 ([K600]): from
    any CPU, under the target's ``pcp->lock``, but the emptiness test reads ``count``
    *before* taking the lock (the bug of spec §6.5); since 6.11 ([K619] :2641-2659) the
    count is read under the lock, in chunks of batch << CONFIG_PCP_BATCH_SCALE_MAX.
    """
    k = m.kernel
    pcp = zone.per_cpu_pageset[cpu]
    if not k.pcp_spinlock:
        yield local_irq_save()
        count = pcp.count
        if count:
            yield from free_pcppages_bulk(m, zone, count, pcp, 0)
        yield local_irq_restore()
        return
    if not k.drain_count_locked:
        count = yield READ_ONCE(pcp, "count")
        if not count:
            return
        yield spin_lock(pcp.lock)
        if k.drain_zone_chunked:
            while True:
                batch = yield READ_ONCE(pcp, "batch")
                chunk = min(pcp.count, batch << pcp_limits.PCP_BATCH_SCALE_MAX)
                yield from free_pcppages_bulk(m, zone, chunk, pcp, 0)
                if not pcp.count:
                    break
                yield spin_unlock(pcp.lock)
                yield spin_lock(pcp.lock)
        else:
            yield from free_pcppages_bulk(m, zone, pcp.count, pcp, 0)
        yield spin_unlock(pcp.lock)
        return
    while True:
        yield spin_lock(pcp.lock)
        count = pcp.count
        if count:
            batch = yield READ_ONCE(pcp, "batch")
            count = min(count, batch << pcp_limits.PCP_BATCH_SCALE_MAX)
            yield from free_pcppages_bulk(m, zone, count, pcp, 0)
        yield spin_unlock(pcp.lock)
        if not count:
            break


@kernel
def drain_pages(m: Machine, cpu: int) -> Gen:
    """Drain ``cpu``'s pcplists of every populated zone ([K510] drain_pages)."""
    for zone in m.zones:
        if zone.present_pages:
            yield from drain_pages_zone(m, cpu, zone)


@kernel
def drain_local_pages(m: Machine, zone: Zone | None) -> Gen:
    """Drain this CPU's pcplists, of one zone or all ([K510] drain_local_pages)."""
    cpu = yield this_cpu()
    if zone is not None:
        yield from drain_pages_zone(m, cpu, zone)
    else:
        yield from drain_pages(m, cpu)


@kernel
def drain_local_pages_wq(m: Machine, zone: Zone | None) -> Gen:
    """The drain work item of 5.x ``__drain_all_pages``: drain the CPU it runs on, one
    zone or all ([K510] :3004-3018; [K511] :3023-3037).

    The kernel brackets the call with preempt_disable() so that a worker moved off a
    dying CPU cannot migrate mid-drain. The model's work contexts are bound to their CPU
    for their whole life, and the runtime's one per-CPU section token cannot nest with
    the interrupts-off section that drain_pages_zone() takes inside, so the pin is
    implicit here; what orders the drain against every other pcplist user of the CPU is
    that interrupts-off section.
    """
    yield from drain_local_pages(m, zone)


@kernel
def __drain_all_pages(m: Machine, zone: Zone | None, force_all_cpus: bool) -> Gen:
    """Empty the pcplists of ``zone`` (or of every populated zone) on every CPU that
    needs it, and wait until that is done ([K510] drain_all_pages :3029-3099; [K511]
    :3051-3134; [K600] :3243-3309; [K619] :2696-2762).

    Serialised by ``pcpu_drain_mutex``: if another drain is running, a caller without a
    zone gives up (that drain does its work), a caller with a zone (hotplug, CMA) waits
    for the mutex, because it needs a completed drain when it returns.

    Which CPUs: all of them when forced (5.11+, ``drain_force_all_cpus``: the caller is
    zone_pcp_disable); otherwise those whose ``pcp->count`` for the zone (any populated
    zone if none) reads non-zero. That read is a lockless load of another CPU's counter
    (a READ_ONCE here), which can miss pages that CPU is adding at this moment: the race
    of spec §6.3, tolerated by the non-forced callers.

    How: 5.x queues drain_local_pages_wq on each selected CPU and then flushes every item
    (the drain runs on the target CPU, inside its own interrupts-off section); since 6.0
    (``remote_drain``) the caller drains each selected CPU itself with
    drain_pages_zone(cpu, zone), under the target's ``pcp->lock`` (whose 6.0-6.10
    unlocked emptiness test is the hole of spec §6.5).
    """
    k = m.kernel
    if not (yield mutex_trylock(m.pcpu_drain_mutex)):
        if zone is None:
            return
        yield mutex_lock(m.pcpu_drain_mutex)
    cpus_with_pcps: list[int] = []
    for cpu in range(m.nr_cpus):
        has_pcps = False
        if force_all_cpus and k.drain_force_all_cpus:
            has_pcps = True
        elif zone is not None:
            count = yield READ_ONCE(zone.per_cpu_pageset[cpu], "count")
            has_pcps = count != 0
        else:
            for z in m.zones:
                if not z.present_pages:
                    continue
                count = yield READ_ONCE(z.per_cpu_pageset[cpu], "count")
                if count:
                    has_pcps = True
                    break
        if has_pcps:
            cpus_with_pcps.append(cpu)
    if k.remote_drain:
        for cpu in cpus_with_pcps:
            if zone is not None:
                yield from drain_pages_zone(m, cpu, zone)
            else:
                yield from drain_pages(m, cpu)
    else:
        works: list[Work] = []
        for cpu in cpus_with_pcps:
            work = yield queue_work_on(cpu, drain_local_pages_wq, m, zone)
            works.append(work)
        for work in works:
            yield flush_work(work)
    yield mutex_unlock(m.pcpu_drain_mutex)


@kernel
def drain_all_pages(m: Machine, zone: Zone | None) -> Gen:
    """Drain every CPU whose pcplists look non-empty; the cheap check is racy (spec §6.3)
    and callers other than zone_pcp_disable accept leftovers ([K511] :3136-3139)."""
    yield from __drain_all_pages(m, zone, False)


# Every function above exists now: their sequential variants may inline each other
# (pagesim.runtime.linker; linked on first use).
link(__name__)
