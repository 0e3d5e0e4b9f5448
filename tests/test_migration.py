# SPDX-License-Identifier: GPL-2.0-only
"""Task migration between CPUs (``Program.migration``): where a task may move, what pins
it, that DPOR still reaches every outcome plain DFS reaches, the stale-CPU toy, and the
allocator scenarios verified with their tasks migrating."""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import pytest

from pagesim.explore import Bounds, check, format_trace
from pagesim.explore.common import Outcome
from pagesim.explore.dpor import explore_dfs, explore_dpor
from pagesim.explore.toys import stale_cpu
from pagesim.runtime.executor import Execution, Program, Schedule, replay
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    READ_ONCE_IDX,
    WRITE_ONCE_IDX,
    Mutex,
    SpinLock,
    flush_work,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    mutex_unlock,
    point,
    queue_work_on,
    spin_lock,
    spin_unlock,
    this_cpu,
)
from pagesim.scenarios import program as scenario_program
from pagesim.scenarios.allocator import pcp_alloc_free, pcp_drain_vs_free

Gen = Generator[Any, Any, Any]

ALL = Bounds(stop_on_violation=False, minimize=False)


class Box:
    def __init__(self) -> None:
        self.name = "box"
        self.v = 0
        self.lock = SpinLock("box.lock")
        self.mutex = Mutex("box.mutex")
        self.log: list[Any] = []


def _program(cpus: Callable[[Box], dict[int, Any]], migration: bool = True) -> Program:
    def setup() -> tuple[Any, dict[int, Any]]:
        b = Box()
        return b, cpus(b)

    return Program("test", setup, migration=migration)


@kernel
def idle(b: Box) -> Gen:
    yield point("idle")


@kernel
def read_cpu(b: Box) -> Gen:
    b.log.append((yield this_cpu()))


@kernel
def section(b: Box) -> Gen:
    cpu = yield local_irq_save()
    b.log.append(cpu)
    v = yield READ_ONCE(b, "v")
    b.v = v + 1
    yield local_irq_restore()


@kernel
def cpu_under(b: Box, how: str) -> Gen:
    """Read the CPU inside a section, a spinlock or a mutex."""
    if how == "irq":
        yield local_irq_save()
    elif how == "spin":
        yield spin_lock(b.lock)
    else:
        yield mutex_lock(b.mutex)
    b.log.append((yield this_cpu()))
    if how == "irq":
        yield local_irq_restore()
    elif how == "spin":
        yield spin_unlock(b.lock)
    else:
        yield mutex_unlock(b.mutex)


# =======================================================================================
# The migration step


def test_a_preemptible_task_chooses_its_cpu_before_reading_it() -> None:
    ex = Execution(_program(lambda b: {0: partial(read_cpu, b), 1: partial(idle, b)}),
                   trace=True)
    assert ex.pending_choices("cpu0") == 2
    assert ex.pending_footprint("cpu0") == ()  # commutes with everything
    ex.step("cpu0", 1)
    assert ex.threads["cpu0"].cpu == 1
    assert ex.pending_choices("cpu0") is None
    assert ex.pending_footprint("cpu0") == ((("cpu", 1), "use"),)
    ex.step("cpu0")
    assert ex.state.log == [1]
    assert ex.records is not None
    assert [r.op for r in ex.records] == [
        "migrated to cpu1 from cpu0, before this_cpu", "this_cpu"]
    assert [r.cpu for r in ex.records] == [1, 1]
    assert "migrated to cpu1" in format_trace(ex.records)


def test_without_migration_nothing_moves() -> None:
    ex = Execution(_program(lambda b: {0: partial(read_cpu, b), 1: partial(idle, b)},
                            migration=False))
    assert ex.pending_choices("cpu0") is None
    ex.step("cpu0")
    assert ex.state.log == [0]


@pytest.mark.parametrize(("how", "migrates"), [("irq", False), ("spin", False),
                                               ("mutex", True)])
