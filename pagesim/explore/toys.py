# SPDX-License-Identifier: GPL-2.0-only
"""Small concurrent programs whose answers are known, independent of the allocator.

The checker is tested on these (``tests/test_explore_toys.py`` pins how many executions
each strategy explores on each) and the bench measures on them. Every thread body is a
``@kernel`` function using the runtime's ops, as model code is.

===========================  ========================================  =================
program                      what it is                                answer
===========================  ========================================  =================
``lost_update``              CPUs do READ_ONCE then WRITE_ONCE of      violation
                             count+1
``locked_counter``           the same under a spinlock                 verified
``peterson``                 Peterson's mutual exclusion under SC      verified
``peterson(write_turn=0)``   ... without the write of ``turn``         violation
``disjoint_writes``          each CPU writes its own field             verified (DPOR: 1
                                                                       execution)
``abba``                     two locks taken in opposite orders        deadlock
``flushed_work``             a work item queued on another CPU,        verified
                             flushed
``percpu_counter``           a task and a work item on one CPU         verified; with
                             increment a per-CPU counter inside        the task
                             interrupts-off sections                   preemptible: race
``chosen_writes``            a writer chooses its value; a reader      verified
                             reads
``stale_cpu``                a task reads this_cpu() preemptibly,      violation with
                             then updates "its" per-CPU counter in     migration;
                             a section, while a work item updates      verified
                             CPU0's                                    without
``spin_forever``             a CPU waits for a flag nobody sets        liveness
===========================  ========================================  =================
"""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
from typing import Any

from pagesim.runtime.executor import Program
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    READ_ONCE_IDX,
    WRITE_ONCE,
    WRITE_ONCE_IDX,
    SpinLock,
    Work,
    choose,
    flush_work,
    local_irq_restore,
    local_irq_save,
    point,
    queue_work_on,
    spin_lock,
    spin_unlock,
    this_cpu,
)

Gen = Generator[Any, Any, Any]


class Cell:
    """A shared object with a name (counterexamples print it) and plain fields."""

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        for k, v in fields.items():
            setattr(self, k, v)


# =======================================================================================
# Counters


@kernel
def racy_increment(c: Any) -> Gen:
    v = yield READ_ONCE(c, "count")
    yield WRITE_ONCE(c, "count", v + 1)


@kernel
def locked_increment(c: Any, own: Any = None, private_writes: int = 0) -> Gen:
    """Increment under the lock, after ``private_writes`` writes to a field of this CPU's
    own (work that needs no lock: what partial-order reduction does not interleave)."""
    for i in range(private_writes):
        yield WRITE_ONCE(own, "v", i)
    yield spin_lock(c.lock)
    v = yield READ_ONCE(c, "count")
    yield WRITE_ONCE(c, "count", v + 1)
    yield spin_unlock(c.lock)


def _counter_program(name: str, body: Any, n: int, private_writes: int = 0) -> Program:
    def setup() -> tuple[Any, dict[int, Any]]:
        c = Cell("counter", count=0, lock=SpinLock("counter.lock"))
        if not private_writes:
            return c, {cpu: partial(body, c) for cpu in range(n)}
        own = [Cell(f"own{cpu}", v=0) for cpu in range(n)]
        return c, {cpu: partial(body, c, own[cpu], private_writes) for cpu in range(n)}

    def all_counted(c: Any) -> str | None:
        return None if c.count == n else f"count is {c.count}, expected {n}"

    return Program(name, setup, final_checks=[all_counted])


def lost_update(n: int = 2) -> Program:
    """``n`` CPUs increment a counter with a lockless read then write: updates get lost."""
    return _counter_program(f"lost_update({n})", racy_increment, n)


def locked_counter(n: int = 2, private_writes: int = 0) -> Program:
    """``n`` CPUs increment a counter under a spinlock: every update counts. Each first
    writes a field of its own ``private_writes`` times."""
    name = f"locked_counter({n}, {private_writes})" if private_writes else \
        f"locked_counter({n})"
    return _counter_program(name, locked_increment, n, private_writes)


# =======================================================================================
# Peterson


