# SPDX-License-Identifier: GPL-2.0-only
"""Pageblock isolation, draining, migration, memory offline/online and contiguous
allocation on tiny machines (spec §3.3-3.8, §4.4-4.6, §5.4, §6, §7).

Geometry ``tiny(2, 4, 4)``: pageblocks of 4 pages, max-order blocks of 8, sections (and
so memory blocks) of 16 pages. A 64-page Normal zone boots as eight free order-3 MOVABLE
blocks and four memory blocks. Every scenario runs in both variants of the model (the
compiled sequential one, ``call``, and the stepped generator, ``step_through``) where
that is meaningful, and the machines are compared. Races are driven by hand with
:class:`Task`, which performs one context's ops in its own runtime context; a
"concurrent" task is advanced to a chosen op while the other waits.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from pagesim.model import contig, memory_hotplug, migrate, page_alloc, page_isolation
from pagesim.model.build import build_machine, simple_machine
from pagesim.model.geometry import tiny
from pagesim.model.invariants import (
    InvariantViolation,
    check_invariants,
    isolated_pages_on_pcplists,
    isolation_safety,
)
from pagesim.model.kernels import Kernel
from pagesim.model.memory_hotplug import (
    RETRY_BOUND,
    block_state,
    hotplug_state,
    memory_block,
    memory_blocks,
    offline_memory_block,
    offline_pages,
    online_memory_block,
    online_pages,
    probe_memory_block_size,
    valid_zones,
)
from pagesim.model.mmzone import (
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    Machine,
    PB_migrate_isolate,
    PG_offline,
    Zone,
    ZoneLayout,
)
from pagesim.model.page_alloc import (
    alloc_pages,
    drain_all_pages,
    free_list_pfns,
    get_pageblock_migratetype,
)
from pagesim.model.page_isolation import (
    EBUSY,
    EINTR,
    EINVAL,
    set_migratetype_isolate,
    start_isolate_page_range,
    undo_isolate_page_range,
    unset_migratetype_isolate,
)
from pagesim.model.pageset import set_pcp_limits, zone_pcp_disable, zone_pcp_enable
from pagesim.runtime import ops
from pagesim.runtime.ops import ModelError
from pagesim.runtime.sequential import call, step_through

put_page = page_alloc.__free_pages
# (a name starting with "test" would be collected by pytest)
pages_isolated = page_isolation.test_pages_isolated

GEOM = tiny(2, 4, 4)
KERNELS = ("v5.8", "v5.10", "v5.11", "v5.14", "v6.0", "v6.7", "v6.10", "v6.11", "v6.17",
           "v6.19")
RUNNERS = (call, step_through)
Runner = Callable[..., Any]


# ---------------------------------------------------------------------------------------
# helpers


def boot(kern: str | Kernel, *, zones: tuple[tuple[str, int], ...] = (("Normal", 64),),
         nr_cpus: int = 2, limits: tuple[int, int] | None = (0, 1)) -> Machine:
    """Zones without holes, watermarks 0, and (high, batch) pinned on every zone."""
    m = simple_machine(kern=kern, geom=GEOM, nr_cpus=nr_cpus, zones=zones,
                       min_free_kbytes=0)
    if limits is not None:
        for z in m.populated_zones():
            set_pcp_limits(m, z, *limits)
    return m


def zero_watermarks(m: Machine) -> None:
    """Tiny zones cannot meet real watermarks: 6.6+ give ZONE_MOVABLE a minimum of
    SWAP_CLUSTER_MAX pages whatever min_free_kbytes is, and every on/offline recomputes
    min_free_kbytes (at least 128 KiB). Tests that allocate afterwards zero them."""
    for z in m.zones:
        z._watermark = [0, 0, 0, 0]
        z.lowmem_reserve = [0] * len(m.zones)


def normal(m: Machine) -> Zone:
    return m.zone("Normal")


def free_set(m: Machine, zone: Zone, mt: int = MIGRATE_MOVABLE) -> set[tuple[int, int]]:
    """(pfn, order) of every free block on ``mt``'s lists."""
    return {(p, o) for o in range(m.geom.nr_orders) for p in free_list_pfns(m, zone, o, mt)}


def free_total(zone: Zone) -> int:
    """Free pages in the buddy (not isolated) plus those on the zone's pcplists (whose
    limits offline/online may have recomputed from the new watermarks)."""
    pcps = 0 if zone.boot_pageset else sum(pcp.count for pcp in zone.per_cpu_pageset)
    return zone.nr_free_pages + pcps


def alloc_in(m: Machine, lo: int, hi: int, cpu: int = 0) -> int:
    """Allocate order-0 MOVABLE pages on ``cpu`` until one falls in [lo, hi); free the
    others again (limits 0/1 keep the buddy exact)."""
    got = []
    while True:
        pfn: int = call(cpu, alloc_pages, m, 0, MIGRATE_MOVABLE)
        assert pfn >= 0
        if lo <= pfn < hi:
            break
        got.append(pfn)
    for p in got:
        call(cpu, put_page, m, p, 0)
    return pfn


def machine_state(m: Machine) -> dict[str, Any]:
    """Everything the model can change, as comparable values."""
    state: dict[str, Any] = {
        "flags": bytes(m.flags), "private": bytes(m.private), "index": bytes(m.index),
        "refcount": m.refcount.tolist(), "zone_id": bytes(m.zone_id),
        "lru": (m.lru_next.tolist(), m.lru_prev.tolist()),
        "pageblock": bytes(m.pageblock_flags),
        "locks": (m.pcp_batch_high_lock.owner, m.pcpu_drain_mutex.owner),
        "owners": sorted((p, h.name, h.pfn) for p, h in m.owners.items()),
    }
    for z in m.zones:
        state[z.name] = (list(z.nr_free), z.nr_free_pages, z.nr_isolate_pageblock,
                         z.managed_pages, z.present_pages, z.zone_start_pfn,
                         z.spanned_pages, z.boot_pageset, z.pcp_disabled,
                         list(z._watermark), z.pageset_high, z.pageset_batch)
        if not z.boot_pageset:
            for pcp in z.per_cpu_pageset:
                state[pcp.name] = (pcp.count, pcp.high, pcp.batch, pcp.high_min,
                                   pcp.high_max, [list(lst) for lst in pcp.lists])
    return state