def test_sections_and_spinlocks_pin_a_task_mutexes_do_not(how: str, migrates: bool) -> None:
    ex = Execution(_program(lambda b: {0: partial(cpu_under, b, how), 1: []}))
    first = ex.pending_choices("cpu0")
    # entering a section or taking a spinlock is itself a migration point; a mutex is not
    assert first == (None if how == "mutex" else 2)
    ex.step("cpu0", None if first is None else 1)
    if first is not None:
        ex.step("cpu0")  # the section entry or the lock, on cpu1
    assert (ex.pending_choices("cpu0") is not None) == migrates


def test_work_items_never_migrate() -> None:
    @kernel
    def queue_read(b: Box) -> Gen:
        work = yield queue_work_on(1, read_cpu, b)
        yield flush_work(work)

    ex = Execution(_program(lambda b: {0: partial(queue_read, b), 1: []}))
    ex.step("cpu0")
    ex.step("cpu0.w1")  # the start event
    assert ex.pending_choices("cpu0.w1") is None
    ex.step("cpu0.w1")
    assert ex.state.log == [1]


def test_a_migrating_task_waits_only_for_the_cpu_it_chose() -> None:
    # cpu0's other context holds cpu0 in a section: the task may still migrate (the
    # scheduler moves it), and its section entry waits only if it chose cpu0.
    for target, enabled in ((0, False), (1, True)):
        ex = Execution(_program(lambda b: {0: [partial(section, b), partial(section, b)],
                                           1: []}))
        ex.step("cpu0", 0)  # cpu0 stays, then enters its section
        ex.step("cpu0")
        assert "cpu0.1" in ex.enabled()  # the migration step is never blocked
        ex.step("cpu0.1", target)
        assert ("cpu0.1" in ex.enabled()) is enabled


def test_preemptible_steps_are_not_held_up_by_a_section_on_their_cpu() -> None:
    @kernel
    def plain_read(b: Box) -> Gen:
        b.log.append((yield READ_ONCE(b, "v")))

    for migration in (False, True):
        ex = Execution(_program(lambda b: {0: [partial(section, b), partial(plain_read, b)],
                                           1: []}, migration))
        ex.step("cpu0", 0 if migration else None)
        ex.step("cpu0")  # cpu0 is inside its section
        assert ("cpu0.1" in ex.enabled()) is migration
        if migration:
            assert ex.pending_footprint("cpu0.1") == ((("field", id(ex.state), "v"), "r"),)


def test_a_spinlock_holder_excludes_its_cpus_other_contexts_with_migration() -> None:
    @kernel
    def hold(b: Box) -> Gen:
        yield spin_lock(b.lock)
        yield point("holding")
        yield spin_unlock(b.lock)

    @kernel
    def queue_section(b: Box) -> Gen:
        work = yield queue_work_on(0, section, b)
        yield flush_work(work)

    for migration in (False, True):
        ex = Execution(_program(lambda b: {0: partial(hold, b), 1: partial(queue_section, b)},
                                migration))
        if migration:
            ex.step("cpu0", 0)
        ex.step("cpu0")  # takes the lock on cpu0
        ex.step("cpu1")  # queues the section on cpu0
        # with migration, the holder is not preemptible: the work item waits
        assert ("cpu1.w1" in ex.enabled()) is not migration
        ex.step("cpu0")
        ex.step("cpu0")  # unlocks
        assert "cpu1.w1" in ex.enabled()


# =======================================================================================
# The stale-CPU toy


