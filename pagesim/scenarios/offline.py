# SPDX-License-Identifier: GPL-2.0-only
"""Memory offline against a concurrent free (spec §6.1-6.2, §7).

A 32-page Normal zone of ``tiny(2, 4, 4)`` (pageblocks of 4 pages, memory blocks of 16)
on two CPUs. Before the run CPU1 allocates a MOVABLE page in the second memory block
(``[16, 32)``) and holds it; then pcp limits are high 8 / batch 2, so a free parks the
page on CPU1's pcplist. CPU0 runs ``offline_pages(16, 16, max_retries=2)`` while CPU1
frees its page through free_unref_page (the prepare half reads the block type before
the preemptible window, the commit adds the page to the pcplist).

**Check.** At every quiet state (CPU1 outside its free: a busy marker, as in
:mod:`pagesim.scenarios.allocator`; no zone or pcp lock held) no pcplist may hold a page
of an isolated pageblock (:func:`~pagesim.model.invariants.isolated_pages_on_pcplists`,
spec §7 I2 restricted to isolated blocks). Unlike
:func:`~pagesim.model.invariants.isolation_safety` this does not require the zone's
pcplists to be disabled, so it also applies to 5.8-5.10, which never disable them. In
5.8 the page freed with a stale MOVABLE type is parked after isolation's drain (§6.1);
from 5.11 the commit flushes it to the ISOLATE list inside the section (§6.2).

**Liveness is not checked.** "offline returns 0" cannot be a final check here: the
checker has no fairness, so CPU1 may stay in the window between its refcount drop and
its commit while CPU0 fails ``max_retries`` tests, and every generation then gives up
at the model's retry bound. The final check only requires a *kernel* error to be absent:
offline returns 0 or gives up at :data:`~pagesim.model.memory_hotplug.RETRY_BOUND`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import isolated_pages_on_pcplists
from pagesim.model.kernels import kernel as kernel_of
from pagesim.model.memory_hotplug import RETRY_BOUND, hotplug_state, offline_pages
from pagesim.model.migrate import hold, release
from pagesim.model.mmzone import MIGRATE_MOVABLE, HeldPage, Machine, Zone
from pagesim.model.page_alloc import __free_pages, alloc_pages
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.executor import Program
from pagesim.runtime.ops import WRITE_ONCE_IDX
from pagesim.runtime.sequential import call
from pagesim.scenarios import Scenario, register

Gen = Generator[Any, Any, Any]

ZONE_PAGES = 32
BLOCK_START = 16
BLOCK_PAGES = 16
MAX_RETRIES = 2


@dataclass
class OfflineState:
    m: Machine
    zone: Zone
    held: HeldPage
    #: per CPU, 1 while its task is inside the free (CPU0's entry stays 0)
    busy: list[int] = field(default_factory=lambda: [0, 0])
    #: offline_pages()'s return value, once it returned
    result: list[int | None] = field(default_factory=lambda: [None])


def offline_machine(kernel: str) -> OfflineState:
    m = simple_machine(kern=kernel_of(kernel), geom=tiny(2, 4, 4), nr_cpus=2,
                       zones=(("Normal", ZONE_PAGES),), min_free_kbytes=0)
    zone = m.zone("Normal")
    set_pcp_limits(m, zone, 0, 1)  # keep the buddy exact while picking the page
    others = []
    while True:
        pfn: int = call(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
        assert pfn >= 0
        if BLOCK_START <= pfn < BLOCK_START + BLOCK_PAGES:
            break
        others.append(pfn)
    for p in others:
        call(1, __free_pages, m, p, 0)
    set_pcp_limits(m, zone, 8, 2)
    hotplug_state(m)
    return OfflineState(m, zone, hold(m, "cpu1", pfn))


def quiet(s: OfflineState) -> bool:
    if any(s.busy) or s.zone.lock.owner is not None:
        return False
    return s.zone.boot_pageset or all(p.lock.owner is None
                                      for p in s.zone.per_cpu_pageset)


def no_isolated_page_on_pcplists(s: OfflineState) -> str | None:
    """Spec §7 I2 for isolated blocks, at every quiet state."""
    if quiet(s):
        found = isolated_pages_on_pcplists(s.m)
        if found:
            name, pfn = found[0]
            return f"{name} holds pfn {pfn:#x} of an isolated pageblock"
    return None


def offline_ends_without_kernel_error(s: OfflineState) -> str | None:
    """offline_pages() returned 0 or gave up at the model's retry bound (see the
    module docstring for why giving up is not a violation by itself)."""
    ret = s.result[0]
    if ret == 0:
        return None
    event = hotplug_state(s.m).log[-1]
    if event.reason == RETRY_BOUND:
        return None
    return f"offline_pages returned {ret} ({event.reason})"


def observed(s: OfflineState) -> Iterable[Any]:
    yield (s.busy, 0)
    yield (s.busy, 1)


def _offline(s: OfflineState) -> Gen:
    ret = yield from offline_pages(s.m, BLOCK_START, BLOCK_PAGES, MAX_RETRIES)
    s.result[0] = ret


def _free(s: OfflineState) -> Gen:
    yield WRITE_ONCE_IDX(s.busy, 1, 1, "busy")
    release(s.m, s.held)
    yield from __free_pages(s.m, s.held.pfn, 0)
    yield WRITE_ONCE_IDX(s.busy, 1, 0, "busy")


def offline_vs_free(kernel: str, cpus: int) -> Program:
    """CPU0 offlines the block while CPU1 frees the page it holds in it."""

    def setup() -> tuple[OfflineState, dict[int, Any]]:
        s = offline_machine(kernel)
        return s, {0: _offline(s), 1: _free(s)}

    return Program(f"offline-vs-free({kernel})", setup,
                   checks=[no_isolated_page_on_pcplists],
                   final_checks=[offline_ends_without_kernel_error],
                   observes=observed, max_steps=4000)


register(Scenario(
    "offline-vs-free",
    "CPU0 runs offline_pages on a memory block while CPU1 frees a page of it through "
    "free_unref_page; no isolated page on a pcplist at quiet states (violation on "
    "v5.8-v5.10)",
    offline_vs_free, "verified"))