def both_runners(scenario: Callable[[Runner], Machine]) -> Machine:
    """Run ``scenario`` with each runner; the machines must end identical."""
    fast = scenario(call)
    slow = scenario(step_through)
    assert machine_state(fast) == machine_state(slow)
    return fast


class Task:
    """One context of a hand-driven interleaving: a generator whose ops are performed
    in a runtime context of its own (its CPU, its interrupt state)."""

    def __init__(self, cpu: int, gen: Generator[Any, Any, Any]) -> None:
        self.ctx = ops.Context()
        self.ctx.cpu = cpu
        self.ctx.task = f"task@cpu{cpu}:{id(self)}"
        self.gen = gen
        self.done = False
        self.result: Any = None
        self.pending: ops.Op | None = None
        self._advance(None)

    def _advance(self, value: Any) -> None:
        try:
            op = self.gen.send(value)
        except StopIteration as stop:
            self.done, self.result, self.pending = True, stop.value, None
            return
        assert isinstance(op, ops.Op)
        self.pending = op

    def blocked(self) -> bool:
        op = self.pending
        return isinstance(op, ops.spin_lock) and op.lock.owner is not None

    def step(self) -> None:
        assert self.pending is not None and not self.blocked()
        self._advance(self.pending.perform(self.ctx))

    def run_until(self, stop: Callable[[ops.Op], bool]) -> Task:
        while not self.done and not stop(self.pending):  # type: ignore[arg-type]
            self.step()
        assert not self.done, "the task finished before reaching the op it waited for"
        return self

    def finish(self, *others: Task) -> Any:
        """Run to the end; while blocked on a lock, run the others until it is free."""
        while not self.done:
            if self.blocked():
                other = next(t for t in others if not t.done and not t.blocked())
                other.step()
            else:
                self.step()
        return self.result


def at_point(why: str) -> Callable[[ops.Op], bool]:
    return lambda op: isinstance(op, ops.point) and why in op.why


def at_pageblock_read(op: ops.Op) -> bool:
    """The first lockless read of pageblock bits: in offline_pages and
    alloc_contig_range, the start of test_pages_isolated (nothing before it reads them
    when the range has nothing to migrate)."""
    return isinstance(op, ops.READ_ONCE_IDX) and op.label == "pageblock"


def at_count_store(op: ops.Op) -> bool:
    return isinstance(op, ops.WRITE_ONCE) and op.attr == "count"


# ---------------------------------------------------------------------------------------
# offline_pages: the basic outcomes


@pytest.mark.parametrize("kern", KERNELS)
def test_offline_of_an_empty_block_removes_it_from_buddy_and_accounting(kern: str) -> None:
    """§3.6 steps 7-9: the block's free pages leave the buddy (they were on the ISOLATE
    lists, so NR_FREE_PAGES drops only then), its sections become offline, the zone's
    managed and present pages shrink, its isolated-block count is fixed up."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern)
        z = normal(m)
        assert run(0, offline_pages, m, 16, 16) == 0
        check_invariants(m)
        assert z.nr_free_pages == 48 and z.managed_pages == 48 and z.present_pages == 48
        assert free_set(m, z) == {(p, 3) for p in (0, 8, 32, 40, 48, 56)}
        assert not free_set(m, z, MIGRATE_ISOLATE)
        assert m.flags[16:32] == bytes([PG_offline]) * 16
        assert z.nr_isolate_pageblock == 0 and not z.pcp_disabled
        assert (z.zone_start_pfn, z.spanned_pages) == (0, 64)  # a hole in the middle
        assert m.pcp_batch_high_lock.owner is None
        assert hotplug_state(m).log[-1].ret == 0
        return m
    both_runners(scenario)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.19"))
def test_offline_at_the_zone_end_shrinks_the_span(kern: str) -> None:
    m = boot(kern)
    z = normal(m)
    assert call(0, offline_pages, m, 48, 16) == 0
    assert (z.zone_start_pfn, z.spanned_pages) == (0, 48)
    assert call(0, offline_pages, m, 0, 16) == 0
    assert (z.zone_start_pfn, z.spanned_pages) == (16, 32)
    check_invariants(m)


@pytest.mark.parametrize("kern", KERNELS)
def test_offline_migrates_movable_pages_and_their_holders_follow(kern: str) -> None:
    """§3.6 step 6a: the in-use movable pages of the range are migrated to pages outside
    it (the isolated range is no allocation source), the sources are freed into the
    isolated blocks, and the holders now hold the targets."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern)
        pfns = [run(0, alloc_pages, m, 0, MIGRATE_MOVABLE) for _ in range(24)]
        held = [migrate.hold(m, f"t{i}", p) for i, p in enumerate(pfns)]
        in_range = [h for h in held if 16 <= h.pfn < 32]
        assert in_range
        assert run(0, offline_pages, m, 16, 16) == 0
        check_invariants(m)
        assert all(not 16 <= h.pfn < 32 and m.refcount[h.pfn] == 1 for h in held)
        assert sorted(m.owners) == sorted(h.pfn for h in held)
        for h in held:
            migrate.release(m, h)
            run(0, put_page, m, h.pfn, h.order)
        check_invariants(m)
        assert free_total(normal(m)) == 48
        return m
    both_runners(scenario)


