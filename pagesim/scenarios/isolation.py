# SPDX-License-Identifier: GPL-2.0-only
"""The other isolation users, and hotplug cycles (spec §3.7, §3.8, §6.6).

The same machine and workers as :mod:`pagesim.scenarios.offline` (two pageblocks of 4
pages, pcp high 3 / batch 2, workers that allocate and free holding at most 2 pages),
with CPU0 running something else:

* ``contig-vs-alloc-free``: ``alloc_contig_range`` of the second pageblock, then
  ``free_contig_range`` when it succeeded. Contiguous allocation keeps the single
  non-forced drain after isolation (§3.8), so the races of §6 are possible there by
  design and must surface as ``-EBUSY``. The property is exclusivity: when it returns 0
  CPU0 owns every page of the range (refcount 1) and no worker holds one (read under
  the page table lock, which orders it against the workers' mapping changes);
* ``two-isolation-users``: CPU0 offlines the second block while CPU1 allocates it with
  ``alloc_contig_range``: at most one of them may succeed, the other must fail cleanly
  (``-EBUSY``: the block is already isolated, holds the other's pages, or is offline);
* ``offline-online-cycle``: CPU0 offlines the block, onlines it again and offlines it a
  second time while the workers run; each offline terminates once the workers stop (the
  fairness hook of the offline scenarios), and at the end nothing is lost.

Every scenario ends with the conservation check of the offline scenarios: after
draining every CPU, the zone's free pages are its managed pages and every invariant
holds (including the merge rule at isolation boundaries).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from pagesim.model.contig import alloc_contig_range, free_contig_range
from pagesim.model.memory_hotplug import (
    RETRY_BOUND,
    hotplug_state,
    offline_pages,
    online_memory_block,
)
from pagesim.model.mmzone import MIGRATE_MOVABLE
from pagesim.model.page_isolation import EBUSY
from pagesim.runtime.executor import Program
from pagesim.runtime.ops import spin_lock, spin_unlock
from pagesim.runtime.sequential import call
from pagesim.scenarios import Scenario, register
from pagesim.scenarios.offline import (
    MAX_RETRIES,
    OfflineState,
    _WaitForWorkers,
    nothing_lost,
    offline_machine,
    offline_snapshot,
    worker,
)

Gen = Generator[Any, Any, Any]

#: the workers' moves in these scenarios (fewer than offline's: CPU0 does more)
OPS = 2


@dataclass
class Outcome:
    contig: int | None = None
    offline: int | None = None
    #: what the exclusivity check saw when alloc_contig_range returned 0
    clash: str | None = None


def _contig(s: OfflineState, out: Outcome, free_after: bool) -> Gen:
    m = s.m
    ret = yield from alloc_contig_range(m, s.start, s.start + s.nr,
                                        MIGRATE_MOVABLE)
    out.contig = ret
    if ret == 0:
        yield spin_lock(m.ptl)
        for pfn in range(s.start, s.start + s.nr):
            if m.refcount[pfn] != 1 or pfn in m.owners:
                who = m.owners[pfn].name if pfn in m.owners else "nobody"
                out.clash = (f"alloc_contig_range returned 0 but pfn {pfn} has refcount "
                             f"{m.refcount[pfn]} (held by {who})")
                break
        yield spin_unlock(m.ptl)
        if free_after:
            yield from free_contig_range(m, s.start, s.nr)


def contig_program(kernel: str, cpus: int) -> Program:
    box: list[Outcome] = [Outcome()]

    def setup() -> tuple[OfflineState, dict[int, Any]]:
        out = box[0] = Outcome()
        s = offline_machine(kernel, cpus, check_safety=False)
        threads: dict[int, Any] = {0: _contig(s, out, free_after=True)}
        for c in range(1, cpus):
            threads[c] = worker(s, c, OPS)
        return s, threads

    def contig_exclusive(s: OfflineState) -> str | None:
        """A successful contiguous allocation owns its whole range."""
        out = box[0]
        if out.clash:
            return out.clash
        if out.contig not in (0, -EBUSY):
            return f"alloc_contig_range returned {out.contig}"
        return None

    return Program(f"contig-vs-alloc-free({kernel}, {cpus} cpus)", setup,
                   final_checks=[contig_exclusive, nothing_lost], max_steps=20000,
                   snapshot=offline_snapshot)


def two_users_program(kernel: str, cpus: int) -> Program:
    box: list[Outcome] = [Outcome()]

    def offline_user(s: OfflineState, out: Outcome) -> Gen:
        out.offline = yield from offline_pages(s.m, s.start, s.nr, MAX_RETRIES)

    def setup() -> tuple[OfflineState, dict[int, Any]]:
        out = box[0] = Outcome()
        s = offline_machine(kernel, cpus, check_safety=False)
        threads: dict[int, Any] = {0: offline_user(s, out), 1: _contig(s, out, False)}
        for c in range(2, cpus):
            threads[c] = worker(s, c, OPS)
        return s, threads

    def one_winner(s: OfflineState) -> str | None:
        """At most one isolation user gets the block; the other fails cleanly."""
        out = box[0]
        if out.clash:
            return out.clash
        if out.offline == 0 and out.contig == 0:
            return "both offline_pages and alloc_contig_range got the same block"
        hp = hotplug_state(s.m)
        reason = hp.log[-1].reason if hp.log else ""
        if out.offline not in (0, -EBUSY):
            return f"offline_pages returned {out.offline} ({reason})"
        if out.contig not in (0, -EBUSY):
            return f"alloc_contig_range returned {out.contig}"
        return None

    def conserved(s: OfflineState) -> str | None:
        # contig's pages are still held: give them back before counting
        if box[0].contig == 0:
            call(1, free_contig_range, s.m, s.start, s.nr)
        return nothing_lost(s)

    return Program(f"two-isolation-users({kernel}, {cpus} cpus)", setup,
                   final_checks=[one_winner, conserved], max_steps=20000,
                   snapshot=offline_snapshot)


def cycle_program(kernel: str, cpus: int) -> Program:
    def cycler(s: OfflineState) -> Gen:
        section = 1 << s.m.geom.section_order
        for i in range(2):
            s.alone[0] = 0
            ret = yield from offline_pages(s.m, s.start, s.nr, MAX_RETRIES,
                                           _WaitForWorkers(s))
            if ret != 0:
                break
            if i == 0:
                for block in range(s.start // section, (s.start + s.nr) // section):
                    yield from online_memory_block(s.m, block, "online")

    def setup() -> tuple[OfflineState, dict[int, Any]]:
        s = offline_machine(kernel, cpus, check_safety=False)
        threads: dict[int, Any] = {0: cycler(s)}
        for c in range(1, cpus):
            threads[c] = worker(s, c, OPS)
        return s, threads

    def cycles_terminate(s: OfflineState) -> str | None:
        """Every offline finished, unless it gave up while workers still ran."""
        hp = hotplug_state(s.m)
        offlines = [e for e in hp.log if e.op == "offline"]
        last = offlines[-1] if offlines else None
        if last is None or last.ret == 0:
            return None
        if last.reason == RETRY_BOUND and not s.alone[0]:
            return None
        return f"offline #{len(offlines)} returned {last.ret} ({last.reason})"

    return Program(f"offline-online-cycle({kernel}, {cpus} cpus)", setup,
                   final_checks=[cycles_terminate, nothing_lost], max_steps=30000,
                   snapshot=offline_snapshot)


register(Scenario(
    "contig-vs-alloc-free",
    "CPU0 runs alloc_contig_range on one of two 4-page pageblocks while the other CPUs "
    "allocate and free; a success must own the whole range (races surface as -EBUSY)",
    contig_program, "verified", min_cpus=2, max_cpus=3, default_cpus=2))
register(Scenario(
    "two-isolation-users",
    "CPU0 offlines a pageblock while CPU1 allocates it with alloc_contig_range: at most "
    "one succeeds, the other fails with -EBUSY",
    two_users_program, "verified", min_cpus=2, max_cpus=3, default_cpus=2))
register(Scenario(
    "offline-online-cycle",
    "CPU0 offlines a block, onlines it and offlines it again while the other CPUs "
    "allocate and free; every offline finishes once they stop",
    cycle_program, "violation on v5.8", min_cpus=2, max_cpus=3, default_cpus=2))
