# SPDX-License-Identifier: GPL-2.0-only
"""Memory offline against CPUs that allocate and free (spec §3.6, §6, §7).

The system of the 2020 fix, small enough to explore every interleaving: a Normal zone
of two pageblocks of 4 pages (``tiny(2, 3, 2)``: orders 0-2, memory blocks of one
4-page section, so the second pageblock is a memory block of its own), pcp high 3 and
batch 2. CPU0 offlines the second block, ``offline_pages(4, 4)``, giving up after
:data:`MAX_RETRIES` failed rounds. Every other CPU is a *worker*: it makes ``ops``
moves, each nondeterministically an allocation (an order-0 MOVABLE page, which it
then maps) or a free (it unmaps and frees the oldest page it holds), holding at most
:data:`MAX_HELD` pages; then it frees what it still holds and stops.

**Safety** (spec §7, the promise of isolation): no allocation returns a page of a
pageblock that was isolated for the whole allocation. A worker reads the block's bits
before it allocates and again after; if both say isolated and the page is in the block,
the page was taken from a list while its block was isolated: an assertion fails in the
worker. (The check reads the bits with ``READ_ONCE`` ops, so partial-order reduction
orders it against isolation like any other access.) Pages of isolated blocks are never
on the free lists an allocation takes from, so such a page came from a pcplist: the
race of §6.1 (5.8-5.10: a free commits a page after isolation's drain) or of §6.3/§6.5
(a refill the drain did not see). The moment between isolation and the drain that
follows it in 5.x is not flagged by itself: only an allocation that *uses* it is.

**Termination** (spec §7, bounded liveness with a fairness assumption). The checker
knows no fairness, so a schedule may keep a worker inside a free while CPU0 fails its
tests, and every generation then gives up at the bound: giving up is not a bug by
itself. The fairness assumed is "the other CPUs eventually stop": when CPU0 reaches its
bound it reads whether every worker has finished; if not, it gives up and the
execution says nothing about termination; if they have, it gets :data:`EXTRA_RETRIES`
more rounds alone, and failing those is a liveness violation: something the workers
left behind (a page parked on a pcplist) keeps the range busy forever, the hang of
§6.1 before 5.10's drain on every retry, and of §6.5 in 6.0-6.10. Executions where the
workers finish before CPU0's bound exist in every scenario, so a stuck page is found.

**Conservation**, at the end: every CPU's pcplists drained (sequentially: the run is
over), every page of the zone is free and merged, or offline if the offline succeeded;
the model's invariants hold (free counts, isolation counts, the merge rule at isolation
boundaries).

The workers' pages are registered as held (:func:`pagesim.model.migrate.hold`) in the
step that allocated them, and freed with :func:`~pagesim.model.migrate.unmap_and_put`,
so offline migrates them like a task's mapped pages.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from pagesim.model.build import simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.kernels import kernel as kernel_of
from pagesim.model.memory_hotplug import RETRY_BOUND, hotplug_state, offline_pages
from pagesim.model.migrate import hold, release, unmap_and_put
from pagesim.model.mmzone import (
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    HeldPage,
    Machine,
    PG_buddy,
    PG_lru,
    PG_offline,
    PG_pcp,
    Zone,
)
from pagesim.model.page_alloc import __free_pages, alloc_pages, drain_pages, free_unref_page_list
from pagesim.model.pageset import set_pcp_limits
from pagesim.model.snapshot import machine_snapshot
from pagesim.runtime.executor import Program
from pagesim.runtime.ops import (
    ATOMIC_ADD_IDX,
    READ_ONCE_IDX,
    WRITE_ONCE_IDX,
    choose,
    spin_lock,
    spin_unlock,
)
from pagesim.runtime.sequential import call
from pagesim.scenarios import Scenario, register

Gen = Generator[Any, Any, Any]

ZONE_PAGES = 8
BLOCK_START = 4
BLOCK_PAGES = 4
PCP_HIGH = 3
PCP_BATCH = 2
#: failed rounds (tests or migrations) before CPU0 gives up while workers still run
MAX_RETRIES = 2
#: further rounds CPU0 gets once every worker has stopped
EXTRA_RETRIES = 2
MAX_HELD = 2
DEFAULT_OPS = 2


@dataclass
class OfflineState:
    m: Machine
    zone: Zone
    #: per worker CPU: the pages it holds, oldest first
    held: dict[int, list[HeldPage]]
    #: per CPU, 1 once its worker has stopped (CPU0's entry is unused)
    finished: list[int]
    #: offline_pages()'s return value, once it returned
    result: list[int | None] = field(default_factory=lambda: [None])
    #: 1 if CPU0 reached its bound after every worker had stopped (and went on alone)
    alone: list[int] = field(default_factory=lambda: [0])
    check_safety: bool = True
    #: the range CPU0 works on: the upper half of the zone
    start: int = BLOCK_START
    nr: int = BLOCK_PAGES
    max_held: int = MAX_HELD


def offline_machine(kernel: str, cpus: int, check_safety: bool = True,
                    scale: int = 1) -> OfflineState:
    """The scenario's machine: ``8 * scale`` free pages in pageblocks of 4, memory
    blocks of one section (4 pages); CPU0's range is the upper half."""
    if cpus < 2:
        raise ValueError("the offline scenarios need CPU0 and at least one worker")
    if scale < 1:
        raise ValueError(f"scale {scale}: must be at least 1")
    pages = ZONE_PAGES * scale
    m = simple_machine(kern=kernel_of(kernel), geom=tiny(2, 3, 2), nr_cpus=cpus,
                       zones=(("Normal", pages),), min_free_kbytes=0)
    zone = m.zone("Normal")
    # Put the offlined block at the head of the free lists, so that the workers'
    # first refill takes pages of it (a fresh zone hands out pfn 0 first): allocate
    # everything, then free the first block before the second.
    set_pcp_limits(m, zone, 0, 1)
    pfns = [call(1, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, 0) for _ in range(pages)]
    for pfn in sorted(pfns):
        call(1, __free_pages, m, pfn, 0)
    set_pcp_limits(m, zone, PCP_HIGH, PCP_BATCH)
    hotplug_state(m, sections_per_block=1)
    return OfflineState(m, zone, {c: [] for c in range(1, cpus)}, [0] * cpus,
                        check_safety=check_safety, start=pages // 2, nr=pages // 2,
                        max_held=MAX_HELD * scale)


