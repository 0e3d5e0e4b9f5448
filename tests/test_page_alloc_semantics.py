# SPDX-License-Identifier: GPL-2.0-only
"""Kernel behaviour of the buddy allocator and pcplists, one fact per test.

Each test cites the section of /work/shared/spec/kernel-semantics.md (and through it the
kernel source) that it pins. Machines are tiny: ``tiny(2, 4, 4)`` has pageblocks of 4
pages and max-order blocks of 8 (orders 0..3), so a 64-page zone boots as eight free
order-3 MOVABLE blocks at pfns 0, 8, ..., 56. pcp limits are forced with
``set_pcp_limits``: ``(0, 1)`` makes every allocation take exactly the page it returns
and every free flush at once, so the buddy state is fully determined; larger values keep
pages on the pcplists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pagesim.model import page_alloc as pa
from pagesim.model.build import simple_machine
from pagesim.model.geometry import Geometry, tiny
from pagesim.model.invariants import InvariantViolation, check_invariants
from pagesim.model.kernels import (
    CHANGES,
    VARIANTS,
    Kernel,
    UnknownKernelError,
    kernel,
    register_variant,
)
from pagesim.model.mmzone import (
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    Machine,
    PerCpuPages,
    PG_buddy,
    PG_pcp,
    Zone,
    order_to_pindex,
)
from pagesim.model.page_alloc import (
    BadPage,
    alloc_pages,
    drain_pages,
    free_list_pfns,
    free_pcppages_bulk,
    free_unref_page,
    free_unref_page_list,
    get_pageblock_migratetype,
    set_pageblock_migratetype,
)
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.sequential import call

# names with two leading underscores would be mangled inside test classes
put_page = pa.__free_pages

#: every generation boundary the allocator's behaviour depends on, plus both ends
ALL_KERNELS = ("v5.8", "v5.10", "v5.11", "v5.13", "v5.14", "v5.18", "v6.0", "v6.1",
               "v6.6", "v6.7", "v6.10", "v6.11", "v6.17", "v6.19")

GEOM = tiny(2, 4, 4)


# ---------------------------------------------------------------------------------------
# helpers


def boot(kern: str, *, pages: int = 64, geom: Geometry = GEOM, nr_cpus: int = 1,
         limits: tuple[int, int] | None = (0, 1)) -> Machine:
    """A one-zone machine ("Normal") with watermarks 0 and the given pcp limits."""
    m = simple_machine(kern=kern, geom=geom, nr_cpus=nr_cpus, zones=(("Normal", pages),),
                       min_free_kbytes=0)
    if limits is not None:
        set_pcp_limits(m, normal(m), *limits)
    return m


def normal(m: Machine) -> Zone:
    return m.zone("Normal")


def pcp(m: Machine, cpu: int = 0) -> PerCpuPages:
    return normal(m).per_cpu_pageset[cpu]


def pcp_list(m: Machine, mt: int = MIGRATE_MOVABLE, order: int = 0, cpu: int = 0) -> list[int]:
    """One pcplist, head (most recently added) first."""
    return list(pcp(m, cpu).lists[order_to_pindex(m.kernel, m.geom, mt, order)])


def alloc(m: Machine, order: int = 0, mt: int = MIGRATE_MOVABLE, cpu: int = 0) -> int:
    pfn = call(cpu, alloc_pages, m, order, mt)
    assert pfn >= 0, f"allocation of order {order} type {mt} failed"
    return pfn


def put(m: Machine, pfn: int, order: int = 0, cpu: int = 0) -> None:
    call(cpu, put_page, m, pfn, order)


def buddy(m: Machine, order: int, mt: int = MIGRATE_MOVABLE) -> list[int]:
    """One free list of the buddy, head first."""
    return free_list_pfns(m, normal(m), order, mt)


def isolate_block(m: Machine, pfn: int) -> None:
    """Mark ``pfn``'s pageblock isolated as set_migratetype_isolate would, for a block
    with no free buddy pages (so there is nothing to move to the ISOLATE lists)."""
    pb = m.geom.pageblock_nr_pages
    start = pfn & ~(pb - 1)
    assert not any(m.flags[p] & PG_buddy for p in range(start, start + pb))
    call(0, set_pageblock_migratetype, m, pfn, MIGRATE_ISOLATE)
    normal(m).nr_isolate_pageblock += 1


def trace(m: Machine) -> list[tuple[str, dict[str, int]]]:
    events: list[tuple[str, dict[str, int]]] = []
    m.tracer = lambda event, fields: events.append((event, dict(fields)))
    return events


def drained(events: list[tuple[str, dict[str, int]]]) -> list[tuple[int, int]]:
    """(pfn, migratetype) of each page free_pcppages_bulk returned, in order."""
    return [(f["pfn"], f["migratetype"]) for e, f in events if e == "mm_page_pcpu_drain"]


# ---------------------------------------------------------------------------------------
# pcplist order: LIFO allocation, FIFO (tail) flush


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_pcplist_allocation_takes_the_most_recent_free(kern: str) -> None:
    """§3.1 rmqueue_pcplist step 3 (5.x), §4.3 (6.19): the allocation takes the first
    entry of the list, which is the page freed last (frees add at the head, §3.2)."""
    m = boot(kern)
    a, b, c = alloc(m), alloc(m), alloc(m)
    assert (a, b, c) == (0, 1, 2)
    set_pcp_limits(m, normal(m), 16, 4)
    for p in (a, b, c):
        put(m, p)
    assert pcp_list(m) == [c, b, a] and pcp(m).count == 3
    assert alloc(m) == c
    assert alloc(m) == b
    assert pcp_list(m) == [a] and pcp(m).count == 1
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_refill_takes_batch_pages_in_physical_order(kern: str) -> None:
    """§3.1 rmqueue_bulk: a refill takes ``batch`` pages from the buddy and appends each
    at the list tail, so they come out in physical order; the allocation then takes the
    first. 6.7+ (§5.3 nr_pcp_alloc): the next refill in a row takes batch << 1."""
    m = boot(kern, limits=(16, 4))
    z = normal(m)
    assert alloc(m) == 0
    assert pcp_list(m) == [1, 2, 3] and pcp(m).count == 3
    assert z.nr_free_pages == 64 - 4
    for want in (1, 2, 3):
        assert alloc(m) == want
    assert pcp(m).count == 0
    assert alloc(m) == 4
    second = 8 if m.kernel.pcp_high_autotune else 4
    assert pcp_list(m) == list(range(5, 4 + second))
    assert z.nr_free_pages == 64 - 4 - second
    check_invariants(m)


@pytest.mark.parametrize("kern", [k for k in ALL_KERNELS if kernel(k).pcp_high_order_lists])
def test_high_order_refill_is_scaled_by_order(kern: str) -> None:
    """5.13+ (§2.3, NR_PCP_LISTS): orders up to PAGE_ALLOC_COSTLY_ORDER have pcplists;
    a refill moves about ``batch`` pages: max(batch >> order, 2) blocks (§5.3)."""
    m = boot(kern, limits=(16, 4))
    assert alloc(m, order=1) == 0
    assert pcp_list(m, order=1) == [2] and pcp(m).count == 2
    put(m, 0, order=1)
    assert pcp_list(m, order=1) == [0, 2] and pcp(m).count == 4
    check_invariants(m)


@pytest.mark.parametrize("kern", [k for k in ALL_KERNELS
                                  if not kernel(k).pcp_high_order_lists])
def test_high_order_bypasses_pcplists_before_5_13(kern: str) -> None:
    """5.x before 5.13 (§3.1 step 1, §3.2 entry): only order 0 uses the pcplists."""
    m = boot(kern, limits=(16, 4))
    assert alloc(m, order=1) == 0
    assert pcp(m).count == 0
    put(m, 0, order=1)
    assert pcp(m).count == 0 and buddy(m, 3)[0] == 0
    check_invariants(m)


def _pcp_lists(kern: str, block_types: tuple[int, ...]) -> Machine:
    """The pages of pageblocks 0, 1, ... (4 pages each), their blocks given these
    types, freed in pfn order onto the order-0 pcplists, so each list holds its blocks'
    pages with the lowest pfn at the tail (the oldest)."""
    m = boot(kern)
    n = 4 * len(block_types)
    pfns = [alloc(m) for _ in range(n)]
    assert pfns == list(range(n))
    for i, mt in enumerate(block_types):
        call(0, set_pageblock_migratetype, m, 4 * i, mt)
    set_pcp_limits(m, normal(m), 64, 1)
    for p in pfns:
        put(m, p)
    assert pcp(m).count == n
    return m


def _three_lists(kern: str) -> Machine:
    m = _pcp_lists(kern, (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE))
    assert pcp_list(m, MIGRATE_UNMOVABLE) == [3, 2, 1, 0]
    assert pcp_list(m, MIGRATE_MOVABLE) == [7, 6, 5, 4]
    assert pcp_list(m, MIGRATE_RECLAIMABLE) == [11, 10, 9, 8]
    return m


U, M, R = MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE


@pytest.mark.parametrize(("kern", "expected"), [
    # 5.x: round-robin from MOVABLE, one page per list while all are non-empty
    ("v5.10", [(4, M), (8, R), (0, U), (5, M), (9, R)]),
    ("v5.11", [(4, M), (8, R), (0, U), (5, M), (9, R)]),
    # 5.13-5.17: 12 lists; the 9 empty higher-order lists skipped before UNMOVABLE
    # raise batch_free, so UNMOVABLE gives up the rest
    ("v5.14", [(4, M), (8, R), (0, U), (1, U), (2, U)]),
    # 5.18+: empty the list the caller names (MOVABLE here) first, then the next
    ("v6.1", [(4, M), (5, M), (6, M), (7, M), (8, R)]),
    ("v6.19", [(4, M), (5, M), (6, M), (7, M), (8, R)]),
])
def test_bulk_free_takes_list_tails_round_robin(kern: str, expected: list[tuple[int, int]]
                                                 ) -> None:
    """§3.2 free_pcppages_bulk (5.x): oldest page first (list tail), lists visited
    round-robin starting with MOVABLE, empty lists letting the next list give up more;
    §4.2 (6.19): one pass that starts at the given list."""
    m = _three_lists(kern)
    events = trace(m)
    pindex = order_to_pindex(m.kernel, m.geom, MIGRATE_MOVABLE, 0)
    call(0, free_pcppages_bulk, m, normal(m), 5, pcp(m), pindex)
    assert drained(events) == expected
    assert pcp(m).count == 12 - 5
    check_invariants(m)


def test_bulk_free_favours_fuller_lists_when_one_is_empty() -> None:
    """§3.2 free_pcppages_bulk phase 1 (5.10): each empty list skipped raises
    batch_free, so the next non-empty list gives up one more page: with RECLAIMABLE
    empty, MOVABLE gives one page and UNMOVABLE two, in turn."""
    m = _pcp_lists("v5.10", (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE))
    assert pcp_list(m, MIGRATE_RECLAIMABLE) == []
    events = trace(m)
    call(0, free_pcppages_bulk, m, normal(m), 6, pcp(m), 0)
    assert [p for p, _ in drained(events)] == [4, 0, 1, 5, 2, 3]


def test_bulk_free_of_the_only_nonempty_list_takes_everything_from_it() -> None:
    """§3.2 (5.10): when only one list is non-empty, all pages come from it, oldest
    first."""
    m = boot("v5.10")
    pfns = [alloc(m) for _ in range(4)]
    set_pcp_limits(m, normal(m), 64, 1)
    for p in pfns:
        put(m, p)
    events = trace(m)
    call(0, free_pcppages_bulk, m, normal(m), 3, pcp(m), 0)
    assert [p for p, _ in drained(events)] == [0, 1, 2]
    assert pcp_list(m) == [3]


# ---------------------------------------------------------------------------------------
# flushes


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_free_flushes_batch_oldest_pages_when_count_reaches_high(kern: str) -> None:
    """§3.2 free_unref_page_commit step 4 (5.x): after adding the page, ``count >= high``
    flushes ``batch`` pages, the oldest. With high 4 and batch 2 the 5.14+ scaling
    (nr_pcp_free) and 6.7+ tuning (§5.3, high_min == high_max) free 2 as well."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(6)]
    set_pcp_limits(m, normal(m), 4, 2)
    for p in pfns[:3]:
        put(m, p)
    assert pcp_list(m) == [2, 1, 0] and pcp(m).count == 3
    put(m, 3)
    assert pcp_list(m) == [3, 2] and pcp(m).count == 2
    assert 0 in buddy(m, 1)  # 0 and 1 went back and merged
    put(m, 4)
    assert pcp(m).count == 3
    put(m, 5)
    assert pcp_list(m) == [5, 4] and pcp(m).count == 2
    assert normal(m).nr_free_pages == 64 - 2
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_high_zero_batch_one_flushes_each_free_and_refills_one_page(kern: str) -> None:
    """§5.4 (5.x) and §5.3 (6.19): with high 0 and batch 1 every free flushes exactly one
    page, so a pcp that starts empty ends empty after each free, and an allocation on an
    empty list refills one page and consumes it."""
    m = boot(kern, limits=(0, 1))
    z = normal(m)
    pfns = []
    for i in range(5):
        pfns.append(alloc(m))
        assert pcp(m).count == 0 and z.nr_free_pages == 64 - (i + 1)
    for i, p in enumerate(pfns):
        put(m, p)
        assert pcp(m).count == 0 and not any(pcp(m).lists)
        assert z.nr_free_pages == 64 - 5 + i + 1
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_high_zero_leaves_leftover_pages_behind(kern: str) -> None:
    """§5.4: if the lists hold k pages when high becomes 0, each free still flushes only
    one page, and it is the oldest, not the one just added: the pcp keeps k pages until
    a drain empties it."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(4)]
    set_pcp_limits(m, normal(m), 16, 4)
    put(m, pfns[0])
    put(m, pfns[1])
    set_pcp_limits(m, normal(m), 0, 1)
    put(m, pfns[2])
    assert pcp_list(m) == [2, 1] and pcp(m).count == 2
    put(m, pfns[3])
    assert pcp_list(m) == [3, 2] and pcp(m).count == 2
    call(0, drain_pages, m, 0)
    assert pcp(m).count == 0
    assert buddy(m, 3)[0] == 0  # everything merged again
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_boot_pagesets_never_keep_pages(kern: str) -> None:
    """§2.3: unpopulated zones use the static boot pagesets (high 0, batch 1), and so
    does a zone before setup_zone_pageset or after zone_pcp_reset; every addition is
    flushed at once and every refill consumed, so they never hold a page."""
    m = boot(kern, nr_cpus=2, limits=None)
    for name in ("DMA", "DMA32", "Movable"):
        z = m.zone(name)
        assert z.boot_pageset and z.per_cpu_pageset is m.boot_pagesets
    assert all((p.high, p.batch) == (0, 1) for p in m.boot_pagesets)
    # point the populated zone back at the boot pagesets, as zone_pcp_reset does
    z = normal(m)
    z.per_cpu_pageset = m.boot_pagesets
    z.boot_pageset = True
    held = []
    for cpu in (0, 1, 0):
        for order in (0, 1):
            held.append((alloc(m, order, cpu=cpu), order))
            assert not any(p.count or any(p.lists) for p in m.boot_pagesets)
    small = [p for p, o in held if o == 0]
    for p in small:
        m.refcount[p] = 0
    call(1, free_unref_page_list, m, small)
    for p, order in held:
        if order:
            put(m, p, order, cpu=1)
        assert not any(p.count or any(p.lists) for p in m.boot_pagesets)
    check_invariants(m)
    assert z.nr_free_pages == 64


# ---------------------------------------------------------------------------------------
# merging in __free_one_page


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_free_merges_buddies_up_to_the_largest_order(kern: str) -> None:
    """§2.2, §3.2 __free_one_page: a freed block merges with its free buddy of the same
    order (buddy = pfn ^ (1 << order)) until a buddy is not free."""
    m = boot(kern)
    a, b = alloc(m), alloc(m)
    assert buddy(m, 0) == [] and buddy(m, 1) == [2] and buddy(m, 2) == [4]
    put(m, b)
    assert buddy(m, 0) == [1]  # its buddy 0 is allocated
    put(m, a)
    assert buddy(m, 0) == buddy(m, 1) == buddy(m, 2) == []
    assert sorted(buddy(m, 3)) == list(range(0, 64, 8))
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_isolated_pageblock_never_merges_with_a_non_isolated_one(kern: str) -> None:
    """§3.2 __free_one_page step 3 (5.x): above pageblock size, a free block of an
    isolated pageblock and one of a non-isolated pageblock do not merge, either way
    round; §4.2 (6.10+): ISOLATE is not mergeable, same outcome. The isolated block is
    on the ISOLATE list and not counted in NR_FREE_PAGES (§2.2)."""
    m = boot(kern)
    z = normal(m)
    a, b = alloc(m, order=2), alloc(m, order=2)
    assert (a, b) == (0, 4)
    isolate_block(m, b)
    put(m, b, order=2)
    assert buddy(m, 2, MIGRATE_ISOLATE) == [4]
    assert z.nr_free_pages == 64 - 8
    put(m, a, order=2)
    assert buddy(m, 2, MIGRATE_MOVABLE) == [0]
    assert buddy(m, 2, MIGRATE_ISOLATE) == [4]
    assert 0 not in buddy(m, 3)
    assert z.nr_free_pages == 64 - 4
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_isolated_pageblock_free_merges_within_the_pageblock(kern: str) -> None:
    """§3.2 step 2: below pageblock size merging ignores types; an isolated block's
    pages merge with each other on the ISOLATE list."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(4)]
    isolate_block(m, 0)
    for p in pfns:
        put(m, p)
    assert buddy(m, 2, MIGRATE_ISOLATE) == [0]
    assert normal(m).nr_free_pages == 60
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_different_pcp_types_merge_above_pageblock_size(kern: str) -> None:
    """§3.2 step 3 (5.x): only isolation stops a merge across pageblocks, so an
    UNMOVABLE and a MOVABLE pageblock merge and keep their types. §4.2 (6.10+): both
    types are mergeable, so they merge and the buddy's pageblock takes the freed
    block's type."""
    m = boot(kern)
    a, b = alloc(m, order=2), alloc(m, order=2)
    call(0, set_pageblock_migratetype, m, b, MIGRATE_UNMOVABLE)
    put(m, b, order=2)
    assert buddy(m, 2, MIGRATE_UNMOVABLE) == [4]
    put(m, a, order=2)
    assert 0 in buddy(m, 3, MIGRATE_MOVABLE)
    retyped = m.kernel.no_pcp_migratetype_cache
    assert get_pageblock_migratetype(m, b) == (MIGRATE_MOVABLE if retyped
                                               else MIGRATE_UNMOVABLE)
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_highatomic_pageblock_merges_only_before_6_10(kern: str) -> None:
    """5.x (§3.2 step 3): a HIGHATOMIC pageblock merges with a MOVABLE neighbour like
    any non-isolated one. 6.10+ (§4.2, migratetype_is_mergeable): HIGHATOMIC is not
    mergeable, so the two order-2 blocks stay apart."""
    m = boot(kern)
    a, b = alloc(m, order=2), alloc(m, order=2)
    call(0, set_pageblock_migratetype, m, a, MIGRATE_HIGHATOMIC)
    put(m, b, order=2)
    put(m, a, order=2)
    if m.kernel.no_pcp_migratetype_cache:
        assert buddy(m, 2, MIGRATE_HIGHATOMIC) == [0]
        assert buddy(m, 2, MIGRATE_MOVABLE) == [4]
    else:
        assert buddy(m, 2, MIGRATE_HIGHATOMIC) == buddy(m, 2, MIGRATE_MOVABLE) == []
        assert 0 in buddy(m, 3, MIGRATE_MOVABLE) + buddy(m, 3, MIGRATE_HIGHATOMIC)
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# isolation and the cached migratetype


