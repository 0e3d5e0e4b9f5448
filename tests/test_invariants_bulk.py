# SPDX-License-Identifier: GPL-2.0-only
"""The invariant check reads long runs of allocated pages in bulk; a bad page inside
such a run must still be found and named exactly as the page-by-page check names it."""

from __future__ import annotations

import pytest

from pagesim.model.build import simple_machine
from pagesim.model.invariants import InvariantViolation, check_invariants
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine, PG_buddy, PG_reserved
from pagesim.model.page_alloc import __free_pages, alloc_pages
from pagesim.runtime.sequential import call

PAGES = 1 << 12


def busy_machine() -> tuple[Machine, list[int]]:
    """A zone of 4096 pages, nearly all allocated order-0 pages: long allocated runs."""
    m = simple_machine(kern="v5.11", nr_cpus=1, zones=(("Normal", PAGES),))
    held = []
    while True:
        pfn = call(0, alloc_pages, m, 0, MIGRATE_MOVABLE)
        if pfn is None or pfn < 0:
            break
        held.append(pfn)
        if len(held) > PAGES - 64:
            break
    check_invariants(m)
    return m, sorted(held)


def test_a_busy_machine_checks_clean_and_frees_clean() -> None:
    m, held = busy_machine()
    assert len(held) > 3000
    for pfn in held[::2]:
        call(0, __free_pages, m, pfn, 0)
    check_invariants(m)


@pytest.mark.parametrize("where", [0, 1, 63, 64, 65, 700, -1])
def test_a_lost_page_inside_an_allocated_run_is_found(where: int) -> None:
    m, held = busy_machine()
    pfn = held[where]
    m.refcount[pfn] = 0  # neither allocated nor on any list
    with pytest.raises(InvariantViolation, match=f"pfn {pfn:#x} is lost"):
        check_invariants(m)


def test_a_flag_inside_an_allocated_run_is_judged_page_by_page() -> None:
    m, held = busy_machine()
    pfn = held[500]
    m.flags[pfn] |= PG_buddy  # allocated (refcount) yet marked free: still allocated
    check_invariants(m)
    m.flags[pfn] &= ~PG_buddy
    m.flags[pfn] |= PG_reserved
    check_invariants(m)  # a reserved page is a place of its own
    m.refcount[held[501]] = 0
    with pytest.raises(InvariantViolation, match=f"pfn {held[501]:#x} is lost"):
        check_invariants(m)


def test_a_tail_page_with_a_refcount_inside_a_free_block_is_named() -> None:
    m = simple_machine(kern="v5.11", nr_cpus=1, zones=(("Normal", PAGES),))
    check_invariants(m)
    head = next(p for p in range(0, PAGES, 1 << 10) if m.flags[p] & PG_buddy
                and m.private[p] == 10)
    m.refcount[head + 777] = 1
    with pytest.raises(InvariantViolation,
                       match=f"pfn {head + 777:#x} inside free block {head:#x}"):
        check_invariants(m)


def test_runs_of_reserved_pages_are_claimed_in_bulk_and_still_judged() -> None:
    m, held = busy_machine()
    run = held[100:400]
    assert run == list(range(run[0], run[0] + 300))  # consecutive allocated pages
    for pfn in run:
        m.refcount[pfn] = 0
        m.flags[pfn] |= PG_reserved
    check_invariants(m)  # reserved: a place of its own
    m.flags[run[150]] |= PG_buddy  # another flag byte splits the run: still reserved
    check_invariants(m)
    m.flags[run[150]] &= ~PG_buddy
    m.flags[run[299]] &= ~PG_reserved  # the run's last page: neither reserved nor held
    with pytest.raises(InvariantViolation, match=f"pfn {run[299]:#x} is lost"):
        check_invariants(m)