@pytest.mark.parametrize("kern", KERNELS)
def test_reserved_page_makes_offline_fail_with_ebusy(kern: str) -> None:
    """has_unmovable_pages(): a reserved page cannot be migrated, so isolation fails and
    offline returns -EBUSY ("failure to isolate range"), with every block of the range
    un-isolated again and the pcplists re-enabled."""
    def scenario(run: Runner) -> Machine:
        m = build_machine([ZoneLayout("Normal", 0, 64, reserved=((40, 41),))], kern=kern,
                          geom=GEOM, nr_cpus=2, min_free_kbytes=0)
        z = normal(m)
        set_pcp_limits(m, z, 6, 2)
        before = machine_state(m)
        assert run(0, offline_pages, m, 32, 16) == -EBUSY
        assert hotplug_state(m).log[-1].reason == "failure to isolate range"
        check_invariants(m)
        assert z.nr_isolate_pageblock == 0 and not z.pcp_disabled
        assert all(get_pageblock_migratetype(m, p) == MIGRATE_MOVABLE for p in range(0, 64, 4))
        after = machine_state(m)
        assert after["Normal"] == before["Normal"] and after["flags"] == before["flags"]
        assert [pcp.high for pcp in z.per_cpu_pageset] == [6, 6]
        return m
    both_runners(scenario)


def test_unmovable_allocation_makes_offline_fail_but_not_in_zone_movable() -> None:
    """An allocated page that is not on the LRU is unmovable, except in ZONE_MOVABLE,
    where has_unmovable_pages() assumes movability of everything not reserved (and the
    offline then loops, here until the retry bound)."""
    m = boot("v6.19", zones=(("Normal", 32), ("Movable", 32)))
    zero_watermarks(m)
    p = call(0, alloc_pages, m, 0, MIGRATE_UNMOVABLE)
    assert 0 <= p < 32
    assert call(0, offline_pages, m, p & ~15, 16) == -EBUSY
    assert hotplug_state(m).log[-1].reason == "failure to isolate range"
    q = call(0, alloc_pages, m, 0, MIGRATE_UNMOVABLE, 3)  # the model lets it into Movable
    assert 32 <= q < 64
    assert call(0, offline_pages, m, q & ~15, 16, 2) == -EBUSY
    assert hotplug_state(m).log[-1].reason == RETRY_BOUND
    check_invariants(m)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.19"))
def test_offline_argument_errors(kern: str) -> None:
    """-EINVAL for a range that is not whole sections, that spans two zones ("multizone
    range") or has holes ("memory holes"); -EINTR when a signal is pending, after
    isolation, with everything undone."""
    m = boot(kern, zones=(("Normal", 48), ("Movable", 16)))
    assert call(0, offline_pages, m, 8, 16) == -EINVAL
    assert call(0, offline_pages, m, 16, 0) == -EINVAL
    assert call(0, offline_pages, m, 32, 32) == -EINVAL
    assert hotplug_state(m).log[-1].reason == "multizone range"
    hotplug_state(m).signal_pending = True
    assert call(0, offline_pages, m, 16, 16) == -EINTR
    assert hotplug_state(m).log[-1].reason == "signal backoff"
    z = normal(m)
    assert z.nr_isolate_pageblock == 0 and not z.pcp_disabled
    assert m.pcp_batch_high_lock.owner is None and hotplug_state(m).lock.owner is None
    check_invariants(m)
    holes = build_machine([ZoneLayout("Normal", 0, 64, holes=((20, 24),))], kern=kern,
                          geom=GEOM, nr_cpus=2, min_free_kbytes=0)
    assert call(0, offline_pages, holes, 16, 16) == -EINVAL
    assert hotplug_state(holes).log[-1].reason == "memory holes"
    hotplug_state(m).signal_pending = False
    assert call(0, offline_pages, m, 48, 16) == 0
    with pytest.raises(ModelError, match="already"):
        call(0, offline_pages, m, 48, 16)


# ---------------------------------------------------------------------------------------
# online_pages and memory blocks


@pytest.mark.parametrize("kern", KERNELS)
def test_online_after_offline_restores_a_fully_merged_zone(kern: str) -> None:
    """§3.7: the onlined range enters the buddy in max-order chunks on the ISOLATE lists,
    bypassing pcplists, and undo_isolate_page_range moves it to MOVABLE, where it is as
    merged as at boot, with the counters of a freshly booted zone."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern)
        z = normal(m)
        fresh = free_set(m, z)
        assert run(0, offline_pages, m, 16, 16) == 0
        assert run(0, online_pages, m, 16, 16, z) == 0
        check_invariants(m)
        assert free_set(m, z) == fresh
        assert (z.nr_free_pages, z.managed_pages, z.present_pages) == (64, 64, 64)
        assert list(z.nr_free) == [0, 0, 0, 8]
        assert z.nr_isolate_pageblock == 0
        assert all(get_pageblock_migratetype(m, p) == MIGRATE_MOVABLE for p in range(0, 64, 4))
        assert not any(pcp.count for pcp in z.per_cpu_pageset)
        assert hotplug_state(m).log[-1].op == "online"
        return m
    both_runners(scenario)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.6", "v6.19"))
def test_memory_blocks_states_and_valid_zones(kern: str) -> None:
    """drivers/base/memory.c: blocks of one section (below 64 GiB), their state and
    valid_zones; an emptied zone goes back to the boot pagesets (zone_pcp_reset) and
    gets real ones again when onlined; onlining a Normal block as movable makes ZONE_MOVABLE
    overlap ZONE_NORMAL's span, which the invariants accept."""
    m = boot(kern, zones=(("Normal", 48), ("Movable", 16)))
    assert probe_memory_block_size(m) == 1
    blocks = memory_blocks(m)
    assert [b.start_pfn for b in blocks] == [0, 16, 32, 48]
    assert [block_state(m, b) for b in blocks] == ["online"] * 3 + ["online_movable"]
    assert valid_zones(m, blocks[1]) == ["Normal"]
    mov = m.zone("Movable")
    assert call(0, offline_memory_block, m, 3) == 0
    assert block_state(m, memory_block(m, 3)) == "offline"
    assert mov.boot_pageset and mov.present_pages == 0 and mov.spanned_pages == 0
    check_invariants(m)
    assert call(0, offline_memory_block, m, 3) == 0  # already offline
    assert call(0, online_memory_block, m, 3, "online_movable") == 0
    assert not mov.boot_pageset and mov.present_pages == 16
    assert block_state(m, memory_block(m, 3)) == "online_movable"
    assert call(0, offline_memory_block, m, 1) == 0
    assert valid_zones(m, memory_block(m, 1)) == ["Normal", "Movable"]
    assert call(0, online_memory_block, m, 1, "online_movable") == 0
    assert block_state(m, memory_block(m, 1)) == "online_movable"
    assert (mov.zone_start_pfn, mov.spanned_pages) == (16, 48)
    check_invariants(m)
    zero_watermarks(m)
    p = call(0, alloc_pages, m, 3, MIGRATE_MOVABLE, 3)
    assert 16 <= p < 32 or 48 <= p < 64
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# the offline call sequence of each generation