def _free_one(m: Machine, pfn: int, how: str) -> None:
    if how == "list":
        m.refcount[pfn] = 0
        call(0, free_unref_page_list, m, [pfn])
    else:
        put(m, pfn)


@pytest.mark.parametrize("how", ["single", "list"])
@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_free_of_isolated_page_bypasses_pcplist(kern: str, how: str) -> None:
    """§3.2 free_unref_page_commit step 2 (5.x) and §4.2 step 4 (6.19): a page whose
    block type (read at prepare) is ISOLATE goes straight to the buddy's ISOLATE list,
    not to the pcplist, and NR_FREE_PAGES does not count it (§2.2)."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(4)]
    set_pcp_limits(m, normal(m), 16, 4)  # a non-isolated page would stay on the pcp
    isolate_block(m, 0)
    _free_one(m, pfns[0], how)
    assert pcp(m).count == 0
    assert buddy(m, 0, MIGRATE_ISOLATE) == [0]
    assert normal(m).nr_free_pages == 60
    _free_one(m, pfns[1], how)
    assert buddy(m, 1, MIGRATE_ISOLATE) == [0]
    check_invariants(m)
    # a page of a non-isolated block still goes to the pcplist
    b = alloc(m)
    _free_one(m, b, how)
    assert pcp_list(m)[0] == b


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_drain_sends_stale_page_of_isolated_block_to_isolate_list(kern: str) -> None:
    """§3.2 free_pcppages_bulk phase 2 (5.x): a page cached MOVABLE on a pcplist whose
    block was isolated since is freed with the block's *current* type when the zone has
    isolated blocks, so it lands on the ISOLATE list; 6.10+ always reads the block
    (§4.2)."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(4)]
    set_pcp_limits(m, normal(m), 16, 4)
    put(m, pfns[0])
    assert pcp_list(m) == [0]
    isolate_block(m, 0)
    events = trace(m)
    call(0, drain_pages, m, 0)
    assert drained(events) == [(0, MIGRATE_ISOLATE)]
    assert buddy(m, 0, MIGRATE_ISOLATE) == [0]
    assert normal(m).nr_free_pages == 60
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_drain_rereads_block_type_only_if_zone_has_isolated_blocks(kern: str) -> None:
    """§3.2 phase 2, §2.5: 5.x-6.9 re-read the block only when nr_isolate_pageblock is
    non-zero, so isolating a block without counting it sends the stale page to the
    MOVABLE list; 6.10+ has no cached type to be stale. Either way the machine is then
    inconsistent, and check_invariants says so under rule "isolation"."""
    m = boot(kern)
    pfns = [alloc(m) for _ in range(4)]
    set_pcp_limits(m, normal(m), 16, 4)
    put(m, pfns[0])
    call(0, set_pageblock_migratetype, m, 0, MIGRATE_ISOLATE)  # not counted
    call(0, drain_pages, m, 0)
    stale = m.kernel.cached_pcp_migratetype
    assert buddy(m, 0, MIGRATE_MOVABLE if stale else MIGRATE_ISOLATE) == [0]
    with pytest.raises(InvariantViolation) as exc:
        check_invariants(m)
    assert exc.value.rule == "isolation"


