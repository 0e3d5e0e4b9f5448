# SPDX-License-Identifier: GPL-2.0-only
"""Random operation sequences against the buddy allocator and its pcplists.

One hypothesis state machine per kernel generation drives allocations of every order
and pcp migratetype on random CPUs, frees (single, and batched through
``free_unref_page_list``), drains, the pcp sysctl and ``zone_pcp_update``, on tiny
geometries with small pcp limits forced so that refills and flushes really happen.

Two machines built identically run every operation: one through the compiled sequential
variants (``call``), one by stepping the generators op by op (``step_through``). After
every step both must satisfy ``check_invariants`` and be identical, array by array and
pcp by pcp, with identical return values and trace events: that is the guard on the
``@kernel`` compiler (two variants, one source). At the end, freeing every held block
and draining every CPU must give back a fully merged zone, the free lists of a machine
fresh from boot.

The runs are derandomized and database-less, so CI sees the same examples every time;
a failure prints the steps as Python that replays it, e.g.::

    state = AllocatorMachine_v5_10()
    state.boot(geom=Geometry(...), nr_cpus=2, layout=..., limits=(3, 2))
    state.alloc_page(cpu=1, mt=0)
    state.free_page_list(picks=[0, 3], cpu=0)
    ...
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pagesim.model.build import simple_machine
from pagesim.model.geometry import Geometry, tiny
from pagesim.model.invariants import check_invariants
from pagesim.model.mmzone import (
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    Machine,
)
from pagesim.model.page_alloc import (
    __free_pages as free_pages_api,
)
from pagesim.model.page_alloc import (
    alloc_pages,
    drain_pages,
    free_list_pfns,
    free_unref_page_list,
)
from pagesim.model.pageset import (
    EINVAL,
    percpu_pagelist_fraction_sysctl_handler,
    set_pcp_limits,
    zone_pcp_update,
)
from pagesim.runtime.sequential import call, step_through

#: The generations the machine runs on: both ends, and each release where something the
#: allocator does changes (pcp locking, list layout, flush sizing, bulk free, drain).
KERNELS = ("v5.8", "v5.10", "v5.11", "v5.13", "v5.14", "v5.18", "v6.0", "v6.1", "v6.6",
           "v6.7", "v6.10", "v6.11", "v6.19")

#: pageblocks of 2, 4 and 8 pages; max-order blocks of 4, 8 and 16 pages. With
#: tiny(3, 5, 5) order 4 is above PAGE_ALLOC_COSTLY_ORDER, so it bypasses the pcplists
#: even on 5.13+; on 5.x every order above 0 does.
GEOMS = (tiny(2, 4, 4), tiny(3, 5, 5), tiny(1, 3, 3))

#: zone layouts (name, pages): one zone, or two, so allocations fall back from Normal
#: to DMA32 and each zone has its own pagesets; small zones fill up within a run, which
#: is what makes fallbacks steal from fragmented pageblocks
LAYOUTS = ((("Normal", 64),), (("DMA32", 32), ("Normal", 32)), (("Normal", 16),),
           (("Normal", 24),))

#: (high, batch) forced on every pcp; None keeps what the generation's formulas give
#: (high 0 / batch 1 on zones this small: every free flushes at once)
LIMITS = (None, (0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (6, 3), (8, 4))

PCP_TYPES = st.sampled_from((MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE))
CPUS = st.integers(0, 2)
#: which held block a free takes (modulo the number held, in pfn order)
PICK = st.integers(0, 63)


def machine_state(m: Machine) -> dict[str, Any]:
    """Everything the allocator can change, as plain comparable values."""
    state: dict[str, Any] = {
        "flags": bytes(m.flags), "private": bytes(m.private), "index": bytes(m.index),
        "refcount": m.refcount.tolist(), "zone_id": bytes(m.zone_id),
        "lru_next": m.lru_next.tolist(), "lru_prev": m.lru_prev.tolist(),
        "pageblock_flags": bytes(m.pageblock_flags),
        "percpu_pagelist_fraction": m.percpu_pagelist_fraction,
        "locks": [m.pcp_batch_high_lock.owner, m.pcpu_drain_mutex.owner],
    }
    for z in m.zones:
        state[f"zone {z.name}"] = (
            list(z.nr_free), z.nr_free_pages, z.nr_free_cma, z.nr_isolate_pageblock,
            z.managed_pages, z.boot_pageset, z.pageset_high, z.pageset_batch,
            z.pageset_high_min, z.pageset_high_max, z.lock.owner)
        if z.boot_pageset:
            continue
        for pcp in z.per_cpu_pageset:
            state[pcp.name] = (
                pcp.count, pcp.high, pcp.batch, pcp.high_min, pcp.high_max,
                pcp.free_count, pcp.alloc_factor, pcp.flags, pcp.lock.owner,
                [list(lst) for lst in pcp.lists])
    for pcp in m.boot_pagesets:
        state[pcp.name] = (pcp.count, [list(lst) for lst in pcp.lists])
    return state


def assert_same_machine(fast: Machine, slow: Machine, after: str) -> None:
    a, b = machine_state(fast), machine_state(slow)
    if a != b:
        diff = [k for k in a if a[k] != b[k]]
        detail = "; ".join(f"{k}: call {_short(a[k])} vs step_through {_short(b[k])}"
                           for k in diff[:3])
        raise AssertionError(f"after {after}, the fast and stepped variants diverge in "
                             f"{', '.join(diff)}: {detail}")


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) < 300 else text[:300] + "..."


def free_blocks(m: Machine) -> dict[tuple[str, int], set[int]]:
    """(zone, order) -> heads of the free blocks of that order, on any migratetype list."""
    out: dict[tuple[str, int], set[int]] = {}
    for z in m.populated_zones():
        for order in range(m.geom.nr_orders):
            out[z.name, order] = {pfn for mt in range(MIGRATE_TYPES)
                                  for pfn in free_list_pfns(m, z, order, mt)}
    return out


class ZoneArg(int):
    """A zone argument, by index: each machine gets its own zone object."""


def _resolve(m: Machine, args: tuple[Any, ...]) -> list[Any]:
    return [m.zones[a] if isinstance(a, ZoneArg) else list(a) if isinstance(a, list) else a
            for a in args]


class AllocatorMachine(RuleBasedStateMachine):
    """The allocator under random use; ``kern`` is set by the per-generation subclasses."""

    kern = "v6.19"

    def __init__(self) -> None:
        super().__init__()
        self.machines: tuple[Machine, Machine] | None = None
        self.build: Callable[[], Machine] | None = None
        self.held: dict[int, int] = {}  # pfn -> order
        self.traces: tuple[list[tuple[str, dict[str, int]]], ...] = ([], [])

    # -- running one kernel call on both machines ------------------------------------
    def both(self, cpu: int, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(m, *args)`` on ``cpu`` through ``call`` on the first machine and
        ``step_through`` on the second; same result and trace events, or fail."""
        assert self.machines is not None
        fast, slow = self.machines
        for t in self.traces:
            t.clear()
        r_fast = call(cpu, fn, fast, *_resolve(fast, args))
        r_slow = step_through(cpu, fn, slow, *_resolve(slow, args))
        what = f"{fn.__name__}{args!r} on cpu{cpu}"
        assert r_fast == r_slow, f"{what}: call returned {r_fast!r}, step_through {r_slow!r}"
        assert self.traces[0] == self.traces[1], (
            f"{what}: trace events differ: call {self.traces[0]} vs step_through "
            f"{self.traces[1]}")
        for name in sorted({e for e, _ in self.traces[0]}):
            event(f"{fn.__name__}: {name}")
        return r_fast

    def on_both(self, action: Callable[[Machine], None]) -> None:
        assert self.machines is not None
        for m in self.machines:
            action(m)

    @property
    def m(self) -> Machine:
        assert self.machines is not None
        return self.machines[0]

    def cpu(self, cpu: int) -> int:
        return cpu % self.m.nr_cpus

    # -- boot ---------------------------------------------------------------------------
    @initialize(geom=st.sampled_from(GEOMS), nr_cpus=st.integers(1, 3),
                layout=st.sampled_from(LAYOUTS), limits=st.sampled_from(LIMITS))
    def boot(self, geom: Geometry, nr_cpus: int, layout: tuple[tuple[str, int], ...],
             limits: tuple[int, int] | None) -> None:
        kern = self.kern

        def build() -> Machine:
            return simple_machine(kern=kern, geom=geom, nr_cpus=nr_cpus, zones=layout,
                                  min_free_kbytes=0)

        self.build = build
        self.machines = (build(), build())
        for m, trace in zip(self.machines, self.traces, strict=True):
            m.tracer = lambda event, fields, t=trace: t.append((event, dict(fields)))
        if limits is not None:
            self.force_limits(*limits)

    def force_limits(self, high: int, batch: int) -> None:
        self.on_both(lambda m: [set_pcp_limits(m, z, high, batch)
                                for z in m.populated_zones()] and None)

    # -- operations --------------------------------------------------------------------
    def _alloc(self, cpu: int, order: int, mt: int) -> int:
        pfn = self.both(self.cpu(cpu), alloc_pages, order, mt)
        if pfn < 0:
            return pfn
        m = self.m
        assert pfn & ((1 << order) - 1) == 0, f"block {pfn:#x} not aligned to order {order}"
        assert m.refcount[pfn] == 1 and m.private[pfn] == order
        assert pfn not in self.held
        self.held[pfn] = order
        return pfn

    @rule(cpu=CPUS, mt=PCP_TYPES)
    def alloc_page(self, cpu: int, mt: int) -> None:
        self._alloc(cpu, 0, mt)

    @rule(cpu=CPUS, order=st.integers(1, 4), mt=PCP_TYPES)
    def alloc_block(self, cpu: int, order: int, mt: int) -> None:
        if order <= self.m.geom.max_order:
            self._alloc(cpu, order, mt)

    def _pick(self, i: int, order0: bool) -> int:
        """The i-th held block (modulo), among order-0 pages or larger blocks."""
        cands = sorted(p for p, o in self.held.items() if (o == 0) == order0)
        return cands[i % len(cands)]

    def has_pages(self) -> bool:
        return any(o == 0 for o in self.held.values())

    def has_blocks(self) -> bool:
        return any(o > 0 for o in self.held.values())

    @precondition(has_pages)
    @rule(pick=PICK, cpu=CPUS)
    def free_page(self, pick: int, cpu: int) -> None:
        pfn = self._pick(pick, True)
        self.both(self.cpu(cpu), free_pages_api, pfn, self.held.pop(pfn))

    @precondition(has_blocks)
    @rule(pick=PICK, cpu=CPUS)
    def free_block(self, pick: int, cpu: int) -> None:
        pfn = self._pick(pick, False)
        self.both(self.cpu(cpu), free_pages_api, pfn, self.held.pop(pfn))

    @precondition(has_pages)
    @rule(picks=st.lists(PICK, min_size=1, max_size=8), cpu=CPUS)
    def free_page_list(self, picks: list[int], cpu: int) -> None:
        """release_pages(): drop each page's reference, then free the batch."""
        pfns: list[int] = []
        for i in picks:
            if self.has_pages():
                pfns.append(self._pick(i, True))
                self.held.pop(pfns[-1])

        def put(m: Machine) -> None:
            for pfn in pfns:
                assert m.refcount[pfn] == 1
                m.refcount[pfn] = 0

        self.on_both(put)
        self.both(self.cpu(cpu), free_unref_page_list, pfns)

    @rule(cpu=CPUS, caller=CPUS)
    def drain(self, cpu: int, caller: int) -> None:
        """drain_pages(cpu); 5.x can only drain the CPU it runs on, 6.0+ any CPU."""
        cpu = self.cpu(cpu)
        caller = self.cpu(caller) if self.m.kernel.remote_drain else cpu
        self.both(caller, drain_pages, cpu)

    @rule(action=st.one_of(
        st.tuples(st.just("sysctl"), st.sampled_from((0, 8, 10, 16, 32, 5))),
        st.tuples(st.just("zone_pcp_update"), st.integers(0, 1)),
        st.tuples(st.just("limits"), st.sampled_from(LIMITS[1:]))))
    def retune(self, action: tuple[str, Any]) -> None:
        """Change the pcp limits: the sysctl (1..7 is -EINVAL), zone_pcp_update (back to
        the formulas), or forced small values again. One rule, so that these are rarer
        than allocations and frees."""
        what, arg = action
        if what == "sysctl":
            ret = self.both(0, percpu_pagelist_fraction_sysctl_handler, arg)
            assert ret == (-EINVAL if 0 < arg < 8 else 0)
        elif what == "zone_pcp_update":
            zones = self.m.populated_zones()
            self.both(0, zone_pcp_update, ZoneArg(zones[arg % len(zones)].idx))
        else:
            self.force_limits(*arg)

    # -- after every step ---------------------------------------------------------------
    @invariant()
    def invariants_hold_and_variants_agree(self) -> None:
        if self.machines is None:
            return
        fast, slow = self.machines
        check_invariants(fast)
        check_invariants(slow)
        assert_same_machine(fast, slow, "this step")
        for pfn, order in self.held.items():
            assert fast.refcount[pfn] == 1 and fast.private[pfn] == order, (
                f"held block {pfn:#x} order {order}: refcount {fast.refcount[pfn]}, "
                f"order {fast.private[pfn]}")

    # -- the end: give everything back --------------------------------------------------
    def teardown(self) -> None:
        if sys.exc_info()[0] is not None or self.machines is None:
            return  # a step failed: report that, not a consequence of it
        assert self.build is not None
        m = self.m
        for pfn, order in list(self.held.items()):
            self.both(0, free_pages_api, pfn, order)
        self.held.clear()
        for cpu in range(m.nr_cpus):
            self.both(cpu, drain_pages, cpu)
        self.invariants_hold_and_variants_agree()
        fresh = self.build()
        for mach in self.machines:
            assert free_blocks(mach) == free_blocks(fresh), (
                "after freeing everything and draining every CPU the zone is not fully "
                f"merged: {free_blocks(mach)} vs fresh {free_blocks(fresh)}")
            for z, fz in zip(mach.zones, fresh.zones, strict=True):
                assert z.nr_free == fz.nr_free, f"zone {z.name}: nr_free {z.nr_free} vs " \
                    f"{fz.nr_free} after boot"
                assert z.nr_free_pages == z.managed_pages == fz.nr_free_pages
                if z.boot_pageset:
                    continue
                for pcp in z.per_cpu_pageset:
                    assert pcp.count == 0 and not any(pcp.lists), f"{pcp} not drained"
                for order in range(mach.geom.nr_orders):
                    assert not free_list_pfns(mach, z, order, MIGRATE_ISOLATE)
            start, end = (min(z.zone_start_pfn for z in mach.populated_zones()),
                          max(z.zone_end_pfn for z in mach.populated_zones()))
            assert all(mach.refcount[p] == 0 for p in range(start, end)), "a page is held"


def _machine_class(kern: str) -> type[AllocatorMachine]:
    name = "AllocatorMachine_" + kern.replace(".", "_")
    cls = type(name, (AllocatorMachine,), {"kern": kern, "__module__": __name__})
    cls.__qualname__ = name
    globals()[name] = cls  # so that a printed failure replays from this module
    return cls


MACHINES = {k: _machine_class(k) for k in KERNELS}

SETTINGS = settings(max_examples=25, stateful_step_count=50, deadline=None,
                    derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize("kern", KERNELS)
def test_random_operations_keep_invariants_and_variants_agree(kern: str) -> None:
    run_state_machine_as_test(MACHINES[kern], settings=SETTINGS)