class Recorder:
    """Replace module-level kernel functions with wrappers that log their outermost
    calls; works for both variants, which look the names up at call time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.depth = 0
        self.monkeypatch = monkeypatch

    def wrap(self, module: Any, name: str, label: str | None = None) -> None:
        fn = getattr(module, name)
        label = label or name
        rec = self

        if getattr(fn, "is_kernel", False):
            def gen(*args: Any) -> Generator[Any, Any, Any]:
                if rec.depth == 0:
                    rec.calls.append(label)
                rec.depth += 1
                try:
                    return (yield from fn(*args))
                finally:
                    rec.depth -= 1

            def fast(*args: Any) -> Any:
                if rec.depth == 0:
                    rec.calls.append(label)
                rec.depth += 1
                try:
                    return fn.fast(*args)
                finally:
                    rec.depth -= 1
            gen.fast = fast  # type: ignore[attr-defined]
            self.monkeypatch.setattr(module, name, gen)
        else:
            def plain(*args: Any) -> Any:
                if rec.depth == 0:
                    rec.calls.append(label)
                return fn(*args)
            self.monkeypatch.setattr(module, name, plain)


_OFFLINE_STEPS = ("zone_pcp_disable", "lru_cache_disable", "start_isolate_page_range",
                  "lru_add_drain_all", "scan_movable_pages", "do_migrate_range",
                  "test_pages_isolated", "drain_all_pages", "__offline_isolated_pages",
                  "lru_cache_enable", "zone_pcp_enable", "init_per_zone_wmark_min",
                  "zone_pcp_reset", "zone_pcp_update", "remove_pfn_range_from_zone",
                  "undo_isolate_page_range")

_ISOLATE, _SCAN, _TEST = "start_isolate_page_range", "scan_movable_pages", "test_pages_isolated"
_TAIL_5X = ["__offline_isolated_pages", "init_per_zone_wmark_min", "zone_pcp_update",
            "remove_pfn_range_from_zone"]
_EXPECTED_SUCCESS = {
    # §3.6 (5.10): isolation (which drains per block), a round of lru drain + scan +
    # migrate, the test; no pcp disable
    "v5.8": [_ISOLATE, "lru_add_drain_all", _SCAN, "do_migrate_range", "lru_add_drain_all",
             _SCAN, _TEST, *_TAIL_5X],
    "v5.10": [_ISOLATE, "lru_add_drain_all", _SCAN, "do_migrate_range", "lru_add_drain_all",
              _SCAN, _TEST, *_TAIL_5X],
    # §3.6 (5.11): disable first; enable after the isolated-block fixup and before
    # init_per_zone_wmark_min / zone_pcp_update
    "v5.11": ["zone_pcp_disable", _ISOLATE, "lru_add_drain_all", _SCAN, "do_migrate_range",
              "lru_add_drain_all", _SCAN, _TEST, "__offline_isolated_pages",
              "zone_pcp_enable", "init_per_zone_wmark_min", "zone_pcp_update",
              "remove_pfn_range_from_zone"],
    # §4.6 (5.14+ / 6.x): lru_cache_disable after zone_pcp_disable, no per-round lru
    # drain, enable both before init_per_zone_wmark_min, which updates pcp limits itself
    "v6.19": ["zone_pcp_disable", "lru_cache_disable", _ISOLATE, _SCAN, "do_migrate_range",
              _SCAN, _TEST, "__offline_isolated_pages", "lru_cache_enable",
              "zone_pcp_enable", "init_per_zone_wmark_min", "remove_pfn_range_from_zone"],
}
_EXPECTED_SUCCESS["v5.14"] = _EXPECTED_SUCCESS["v6.0"] = _EXPECTED_SUCCESS["v6.19"]


@pytest.mark.parametrize("kern", sorted(_EXPECTED_SUCCESS))
@pytest.mark.parametrize("runner", RUNNERS, ids=("call", "step_through"))
def test_offline_pages_calls_each_generations_steps_in_order(
        kern: str, runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    m = boot(kern)
    call(0, alloc_pages, m, 0, MIGRATE_MOVABLE)
    p = alloc_in(m, 16, 32)
    migrate.hold(m, "t", p)
    rec = Recorder(monkeypatch)
    for name in _OFFLINE_STEPS:
        rec.wrap(memory_hotplug, name)
    assert runner(0, offline_pages, m, 16, 16) == 0
    assert rec.calls == _EXPECTED_SUCCESS[kern]
    check_invariants(m)


@pytest.mark.parametrize("kern,expected", [
    ("v5.10", [_ISOLATE, "undo_isolate_page_range"]),
    ("v5.11", ["zone_pcp_disable", _ISOLATE, "undo_isolate_page_range", "zone_pcp_enable"]),
    ("v6.19", ["zone_pcp_disable", "lru_cache_disable", _ISOLATE, "undo_isolate_page_range",
               "lru_cache_enable", "zone_pcp_enable"]),
])
def test_offline_failure_after_isolation_undoes_in_order(
        kern: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pending signal ends offline after isolation: undo isolation, then re-enable
    (5.11 "failed_removal_isolated" falls through to "failed_removal_pcplists_disabled")."""
    m = boot(kern)
    hotplug_state(m).signal_pending = True
    rec = Recorder(monkeypatch)
    for name in _OFFLINE_STEPS:
        rec.wrap(memory_hotplug, name)
    assert call(0, offline_pages, m, 16, 16) == -EINTR
    assert rec.calls == expected