# ---------------------------------------------------------------------------------------
# fallback and stealing (__rmqueue_fallback, steal_suitable_fallback)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_fallback_claims_whole_pageblocks_of_a_large_block(kern: str) -> None:
    """§3.1 __rmqueue_fallback: with no UNMOVABLE free block, the request falls back to
    MOVABLE, largest block first; a block of pageblock order or more is claimed whole
    (every pageblock it covers retyped), and the request is then served from it."""
    m = boot(kern)
    assert alloc(m, mt=MIGRATE_UNMOVABLE) == 0
    assert [get_pageblock_migratetype(m, p) for p in (0, 4, 8)] == [U, U, M]
    assert buddy(m, 0, U) == [1] and buddy(m, 1, U) == [2] and buddy(m, 2, U) == [4]
    assert sorted(buddy(m, 3, M)) == list(range(8, 64, 8))
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_fallback_claims_pageblock_when_half_of_it_is_free(kern: str) -> None:
    """§3.1 steal_suitable_fallback: a smaller block's pageblock is claimed when its
    free pages plus compatible pages reach half a pageblock: all its free pages move to
    the requested type's lists and the block is retyped."""
    m = boot(kern, pages=8)
    assert alloc(m) == 0  # MOVABLE (migratable): free 1, 2-3 in pageblock 0
    assert alloc(m, order=2) == 4  # pageblock 1 fully allocated
    assert alloc(m, mt=MIGRATE_UNMOVABLE) == 1  # 3 free >= 2: claimed
    assert get_pageblock_migratetype(m, 0) == MIGRATE_UNMOVABLE
    assert buddy(m, 1, U) == [2] and buddy(m, 1, M) == []
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_fallback_steals_without_claiming_a_mostly_used_pageblock(kern: str) -> None:
    """§3.1 steal_suitable_fallback: with one free page and three movable pages in the
    pageblock, the request takes the page but the block stays MOVABLE."""
    m = boot(kern, pages=8)
    assert [alloc(m) for _ in range(3)] == [0, 1, 2]
    assert alloc(m, order=2) == 4
    assert alloc(m, mt=MIGRATE_UNMOVABLE) == 3
    assert get_pageblock_migratetype(m, 0) == MIGRATE_MOVABLE
    assert normal(m).nr_free_pages == 0
    check_invariants(m)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_steal_without_claim_leaves_the_rest_of_the_block_by_generation(kern: str) -> None:
    """A fallback that cannot claim the pageblock (2 free pages of 8, the rest movable):
    5.x-6.9 (§3.1 steal_suitable_fallback) first move every free page of the block to
    the requested type's lists and allocate from there, so the rest of the split block
    sits on an UNMOVABLE list inside a MOVABLE pageblock; 6.10+ (freelist hygiene,
    [M-hannes] series; steal_suitable_fallback single_page in the 6.11 and 6.13 trees,
    __rmqueue_steal in [K619]) take just the page and leave the rest on the block's own
    MOVABLE list."""
    m = boot(kern, pages=16, geom=tiny(3, 5, 5))
    assert [alloc(m) for _ in range(6)] == list(range(6))  # 6-7 stay free (order 1)
    assert alloc(m, order=3) == 8  # pageblock 1 fully allocated
    assert alloc(m, mt=MIGRATE_UNMOVABLE) == 6
    assert get_pageblock_migratetype(m, 0) == MIGRATE_MOVABLE
    rest = MIGRATE_MOVABLE if m.kernel.freelist_hygiene else MIGRATE_UNMOVABLE
    assert buddy(m, 0, rest) == [7]
    assert normal(m).nr_free_pages == 1
    check_invariants(m)
    put(m, 6)
    assert buddy(m, 1, MIGRATE_MOVABLE) == [6]
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# bad frees


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_double_free_is_a_bad_page(kern: str) -> None:
    """§2.4: a free page has refcount 0; freeing it again is bad_page()."""
    m = boot(kern)
    p = alloc(m)
    put(m, p)
    with pytest.raises(BadPage, match="refcount 0"):
        put(m, p)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_free_of_a_page_on_a_pcplist_is_a_bad_page(kern: str) -> None:
    """§2.4: a page on a pcplist is free (refcount 0, not PageBuddy); freeing it again
    through the free path's checks (free_pages_prepare) is bad_page()."""
    m = boot(kern, limits=(16, 4))
    p = alloc(m)
    put(m, p)
    assert m.flags[p] & PG_pcp
    with pytest.raises(BadPage, match="not allocated"):
        call(0, free_unref_page, m, p, 0)


