# SPDX-License-Identifier: GPL-2.0-only
"""Run a workload on a machine: the scheduler, the workload's operations, the metrics.

**One runtime, two grains.** Everything runs on the model's own kernel functions. The
long operations (offline, online, contiguous allocation, and the drain work they queue
on other CPUs) are contexts of one :class:`~pagesim.runtime.executor.Execution`, the
checker's runtime, stepped one op at a time with its exclusion rules (locks, each CPU's
interrupts-off token, ``flush_work``). The workload's page operations are mostly run
whole, through the compiled sequential variant (``fn.fast``) on their CPU, because a
stepped operation costs tens of microseconds and a real-size run needs millions of
them. A seeded scheduler interleaves the two: it picks a ready context at random and
steps it, then runs a burst of whole page operations on random CPUs (``load`` of them on
average), and again.

**Why coarser interleavings are sound here.** A whole operation is one particular
interleaving of its steps: all of them back to back, between two steps of the stepped
contexts. It is a legal one as long as every step of it would have been enabled there,
which the scheduler guarantees by running whole operations only while no stepped context
holds anything they take: no ``zone->lock``, no page-table lock, and on the operation's
CPU neither the interrupts-off (or preemption-off) token nor (6.x) a ``pcp->lock``.
So every state the simulator reaches is one the checker's runtime could reach, and the
counts it reports (drains, retries, migrations, pages on pcplists) are those of a real
execution of the model. What it gives up is coverage: the interleavings *inside* a page
operation. Races that need a page operation to be preempted halfway, such as the 2020
one (a free preempted between reading its pageblock's type and committing to a
pcplist), are kept by the mixes' ``preempt`` share: those operations run as contexts of
the same Execution, step by step, and can stop for a random time at any of their
scheduling points. The simulator measures; the checker proves.

**Determinism.** The only source of choice is ``random.Random(seed)``; the machine,
the workload and the seed decide every step, so a run's results file is reproducible
byte for byte.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from pagesim.model.contig import alloc_contig_range, free_contig_range
from pagesim.model.invariants import (
    InvariantViolation,
    check_invariants,
    isolated_pages_on_pcplists,
)
from pagesim.model.memory_hotplug import (
    block_is_online,
    hotplug_state,
    memory_blocks,
    offline_pages,
    online_memory_block,
)
from pagesim.model.migrate import release, unmap_and_put, vm_events
from pagesim.model.mmzone import (
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    HeldPage,
    Machine,
    PG_hole,
    PG_offline,
    PG_pcp,
    PG_reserved,
)
from pagesim.model.page_alloc import (
    alloc_pages,
    drain_local_pages_wq,
    free_unref_page_list,
)
from pagesim.runtime import ops
from pagesim.runtime.executor import Execution, Program
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    ATOMIC_ADD_IDX,
    Op,
    mutex_trylock,
    point,
    queue_work_on,
    spin_lock,
    spin_unlock,
)
from pagesim.sim.workload import MIGRATETYPES, Event, Mix, Workload, check_against

Gen = Generator[Any, Any, Any]

#: simulated nanoseconds per step, for traces (a page operation takes about a
#: microsecond on real hardware; the exact figure only scales the time axis)
NS_PER_STEP = 1000
#: how far the scheduler runs whole operations when no context is ready
IDLE_CHUNK = 4096
_NEVER = 1 << 62


class SimulationError(RuntimeError):
    """The model failed under the workload (a bad page, a broken invariant)."""


@kernel
def release_pages(m: Machine, helds: list[HeldPage]) -> Gen:
    """Drop a batch of order-0 pages as mm/swap.c release_pages() does: each page's
    mapping goes (under the page-table lock, see :func:`pagesim.model.migrate.
    unmap_and_put`) and its reference is dropped; the pages whose last reference that was
    are freed together through free_unref_page_list() ([K510] mm/swap.c :833-910). The
    reference goes inside the page-table lock section, as in unmap_and_put()."""
    pfns = []
    for held in helds:
        yield spin_lock(m.ptl)
        pfn = held.pfn
        release(m, held)
        ref = yield ATOMIC_ADD_IDX(m.refcount, pfn, -1, "refcount")
        yield spin_unlock(m.ptl)
        if not ref:
            pfns.append(pfn)
    if pfns:
        yield from free_unref_page_list(m, pfns)


class _Threads(dict[str, Any]):
    """The runtime's thread table, with finished work items retired from iteration (the
    runtime recomputes what is enabled over every thread after every step, and a long
    run queues thousands of drain items) but still known by name, for ``flush_work``."""

    def __init__(self) -> None:
        super().__init__()
        self.retired: set[str] = set()

    def __contains__(self, tid: object) -> bool:
        return dict.__contains__(self, tid) or tid in self.retired


class _SimExecution(Execution):
    """The checker's runtime without what only the explorers use: footprints (a scan of
    a memory block would list 32768 keys per step), the ever-growing step list, and
    finished work items."""

    def __init__(self, program: Program) -> None:
        super().__init__(program)
        threads = _Threads()
        threads.update(self.threads)
        self.threads = threads

    def pending_footprint(self, tid: str) -> tuple[Any, ...]:
        return ()

    def step(self, tid: str, choice: int | None = None) -> Any:
        step = super().step(tid, choice)
        if len(self.steps) >= 4096:
            del self.steps[:-1]
        threads = self.threads
        if len(threads) > 32 and isinstance(threads, _Threads):
            for t in [t for t, th in threads.items()
                      if th.pending is None and th.work is not None]:
                del threads[t]
                threads.retired.add(t)
        return step


# =======================================================================================
# Records


@dataclass
class EventRecord:
    """One long operation as it ran: when, on what, and how it ended."""

    op: str
    cpu: int
    at: int
    started: int = -1
    ended: int = -1
    block: int | None = None
    start_pfn: int = 0
    nr_pages: int = 0
    ret: int | None = None
    reason: str = ""
    retries: int = 0
    gave_up: bool = False

    @property
    def duration(self) -> int:
        return self.ended - self.started if self.ended >= 0 else -1

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "cpu": self.cpu, "at": self.at, "started": self.started,
                "ended": self.ended, "duration_steps": self.duration, "block": self.block,
                "start_pfn": self.start_pfn, "nr_pages": self.nr_pages, "ret": self.ret,
                "reason": self.reason, "retries": self.retries, "gave_up": self.gave_up}


@dataclass
class Counters:
    allocs: int = 0
    alloc_pages: int = 0
    failed_allocs: int = 0
    frees: int = 0
    free_pages: int = 0
    batched_frees: int = 0
    stepped_ops: int = 0
    runtime_steps: int = 0
    drains: int = 0
    remote_drains: int = 0
    #: pages migrated and pages that failed to migrate: the model's own vmstat
    #: counters (pgmigrate_success / pgmigrate_fail, pagesim.model.migrate.VmEvents)
    #: over the run
    migrations: int = 0
    migrate_failures: int = 0
    #: rounds without progress of every offline (the model's counter, as each
    #: offline's HotplugEvent.retries sums them)
    offline_retries: int = 0
    isolated_allocs: int = 0
    invariant_checks: int = 0

    @property
    def page_ops(self) -> int:
        return self.allocs + self.frees


@dataclass
class SimResult:
    """What a run produced; :mod:`pagesim.sim.results` writes it out."""

    seed: int
    kernel: str
    nr_cpus: int
    machine: dict[str, Any]
    workload: dict[str, Any]
    steps: int
    finished: bool
    counters: Counters
    events: list[EventRecord]
    samples: dict[str, list[Any]]
    violation: dict[str, Any] | None
    #: wall-clock figures, printed but never written to the results file (they vary)
    wall_seconds: float = 0.0
    tracer: Any = None
    summary_extra: dict[str, Any] = field(default_factory=dict)


# =======================================================================================
# Per-CPU workload state


class _Cpu:
    __slots__ = ("batch", "batch_free", "choices", "churn", "churn_fill", "cpu", "held",
                 "held_pages", "max_held", "mix", "name", "p_alloc", "preempt", "stepped",
                 "worker")

    def __init__(self, cpu: int, mix: Mix, movable_zoneidx: int) -> None:
        self.cpu = cpu
        self.mix = mix
        self.churn = mix.kind == "churn"
        self.name = f"cpu{cpu}-workload"
        self.held: list[HeldPage] = []
        self.held_pages = 0
        self.p_alloc = float(mix.alloc)
        self.batch_free = float(mix.batch_free)
        self.batch = mix.batch
        self.max_held = mix.max_held
        self.preempt = float(mix.preempt)
        # (order, migratetype, highest zone) by weight: GFP_HIGHUSER_MOVABLE may use
        # ZONE_MOVABLE, the others stop at ZONE_NORMAL
        total_o = sum(mix.orders.values())
        total_t = sum(mix.migratetypes.values())
        self.choices = _table({
            (o, MIGRATETYPES[t], movable_zoneidx if MIGRATETYPES[t] == MIGRATE_MOVABLE
             else 2): wo / total_o * wt / total_t
            for o, wo in mix.orders.items() for t, wt in mix.migratetypes.items()})
        self.churn_fill = True
        self.stepped: deque[Gen] = deque()
        self.worker: str | None = None


Choice = tuple[int, int, int]


def _table(weights: dict[Choice, float]) -> tuple[Choice, ...]:
    """A lookup table of 256 entries for a weighted choice by one random index (weights
    below 1/256 of the total still get one entry, so nothing listed is never chosen)."""
    total = sum(weights.values())
    items = sorted((k, v) for k, v in weights.items() if v > 0)
    out: list[Choice] = []
    for k, v in items:
        out.extend([k] * max(1, round(256 * v / total)))
    return tuple(out)


# =======================================================================================
# The simulation


class Simulation:
    """One run of ``workload`` on ``m`` with ``seed``. ``progress(now, total)`` is called
    every few thousand steps (the command line draws its bar with it)."""

    def __init__(self, m: Machine, workload: Workload, seed: int = 0, *,
                 tracer: Any = None, machine_info: dict[str, Any] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        check_against(workload, m.nr_cpus, m.geom.nr_orders,
                      managed_pages=sum(z.managed_pages for z in m.zones),
                      end_pfn=m.end_pfn, block_ids={b.id for b in memory_blocks(m)})
        self.m = m
        self.w = workload
        self.seed = seed
        self.rng = random.Random(seed)
        self.tracer = tracer
        if tracer is not None:
            m.tracer = tracer
        self.machine_info = machine_info or {}
        self.progress = progress
        self.now = 0
        self.c = Counters()
        # the model's counters run for the machine's whole life: the run counts from here
        self.vm_events = vm_events(m)
        self._vm_base = (self.vm_events.pgmigrate_success, self.vm_events.pgmigrate_fail,
                         self.vm_events.offline_retries)
        self.events: list[EventRecord] = []
        self.violation: dict[str, Any] | None = None
        self.zones = [z for z in m.zones if z.present_pages]
        self.all_zones = list(m.zones)
        self.movable_zoneidx = 3 if len(m.zones) > 3 else len(m.zones) - 1
        self._last_offlined: int | None = None
        self._contig: list[tuple[int, int]] = []
        self._pending_check = False
        self._since_check = 0
        self._last_progress = 0.0
        self._drain_serial: dict[str, int] = {}
        self._remote_seen: set[tuple[str, int, int]] = set()
        self._serial = 0
        self._pcp_key: tuple[int, ...] = ()
        self._pcp_lock_cpu: dict[int, int] = {}
        self.sleeping: dict[str, int] = {}
        self.comm: dict[str, tuple[int, str]] = {}
        # workload CPUs
        self.cpus: dict[int, _Cpu] = {}
        weighted: list[_Cpu] = []
        for mix in workload.mixes:
            cpus = range(m.nr_cpus) if isinstance(mix.cpus, str) else mix.cpus
            for cpu in cpus:
                if cpu in self.cpus:
                    continue  # the first mix that names a CPU owns it
                cs = _Cpu(cpu, mix, self.movable_zoneidx)
                self.cpus[cpu] = cs
                weighted.extend([cs] * max(1, round(4 * mix.weight)))
        self._weighted = weighted
        # bursts: (time, kind, cpu, payload), kept sorted
        self._bursts: list[tuple[int, int, Any]] = sorted(
            (b.at, i, b) for i, b in enumerate(workload.bursts))
        self._burst_free: list[tuple[int, int, list[HeldPage]]] = []
        # stepped contexts: per CPU, one for its events and one for its preempted ops
        self._event_queues: dict[int, list[tuple[Event, EventRecord]]] = {}
        for ev in sorted(workload.events, key=lambda e: e.at):
            rec = EventRecord(ev.op, ev.cpu, ev.at)
            self.events.append(rec)
            self._event_queues.setdefault(ev.cpu, []).append((ev, rec))
        self._event_tasks: set[str] = set()
        self._workers: set[str] = set()
        self._delays: dict[str, int] = {}
        spec: dict[int, list[Callable[[], Gen]]] = {}
        for cpu in range(m.nr_cpus):
            ctxs: list[Callable[[], Gen]] = []
            tid_base = f"cpu{cpu}"
            if cpu in self._event_queues:
                tid = tid_base if not ctxs else f"{tid_base}.{len(ctxs)}"
                ctxs.append(self._bind_events(cpu, tid))
                self._event_tasks.add(tid)
            cs_opt = self.cpus.get(cpu)
            if cs_opt is not None and cs_opt.preempt > 0:
                tid = tid_base if not ctxs else f"{tid_base}.{len(ctxs)}"
                cs_opt.worker = tid
                self._workers.add(tid)
                self._delays[tid] = cs_opt.mix.preempt_delay
                ctxs.append(self._bind_worker(cs_opt, tid))
            if ctxs:
                spec[cpu] = ctxs
        program = Program("simulate", lambda: (m, spec), max_steps=_NEVER)
        self.ex = _SimExecution(program)
        if self.ex.violation is not None:
            raise SimulationError(self.ex.violation.message)
        self.busy_all = False
        self.busy_cpus: frozenset[int] = frozenset()
        self.isolating = False
        self.samples: dict[str, list[Any]] = {
            "step": [], "pcp_pages": [], "free_blocks": [], "nr_free_pages": [],
            "in_use": [], "drains": [], "remote_drains": [], "migrations": [],
            "isolated_on_pcp": [], "offline_retries": []}

    # -- stepped contexts --------------------------------------------------------------

    def _bind_events(self, cpu: int, tid: str) -> Callable[[], Gen]:
        return lambda: self._event_task(cpu, tid)

    def _bind_worker(self, cs: _Cpu, tid: str) -> Callable[[], Gen]:
        return lambda: self._worker(cs, tid)

    def _event_task(self, cpu: int, tid: str) -> Gen:
        """The task that runs ``cpu``'s events in time order, idle in between."""
        for ev, rec in self._event_queues[cpu]:
            while self.now < ev.at:
                self.sleeping[tid] = ev.at
                yield point("idle until the next event")
            self.sleeping.pop(tid, None)
            rec.started = self.now
            self.comm[tid] = (1000 + cpu, _COMMS[ev.op])
            tracer = self.tracer
            if tracer is not None:
                tracer.clock_ns = self.now * NS_PER_STEP
                tracer.tasks[cpu] = self.comm[tid]
                tracer.begin(ev.op, cpu)
            yield from self._run_event(ev, rec)
            rec.ended = self.now
            if tracer is not None:
                tracer.clock_ns = self.now * NS_PER_STEP
                tracer.end(ev.op, cpu)
            self._pending_check = True
        self.sleeping[tid] = _NEVER
        self._event_tasks.discard(tid)
        yield point("events done")

    def _run_event(self, ev: Event, rec: EventRecord) -> Gen:
        m = self.m
        if ev.op == "offline":
            blk = self._pick_block(ev)
            if blk is None:
                rec.ret, rec.reason = -22, "no such online block"
                return
            rec.block, rec.start_pfn, rec.nr_pages = blk.id, blk.start_pfn, blk.nr_pages
            hp = hotplug_state(m)
            nlog = len(hp.log)
            rec.ret = yield from offline_pages(m, blk.start_pfn, blk.nr_pages,
                                               ev.max_retries)
            if len(hp.log) > nlog:
                rec.reason, rec.retries = hp.log[-1].reason, hp.log[-1].retries
                rec.gave_up = hp.log[-1].reason.startswith("retry bound")
            if rec.ret == 0:
                self._last_offlined = blk.id
        elif ev.op == "online":
            block_id = self._last_offlined if ev.block == "last-offlined" else ev.block
            if not isinstance(block_id, int):
                rec.ret, rec.reason = -22, "nothing offlined yet"
                return
            rec.block = block_id
            rec.ret = yield from online_memory_block(m, block_id, ev.online_type)
        elif ev.op == "alloc_contig":
            assert ev.start_pfn is not None and ev.nr_pages is not None
            rec.start_pfn, rec.nr_pages = ev.start_pfn, ev.nr_pages
            rec.ret = yield from alloc_contig_range(m, ev.start_pfn,
                                                    ev.start_pfn + ev.nr_pages)
            if rec.ret == 0:
                self._contig.append((ev.start_pfn, ev.nr_pages))
        else:  # free_contig
            if not self._contig:
                rec.ret, rec.reason = -22, "no contiguous range allocated"
                return
            pfn, nr = self._contig.pop()
            rec.start_pfn, rec.nr_pages = pfn, nr
            yield from free_contig_range(m, pfn, nr)
            rec.ret = 0

    def _pick_block(self, ev: Event) -> Any:
        m = self.m
        blocks = [b for b in memory_blocks(m) if block_is_online(m, b)]
        if isinstance(ev.block, int):
            return next((b for b in blocks if b.id == ev.block), None)
        # "busiest": the offlinable block (only movable pageblocks, no reserved pages,
        # no holes) of the highest populated zone with the most pages in use
        best, best_used = None, -1
        top = self.zones[-1].idx
        pbo = m.geom.pageblock_order
        for b in blocks:
            s, e = b.start_pfn, b.end_pfn
            if m.zone_id[s] != top or m.zone_id[e - 1] != top:
                continue
            if m.flags[s:e].translate(_UNOFFLINABLE).count(1):
                continue
            if any(m.pb_type[bits] != MIGRATE_MOVABLE
                   for bits in m.pageblock_flags[s >> pbo:(e - 1 >> pbo) + 1]):
                continue
            used = (e - s) - m.refcount[s:e].count(0)
            if used > best_used:
                best, best_used = b, used
        return best

    def _worker(self, cs: _Cpu, tid: str) -> Gen:
        """The task that runs ``cs``'s preempted operations, one after another."""
        q = cs.stepped
        self.comm[tid] = (2000 + cs.cpu, cs.name)
        while True:
            while not q:
                self.sleeping[tid] = _NEVER
                yield point("idle: no preempted operation queued")
            job = q.popleft()
            yield from job

    def _stepped_alloc(self, cs: _Cpu, choice: Choice) -> Gen:
        order, mt, zidx = choice
        pfn = yield from alloc_pages(self.m, order, mt, zidx, 0)
        self._took(cs, pfn, order, mt)

    def _took(self, cs: _Cpu, pfn: int, order: int, mt: int) -> None:
        c = self.c
        c.allocs += 1
        if pfn < 0:
            c.failed_allocs += 1
            return
        c.alloc_pages += 1 << order
        h = HeldPage(cs.name, pfn, order)
        if mt == MIGRATE_MOVABLE:
            self.m.owners[pfn] = h
        cs.held.append(h)
        cs.held_pages += 1 << order
        # not counted in isolated_allocs: a stepped allocation may take its page just
        # before another CPU isolates the page's block, which isolation allows (the
        # page is in use, and migration will move it); a whole one cannot

    # -- the step of a stepped context ------------------------------------------------

    def _step(self, tid: str) -> None:
        ex = self.ex
        th = ex.threads[tid]
        op = th.pending
        self._observe(tid, th, op)
        if self.tracer is not None:
            self.tracer.clock_ns = self.now * NS_PER_STEP
            self.tracer.tasks[th.cpu] = self._task_of(tid, th)
        ex.step(tid)
        self.now += 1
        self.c.runtime_steps += 1
        delay = self._delays.get(tid)
        if delay and type(th.pending) is point and not th.held \
                and ex.token.get(th.cpu) != tid and self.sleeping.get(tid) != _NEVER:
            # a preempted operation at a preemption point: its task is off the CPU for
            # a while (spec §6.2: the window between prepare and commit is unbounded)
            self.sleeping[tid] = self.now + int(self.rng.random() * delay)
        m = self.m
        busy = set(ex.token)
        if m.kernel.pcp_spinlock:
            for zone in self.zones:
                for pcp in zone.per_cpu_pageset:
                    if pcp.lock.owner is not None:
                        busy.add(pcp.cpu)
        self.busy_cpus = frozenset(busy)
        self.busy_all = m.ptl.owner is not None or any(
            z.lock.owner is not None for z in self.all_zones)
        self.isolating = any(z.nr_isolate_pageblock for z in self.all_zones)
        if ex.violation is not None and self.violation is None:
            v = ex.violation
            self.violation = {"property": v.property, "message": v.message,
                              "step": self.now, "context": tid}

    def _task_of(self, tid: str, th: Any) -> tuple[int, str]:
        got = self.comm.get(tid)
        if got is not None:
            return got
        if th.work is not None:
            return (3000 + th.cpu, f"kworker/{th.cpu}:1")
        return (1000 + th.cpu, tid)

    def _observe(self, tid: str, th: Any, op: Op | None) -> None:
        """Count drains and remote drains from the op a context is about to perform
        (the runner watches the runtime for what has no counter in the model; migrations
        and offline retries do, see :meth:`_sync_counters`)."""
        t = type(op)
        m = self.m
        if t is mutex_trylock and op.lock is m.pcpu_drain_mutex:  # type: ignore[union-attr]
            self.c.drains += 1
            self._serial += 1
            self._drain_serial[tid] = self._serial
        elif t is queue_work_on:
            if op.fn is drain_local_pages_wq and op.cpu != th.cpu:  # type: ignore[union-attr]
                self.c.remote_drains += 1
        elif t is spin_lock:
            lock = op.lock  # type: ignore[union-attr]
            if m.kernel.remote_drain:
                target = self._pcp_locks().get(id(lock))
                if target is not None and target != th.cpu:
                    key = (tid, self._drain_serial.get(tid, 0), target)
                    if key not in self._remote_seen:
                        self._remote_seen.add(key)
                        self.c.remote_drains += 1

    def _pcp_locks(self) -> dict[int, int]:
        """id(pcp->lock) -> its CPU, rebuilt when a zone's pagesets are replaced."""
        key = tuple(id(z.per_cpu_pageset) for z in self.all_zones)
        if key != self._pcp_key:
            self._pcp_key = key
            self._pcp_lock_cpu = {id(p.lock): p.cpu for z in self.all_zones
                                  for p in z.per_cpu_pageset}
        return self._pcp_lock_cpu

    # -- whole operations ---------------------------------------------------------------

    def _fast_burst(self, n: int) -> int:
        """Run up to ``n`` whole page operations on random CPUs that are free to run
        them; returns how many steps they took. This loop is the simulator's hot path:
        everything it needs is a local, and each choice costs one random number."""
        m = self.m
        rnd = self.rng.random
        weighted = self._weighted
        nw = len(weighted)
        busy = self.busy_cpus
        cur = ops.CURRENT
        cur.irqs_off = False
        alloc_fast = alloc_pages.fast  # type: ignore[attr-defined]
        free_fast = unmap_and_put.fast  # type: ignore[attr-defined]
        owners = m.owners
        c = self.c
        tracer = self.tracer
        isolating = self.isolating
        pb_type = m.pb_type
        pb_flags = m.pageblock_flags
        pbo = m.pageblock_order
        now = self.now
        sleeping = self.sleeping
        done = 0
        misses = 0
        allocs = failed = alloc_pages_n = frees = free_pages_n = 0
        while done < n:
            cs = weighted[int(rnd() * nw)]
            cpu = cs.cpu
            if cpu in busy:
                misses += 1
                if misses > 8:
                    break
                continue
            cur.cpu = cpu
            if tracer is not None:
                tracer.clock_ns = (now + done) * NS_PER_STEP
                tracer.tasks[cpu] = (2000 + cpu, cs.name)
            held = cs.held
            if cs.churn:
                if cs.churn_fill and cs.held_pages >= cs.max_held:
                    cs.churn_fill = False
                elif not cs.churn_fill and not held:
                    cs.churn_fill = True
                do_alloc = cs.churn_fill
                choice = _CHURN_CHOICE
            else:
                if not held and not cs.p_alloc:
                    done += 1  # a CPU that only frees, with nothing left: idle
                    continue
                do_alloc = not held or (cs.held_pages < cs.max_held and rnd() < cs.p_alloc)
                choices = cs.choices
                choice = choices[int(rnd() * len(choices))]
            if cs.preempt and not cs.stepped and rnd() < cs.preempt \
                    and sleeping.get(cs.worker or "", 0) == _NEVER:
                self._queue_stepped(cs, do_alloc, choice)
                done += 1
                continue
            if do_alloc:
                order, mt, zi = choice
                pfn = alloc_fast(m, order, mt, zi, 0)
                allocs += 1
                done += 1
                if pfn < 0:
                    failed += 1
                    continue
                alloc_pages_n += 1 << order
                h = HeldPage(cs.name, pfn, order)
                if mt == MIGRATE_MOVABLE:
                    owners[pfn] = h
                held.append(h)
                cs.held_pages += 1 << order
                if isolating and pb_type[pb_flags[pfn >> pbo]] == MIGRATE_ISOLATE:
                    c.isolated_allocs += 1
                continue
            if cs.churn or (cs.batch_free and rnd() < cs.batch_free):
                batch = self._take_batch(cs)
                if batch:
                    release_pages.fast(m, batch)  # type: ignore[attr-defined]
                    frees += len(batch)
                    free_pages_n += len(batch)
                    c.batched_frees += 1
                    done += len(batch)
                    continue
            i = int(rnd() * len(held))
            h = held[i]
            held[i] = held[-1]
            held.pop()
            order = h.order
            cs.held_pages -= 1 << order
            free_fast(m, h)
            frees += 1
            free_pages_n += 1 << order
            done += 1
        c.allocs += allocs
        c.failed_allocs += failed
        c.alloc_pages += alloc_pages_n
        c.frees += frees
        c.free_pages += free_pages_n
        return done

    def _take_batch(self, cs: _Cpu) -> list[HeldPage]:
        """The most recently allocated order-0 pages, up to a batch (what an exiting
        task or a shrinking cache releases together)."""
        held = cs.held
        out: list[HeldPage] = []
        keep: list[HeldPage] = []
        while held and len(out) < cs.batch:
            h = held.pop()
            (out if h.order == 0 else keep).append(h)
            if len(keep) > cs.batch:
                break
        held.extend(reversed(keep))
        cs.held_pages -= len(out)
        return out

    def _queue_stepped(self, cs: _Cpu, do_alloc: bool, choice: Choice) -> None:
        """Hand an operation to ``cs``'s preemptible task: it runs step by step, and the
        pages it frees are no longer the CPU's to free again."""
        self.c.stepped_ops += 1
        job: Gen
        if do_alloc:
            job = self._stepped_alloc(cs, choice)
        else:
            held = cs.held
            if cs.churn or (cs.batch_free and self.rng.random() < cs.batch_free):
                batch = self._take_batch(cs)
                if not batch:
                    return
                self.c.frees += len(batch)
                self.c.free_pages += len(batch)
                self.c.batched_frees += 1
                job = release_pages(self.m, batch)
            else:
                i = int(self.rng.random() * len(held))
                h = held[i]
                held[i] = held[-1]
                held.pop()
                cs.held_pages -= 1 << h.order
                self.c.frees += 1
                self.c.free_pages += 1 << h.order
                job = unmap_and_put(self.m, h)
        cs.stepped.append(job)
        assert cs.worker is not None
        self.sleeping.pop(cs.worker, None)

    def _prefill(self) -> None:
        """Each CPU's ``prefill`` allocations, before the clock starts (a machine that
        has been up for a while)."""
        for cs in self.cpus.values():
            n = cs.mix.prefill
            if not n:
                continue
            saved = cs.preempt
            cs.preempt = 0.0
            weighted, self._weighted = self._weighted, [cs]
            p = cs.p_alloc
            cs.p_alloc = 1.0
            max_held = cs.max_held
            cs.max_held = 1 << 62
            fill = cs.churn_fill
            try:
                self._fast_burst(n)
            finally:
                cs.preempt, self._weighted, cs.p_alloc = saved, weighted, p
                cs.max_held, cs.churn_fill = max_held, fill

    def _bursts_due(self) -> None:
        while self._bursts and self._bursts[0][0] <= self.now:
            b = self._bursts[0][2]
            if b.cpu in self.busy_cpus:
                return
            self._bursts.pop(0)
            got: list[HeldPage] = []
            mt = MIGRATETYPES[b.migratetype]
            ops.CURRENT.cpu = b.cpu
            zi = self.movable_zoneidx if mt == MIGRATE_MOVABLE else 2
            for _ in range(b.count):
                if self.tracer is not None:
                    self.tracer.clock_ns = self.now * NS_PER_STEP
                    self.tracer.tasks[b.cpu] = (4000 + b.cpu, f"burst/{b.cpu}")
                pfn = alloc_pages.fast(self.m, b.order, mt, zi, 0)  # type: ignore[attr-defined]
                self.now += 1
                self.c.allocs += 1
                if pfn < 0:
                    self.c.failed_allocs += 1
                    continue
                self.c.alloc_pages += 1 << b.order
                h = HeldPage(f"burst/{b.cpu}", pfn, b.order)
                if mt == MIGRATE_MOVABLE:
                    self.m.owners[pfn] = h
                got.append(h)
            self._burst_free.append((b.at + b.hold, b.cpu, got))
            self._burst_free.sort(key=lambda x: x[0])
        while self._burst_free and self._burst_free[0][0] <= self.now:
            _, cpu, got = self._burst_free[0]
            if cpu in self.busy_cpus:
                return
            self._burst_free.pop(0)
            ops.CURRENT.cpu = cpu
            for h in got:
                unmap_and_put.fast(self.m, h)  # type: ignore[attr-defined]
                self.now += 1
                self.c.frees += 1
                self.c.free_pages += 1 << h.order

    # -- metrics -----------------------------------------------------------------------

    def _sync_counters(self) -> None:
        """Bring the counters the model keeps (migrations, offline retries) into the
        run's."""
        ev, (ok, bad, retries) = self.vm_events, self._vm_base
        c = self.c
        c.migrations = ev.pgmigrate_success - ok
        c.migrate_failures = ev.pgmigrate_fail - bad
        c.offline_retries = ev.offline_retries - retries

    def _sample(self) -> None:
        m = self.m
        s = self.samples
        self._sync_counters()
        s["step"].append(self.now)
        s["pcp_pages"].append([sum(z.per_cpu_pageset[c].count for z in self.zones
                                   if not z.boot_pageset) for c in range(m.nr_cpus)])
        s["free_blocks"].append([sum(z.nr_free[o] for z in self.zones)
                                 for o in range(m.geom.nr_orders)])
        s["nr_free_pages"].append(sum(z.nr_free_pages for z in self.zones))
        s["in_use"].append(self.in_use())
        s["drains"].append(self.c.drains)
        s["remote_drains"].append(self.c.remote_drains)
        s["migrations"].append(self.c.migrations)
        s["isolated_on_pcp"].append(len(isolated_pages_on_pcplists(m)) if self.isolating else 0)
        s["offline_retries"].append(self.c.offline_retries)

    def in_use(self) -> int:
        """Pages the workload holds (bursts and contiguous ranges included)."""
        n = sum(cs.held_pages for cs in self.cpus.values())
        n += sum(len(got) for _, _, got in self._burst_free)
        return n + sum(nr for _, nr in self._contig)


    def _quiet(self) -> bool:
        return not self.busy_all and not self.busy_cpus

    def _check(self) -> None:
        check_invariants(self.m)
        self.c.invariant_checks += 1

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> SimResult:
        t0 = time.perf_counter()
        try:
            self._run()
        except InvariantViolation as e:
            self.violation = {"property": "invariant", "message": str(e),
                              "step": self.now, "context": "check_invariants"}
        except Exception as e:  # the model crashed under a whole operation
            self.violation = {"property": "exception", "message": f"{type(e).__name__}: {e}",
                              "step": self.now, "context": "workload"}
        wall = time.perf_counter() - t0
        return self._result(wall)

    def _run(self) -> None:
        w = self.w
        ex = self.ex
        rnd = self.rng.random
        self._prefill()
        self._check()
        self._sample()
        next_sample = self.now + w.sample_every
        load2 = 2 * w.load
        have_load = bool(self._weighted)
        while True:
            if self._bursts or self._burst_free:
                self._bursts_due()
            # a round: every ready context takes one step, in random order, each
            # followed by a burst of whole operations on the other CPUs
            ready = [tid for tid in ex.enabled() if self.sleeping.get(tid, -1) <= self.now]
            if ready:
                self.rng.shuffle(ready)
                per = load2 / len(ready)
                for tid in ready:
                    if tid not in ex.enabled():
                        continue  # an earlier step of this round blocked it
                    self._step(tid)
                    if self.violation is not None:
                        return
                    limit = next_sample - self.now
                    if have_load and not self.busy_all and limit > 0:
                        self.now += self._fast_burst(min(int(rnd() * per + 0.5), limit))
                    if self.now >= next_sample:
                        next_sample = self._sampled(next_sample)
            elif self._stuck():
                return
            else:
                limit = next_sample - self.now
                if have_load:
                    self.now += self._fast_burst(min(IDLE_CHUNK, limit))
                else:
                    wake = min(self.sleeping.values(), default=_NEVER)
                    # nothing runs between here and then but the bursts: stop at the next
                    if self._bursts:
                        wake = min(wake, self._bursts[0][0])
                    if self._burst_free:
                        wake = min(wake, self._burst_free[0][0])
                    self.now = max(self.now, min(wake, next_sample, w.max_steps))
                if self.now >= next_sample:
                    next_sample = self._sampled(next_sample)
            if self._pending_check and self._quiet():
                self._pending_check = False
                self._since_check = 0
                self._check()
            if self.now >= w.duration and self._idle():
                break
            if self.now >= w.max_steps:
                break
        if self.now != self.samples["step"][-1]:
            self._sample()
        if self._quiet():
            self._check()
        if self.progress is not None:
            self.progress(self.now, self.now)

    def _sampled(self, due: int) -> int:
        """Take the sample that is due; returns when the next one is."""
        self._sample()
        self._since_check += 1
        if self.w.check_every and self._since_check >= self.w.check_every:
            self._pending_check = True
        now = time.perf_counter()
        if self.progress is not None and now - self._last_progress > 0.2:
            self._last_progress = now
            self.progress(self.now, self._horizon())
        return self.now + self.w.sample_every

    def _horizon(self) -> int:
        """The step the run is expected to end at, for the progress bar."""
        return max(self.w.duration, self.now + (1 if not self._idle() else 0))

    def _idle(self) -> bool:
        """Nothing stepped left to do: every event done, no preempted op queued or
        running, no work item pending."""
        if self._event_tasks:
            return False
        for th in self.ex.threads.values():
            if th.pending is not None and self.sleeping.get(th.tid, -1) < _NEVER:
                return False
        return True

    def _stuck(self) -> bool:
        """No context is ready: fine if every unfinished one sleeps; a deadlock if one
        that does not sleep is blocked."""
        for tid, th in self.ex.threads.items():
            if th.pending is not None and self.sleeping.get(tid, -1) <= self.now:
                self.violation = {"property": "deadlock",
                                  "message": "every unfinished context is blocked: "
                                  + self.ex.describe_thread(tid),
                                  "step": self.now, "context": tid}
                return True
        return False

    def _result(self, wall: float) -> SimResult:
        self._sync_counters()
        unfinished = [r for r in self.events if r.ended < 0]
        for r in unfinished:
            r.reason = r.reason or ("not started" if r.started < 0 else
                                    f"still running at step {self.now}")
        return SimResult(
            seed=self.seed, kernel=self.m.kernel.name, nr_cpus=self.m.nr_cpus,
            machine=self.machine_info, workload=self.w.to_dict(), steps=self.now,
            finished=not unfinished and self.violation is None, counters=self.c,
            events=self.events, samples=self.samples, violation=self.violation,
            wall_seconds=wall, tracer=self.tracer)


#: bytes.translate table: 1 for a page that keeps its block from being offlined
_UNOFFLINABLE = bytes(int(bool(f & (PG_reserved | PG_hole | PG_offline))) for f in range(256))

_CHURN_CHOICE: Choice = (0, MIGRATE_MOVABLE, 3)

_COMMS = {"offline": "memhp-offline", "online": "memhp-online",
          "alloc_contig": "contig-alloc", "free_contig": "contig-free"}


def pcp_pages_on(m: Machine) -> int:
    """Pages on every pcplist of the machine (a helper for tests and summaries)."""
    return sum(pcp.count for z in m.zones if not z.boot_pageset
               for pcp in z.per_cpu_pageset)


def pcp_flagged(m: Machine) -> int:
    """Pages whose struct page says they are on a pcplist."""
    return sum(1 for f in m.flags if f & PG_pcp)


def iter_held(sim: Simulation) -> Iterator[HeldPage]:
    for cs in sim.cpus.values():
        yield from cs.held