def test_stale_cpu_is_a_violation_only_with_migration() -> None:
    on = check(stale_cpu(), bounds=Bounds())
    off = check(stale_cpu(migration=False), bounds=Bounds())
    assert (on.verdict, on.property) == ("violation", "final")
    assert "1 update lost" in (on.message or "")
    assert off.verdict == "verified" and off.complete
    assert on.schedule is not None
    moves = [r for r in on.trace if r.op.startswith("migrated to")]
    assert moves and all(r.tid == "cpu0" for r in moves)
    # the schedule records the CPU chosen, so replaying it moves the task the same way
    again = replay(stale_cpu(), Schedule.from_json(on.schedule.to_json()))
    assert again.violation is not None and again.violation.property == "final"
    assert again.records == on.trace


def test_the_stale_cpu_scenario_is_registered() -> None:
    r = check(scenario_program("toy-stale-cpu", "v6.19"), bounds=Bounds())
    assert r.verdict == "violation"


# =======================================================================================
# DPOR against DFS, with migration


class RState:
    def __init__(self, nmem: int) -> None:
        self.name = "r"
        self.mem = [0] * nmem
        self.lock = SpinLock("L")
        self.mutex = Mutex("M")
        self.logs: dict[str, list[Any]] = {}


@kernel
def interpret(s: RState, prog: tuple[Any, ...], label: str) -> Gen:
    """Run a generated program: CPU reads, sections that update "their" CPU's element
    (the one read last, or the section's own), spinlocks and mutexes around CPU reads,
    plain accesses, work items."""
    log = s.logs.setdefault(label, [])
    cpu = 0
    handles = []
    for ins in prog:
        k = ins[0]
        if k == "cpu":
            cpu = yield this_cpu()
            log.append(("cpu", cpu))
        elif k == "irq":
            own = yield local_irq_save()
            target = own if ins[1] else cpu
            v = yield READ_ONCE_IDX(s.mem, target, "m")
            yield WRITE_ONCE_IDX(s.mem, target, v + 1, "m")
            yield local_irq_restore()
        elif k == "spin":
            yield spin_lock(s.lock)
            log.append(("spin", (yield this_cpu())))
            yield spin_unlock(s.lock)
        elif k == "mutex":
            yield mutex_lock(s.mutex)
            log.append(("mutex", (yield this_cpu())))
            yield mutex_unlock(s.mutex)
        elif k == "r":
            log.append((yield READ_ONCE_IDX(s.mem, ins[1], "m")))
        elif k == "w":
            yield WRITE_ONCE_IDX(s.mem, ins[1], ins[2], "m")
        elif k == "queue":
            handles.append((yield queue_work_on(ins[1], interpret, s, ins[2], ins[3])))
        elif k == "flush":
            yield flush_work(handles.pop(0))


def _instr(rng: random.Random, ncpus: int, nmem: int, top: bool,
           names: list[int]) -> list[tuple[Any, ...]]:
    r = rng.random()
    if r < 0.25:
        return [("cpu",)]
    if r < 0.5:
        return [("irq", rng.random() < 0.4)]
    if r < 0.58:
        return [("spin",)]
    if r < 0.64:
        return [("mutex",)]
    if r < 0.74:
        return [("r", rng.randrange(nmem))]
    if r < 0.84:
        return [("w", rng.randrange(nmem), rng.randrange(1, 3))]
    if top:
        names[0] += 1
        body = tuple(i for _ in range(rng.randrange(1, 3))
                     for i in _instr(rng, ncpus, nmem, False, names))
        return [("queue", rng.randrange(ncpus), body, f"w{names[0]}"), ("flush",)]
    return [("cpu",)]


def generated(seed: int) -> Program:
    rng = random.Random(seed)
    ncpus = rng.choice([2, 2, 3])
    nmem = ncpus
    names = [0]
    spec = {cpu: [(tuple(i for _ in range(rng.randrange(1, 4))
                         for i in _instr(rng, ncpus, nmem, True, names)), f"t{cpu}.{n}")
                  for n in range(1 if rng.random() < 0.8 else 2)]
            for cpu in range(ncpus)}

    def setup() -> tuple[Any, dict[int, Any]]:
        s = RState(nmem)
        return s, {cpu: [partial(interpret, s, prog, label) for prog, label in ctxs]
                   for cpu, ctxs in spec.items()}

    return Program(f"generated_migration({seed})", setup, max_steps=300, migration=True)