@pytest.mark.parametrize("kern", ALL_KERNELS)
def test_free_of_a_buddy_page_is_a_bad_page(kern: str) -> None:
    """§2.4: a page inside a free buddy block (refcount 0, PageBuddy on its head) is not
    allocated; freeing it is bad_page()."""
    m = boot(kern)
    with pytest.raises(BadPage, match="not allocated"):
        call(0, free_unref_page, m, 8, 0)


@pytest.mark.parametrize("kern", ALL_KERNELS)
@pytest.mark.parametrize(("alloc_order", "free_order"), [(1, 0), (0, 1), (2, 3), (3, 2)])
def test_free_with_the_wrong_order_is_a_bad_page(kern: str, alloc_order: int,
                                                  free_order: int) -> None:
    """§3.2: the order given to __free_pages must be the one allocated; the model keeps
    it in page_private (as compound pages keep theirs) and calls any other bad_page()."""
    m = boot(kern)
    p = alloc(m, order=alloc_order)
    with pytest.raises(BadPage, match="order"):
        put(m, p, order=free_order)


@pytest.mark.parametrize("kern", ["v5.10", "v6.19"])
def test_free_of_a_tail_page_is_a_bad_page(kern: str) -> None:
    """§2.4: only the head of an allocated block holds the reference."""
    m = boot(kern)
    p = alloc(m, order=2)
    with pytest.raises(BadPage):
        put(m, p + 1)


