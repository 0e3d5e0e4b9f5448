# SPDX-License-Identifier: GPL-2.0-only
"""Allocator scenarios: CPUs allocating, freeing and draining through the pcplists.

Each runs on a machine small enough to explore every interleaving: one 32-page Normal
zone of a tiny geometry (pageblocks of 4 pages, orders 0-3), no watermarks, pcp limits
pinned to high 3, batch 2 so that two order-0 allocations already refill from the buddy
and a third free flushes back to it.

**Checks.** The model's invariants (:func:`~pagesim.model.invariants.check_invariants`)
hold only between critical sections. The checks see the state, not the runtime, so they
can see a held ``zone->lock`` or 6.x ``pcp->lock`` but not a 5.x interrupts-off section
(that is the runtime's per-CPU token). So each task marks its CPU busy in the scenario
state (a ``WRITE_ONCE`` before and after every allocator call), a drain marks itself in
flight for its whole duration (its 5.x work items run on other CPUs inside it), and the
per-step check runs the invariants only when no marker is set and no lock is held.

The markers are also what the check *observes* (:class:`~pagesim.runtime.executor.Program`
``observes``): only the steps that set or clear one are visible to partial-order
reduction, so every order of the calls' starts and ends is explored while their insides
stay reduced. That is sound for this check: in a quiet state every CPU is between calls,
so the state is fixed by which calls finished, in which order, and by the orders of
their dependent steps, all of which DPOR explores. (Making every step visible instead
gives no reduction and does not finish for two CPUs.)

The final check drains every CPU's pcplists (sequentially: the execution is over) and
then requires every page of the zone to be free again, merged into maximal blocks, with
every invariant holding: nothing was lost, duplicated or left unmerged.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.kernels import kernel as kernel_of
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine, Zone
from pagesim.model.page_alloc import __free_pages, alloc_pages, drain_all_pages, drain_pages
from pagesim.model.pageset import set_pcp_limits
from pagesim.model.snapshot import machine_snapshot
from pagesim.runtime.executor import Program
from pagesim.runtime.ops import WRITE_ONCE_IDX
from pagesim.runtime.sequential import call
from pagesim.scenarios import Scenario, register

Gen = Generator[Any, Any, Any]

ZONE_PAGES = 32
PCP_HIGH = 3
PCP_BATCH = 2


@dataclass
class AllocState:
    """The machine, plus what the per-step check needs and cannot see in it."""

    m: Machine
    zone: Zone
    #: per CPU, 1 while its task is inside an allocator call (see the module docstring)
    busy: list[int] = field(default_factory=list)
    #: 1 while a drain is in flight: its work items run without marking their CPU busy
    draining: list[int] = field(default_factory=lambda: [0])


def tiny_machine(kernel: str, cpus: int) -> AllocState:
    """The scenarios' machine: 32 pages, pageblocks of 4, pcp high 3 / batch 2."""
    m = simple_machine(kern=kernel_of(kernel), geom=tiny(2, 4, 4), nr_cpus=cpus,
                       zones=(("Normal", ZONE_PAGES),), min_free_kbytes=0)
    zone = m.zone("Normal")
    set_pcp_limits(m, zone, PCP_HIGH, PCP_BATCH)
    return AllocState(m, zone, [0] * cpus)


def quiet(s: AllocState) -> bool:
    """No zone or pcp lock held, no task in a pcplist operation, no drain in flight."""
    if any(s.busy) or s.draining[0]:
        return False
    for z in s.m.zones:
        if z.lock.owner is not None:
            return False
        if not z.boot_pageset and any(p.lock.owner is not None for p in z.per_cpu_pageset):
            return False
    return True


def invariants_when_quiet(s: AllocState) -> str | None:
    """The model's invariants, at every quiet state."""
    if quiet(s):
        check_invariants(s.m)
    return None


def all_free_after_drain(s: AllocState) -> str | None:
    """Drain every CPU, then the whole zone must be free and fully merged."""
    for cpu in range(s.m.nr_cpus):
        call(cpu, drain_pages, s.m, cpu)
    check_invariants(s.m)
    z = s.zone
    if z.nr_free_pages != z.managed_pages:
        return (f"after draining every CPU, {z.nr_free_pages} of {z.managed_pages} pages "
                f"of zone {z.name} are free")
    top = len(z.nr_free) - 1
    expected = z.managed_pages >> top
    if z.nr_free[top] != expected:
        return (f"free pages not fully merged: {z.nr_free[top]} blocks of order {top}, "
                f"expected {expected} (free blocks per order: {z.nr_free})")
    return None