def _isolated(m: Machine, bits: int) -> bool:
    return bool(m.pb_type[bits] == MIGRATE_ISOLATE)


def worker_alloc(s: OfflineState, cpu: int) -> Gen:
    """Allocate an order-0 MOVABLE page and map it; with the safety check, fail if it
    is a page of the offlined block, isolated from before the allocation to after."""
    m = s.m
    first = s.start >> m.pageblock_order
    blocks = range(first, first + (s.nr >> m.pageblock_order))
    before = []
    if s.check_safety:
        for b in blocks:
            before.append((yield READ_ONCE_IDX(m.pageblock_flags, b, "pageblock")))
    pfn = yield from alloc_pages(m, 0, MIGRATE_MOVABLE, 2, 0)
    if pfn < 0:
        return  # every page is held, parked or offline: nothing to map
    # registered in the step that set the refcount: migration never sees it unmapped
    s.held[cpu].append(hold(m, f"cpu{cpu}", pfn))
    blk = pfn >> m.pageblock_order
    if s.check_safety and blk in blocks and _isolated(m, before[blk - first]):
        after = yield READ_ONCE_IDX(m.pageblock_flags, blk, "pageblock")
        assert not _isolated(m, after), (
            f"cpu{cpu} allocated pfn {pfn} of pageblock {blk}, which was isolated from "
            "before the allocation began until after it returned")


def worker(s: OfflineState, cpu: int, ops: int) -> Gen:
    """``ops`` moves, each an allocation or a free as the holdings allow, then free
    everything and stop."""
    held = s.held[cpu]
    for _ in range(ops):
        if not held:
            do_alloc = True
        elif len(held) >= s.max_held:
            do_alloc = False
        else:
            do_alloc = (yield choose(2)) == 0
        if do_alloc:
            yield from worker_alloc(s, cpu)
        else:
            yield from unmap_and_put(s.m, held.pop(0))
    while held:
        yield from unmap_and_put(s.m, held.pop(0))
    yield WRITE_ONCE_IDX(s.finished, cpu, 1, "finished")


def release_pages(m: Machine, held: list[HeldPage]) -> Gen:
    """Unmap a task's pages under the page table lock, then drop each reference; the
    pages whose last reference went are returned for one batched free (mm/swap.c
    release_pages, the exit_mmap path of the original race report)."""
    yield spin_lock(m.ptl)
    freed = []
    for h in held:
        pfn = h.pfn
        release(m, h)
        if not (yield ATOMIC_ADD_IDX(m.refcount, pfn, -1, "refcount")):
            m.flags[pfn] &= ~PG_lru  # off the LRU with the last reference
            freed.append(pfn)
    yield spin_unlock(m.ptl)
    return freed


def batched_worker(s: OfflineState, cpu: int) -> Gen:
    """Allocate two pages, then free both with one free_unref_page_list() call, whose
    block types are all read before any page is committed (spec §6.1)."""
    for _ in range(s.max_held):
        yield from worker_alloc(s, cpu)
    pfns = yield from release_pages(s.m, s.held[cpu])
    s.held[cpu].clear()
    yield from free_unref_page_list(s.m, pfns)
    yield WRITE_ONCE_IDX(s.finished, cpu, 1, "finished")


class _WaitForWorkers:
    """The fairness hook of offline_pages (``on_bound``): more rounds only if every
    worker has stopped. A callable with a ``fast`` variant, like a ``@kernel``
    function, because offline_pages calls it from both of its variants."""

    def __init__(self, s: OfflineState) -> None:
        self.s = s

    def __call__(self) -> Gen:
        s = self.s
        for cpu in range(1, len(s.finished)):
            if not (yield READ_ONCE_IDX(s.finished, cpu, "finished")):
                return 0
        s.alone[0] = 1
        return EXTRA_RETRIES

    def fast(self) -> int:
        if all(self.s.finished[1:]):
            self.s.alone[0] = 1
            return EXTRA_RETRIES
        return 0