# ---------------------------------------------------------------------------------------
# the invariant checker finds deliberate corruption


def _busy_machine(kern: str) -> Machine:
    """Two CPUs, pages on both pcplists, allocated and free blocks of several orders."""
    m = boot(kern, nr_cpus=2, limits=(16, 4))
    for cpu in (0, 1):
        alloc(m, cpu=cpu)
    alloc(m, order=2)
    check_invariants(m)
    return m


def _corrupt_counter(m: Machine) -> None:
    normal(m).nr_free_pages += 1


def _corrupt_nr_free(m: Machine) -> None:
    normal(m).nr_free[3] -= 1


def _corrupt_pcp_count(m: Machine) -> None:
    pcp(m, 1).count += 1


def _unlink_free_block(m: Machine) -> None:
    z = normal(m)
    assert buddy(m, 3)[-1] == 56
    pa._unlink(m, 56)
    z.nr_free[3] -= 1
    z.nr_free_pages -= 8


def _lose_free_block(m: Machine) -> None:
    _unlink_free_block(m)
    m.flags[56] &= ~PG_buddy


def _pfn_on_two_pcplists(m: Machine) -> None:
    pfn = pcp_list(m, cpu=0)[0]
    pcp(m, 1).lists[MIGRATE_MOVABLE].appendleft(pfn)
    pcp(m, 1).count += 1


