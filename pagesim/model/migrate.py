# SPDX-License-Identifier: GPL-2.0-only
"""Page migration, as far as memory offline and contiguous allocation need it
(mm/memory_hotplug.c scan_movable_pages and do_migrate_range, mm/migrate.c
migrate_pages / unmap_and_move).

A movable page in the model is an allocated block whose head has PG_lru (every MOVABLE
allocation, see page_alloc.prep_new_page). Migrating it means: take it off the LRU with
an extra reference (isolation), allocate a target of the same order with the normal
allocator, "copy" (the model's pages have no contents), make the owner hold the target,
and drop the source, which frees it. The target comes from alloc_pages() on the
migrating CPU: it never takes a free page of an isolated block from the buddy (the
ISOLATE lists are no allocation source), but it can take a page that sits on that CPU's
pcplist, including one of the very range being emptied. That is the race of spec §6.1,
and nothing here prevents it.

Owners: a task that holds a page registers a :class:`~pagesim.model.mmzone.HeldPage` in
``m.owners`` (:func:`hold`, in the step that allocated the page, so that no migration
sees it in use and unregistered). Migration re-keys the entry and rewrites ``held.pfn``
under ``m.ptl``, as the kernel's remove_migration_ptes() points the owner's mapping at
the new page under the page table lock, and a holder unmaps and frees its page under
the same lock (:func:`unmap_and_put`). Unregistered pages migrate the same way; their
holder just cannot follow them.

Every lockless access to a page's refcount is an op of its own (an atomic, or a
``touch_range`` footprint for the scans), and the plain flag changes that go with it
(PG_lru, the free path's clearing) happen in the same step, so partial-order reduction
orders migration against the tasks that allocate and free.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from weakref import WeakKeyDictionary

from pagesim.model.mmzone import MIGRATE_MOVABLE, HeldPage, Machine, PG_lru, Zone, page_zone
from pagesim.model.page_alloc import BadPage, __free_pages, alloc_pages, free_the_page
from pagesim.model.page_isolation import EAGAIN, ENOENT, ENOMEM
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    ATOMIC_ADD_IDX,
    READ_ONCE_IDX,
    point,
    spin_lock,
    spin_unlock,
    touch_range,
)

Gen = Generator[Any, Any, Any]


class VmEvents:
    """Event counters of one machine, for whoever watches it run (the simulator's
    summary): ``pgmigrate_success`` and ``pgmigrate_fail`` as the kernel's vmstat items
    (include/linux/vm_event_item.h; counted in pages, as mm/migrate.c migrate_pages()
    counts them since 5.9, the figures its ``mm_migrate_pages`` tracepoint reports), and
    the model-only ``offline_retries``, the rounds without progress of every
    offline_pages() (pagesim.model.memory_hotplug; the kernel counts none).

    They live outside the machine on purpose. The model never reads them, so they cannot
    change what happens; but anything reachable from the machine is part of the state
    the stateful checker fingerprints (pagesim.runtime.fingerprint), and a counter there
    would tell apart states that differ only in how they were reached (a page migrated
    and then freed, or freed at once), multiplying the states a search visits."""

    __slots__ = ("offline_retries", "pgmigrate_fail", "pgmigrate_success")

    def __init__(self) -> None:
        self.pgmigrate_success = 0
        self.pgmigrate_fail = 0
        self.offline_retries = 0


#: each machine's counters, weakly keyed so that a machine's end is theirs too
_VM_EVENTS: WeakKeyDictionary[Machine, VmEvents] = WeakKeyDictionary()


def vm_events(m: Machine) -> VmEvents:
    """The counters of ``m`` (zero until something counts)."""
    ev = _VM_EVENTS.get(m)
    if ev is None:
        ev = _VM_EVENTS[m] = VmEvents()
    return ev


def _count_migration(m: Machine, order: int, rc: int) -> None:
    """count_vm_events(PGMIGRATE_SUCCESS / PGMIGRATE_FAIL) for one block's attempt
    (mm/migrate.c migrate_pages(): a source its owner freed meanwhile is a success)."""
    ev = vm_events(m)
    if rc:
        ev.pgmigrate_fail += 1 << order
    else:
        ev.pgmigrate_success += 1 << order


def hold(m: Machine, name: str, pfn: int) -> HeldPage:
    """Register an allocated block as held by a scenario's task, so that migration can
    retarget it (the block's order is the one it was allocated with)."""
    if m.refcount[pfn] < 1:
        raise BadPage(f"pfn {pfn:#x}: holding a page that is not allocated")
    held = HeldPage(name, pfn, m.private[pfn])
    m.owners[pfn] = held
    return held


def release(m: Machine, held: HeldPage) -> None:
    """Forget a held block (its holder is about to free it)."""
    if m.owners.get(held.pfn) is held:
        del m.owners[held.pfn]


@kernel
def unmap_and_put(m: Machine, held: HeldPage) -> Gen:
    """A task unmaps its block (zap_pte_range under the page table lock, which reads the
    page the mapping points to *now*, [K619] mm/memory.c:1824-1914) and drops its
    reference (folio_put, then __folio_put, [K619] mm/swap.c:97-113). The reference goes in
    the same critical section: migration decides by the page's references whether it
    is mapped (the kernel's expected count in folio_migrate_mapping), so a page that is
    unmapped but still referenced would look mapped by nobody it can follow."""
    yield spin_lock(m.ptl)
    pfn = held.pfn
    release(m, held)
    ref = yield ATOMIC_ADD_IDX(m.refcount, pfn, -1, "refcount")
    if not ref:
        # the last reference takes the page off the LRU at once (__folio_put): a scan
        # must never find a page on the LRU that nobody holds, or it would retry it
        # for as long as the freer is preempted
        m.flags[pfn] &= ~PG_lru
    yield spin_unlock(m.ptl)
    if ref < 0:
        raise BadPage(f"pfn {pfn:#x}: {held.name} unmaps a page with refcount 0")
    if not ref:
        yield from free_the_page(m, pfn, held.order)


@kernel
def scan_movable_pages(m: Machine, start_pfn: int, end_pfn: int) -> Gen:
    """The first pfn of ``[start_pfn, end_pfn)`` with a movable page in use, or -ENOENT
    ([K510] mm/memory_hotplug.c :1235-1272: PageLRU or __PageMovable; hugetlb pages and
    driver-offlined pages, which can make the kernel's scan return -EBUSY, do not exist
    in the model). The flags are read without a lock, as the kernel does; the whole scan
    is one step, whose footprint is the range's refcounts (every change of PG_lru
    happens in a step that changes the page's refcount)."""
    yield touch_range(m.refcount, start_pfn, end_pfn, "refcount")
    flags = m.flags
    for pfn in range(start_pfn, end_pfn):
        if flags[pfn] & PG_lru:
            return pfn
    return -ENOENT


def _target_zoneidx(m: Machine, zone: Zone) -> int:
    """alloc_migration_target(): GFP_USER | __GFP_MOVABLE allocates up to ZONE_NORMAL,
    plus __GFP_HIGHMEM (so up to ZONE_MOVABLE) for a source in ZONE_MOVABLE."""
    names = [z.name for z in m.zones]
    if zone.name == "Movable" or "Normal" not in names:
        return zone.idx
    return names.index("Normal")


@kernel
def do_migrate_range(m: Machine, start_pfn: int, end_pfn: int) -> Gen:
    """Migrate every movable page in use in ``[start_pfn, end_pfn)``; 0, or the error of
    the first page that could not be migrated (those are put back on the LRU) ([K510]
    mm/memory_hotplug.c :1275-1366; 6.19 returns nothing and offline_pages ignores the
    value in every generation).

    The isolation of all pages (get_page_unless_zero, then PG_lru cleared) is one step
    here where the kernel takes the LRU lock page by page; each page's migration then
    has its own scheduling points.
    """
    source: list[tuple[int, int]] = []
    yield touch_range(m.refcount, start_pfn, end_pfn, "refcount", write=True)
    flags = m.flags
    refcount = m.refcount
    for pfn in range(start_pfn, end_pfn):
        if refcount[pfn] > 0 and flags[pfn] & PG_lru:
            refcount[pfn] += 1
            flags[pfn] &= ~PG_lru
            source.append((pfn, m.private[pfn]))
    if not source:
        return 0
    yield point("migrate: between isolating and copying")
    ret = 0
    failed: list[tuple[int, int]] = []
    for i, (pfn, order) in enumerate(source):
        rc = yield from unmap_and_move(m, pfn, order)
        _count_migration(m, order, rc)
        if rc:
            failed.append((pfn, order))
            if not ret:
                ret = rc
            if rc == -ENOMEM:
                failed.extend(source[i + 1:])
                break
    for pfn, order in failed:
        yield from putback_lru_page(m, pfn, order)
    return ret


@kernel
def unmap_and_move(m: Machine, pfn: int, order: int) -> Gen:
    """Migrate one isolated block; 0, -ENOMEM (no target) or -EAGAIN (references the
    model cannot move) ([K510] mm/migrate.c unmap_and_move / __unmap_and_move, one
    attempt where migrate_pages() retries -EAGAIN up to ten times).

    If the owner freed the page meanwhile, only the isolation's reference is left:
    dropping it frees the page and there is nothing to move, before or after the target
    was allocated (the kernel finds this by the page count, or by its refcount freeze
    failing). The move itself happens under the page table lock (:func:`map_page`,
    :func:`unmap_and_put`): the owner's mapping and its reference pass to the target in
    one critical section, so an owner unmapping concurrently frees either the source
    (before) or the target (after), never both or neither. A page with more references
    than its one mapping is not moved: -EAGAIN, and it is put back.
    """
    if (yield READ_ONCE_IDX(m.refcount, pfn, "refcount")) == 1:
        yield from __free_pages(m, pfn, order)
        return 0
    zone = page_zone(m, pfn)
    new = yield from alloc_pages(m, order, MIGRATE_MOVABLE, _target_zoneidx(m, zone))
    if new < 0:
        return -ENOMEM
    yield point("migrate: between allocating the target and copying")
    yield spin_lock(m.ptl)
    refs = yield READ_ONCE_IDX(m.refcount, pfn, "refcount")
    held = m.owners.get(pfn)
    if refs == 1:
        # the owner unmapped and dropped it meanwhile: ours is the last reference
        yield spin_unlock(m.ptl)
        yield from __free_pages(m, new, order)
        yield from __free_pages(m, pfn, order)
        return 0
    if refs != 2:
        # more references than the one mapping the model moves
        yield spin_unlock(m.ptl)
        yield from __free_pages(m, new, order)
        return -EAGAIN
    if held is not None:
        del m.owners[pfn]
        held.pfn = new
        m.owners[new] = held
    yield ATOMIC_ADD_IDX(m.refcount, pfn, -1, "refcount")  # the mapping's reference
    yield spin_unlock(m.ptl)
    yield from __free_pages(m, pfn, order)  # the isolation's reference: frees the source
    return 0


@kernel
def putback_lru_page(m: Machine, pfn: int, order: int) -> Gen:
    """A page that could not be migrated goes back on the LRU and loses the isolation's
    reference; if its owner freed it meanwhile, that frees it ([K510] mm/migrate.c
    putback_movable_pages)."""
    yield touch_range(m.refcount, pfn, pfn + 1, "refcount", write=True)
    m.flags[pfn] |= PG_lru
    yield from __free_pages(m, pfn, order)