@kernel
def peterson_thread(s: Any, me: int, write_turn: bool, spins: int) -> Gen:
    """Peterson's entry protocol, the critical section, the exit. The busy-wait gives up
    after ``spins`` failed retries: a stateless checker must bound busy-waiting (an
    unfair scheduler can spin forever), and mutual exclusion is checked on every
    execution in which waiting is so bounded."""
    other = 1 - me
    yield WRITE_ONCE_IDX(s.flag, me, 1, "flag")
    if write_turn:
        yield WRITE_ONCE(s, "turn", other)
    for _ in range(spins + 1):
        f = yield READ_ONCE_IDX(s.flag, other, "flag")
        if not f:
            break
        t = yield READ_ONCE(s, "turn")
        if t != other:
            break
    else:
        return
    yield WRITE_ONCE_IDX(s.in_cs, me, 1, "in_cs")
    yield WRITE_ONCE_IDX(s.in_cs, me, 0, "in_cs")
    yield WRITE_ONCE_IDX(s.flag, me, 0, "flag")


def mutual_exclusion(s: Any) -> str | None:
    return "both CPUs are in the critical section" if s.in_cs[0] and s.in_cs[1] else None


def peterson(write_turn: bool = True, spins: int = 1) -> Program:
    """Peterson's algorithm on two CPUs, mutual exclusion checked after every step.
    Without the write of ``turn`` both CPUs can enter."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("peterson", flag=[0, 0], turn=0, in_cs=[0, 0])
        return s, {me: partial(peterson_thread, s, me, write_turn, spins) for me in (0, 1)}

    name = f"peterson(spins={spins})" if write_turn else f"peterson_no_turn(spins={spins})"
    return Program(name, setup, checks=[mutual_exclusion],
                   observes=lambda s: [(s.in_cs, 0), (s.in_cs, 1)])


# =======================================================================================
# Independence, locks in the wrong order


@kernel
def write_own(cell: Any) -> Gen:
    yield WRITE_ONCE(cell, "v", 1)


def disjoint_writes(n: int = 2) -> Program:
    """``n`` CPUs each write a field of their own: one trace, so DPOR runs once."""

    def setup() -> tuple[Any, dict[int, Any]]:
        cells = [Cell(f"cell{i}", v=0) for i in range(n)]
        return cells, {i: partial(write_own, cells[i]) for i in range(n)}

    return Program(f"disjoint_writes({n})", setup)


@kernel
def lock_both(first: SpinLock, second: SpinLock) -> Gen:
    yield spin_lock(first)
    yield spin_lock(second)
    yield spin_unlock(second)
    yield spin_unlock(first)


def abba(ordered: bool = False) -> Program:
    """CPU0 takes A then B, CPU1 B then A: the classic deadlock (``ordered``: both take
    A first, and there is none)."""

    def setup() -> tuple[Any, dict[int, Any]]:
        a, b = SpinLock("A"), SpinLock("B")
        second = (a, b) if ordered else (b, a)
        return (a, b), {0: partial(lock_both, a, b), 1: partial(lock_both, *second)}

    return Program("ab_ab" if ordered else "abba", setup)


# =======================================================================================
# Work items


@kernel
def set_x(s: Any) -> Gen:
    yield WRITE_ONCE(s, "x", 1)


@kernel
def queue_and_flush(s: Any, cpu: int) -> Gen:
    work = yield queue_work_on(cpu, set_x, s)
    yield flush_work(work)
    x = yield READ_ONCE(s, "x")
    assert x == 1, "flush_work returned before the work item ran"


@kernel
def irq_section_on(s: Any) -> Gen:
    yield local_irq_save()
    v = yield READ_ONCE(s, "y")
    yield WRITE_ONCE(s, "y", v + 1)
    yield local_irq_restore()


def flushed_work() -> Program:
    """CPU0 queues a work item on CPU1 and flushes it, then must see its write; CPU1's
    task meanwhile runs an interrupts-off section, which the item must wait for."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", x=0, y=0)
        return s, {0: partial(queue_and_flush, s, 1), 1: partial(irq_section_on, s)}

    return Program("flushed_work", setup)


@kernel
def percpu_add(s: Any, irqs_off: bool) -> Gen:
    """Increment this CPU's counter: an RMW that is atomic only with interrupts off."""
    if irqs_off:
        yield local_irq_save()
    v = yield READ_ONCE(s, "count")
    yield WRITE_ONCE(s, "count", v + 1)
    if irqs_off:
        yield local_irq_restore()


@kernel
def remote_percpu_add(s: Any, cpu: int) -> Gen:
    """Queue the increment on ``cpu`` (as drain_all_pages queues drain work) and wait."""
    work: Work = yield queue_work_on(cpu, percpu_add, s, True)
    yield flush_work(work)