def offliner(s: OfflineState) -> Gen:
    ret = yield from offline_pages(s.m, s.start, s.nr, MAX_RETRIES,
                                   _WaitForWorkers(s))
    s.result[0] = ret


def _where(m: Machine, pfn: int) -> str:
    """Where a page of the range is, for the liveness message."""
    for head in range(pfn, -1, -1):
        if m.flags[head] & PG_buddy:
            if head + (1 << m.private[head]) > pfn:
                return "free in the buddy"
            break
    f = m.flags[pfn]
    if f & PG_pcp:
        for z in m.zones:
            for pcp in z.per_cpu_pageset:
                if any(pfn in lst for lst in pcp.lists):
                    return f"parked on {pcp.name}'s pcplist"
        return "on a pcplist"
    if f & PG_offline:
        return "offline"
    if m.refcount[pfn]:
        return f"in use (refcount {m.refcount[pfn]})"
    return "being freed"


def offline_terminates(s: OfflineState) -> str | None:
    """Failing the extra rounds alone is a liveness violation (module docstring)."""
    ret = s.result[0]
    hp = hotplug_state(s.m)
    event = hp.log[-1] if hp.log else None
    if ret == 0 or event is None:
        return None
    if event.reason == RETRY_BOUND:
        if not s.alone[0]:
            return None  # gave up while workers ran: no verdict on termination
        where = [(p, _where(s.m, p)) for p in range(s.start, s.start + s.nr)]
        busy = [f"pfn {p} {w}" for p, w in where if w != "free in the buddy"]
        return (f"offline_pages never finishes: {event.retries} failed rounds, the last "
                f"{EXTRA_RETRIES} after every other CPU had stopped; "
                f"{', '.join(busy) or 'no page busy'}")
    return f"offline_pages returned {ret} ({event.reason})"


def nothing_lost(s: OfflineState) -> str | None:
    """Drain every CPU; then every page is free and merged, or offline."""
    m, z = s.m, s.zone
    for cpu in range(m.nr_cpus):
        call(cpu, drain_pages, m, cpu)
    check_invariants(m)
    if z.nr_free_pages != z.managed_pages:
        return (f"after draining every CPU, {z.nr_free_pages} of {z.managed_pages} "
                f"managed pages of zone {z.name} are free")
    return None


def offline_program(kernel: str, cpus: int, ops: int = DEFAULT_OPS,
                    check_safety: bool = True, batched: bool = False,
                    name: str = "offline-vs-alloc-free") -> Program:
    """CPU0 offlines the second pageblock while the other CPUs allocate and free."""

    def setup() -> tuple[OfflineState, dict[int, Any]]:
        s = offline_machine(kernel, cpus, check_safety)
        threads: dict[int, Any] = {0: offliner(s)}
        for c in range(1, cpus):
            threads[c] = batched_worker(s, c) if batched else worker(s, c, ops)
        return s, threads

    return Program(f"{name}({kernel}, {cpus} cpus)", setup,
                   final_checks=[offline_terminates, nothing_lost], max_steps=20000,
                   snapshot=offline_snapshot)


def offline_snapshot(s: OfflineState) -> dict[str, object]:
    """The machine's facts and the pages each worker holds, for replays and reports
    (only traced runs take it: the search never does)."""
    facts = machine_snapshot(s.m)
    for cpu, pages in sorted(s.held.items()):
        facts[f"cpu{cpu} holds"] = tuple(h.pfn for h in pages)
    return facts


register(Scenario(
    "offline-vs-alloc-free",
    "CPU0 offlines one of two 4-page pageblocks (giving up after 2 failed rounds) "
    "while each other CPU allocates or frees twice holding at most 2 pages; safety: "
    "no allocation returns a page of an isolated block; termination once they stop",
    lambda k, n: offline_program(k, n), "violation on v5.8-v5.10, v6.0-v6.10",
    min_cpus=2, max_cpus=3, default_cpus=2))
register(Scenario(
    "offline-termination",
    "offline-vs-alloc-free without the safety check: does the offline finish once the "
    "other CPUs stop? (5.10's drain on every retry restores termination)",
    lambda k, n: offline_program(k, n, check_safety=False, name="offline-termination"),
    "violation on v5.8, v6.0-v6.10", min_cpus=2, max_cpus=3, default_cpus=2))
register(Scenario(
    "offline-vs-batched-free",
    "CPU0 offlines one of two pageblocks while CPU1 allocates two pages and frees them "
    "with one free_unref_page_list() call",
    lambda k, n: offline_program(k, n, batched=True, name="offline-vs-batched-free"),
    "violation on v5.8-v5.10", min_cpus=2, max_cpus=3, default_cpus=2))