def _split_free_block(m: Machine) -> None:
    """Two free buddies that should have been one block."""
    z = normal(m)
    pa.del_page_from_free_list(m, z, 56, 3)
    for pfn in (56, 60):
        pa.set_buddy_order(m, pfn, 2)
        pa.add_to_free_list(m, z, pfn, 2, MIGRATE_MOVABLE)


def _isolate_block_with_free_pages(m: Machine) -> None:
    call(0, set_pageblock_migratetype, m, 56, MIGRATE_ISOLATE)
    normal(m).nr_isolate_pageblock += 1


def _miscount_isolated_blocks(m: Machine) -> None:
    normal(m).nr_isolate_pageblock += 1


def _refcount_on_free_page(m: Machine) -> None:
    m.refcount[56] = 1


def _page_on_boot_pageset(m: Machine) -> None:
    m.boot_pagesets[0].lists[0].append(56)
    m.boot_pagesets[0].count += 1


@pytest.mark.parametrize("kern", ["v5.10", "v6.19"])
@pytest.mark.parametrize(("corrupt", "rule"), [
    (_corrupt_counter, "counters"),
    (_corrupt_nr_free, "counters"),
    (_corrupt_pcp_count, "counters"),
    (_unlink_free_block, "one place"),
    (_lose_free_block, "one place"),
    (_pfn_on_two_pcplists, "one place"),
    (_split_free_block, "merged"),
    (_isolate_block_with_free_pages, "isolation"),
    (_miscount_isolated_blocks, "isolation"),
    (_refcount_on_free_page, "buddy"),
    (_page_on_boot_pageset, "pcp"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else v)
def test_invariants_catch_corruption(kern: str, corrupt: Callable[[Machine], Any],
                                     rule: str) -> None:
    """Each rule of pagesim.model.invariants is checked: a deliberately broken machine
    raises InvariantViolation naming that rule."""
    m = _busy_machine(kern)
    corrupt(m)
    with pytest.raises(InvariantViolation) as exc:
        check_invariants(m)
    assert exc.value.rule == rule, str(exc.value)


@pytest.mark.parametrize("kern", ["v5.10", "v6.9", "v6.10", "v6.19"])
def test_invariants_check_freelist_hygiene_from_6_10(kern: str) -> None:
    """A free block on another type's list than its pageblock's: normal before 6.10
    (steals move free pages without retyping), a violation since (freelist_hygiene)."""
    m = _busy_machine(kern)
    pa.move_to_free_list(m, normal(m), 56, 3, MIGRATE_UNMOVABLE)
    if not m.kernel.freelist_hygiene:
        check_invariants(m)
        return
    with pytest.raises(InvariantViolation) as exc:
        check_invariants(m)
    assert exc.value.rule == "hygiene", str(exc.value)


# ---------------------------------------------------------------------------------------
# kernel generations


@pytest.mark.parametrize(("name", "words"), [
    ("v7.0", "v5.8 to v6.19"),
    ("v5.7", "v5.8 to v6.19"),
    ("v5.20", "v5.8 to v6.19"),
    ("v6.20", "v5.8 to v6.19"),
    ("foo", "a release such as"),
    ("", "a release such as"),
    ("v6", "a release such as"),
])
def test_unknown_kernel_names_are_rejected_with_the_range(name: str, words: str) -> None:
    """The message quotes the name and says what is accepted."""
    with pytest.raises(UnknownKernelError, match=words) as exc:
        kernel(name)
    assert repr(name) in str(exc.value)


@pytest.mark.parametrize(("name", "canonical"), [
    ("v5.10", "v5.10"), ("5.10", "v5.10"), ("v6.1.158", "v6.1"), (" v6.19 ", "v6.19")])
def test_kernel_names_are_normalised(name: str, canonical: str) -> None:
    """A stable point release names its series."""
    assert kernel(name).name == canonical


def test_features_follow_release_order() -> None:
    """Each feature is off before its release and on from it."""
    for change in CHANGES:
        major, minor = change.since
        assert getattr(kernel(f"v{major}.{minor}"), change.name) is True, change.name
        before = (major, minor - 1) if minor else (major - 1, 19)
        if before >= (5, 8):
            assert getattr(kernel(f"v{before[0]}.{before[1]}"), change.name) is False


def test_register_variant_overrides_one_feature() -> None:
    name = "v5.11-test-no-zone-pcp-disable"
    register_variant(name, "v5.11", {"zone_pcp_disable": False},
                     "5.11 without zone_pcp_disable (test)")
    try:
        k = kernel(name)
        base = kernel("v5.11")
        assert k.name == name and k.version == (5, 11)
        assert k.description == "5.11 without zone_pcp_disable (test)"
        assert k.zone_pcp_disable is False and base.zone_pcp_disable is True
        assert {f: v for f, v in k.features().items() if v != base.features()[f]} == {
            "zone_pcp_disable": False}
        # the variant runs: a machine of it boots and allocates
        m = boot(name)
        assert m.kernel == k
        put(m, alloc(m))
        check_invariants(m)
    finally:
        VARIANTS.pop(name, None)


def test_register_variant_rejects_unknown_features() -> None:
    with pytest.raises(UnknownKernelError, match="no_such_feature"):
        register_variant("bad", "v5.11", {"no_such_feature": True}, "")
    assert "bad" not in VARIANTS
    with pytest.raises(UnknownKernelError, match="no_such_feature"):
        Kernel("x", (5, 11), (("no_such_feature", True),))


def test_one_kernel_object_per_generation() -> None:
    """The linked sequential forms are specialised per Kernel object, so machines of a
    generation must share one (else every new machine links its code again)."""
    a = simple_machine(kern="v5.11", zones=(("Normal", 1024),))
    b = simple_machine(kern="5.11", zones=(("Normal", 1024),))
    assert a.kernel is b.kernel is kernel(" v5.11")
    assert kernel("v5.11-unforced") is kernel("v5.11-unforced")
    assert kernel("v5.11-unforced") is not kernel("v5.11")
    assert kernel("v6.1").name == "v6.1"