def percpu_counter(task_irqs_off: bool = True) -> Program:
    """CPU0's task and a work item that CPU1 queues on CPU0 both increment CPU0's
    counter. With the task's increment inside an interrupts-off section the two cannot
    interleave on CPU0; without it the work item can run between its read and write."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("pcp0", count=0)
        return s, {0: partial(percpu_add, s, task_irqs_off),
                   1: partial(remote_percpu_add, s, 0)}

    def both_counted(s: Any) -> str | None:
        return None if s.count == 2 else f"count is {s.count}, expected 2"

    name = "percpu_counter" if task_irqs_off else "percpu_counter_preemptible"
    return Program(name, setup, final_checks=[both_counted])


@kernel
def stale_percpu_add(s: Any) -> Gen:
    """The stale-CPU bug: the CPU is read while preemptible and used after the task may
    have moved, so the section protects one CPU's data while running on another."""
    cpu = yield this_cpu()
    yield local_irq_save()
    v = yield READ_ONCE_IDX(s.count, cpu, "count")
    yield WRITE_ONCE_IDX(s.count, cpu, v + 1, "count")
    yield local_irq_restore()


@kernel
def local_percpu_add(s: Any) -> Gen:
    """The right way: the CPU is the one the section runs on."""
    cpu = yield local_irq_save()
    v = yield READ_ONCE_IDX(s.count, cpu, "count")
    yield WRITE_ONCE_IDX(s.count, cpu, v + 1, "count")
    yield local_irq_restore()


@kernel
def queue_local_add(s: Any, cpu: int) -> Gen:
    work: Work = yield queue_work_on(cpu, local_percpu_add, s)
    yield flush_work(work)


def stale_cpu(migration: bool = True) -> Program:
    """CPU0's task reads ``this_cpu()`` with preemption enabled, then increments that
    CPU's counter inside an interrupts-off section; CPU1 queues a work item on CPU0 that
    increments CPU0's counter in a section of its own. Without migration the task's
    section is on CPU0 and excludes the item; with it the task can read 0, move to CPU1,
    and increment CPU0's counter from there, concurrently with the item: an update is
    lost."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("pcp", count=[0, 0])
        return s, {0: partial(stale_percpu_add, s), 1: partial(queue_local_add, s, 0)}

    def both_counted(s: Any) -> str | None:
        total = sum(s.count)
        return None if total == 2 else f"counts are {s.count}: {2 - total} update lost"

    def counts(s: Any) -> dict[str, object]:
        return {f"count[{cpu}]": v for cpu, v in enumerate(s.count)}

    name = "stale_cpu" if migration else "stale_cpu_no_migration"
    return Program(name, setup, final_checks=[both_counted], migration=migration,
                   snapshot=counts)


# =======================================================================================
# Choices, liveness


@kernel
def write_chosen(s: Any) -> Gen:
    v = yield choose(2, "value to write")
    yield WRITE_ONCE(s, "x", v + 1)


@kernel
def read_into_log(s: Any) -> Gen:
    v = yield READ_ONCE(s, "x")
    s.seen.append(v)


def chosen_writes() -> Program:
    """CPU0 chooses 0 or 1 and writes it plus one; CPU1 reads. Every (choice, order)
    pair is a distinct behaviour: 2 choices x (read before or after the write)."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", x=0, seen=[])
        return s, {0: partial(write_chosen, s), 1: partial(read_into_log, s)}

    return Program("chosen_writes", setup)


@kernel
def wait_for_flag(s: Any) -> Gen:
    while True:
        f = yield READ_ONCE(s, "flag")
        if f:
            return


@kernel
def never_set_flag(s: Any) -> Gen:
    yield point("forgets to set the flag")


def spin_forever(max_steps: int = 20) -> Program:
    """CPU0 spins on a flag that CPU1 never sets: no execution finishes."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", flag=0)
        return s, {0: partial(wait_for_flag, s), 1: partial(never_set_flag, s)}

    return Program("spin_forever", setup, max_steps=max_steps)


def all_toys() -> dict[str, Program]:
    """Every toy with its default parameters, by name."""
    progs = [lost_update(), locked_counter(), peterson(), peterson(write_turn=False),
             disjoint_writes(), abba(), abba(ordered=True), flushed_work(),
             percpu_counter(), percpu_counter(task_irqs_off=False), chosen_writes(),
             spin_forever(), stale_cpu(), stale_cpu(migration=False)]
    return {p.name: p for p in progs}