def _outcome(ex: Execution) -> tuple[Any, ...]:
    s = ex.state
    v = ex.violation
    logs = tuple(sorted((k, tuple(x)) for k, x in s.logs.items()))
    return (v.property if v else "ok", tuple(s.mem), logs)


def _outcomes(explore: Callable[[Program, Bounds], Outcome], program: Program,
              limit: int | None = None) -> tuple[int, set[tuple[Any, ...]]]:
    seen: set[tuple[Any, ...]] = set()
    out = explore(program, ALL.but(max_executions=limit,
                                   on_execution=lambda ex: seen.add(_outcome(ex))))
    assert out.complete
    return out.executions, seen


#: seeds (among the first 130) whose plain DFS runs 100 to 2200 executions
GENERATED = [2, 3, 8, 13, 22, 39, 45, 61, 71, 76, 79, 80, 85, 92, 102, 103]


@pytest.mark.parametrize("seed", GENERATED)
def test_dpor_reaches_every_outcome_dfs_reaches_with_migration(seed: int) -> None:
    program = generated(seed)
    n_dfs, dfs = _outcomes(explore_dfs, program)
    n_dpor, dpor = _outcomes(explore_dpor, program)
    assert dpor == dfs
    assert n_dpor <= n_dfs


# =======================================================================================
# The allocator with migrating tasks


def _away_from_home(ex: Execution) -> bool:
    """A task ended on another CPU than the one it started on."""
    return any(th.work is None and th.cpu != int(tid[3:].split(".")[0])
               for tid, th in ex.threads.items())


@pytest.mark.parametrize("kernel_name", ["v5.11", "v6.19"])
def test_pcp_alloc_free_verifies_with_migration(kernel_name: str) -> None:
    moved: list[bool] = []
    r = check(pcp_alloc_free(kernel_name, 2, migration=True),
              bounds=Bounds(on_execution=lambda ex: moved.append(_away_from_home(ex))))
    assert (r.verdict, r.complete) == ("verified", True)
    assert any(moved) and not all(moved)  # the tasks did move, and did stay
    plain = check(pcp_alloc_free(kernel_name, 2), bounds=Bounds())
    assert plain.verdict == "verified" and plain.executions < r.executions


@pytest.mark.parametrize("kernel_name", ["v5.11", "v6.19"])
def test_pcp_drain_vs_free_verifies_with_migration(kernel_name: str) -> None:
    # 6.x: the drain task holds pcp->lock and zone->lock without a section; a freeing
    # task that migrated onto its CPU must not run inside them (spinlocks pin)
    r = check(pcp_drain_vs_free(kernel_name, 2, migration=True), bounds=Bounds())
    assert (r.verdict, r.complete) == ("verified", True)


@pytest.mark.parametrize("kernel_name", ["v5.11", "v6.19"])
def test_the_pcp_paths_read_the_cpu_only_where_pinned(kernel_name: str) -> None:
    # Every migration step of the allocator's tasks comes before a section entry or a
    # spinlock, never before a this_cpu(): a CPU read preemptibly would go stale.
    rng = random.Random(1)
    ops: set[str] = set()
    for make in (pcp_alloc_free, pcp_drain_vs_free):
        for _ in range(20):
            ex = Execution(make(kernel_name, 2, migration=True), trace=True)
            while not ex.over:
                tid = rng.choice(ex.enabled())
                n = ex.pending_choices(tid)
                ex.step(tid, rng.randrange(n) if n else None)
            assert ex.records is not None and ex.violation is None
            ops.update(r.op.split("before ")[1] for r in ex.records if "before " in r.op)
    assert ops and not any(op.startswith("this_cpu") for op in ops), ops