@pytest.mark.parametrize("kern,drains", [("v5.8", 4), ("v5.10", 4), ("v5.11", 0),
                                         ("v6.19", 0)])
def test_isolation_drains_after_each_block_only_before_5_11(
        kern: str, drains: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """§3.5 3e: 5.8-5.10 set_migratetype_isolate() ends with drain_all_pages(zone); 5.11
    moved the drain to the isolation users (7612921f2376)."""
    m = boot(kern)
    rec = Recorder(monkeypatch)
    rec.wrap(page_isolation, "drain_all_pages")
    assert call(0, start_isolate_page_range, m, 0, 64, MIGRATE_MOVABLE, 0) == 0
    assert rec.calls.count("drain_all_pages") == drains * 4
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# draining


def _park_on_cpu1(m: Machine) -> None:
    p = call(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
    call(1, put_page, m, p, 0)
    assert normal(m).per_cpu_pageset[1].count > 0


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.0", "v6.19"))
def test_drain_all_pages_drains_cpus_whose_count_reads_non_zero(kern: str) -> None:
    """§3.3 / §4.4: 5.x queues drain_local_pages_wq on each CPU whose remote count read is
    non-zero and flushes them; 6.0+ drains those CPUs from the caller."""
    m = boot(kern, limits=(8, 2))
    _park_on_cpu1(m)
    seen: list[str] = []
    step_through(0, drain_all_pages, m, normal(m), on_step=lambda op: seen.append(op.describe()))
    z = normal(m)
    assert all(pcp.count == 0 and not any(pcp.lists) for pcp in z.per_cpu_pageset)
    queued = [s for s in seen if s.startswith("queue_work_on")]
    if m.kernel.remote_drain:
        assert not queued
    else:
        assert queued == ["queue_work_on(1, drain_local_pages_wq)"]
        assert "flush_work(drain_local_pages_wq@cpu1)" in seen
    assert sum(s.startswith("READ_ONCE(pcp[cpu") and s.endswith(".count)") for s in seen) >= 2
    assert z.nr_free_pages == 64
    check_invariants(m)


@pytest.mark.parametrize("kern", ("v5.11", "v6.19"))
def test_zone_pcp_disable_forces_a_drain_of_every_cpu(kern: str) -> None:
    """__drain_all_pages(zone, true) visits every CPU without reading its count."""
    m = boot(kern, limits=(8, 2))
    seen: list[str] = []
    step_through(0, zone_pcp_disable, m, normal(m), on_step=lambda op: seen.append(op.describe()))
    if m.kernel.remote_drain:
        assert not any(s.startswith("queue_work_on") for s in seen)
    else:
        assert [s for s in seen if s.startswith("queue_work_on")] == [
            "queue_work_on(0, drain_local_pages_wq)", "queue_work_on(1, drain_local_pages_wq)"]
    assert not any(s.startswith("READ_ONCE") and s.endswith(".count)") for s in seen)
    step_through(0, zone_pcp_enable, m, normal(m))
    assert m.pcp_batch_high_lock.owner is None


def test_drain_mutex_contention() -> None:
    """A drain without a zone gives up when another drain holds pcpu_drain_mutex; one
    for a zone waits for it (a sequential run cannot wait, so it fails)."""
    m = boot("v5.11", limits=(8, 2))
    _park_on_cpu1(m)
    m.pcpu_drain_mutex.owner = "another drainer"
    step_through(0, drain_all_pages, m, None)
    assert normal(m).per_cpu_pageset[1].count > 0
    with pytest.raises(ModelError):
        step_through(0, drain_all_pages, m, normal(m))


@pytest.mark.parametrize("kern", KERNELS[2:])
def test_zone_pcp_disable_empties_every_list_and_enable_restores_the_limits(kern: str) -> None:
    """§3.4 / §4.5: after zone_pcp_disable every CPU's pcp of the zone is empty with
    batch 1 and high 0 (6.7+: high_min = high_max = 0, ``high`` itself re-clamped by the
    next use), pcp_batch_high_lock stays held, frees flush at once; zone_pcp_enable
    writes the zone's cached values back and releases the lock."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern, limits=(8, 2))
        z = normal(m)
        pfns = [run(c, alloc_pages, m, 0, MIGRATE_MOVABLE) for c in (0, 1, 1)]
        for c, p in zip((0, 1, 1), pfns, strict=True):
            run(c, put_page, m, p, 0)
        assert z.per_cpu_pageset[0].count and z.per_cpu_pageset[1].count
        run(0, zone_pcp_disable, m, z)
        # (the compiled variant drops lock bookkeeping, so only the stepped one holds it)
        assert z.pcp_disabled
        assert (m.pcp_batch_high_lock.owner is not None) == (run is step_through)
        for pcp in z.per_cpu_pageset:
            assert pcp.count == 0 and not any(pcp.lists) and pcp.batch == 1
            if m.kernel.pcp_high_autotune:
                assert (pcp.high_min, pcp.high_max) == (0, 0)
            else:
                assert pcp.high == 0
        assert isolation_safety(m, strict=True) is None
        p = run(1, alloc_pages, m, 0, MIGRATE_MOVABLE)
        run(1, put_page, m, p, 0)
        assert not any(pcp.count for pcp in z.per_cpu_pageset)
        run(0, zone_pcp_enable, m, z)
        assert not z.pcp_disabled and m.pcp_batch_high_lock.owner is None
        for pcp in z.per_cpu_pageset:
            assert pcp.batch == 2
            if m.kernel.pcp_high_autotune:
                assert (pcp.high_min, pcp.high_max) == (8, 8)
            else:
                assert pcp.high == 8
        check_invariants(m)
        return m
    both_runners(scenario)


def test_zone_pcp_disable_does_not_exist_before_5_11() -> None:
    m = boot("v5.10")
    with pytest.raises(ModelError):
        call(0, zone_pcp_disable, m, normal(m))


# ---------------------------------------------------------------------------------------
# isolation


@pytest.mark.parametrize("kern", KERNELS)
def test_isolated_block_does_not_merge_and_unset_refrees_it_to_merge(kern: str) -> None:
    """§3.5: a page freed into an isolated pageblock goes to the ISOLATE list and does not
    merge with its free non-isolated buddy above pageblock size (it is not counted free);
    unset_migratetype_isolate pulls it and frees it again, and now it merges."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern)
        z = normal(m)
        a = run(0, alloc_pages, m, 2, MIGRATE_MOVABLE)
        b = run(0, alloc_pages, m, 2, MIGRATE_MOVABLE)
        assert {a, b} == {0, 4}
        assert run(0, set_migratetype_isolate, m, 4, MIGRATE_MOVABLE, 0) == 0
        assert z.nr_isolate_pageblock == 1
        run(0, put_page, m, 0, 2)
        run(0, put_page, m, 4, 2)
        assert (0, 2) in free_set(m, z) and free_set(m, z, MIGRATE_ISOLATE) == {(4, 2)}
        assert z.nr_free_pages == 60
        check_invariants(m)
        run(0, unset_migratetype_isolate, m, 4, MIGRATE_MOVABLE)
        assert (0, 3) in free_set(m, z) and not free_set(m, z, MIGRATE_ISOLATE)
        assert z.nr_free_pages == 64 and z.nr_isolate_pageblock == 0
        check_invariants(m)
        return m
    both_runners(scenario)


@pytest.mark.parametrize("kern", KERNELS)
def test_isolating_one_block_of_a_larger_free_buddy(kern: str) -> None:
    """5.x-6.9 move a free buddy by its head: isolating the first pageblock of a free
    order-3 block moves all of it to the ISOLATE list, isolating the second moves
    nothing. 6.10+ split it so each pageblock's half is on its own list."""
    m = boot(kern)
    z = normal(m)
    assert call(0, set_migratetype_isolate, m, 12, MIGRATE_MOVABLE, 0) == 0
    if m.kernel.freelist_hygiene:
        assert free_set(m, z, MIGRATE_ISOLATE) == {(12, 2)} and (8, 2) in free_set(m, z)
        assert z.nr_free_pages == 60
    else:
        assert not free_set(m, z, MIGRATE_ISOLATE) and (8, 3) in free_set(m, z)
        assert z.nr_free_pages == 64
    check_invariants(m)
    assert call(0, set_migratetype_isolate, m, 16, MIGRATE_MOVABLE, 0) == 0
    if m.kernel.freelist_hygiene:
        assert (16, 2) in free_set(m, z, MIGRATE_ISOLATE) and (20, 2) in free_set(m, z)
    else:
        assert (16, 3) in free_set(m, z, MIGRATE_ISOLATE)
    check_invariants(m)
    call(0, undo_isolate_page_range, m, 0, 64, MIGRATE_MOVABLE)
    assert free_set(m, z) == {(p, 3) for p in range(0, 64, 8)} and z.nr_free_pages == 64
    check_invariants(m)


@pytest.mark.parametrize("kern", KERNELS)
def test_isolation_keeps_or_overwrites_the_block_type(kern: str) -> None:
    """5.x-6.16 write MIGRATE_ISOLATE over the 3 type bits, so undo writes the type its
    caller names; 6.17+ set a separate bit and undo restores the type kept under it."""
    m = boot(kern)
    call(0, page_alloc.set_pageblock_migratetype, m, 8, MIGRATE_UNMOVABLE)
    assert call(0, start_isolate_page_range, m, 8, 12, MIGRATE_MOVABLE, 0) == 0
    bits = m.pageblock_flags[2]
    if m.kernel.isolate_bit:
        assert bits == PB_migrate_isolate | MIGRATE_UNMOVABLE
    else:
        assert bits == MIGRATE_ISOLATE
    call(0, undo_isolate_page_range, m, 8, 12, MIGRATE_MOVABLE)
    expected = MIGRATE_UNMOVABLE if m.kernel.isolate_bit else MIGRATE_MOVABLE
    assert get_pageblock_migratetype(m, 8) == expected


def test_overlapping_isolation_fails_and_undoes_its_own_blocks() -> None:
    m = boot("v5.11")
    assert call(0, start_isolate_page_range, m, 16, 24, MIGRATE_MOVABLE, 0) == 0
    assert call(0, start_isolate_page_range, m, 8, 32, MIGRATE_MOVABLE, 0) == -EBUSY
    assert [get_pageblock_migratetype(m, p) == MIGRATE_ISOLATE for p in range(8, 32, 4)] == [
        False, False, True, True, False, False]
    check_invariants(m)


@pytest.mark.parametrize("kern", KERNELS)
def test_test_pages_isolated_fails_while_a_page_sits_on_a_pcplist(kern: str) -> None:
    """§2.4, §3.5: a page on a pcplist is free (refcount 0, so isolation accepts its
    block) but not PageBuddy, so test_pages_isolated fails; a drain sends it to the
    ISOLATE list (its type is re-read under zone->lock) and the test passes. 5.8-5.10
    isolation drains by itself."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern, limits=(0, 1))
        z = normal(m)
        p = alloc_in(m, 16, 32, cpu=1)
        set_pcp_limits(m, z, 8, 2)
        run(1, put_page, m, p, 0)
        assert p in z.per_cpu_pageset[1].lists[MIGRATE_MOVABLE]
        assert run(0, start_isolate_page_range, m, 16, 32, MIGRATE_MOVABLE, 0) == 0
        events: list[tuple[str, dict[str, int]]] = []
        m.tracer = lambda e, f: events.append((e, dict(f)))
        if m.kernel.isolation_users_drain:
            assert isolated_pages_on_pcplists(m) == [(z.per_cpu_pageset[1].name, p)]
            assert run(0, pages_isolated, m, 16, 32, 0) == -EBUSY
            assert events[-1] == ("test_pages_isolated",
                                  {"start_pfn": 16, "end_pfn": 32, "fin_pfn": p})
            run(0, drain_all_pages, m, z)
        assert not isolated_pages_on_pcplists(m)
        assert run(0, pages_isolated, m, 16, 32, 0) == 0
        m.tracer = None
        check_invariants(m)
        run(0, undo_isolate_page_range, m, 16, 32, MIGRATE_MOVABLE)
        check_invariants(m)
        return m
    both_runners(scenario)


# ---------------------------------------------------------------------------------------
# the races of spec §6, driven by hand


def _prepared_free(m: Machine, lo: int, hi: int, cpu: int = 1) -> tuple[int, Task]:
    """A page of [lo, hi) allocated on ``cpu`` and a task on ``cpu`` freeing it, stopped
    between the prepare half (block type read, IRQs on) and the commit."""
    p = alloc_in(m, lo, hi, cpu=cpu)
    set_pcp_limits(m, normal(m), 8, 2)
    task = Task(cpu, put_page(m, p, 0)).run_until(
        at_point("free_unref_page: preemptible between prepare and commit"))
    return p, task


@pytest.mark.parametrize("kern,ret,retries,reason", [
    ("v5.8", -EBUSY, 3, RETRY_BOUND),  # no drain on retry: would loop until a signal
    ("v5.10", 0, 1, ""),  # the drain after the failed test rescues it
    ("v5.11", 0, 0, ""),  # high 0: the commit itself flushes the page to ISOLATE
    ("v6.0", 0, 0, ""),
    ("v6.10", 0, 0, ""),
    ("v6.19", 0, 0, ""),
])
def test_stale_free_after_isolation_per_generation(kern: str, ret: int, retries: int,
                                                   reason: str) -> None:
    """§6.1 / §6.2: a free that read the block's type before isolation commits after it.
    5.8 leaves the page on the pcplist and the offline loop never passes its test (here
    the model's retry bound ends it); 5.10 passes after one drain-on-retry; 5.11+ (pcp
    disabled) never lets the page stay."""
    m = boot(kern)
    p, freer = _prepared_free(m, 16, 32)
    offline = Task(0, offline_pages(m, 16, 16, 3)).run_until(at_pageblock_read)
    freer.finish()
    on_pcp = isolated_pages_on_pcplists(m)
    assert on_pcp == ([] if m.kernel.zone_pcp_disable else [(normal(m).per_cpu_pageset[1].name, p)])
    assert isolation_safety(m) is None  # only non-None while disabled
    assert offline.finish() == ret
    event = hotplug_state(m).log[-1]
    assert (event.retries, event.reason) == (retries, reason)
    check_invariants(m)


def test_migration_target_can_be_a_pcplist_page_of_the_isolated_range() -> None:
    """§3.6 do_migrate_range / §6.1: in 5.10 a page of the range parked on the offlining
    CPU's pcplist is the first page an order-0 MOVABLE allocation there returns, so a
    page being migrated out of the range lands back in it (and is migrated again)."""
    m = boot("v5.10")
    z = normal(m)
    q = alloc_in(m, 16, 32, cpu=0)
    held = migrate.hold(m, "owner", q)
    p, freer = _prepared_free(m, 16, 32, cpu=0)
    assert p != q
    offline = Task(0, offline_pages(m, 16, 16)).run_until(
        at_point("migrate: between isolating and copying"))
    assert get_pageblock_migratetype(m, p) == MIGRATE_ISOLATE
    freer.finish()
    assert p in z.per_cpu_pageset[0].lists[MIGRATE_MOVABLE]
    offline.run_until(at_point("migrate: between allocating the target and copying"))
    offline.run_until(lambda op: isinstance(op, ops.spin_unlock) and op.lock is m.ptl)
    assert held.pfn == p  # migrated into the isolated range
    assert offline.finish() == 0
    assert not 16 <= held.pfn < 32
    check_invariants(m)


def test_owner_freeing_during_migration_frees_the_source() -> None:
    """unmap_and_move: a page whose owner drops it while it is isolated for migration is
    simply freed when migration drops its own reference."""
    m = boot("v5.11")
    q = alloc_in(m, 16, 32)
    held = migrate.hold(m, "owner", q)
    offline = Task(0, offline_pages(m, 16, 16)).run_until(
        at_point("migrate: between isolating and copying"))
    migrate.release(m, held)
    assert Task(1, put_page(m, held.pfn, 0)).finish() is None
    assert m.refcount[q] == 1
    assert offline.finish() == 0
    assert normal(m).nr_free_pages == 48
    check_invariants(m)


def test_racy_count_check_misses_a_refill_without_the_forced_drain() -> None:
    """§6.3 (sequentially consistent memory suffices): a refill moves its batch to the
    list and raises count afterwards. A non-forced drain that reads count 0 in between
    skips the CPU, so in a variant of v5.11 without force_all_cpus pages stay on a
    pcplist of a disabled zone, and become pages of isolated blocks once the range is
    isolated. (The forced drain's work item would have to wait for the refill's section
    to end, which needs the concurrent runtime; the checker's scenarios cover it.)"""
    variant = Kernel("v5.11-unforced", (5, 11), (("drain_force_all_cpus", False),))
    m = boot(variant, limits=(8, 4))
    z = normal(m)
    refill = Task(1, alloc_pages(m, 0, MIGRATE_MOVABLE)).run_until(at_count_store)
    assert len(z.per_cpu_pageset[1].lists[MIGRATE_MOVABLE]) == 4
    assert z.per_cpu_pageset[1].count == 0
    disable = Task(0, zone_pcp_disable(m, z))
    disable.finish()
    refill.finish()
    assert z.per_cpu_pageset[1].count == 3
    assert isolation_safety(m, strict=True) is not None
    assert isolation_safety(m) is None  # nothing isolated yet: the danger is one step away
    assert call(0, start_isolate_page_range, m, 0, 64, MIGRATE_MOVABLE, 0) == 0
    assert "isolated pageblock" in (isolation_safety(m) or "")


@pytest.mark.parametrize("kern,leftover", [("v6.0", True), ("v6.10", True), ("v6.11", False),
                                           ("v6.19", False)])
def test_remote_drain_with_an_unlocked_count_read_misses_a_refill(kern: str,
                                                                   leftover: bool) -> None:
    """§6.5: 6.0-6.10 drain_pages_zone() tests the remote count before taking the CPU's
    pcp->lock, so the forced drain of zone_pcp_disable still skips a CPU in the middle
    of a refill; 6.11 reads it under the lock and waits for the refill to finish."""
    m = boot(kern, limits=(8, 4))
    z = normal(m)
    refill = Task(1, alloc_pages(m, 0, MIGRATE_MOVABLE)).run_until(at_count_store)
    disable = Task(0, zone_pcp_disable(m, z))
    disable.finish(refill)
    refill.finish()
    assert (isolation_safety(m, strict=True) is not None) == leftover


# ---------------------------------------------------------------------------------------
# alloc_contig_range


@pytest.mark.parametrize("kern", KERNELS)
def test_alloc_contig_range_on_a_free_range_and_back(kern: str) -> None:
    """§3.8: isolate, (5.11+) drain, migrate, test, take the free pages as order-0 pages,
    un-isolate; free_contig_range gives them back, fully merged again. A range that is
    not max-order aligned frees the head and tail of the enclosing buddies."""
    def scenario(run: Runner) -> Machine:
        m = boot(kern)
        z = normal(m)
        q = alloc_in(m, 8, 16)
        assert q == 8
        held = migrate.hold(m, "owner", q)
        assert run(0, contig.alloc_contig_range, m, 8, 12) == 0
        assert [m.refcount[p] for p in range(8, 12)] == [1] * 4
        assert not 8 <= held.pfn < 16
        assert {(12, 2)} <= free_set(m, z)  # the tail of the enclosing buddy, freed
        assert z.nr_isolate_pageblock == 0
        check_invariants(m)
        run(0, contig.free_contig_range, m, 8, 4)
        migrate.release(m, held)
        run(0, put_page, m, held.pfn, 0)
        assert free_set(m, z) == {(p, 3) for p in range(0, 64, 8)}
        check_invariants(m)
        return m
    both_runners(scenario)


@pytest.mark.parametrize("kern", ("v5.10", "v5.11", "v6.19"))
def test_alloc_contig_range_fails_with_ebusy_on_a_pcplist_leftover(kern: str) -> None:
    """§3.8 / §6.6: alloc_contig_range never disables pcplists; a free that commits after
    its drain (5.10: the drains inside isolation; 5.11+: the one after it) leaves a page
    of the range on a pcplist, and the range is busy. Nothing is corrupted."""
    m = boot(kern)
    p, freer = _prepared_free(m, 16, 24)
    acr = Task(0, contig.alloc_contig_range(m, 16, 24)).run_until(at_pageblock_read)
    freer.finish()
    assert acr.finish() == -EBUSY
    assert p in [pfn for lst in normal(m).per_cpu_pageset[1].lists for pfn in lst]
    assert normal(m).nr_isolate_pageblock == 0
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# invariants


def test_isolation_safety_respects_cpus_inside_a_pcp_section() -> None:
    """The §7 check ignores a CPU whose pcp section is open (the runtime names it), and
    in 6.x a CPU whose pcp->lock is held."""
    m = boot("v6.19", limits=(8, 2))
    z = normal(m)
    call(0, zone_pcp_disable, m, z)
    call(0, start_isolate_page_range, m, 16, 32, MIGRATE_MOVABLE, 0)
    pcp = z.per_cpu_pageset[1]
    pcp.lists[MIGRATE_MOVABLE].append(16)  # as a commit does before it flushes
    assert isolation_safety(m) is not None
    assert isolation_safety(m, busy_cpus={1}) is None
    pcp.lock.owner = "cpu1"
    assert isolation_safety(m) is None
    pcp.lock.owner = None
    pcp.lists[MIGRATE_MOVABLE].clear()
    assert isolation_safety(m, strict=True) is None


def test_invariants_still_catch_isolation_errors() -> None:
    """The relaxations for isolation (head pageblock decides before 6.10; isolated
    buddies need not merge) do not hide a free page of an isolated block on a normal
    list, or a wrong isolated-block count."""
    m = boot("v5.11")
    z = normal(m)
    call(0, page_alloc.set_pageblock_migratetype, m, 16, MIGRATE_ISOLATE)
    z.nr_isolate_pageblock += 1
    with pytest.raises(InvariantViolation, match="isolation"):
        check_invariants(m)
    m = boot("v6.19")
    call(0, start_isolate_page_range, m, 16, 32, MIGRATE_MOVABLE, 0)
    normal(m).nr_isolate_pageblock -= 1
    with pytest.raises(InvariantViolation, match="nr_isolate_pageblock"):
        check_invariants(m)