def observed(s: AllocState) -> Iterable[Any]:
    """The markers (see the module docstring): the check reports only when every marker
    is clear, so only the steps that set or clear one need to be visible."""
    for cpu in range(len(s.busy)):
        yield (s.busy, cpu)
    yield (s.draining, 0)


def _alloc(s: AllocState, cpu: int) -> Gen:
    yield WRITE_ONCE_IDX(s.busy, cpu, 1, "busy")
    pfn = yield from alloc_pages(s.m, 0, MIGRATE_MOVABLE, 2, 0)
    yield WRITE_ONCE_IDX(s.busy, cpu, 0, "busy")
    assert pfn >= 0, f"cpu{cpu}: order-0 allocation failed with {ZONE_PAGES} pages"
    return pfn


def _free(s: AllocState, cpu: int, pfn: int) -> Gen:
    yield WRITE_ONCE_IDX(s.busy, cpu, 1, "busy")
    yield from __free_pages(s.m, pfn, 0)
    yield WRITE_ONCE_IDX(s.busy, cpu, 0, "busy")


def alloc_then_free(s: AllocState, cpu: int, pages: int) -> Gen:
    """Allocate ``pages`` order-0 pages (the first refills the pcplist from the buddy),
    then free them (the last may flush a batch back)."""
    pfns = []
    for _ in range(pages):
        pfns.append((yield from _alloc(s, cpu)))
    for pfn in pfns:
        yield from _free(s, cpu, pfn)


def state_snapshot(s: AllocState) -> dict[str, object]:
    """What ``pagesim replay`` shows changing at each step: the machine's facts."""
    return machine_snapshot(s.m)


def pcp_alloc_free(kernel: str, cpus: int, pages: int = 1, *,
                   migration: bool = False) -> Program:
    """Every CPU allocates ``pages`` order-0 pages and frees them (``migration``: the
    tasks may change CPUs wherever they are preemptible)."""

    def setup() -> tuple[AllocState, dict[int, Any]]:
        s = tiny_machine(kernel, cpus)
        return s, {c: alloc_then_free(s, c, pages) for c in range(cpus)}

    name = f"pcp-alloc-free({kernel}, {cpus} cpus{', migration' if migration else ''})"
    return Program(name, setup,
                   checks=[invariants_when_quiet], final_checks=[all_free_after_drain],
                   observes=observed, max_steps=2000, migration=migration,
                   snapshot=state_snapshot)


def drain_zone(s: AllocState) -> Gen:
    """drain_all_pages(zone), marked as a drain in flight for the per-step check."""
    yield WRITE_ONCE_IDX(s.draining, 0, 1, "draining")
    yield from drain_all_pages(s.m, s.zone)
    yield WRITE_ONCE_IDX(s.draining, 0, 0, "draining")


def free_held(s: AllocState, cpu: int, pfns: list[int]) -> Gen:
    for pfn in pfns:
        yield from _free(s, cpu, pfn)


def pcp_drain_vs_free(kernel: str, cpus: int, pages: int = 2, *,
                      migration: bool = False) -> Program:
    """CPU0 drains the zone's pcplists on every CPU while CPU1 frees ``pages`` pages it
    allocated beforehand (so its pcplist already holds the rest of the refill)."""

    def setup() -> tuple[AllocState, dict[int, Any]]:
        s = tiny_machine(kernel, cpus)
        pfns = [call(1, alloc_pages, s.m, 0, MIGRATE_MOVABLE, 2, 0) for _ in range(pages)]
        return s, {0: drain_zone(s), 1: free_held(s, 1, pfns)}

    name = f"pcp-drain-vs-free({kernel}{', migration' if migration else ''})"
    return Program(name, setup,
                   checks=[invariants_when_quiet], final_checks=[all_free_after_drain],
                   observes=observed, max_steps=2000, migration=migration,
                   snapshot=state_snapshot)


register(Scenario(
    "pcp-alloc-free",
    "each CPU allocates an order-0 page (refilling its pcplist from the buddy) and "
    "frees it; invariants at every quiet state, all free and merged after draining",
    pcp_alloc_free, "verified", min_cpus=1, max_cpus=3))
register(Scenario(
    "pcp-drain-vs-free",
    "CPU0 runs drain_all_pages(zone) while CPU1 frees two pages onto its pcplist",
    pcp_drain_vs_free, "verified"))
