# SPDX-License-Identifier: GPL-2.0-only
"""Invariants hold between critical sections, not only between operations.

The checker checks them after every step in which no lock is held and no CPU is inside
an interrupts-off or pcp section; pages a CPU holds in a local variable at such a moment
(freed but not yet committed, taken but not yet handed out) are accounted as in transit.
"""

from __future__ import annotations

import pytest

from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import InvariantViolation, check_invariants
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine, PG_transit
from pagesim.model.page_alloc import (
    __free_pages,
    alloc_pages,
    free_unref_page,
    free_unref_page_list,
)
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.ops import CURRENT, Op, point
from pagesim.runtime.sequential import call, step_through

KERNELS = ["v5.10", "v5.11", "v5.14", "v6.1", "v6.10", "v6.19"]


def _quiet(m: Machine) -> bool:
    if CURRENT.irqs_off:
        return False
    for z in m.zones:
        if z.lock.owner is not None:
            return False
        if not z.boot_pageset and any(p.lock.owner is not None for p in z.per_cpu_pageset):
            return False
    return True


def _machine(k: str) -> Machine:
    m = simple_machine(kern=k, geom=tiny(2, 4, 4), nr_cpus=2, zones=(("Normal", 64),),
                       min_free_kbytes=0)
    set_pcp_limits(m, m.zone("Normal"), 4, 2)
    return m


@pytest.mark.parametrize("k", KERNELS)
def test_invariants_at_every_quiet_point(k: str) -> None:
    m = _machine(k)
    checked = 0
    transit_seen = 0

    def on_step(op: Op) -> None:
        nonlocal checked, transit_seen
        if _quiet(m):
            check_invariants(m)
            checked += 1
            transit_seen += sum(1 for f in m.flags if f & PG_transit)

    held = []
    for i in range(12):
        pfn = step_through(i % 2, alloc_pages, m, i % 3, MIGRATE_MOVABLE, 2, 0,
                           on_step=on_step)
        assert pfn >= 0
        held.append((pfn, i % 3))
    for pfn, order in held[:8]:
        step_through(1, __free_pages, m, pfn, order, on_step=on_step)
    batch = [p for p, o in held[8:] if o == 0]
    for p in batch:
        m.refcount[p] = 0
    step_through(0, free_unref_page_list, m, batch, on_step=on_step)
    assert checked > 50
    assert transit_seen > 0  # e.g. at the preemption point between prepare and commit


def test_a_freed_page_is_in_transit_until_committed() -> None:
    m = _machine("v5.11")
    pfn = call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, 0)
    m.refcount[pfn] = 0
    seen = []

    def on_step(op: Op) -> None:
        if isinstance(op, point):
            seen.append(m.flags[pfn] & PG_transit)
            check_invariants(m)
    step_through(0, free_unref_page, m, pfn, 0, on_step=on_step)
    assert seen == [PG_transit]
    assert not m.flags[pfn] & PG_transit
    check_invariants(m)
    # a lost page is still caught: drop the transit mark of an in-flight page
    pfn = call(0, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, 0)
    m.refcount[pfn] = 0
    with pytest.raises(InvariantViolation, match="lost"):
        check_invariants(m)
