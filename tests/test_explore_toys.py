# SPDX-License-Identifier: GPL-2.0-only
"""The checker on small programs whose answers are known.

Execution counts are pinned per strategy, as stateright pins state counts: a change in
the reduction (or a lost interleaving) shows as a changed number. Every toy is also run
with DPOR and plain DFS, which must agree on the verdict with DPOR never exploring more.
DPOR's soundness is further checked against DFS on generated programs (locks, trylocks,
interrupts-off sections, work items, choices): both must reach the same set of final
states and values read.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import pytest

from pagesim.explore import Bounds, Result, check, format_trace
from pagesim.explore.common import Outcome
from pagesim.explore.dpor import explore_dfs, explore_dpor
from pagesim.explore.toys import (
    Cell,
    abba,
    chosen_writes,
    disjoint_writes,
    flushed_work,
    locked_counter,
    lost_update,
    percpu_counter,
    peterson,
    spin_forever,
    stale_cpu,
)
from pagesim.runtime import ops
from pagesim.runtime.executor import (
    Execution,
    Program,
    Schedule,
    ScheduleError,
    dependent,
    replay,
)
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    READ_ONCE_IDX,
    WRITE_ONCE,
    WRITE_ONCE_IDX,
    Mutex,
    SpinLock,
    choose,
    flush_work,
    local_irq_restore,
    local_irq_save,
    mutex_lock,
    mutex_unlock,
    point,
    queue_work_on,
    spin_lock,
    spin_trylock,
    spin_unlock,
)
from pagesim.runtime.sequential import call, step_through

Gen = Generator[Any, Any, Any]

ALL = Bounds(stop_on_violation=False, minimize=False)


def run(program: Program, strategy: str, **kw: Any) -> Result:
    return check(program, bounds=ALL.but(strategy=strategy, **kw))


# =======================================================================================
# Pinned counts

#: name, program, verdict, property, then executions explored to the end (every
#: violation counted, nothing stopped early) by DPOR, plain DFS, and preemption-bounded
#: search with bounds 0, 1, 2.
PINNED: list[tuple[str, Callable[[], Program], str, str | None, int, int, int, int, int]] = [
    ("lost_update", lost_update, "violation", "final", 4, 6, 2, 4, 6),
    ("locked_counter", locked_counter, "verified", None, 2, 2, 2, 2, 2),
    ("locked_counter(3, 1)", lambda: locked_counter(3, 1), "verified", None,
     6, 396, 6, 114, 312),
    ("peterson", peterson, "verified", None, 20, 2526, 2, 12, 62),
    ("peterson_no_turn", lambda: peterson(write_turn=False), "violation", "invariant",
     13, 392, 2, 10, 46),
    ("disjoint_writes", disjoint_writes, "verified", None, 1, 2, 2, 2, 2),
    ("disjoint_writes(4)", lambda: disjoint_writes(4), "verified", None, 1, 24, 24, 24, 24),
    ("abba", abba, "violation", "deadlock", 3, 6, 2, 6, 6),
    ("ab_ab", lambda: abba(ordered=True), "verified", None, 2, 2, 2, 2, 2),
    ("flushed_work", flushed_work, "verified", None, 3, 21, 4, 12, 18),
    ("percpu_counter", percpu_counter, "verified", None, 3, 11, 4, 11, 11),
    ("percpu_counter_preemptible", lambda: percpu_counter(task_irqs_off=False),
     "violation", "final", 3, 15, 4, 11, 15),
    ("chosen_writes", chosen_writes, "verified", None, 4, 6, 4, 6, 6),
    ("spin_forever", spin_forever, "violation", "liveness", 1, 21, 2, 21, 21),
    # DFS branches every migration choice at every position; DPOR's migration steps
    # commute with everything
    ("stale_cpu", stale_cpu, "violation", "final", 13, 6672, 16, 161, 602),
    ("stale_cpu_no_migration", lambda: stale_cpu(migration=False), "verified", None,
     4, 30, 4, 17, 27),
]


@pytest.mark.parametrize("row", PINNED, ids=[r[0] for r in PINNED])
def test_pinned_execution_counts(row: tuple[Any, ...]) -> None:
    _, make, verdict, prop, n_dpor, n_dfs, *n_bounded = row
    program = make()
    dpor = run(program, "dpor")
    dfs = run(program, "dfs")
    assert (dpor.executions, dfs.executions) == (n_dpor, n_dfs)
    assert dpor.verdict == dfs.verdict == verdict
    assert dpor.property == dfs.property == prop
    assert dpor.pruned == 0
    bounded = [run(program, "bounded", preemption_bound=c).executions for c in (0, 1, 2)]
    assert bounded == n_bounded


@pytest.mark.parametrize("row", PINNED, ids=[r[0] for r in PINNED])
def test_dpor_agrees_with_dfs_and_explores_no_more(row: tuple[Any, ...]) -> None:
    program = row[1]()
    dpor = check(program, bounds=Bounds(minimize=False))
    dfs = check(program, bounds=Bounds(strategy="dfs", minimize=False))
    assert dpor.verdict == dfs.verdict
    assert dpor.property == dfs.property
    assert dpor.complete == dfs.complete == (dpor.verdict == "verified")
    assert dpor.executions <= dfs.executions


def test_executions_until_the_first_violation_are_pinned() -> None:
    programs: dict[str, Program] = {
        "lost_update": lost_update(), "abba": abba(),
        "peterson_no_turn": peterson(write_turn=False),
        "percpu": percpu_counter(task_irqs_off=False)}
    firsts = {name: check(p, bounds=Bounds(minimize=False)).executions
              for name, p in programs.items()}
    assert firsts == {"lost_update": 2, "abba": 2, "peterson_no_turn": 9, "percpu": 2}


def test_disjoint_writes_are_one_execution_under_dpor() -> None:
    for n in (2, 3, 5):
        assert run(disjoint_writes(n), "dpor").executions == 1
    assert run(disjoint_writes(3), "dfs").executions == 6


def test_locked_counter_dpor_explores_one_execution_per_lock_order() -> None:
    for n, orders in ((2, 2), (3, 6), (4, 24)):
        r = run(locked_counter(n, 1), "dpor")
        assert (r.verdict, r.executions) == ("verified", orders)


def test_checks_without_observes_make_every_step_visible() -> None:
    """Without ``observes`` the reduction must not hide states between independent
    steps: DPOR then explores what DFS explores, and still finds the bug."""
    for write_turn in (True, False):
        program = dataclasses.replace(peterson(write_turn=write_turn), observes=None)
        dpor, dfs = run(program, "dpor"), run(program, "dfs")
        assert dpor.verdict == dfs.verdict
        assert dpor.executions == dfs.executions


def test_peterson_with_longer_waits_stays_verified() -> None:
    assert [run(peterson(spins=s), "dpor").executions for s in (0, 2, 3)] == [10, 34, 52]
    assert run(peterson(write_turn=False, spins=2), "dpor").verdict == "violation"


# =======================================================================================
# Counterexamples


def test_lost_update_counterexample() -> None:
    r = check(lost_update(), bounds=Bounds())
    assert (r.verdict, r.property, r.complete) == ("violation", "final", False)
    assert r.message == "all_counted: count is 1, expected 2"
    assert r.schedule is not None and len(r.schedule) == 4 and r.preemptions == 1
    ops_seen = [(rec.tid, rec.op, rec.value) for rec in r.trace]
    assert ops_seen == [
        ("cpu0", "READ_ONCE(counter.count)", "0"),
        ("cpu1", "READ_ONCE(counter.count)", "0"),
        ("cpu1", "WRITE_ONCE(counter.count, 1)", "1"),
        ("cpu0", "WRITE_ONCE(counter.count, 1)", "1"),
    ]
    assert [rec.preemption for rec in r.trace] == [False, True, False, False]
    assert r.trace[0].chain[-1][0] == "racy_increment"
    table = format_trace(r.trace)
    assert "CPU0" in table and "CPU1" in table and "racy_increment" in table
    data = r.to_json()
    assert data["verdict"] == "violation" and len(data["counterexample"]) == 4
    json.dumps(data)


def test_abba_deadlock_names_both_locks() -> None:
    r = check(abba(), bounds=Bounds())
    assert r.property == "deadlock"
    assert "spin_lock(&B)" in (r.message or "") and "spin_lock(&A)" in (r.message or "")
    assert r.schedule is not None and len(r.schedule) == 2


def test_spin_forever_is_a_liveness_violation() -> None:
    r = check(spin_forever(max_steps=15), bounds=Bounds())
    assert r.property == "liveness"
    assert r.schedule is not None and len(r.schedule) == 15
    assert r.preemptions == 0
    assert "wait_for_flag" in (r.message or "")
    assert check(spin_forever(), bounds=Bounds(max_steps=7)).schedule is not None
    assert len(check(spin_forever(), bounds=Bounds(max_steps=7)).trace) == 7


@kernel
def noise(s: Any, n: int) -> Gen:
    for _ in range(n):
        yield point("noise")


def test_minimisation_drops_unneeded_steps_and_preemptions() -> None:
    base = peterson(write_turn=False)

    def setup() -> tuple[Any, dict[int, Any]]:
        s, cpus = base.setup()
        return s, {**cpus, 2: partial(noise, s, 6)}

    program = dataclasses.replace(base, name="peterson_with_noise", setup=setup)
    raw = check(program, bounds=Bounds(strategy="random", seed=2, minimize=False))
    best = check(program, bounds=Bounds(strategy="random", seed=2))
    assert raw.schedule is not None and best.schedule is not None
    assert raw.found_length == best.found_length == len(raw.schedule) == 12
    assert raw.preemptions == 8
    assert (len(best.schedule), best.preemptions) == (7, 1)
    assert all(rec.tid != "cpu2" for rec in best.trace)


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_random_and_pct_find_the_lost_update(strategy: str) -> None:
    found = {seed: check(lost_update(3), bounds=Bounds(strategy=strategy, seed=seed,
                                                       minimize=False)).executions
             for seed in range(4)}
    expected = {"random": {0: 1, 1: 1, 2: 1, 3: 1}, "pct": {0: 1, 1: 1, 2: 1, 3: 1}}
    assert found == expected[strategy]
    r = check(peterson(write_turn=False), bounds=Bounds(strategy=strategy, seed=0))
    assert r.verdict == "violation" and r.property == "invariant"


def test_random_and_pct_give_up_within_bounds_on_correct_programs() -> None:
    for strategy in ("random", "pct"):
        r = check(locked_counter(2, 1), bounds=Bounds(strategy=strategy, seed=1,
                                                      max_executions=50))
        assert (r.verdict, r.complete, r.executions) == (
            "no-violation-within-bounds", False, 50)
        assert r.seed == 1


def _record(runs: list[list[tuple[str, int | None]]], ex: Execution) -> None:
    runs.append(list(ex.schedule().steps))


def test_same_seed_same_search() -> None:
    seen: list[list[list[tuple[str, int | None]]]] = []
    for _ in range(2):
        runs: list[list[tuple[str, int | None]]] = []
        seen.append(runs)
        check(chosen_writes(), bounds=Bounds(strategy="pct", seed=7, max_executions=20,
                                             on_execution=partial(_record, runs)))
    assert seen[0] == seen[1]
    assert len({tuple(r) for r in seen[0]}) > 1


def test_bounded_search_is_complete_when_no_preemption_was_refused() -> None:
    r = check(locked_counter(), bounds=Bounds(strategy="bounded", preemption_bound=0))
    assert (r.verdict, r.complete) == ("verified", True)
    r = check(lost_update(), bounds=Bounds(strategy="bounded", preemption_bound=0))
    assert (r.verdict, r.complete) == ("no-violation-within-bounds", False)
    r = check(lost_update(), bounds=Bounds(strategy="bounded", preemption_bound=1))
    assert r.verdict == "violation" and r.preemptions == 1


# =======================================================================================
# Schedules and replay


def test_replay_is_deterministic_and_schedules_round_trip() -> None:
    r = check(percpu_counter(task_irqs_off=False), bounds=Bounds())
    assert r.schedule is not None
    text = r.schedule.to_json()
    again = Schedule.from_json(text)
    assert again == r.schedule and again.program == "percpu_counter_preemptible"
    states: list[int] = []
    first = replay(percpu_counter(task_irqs_off=False), again,
                   on_step=lambda rec, s: states.append(s.count))
    second = replay(percpu_counter(task_irqs_off=False), again)
    assert first.records == second.records == r.trace
    assert first.violation == second.violation and first.violation is not None
    assert first.violation.property == "final"
    assert states == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    work = [rec for rec in first.records if rec.tid == "cpu1.w1"]
    assert work[0].op == "start percpu_add" and work[0].cpu == 0
    assert [fn for fn, _ in work[2].chain] == ["percpu_add"]
    queue = next(rec for rec in first.records if rec.op.startswith("queue_work_on"))
    assert queue.chain[0][0] == "remote_percpu_add"


def test_every_execution_replays_step_for_step() -> None:
    program = flushed_work()
    runs: list[Execution] = []
    check(program, bounds=ALL.but(strategy="dfs", on_execution=runs.append))
    assert len(runs) == 21
    def shape(steps: list[Any]) -> list[tuple[Any, ...]]:  # keys hold per-run identities
        return [(s.tid, s.choice, tuple(k for _, k in s.footprint), s.preemption,
                 s.created) for s in steps]

    for ex in runs:
        rep = replay(program, ex.schedule())
        assert shape(rep.steps) == shape(ex.steps)
        assert rep.finished


def test_bad_schedules_are_rejected() -> None:
    with pytest.raises(ScheduleError, match="thread cpu1 is not enabled"):
        replay(locked_counter(), [("cpu0", None), ("cpu1", None)])
    with pytest.raises(ScheduleError, match=r"over \(ended by deadlock"):
        replay(abba(), [("cpu0", None), ("cpu1", None), ("cpu0", None)])
    with pytest.raises(ScheduleError, match="out of range"):
        replay(chosen_writes(), [("cpu0", 5)])
    with pytest.raises(ScheduleError, match="not a choose"):
        replay(chosen_writes(), [("cpu1", 1)])
    with pytest.raises(ScheduleError):
        Schedule.from_json('{"format": "other"}')
    with pytest.raises(ScheduleError, match="bad schedule step"):
        Schedule.from_json('{"format": "pagesim-schedule", "version": 1, "steps": [[1]]}')


# =======================================================================================
# Executor semantics


class Box:
    def __init__(self) -> None:
        self.name = "box"
        self.v = 0
        self.lock = SpinLock("box.lock")
        self.mutex = Mutex("box.mutex")
        self.log: list[Any] = []


@kernel
def irq_rmw(b: Box) -> Gen:
    yield local_irq_save()
    v = yield READ_ONCE(b, "v")
    yield WRITE_ONCE(b, "v", v + 1)
    yield local_irq_restore()


@kernel
def plain_rmw(b: Box) -> Gen:
    v = yield READ_ONCE(b, "v")
    yield WRITE_ONCE(b, "v", v + 1)


def _program(cpus: Callable[[Box], dict[int, Any]], **kw: Any) -> Program:
    def setup() -> tuple[Any, dict[int, Any]]:
        b = Box()
        return b, cpus(b)

    return Program("test", setup, **kw)


def test_an_irq_section_excludes_its_cpu_only() -> None:
    program = _program(lambda b: {0: [partial(irq_rmw, b), partial(plain_rmw, b)],
                                  1: partial(plain_rmw, b)})
    ex = Execution(program)
    assert ex.enabled() == ["cpu0", "cpu0.1", "cpu1"]
    ex.step("cpu0")
    assert ex.enabled() == ["cpu0", "cpu1"]
    assert ex.steps[-1].footprint == ((("cpu", 0), "acq"),)
    ex.step("cpu0")  # reads v
    ex.step("cpu1")  # another CPU interleaves inside the section: it reads v too
    assert dependent(ex.steps[-1].footprint, ex.pending_footprint("cpu0"))  # the store
    ex.step("cpu0")
    assert ex.state.v == 1
    assert ex.enabled() == ["cpu0", "cpu1"]
    ex.step("cpu0")
    assert ex.enabled() == ["cpu0.1", "cpu1"]
    assert ex.threads["cpu0"].finished


def test_steps_on_one_cpu_touching_different_memory_are_independent() -> None:
    program = _program(lambda b: {0: [partial(plain_rmw, b), partial(plain_rmw, Box())]})
    ex = Execution(program)
    assert not dependent(ex.pending_footprint("cpu0"), ex.pending_footprint("cpu0.1"))


def test_locks_block_and_self_deadlock_is_a_deadlock() -> None:
    @kernel
    def twice(b: Box) -> Gen:
        yield spin_lock(b.lock)
        yield spin_lock(b.lock)

    r = check(_program(lambda b: {0: partial(twice, b)}), bounds=Bounds())
    assert r.property == "deadlock" and "spin_lock(&box.lock)" in (r.message or "")


def test_trylock_footprints_say_whether_it_took_the_lock() -> None:
    @kernel
    def take(b: Box) -> Gen:
        ok = yield spin_trylock(b.lock)
        b.log.append(ok)
        if ok:
            yield spin_unlock(b.lock)

    program = _program(lambda b: {0: partial(take, b), 1: partial(take, b)})
    ex = Execution(program)
    ex.step("cpu0")
    assert ex.steps[-1].footprint[0][1] == "tacq"
    ex.step("cpu1")
    assert ex.steps[-1].footprint[0][1] == "fail"
    outcomes: set[tuple[bool, ...]] = set()
    check(program, bounds=ALL.but(on_execution=lambda e: outcomes.add(tuple(e.state.log))))
    assert outcomes == {(True, True), (True, False)}


def test_misuse_is_an_assertion_violation() -> None:
    @kernel
    def sleep_in_atomic(b: Box) -> Gen:
        yield local_irq_save()
        yield mutex_lock(b.mutex)
        yield mutex_unlock(b.mutex)
        yield local_irq_restore()

    @kernel
    def unlock_free(b: Box) -> Gen:
        yield spin_unlock(b.lock)

    @kernel
    def leave_irqs_off(b: Box) -> Gen:
        yield local_irq_save()

    @kernel
    def bad_assert(b: Box) -> Gen:
        v = yield READ_ONCE(b, "v")
        assert v == 1, "v is not 1"

    cases: list[tuple[Callable[[Box], Gen], str]] = [
        (sleep_in_atomic, "atomic context"), (unlock_free, "not held"),
        (leave_irqs_off, "interrupts/preemption off"), (bad_assert, "v is not 1")]
    for body, text in cases:
        r = check(_program(partial(_one_context, body)), bounds=Bounds())
        assert r.property == "assertion" and text in (r.message or ""), body


def _one_context(body: Callable[[Box], Gen], b: Box) -> dict[int, Any]:
    return {0: partial(body, b)}


def test_an_exception_from_model_code_is_a_violation() -> None:
    @kernel
    def crash(b: Box) -> Gen:
        yield point("before")
        b.log.pop()

    r = check(_program(lambda b: {0: partial(crash, b)}), bounds=Bounds())
    assert r.property == "exception" and "IndexError" in (r.message or "")


def test_invariants_run_after_every_step() -> None:
    def small(b: Box) -> str | None:
        return f"v is {b.v}" if b.v > 1 else None

    def tiny(b: Box) -> str | None:
        return f"v is {b.v}" if b.v > 2 else None

    program = _program(lambda b: {0: partial(plain_rmw, b), 1: partial(plain_rmw, b)},
                       checks=[tiny], observes=lambda b: [(b, "v")])
    assert run(program, "dpor").verdict == "verified"
    program = dataclasses.replace(program, checks=[small])
    r = check(program, bounds=Bounds())
    assert (r.property, r.message) == ("invariant", "small: v is 2")
    assert r.schedule is not None and len(r.schedule) == 4


def test_flush_work_waits_for_the_work_item() -> None:
    program = flushed_work()
    ex = Execution(program)
    ex.step("cpu0")  # queue_work_on
    assert ex.enabled() == ["cpu1", "cpu0.w1"]  # cpu0 waits in flush_work
    assert ex.threads["cpu0.w1"].cpu == 1
    ex.step("cpu1")  # cpu1's task disables interrupts: the work item must wait too
    assert ex.enabled() == ["cpu1"]


def test_work_runs_at_once_in_the_sequential_runtime() -> None:
    for runner in (call, step_through):
        s: Any = Cell("s", x=0, y=0)
        runner(0, flushed_work_body, s)
        assert s.x == 1


@kernel
def flushed_work_body(s: Any) -> Gen:
    from pagesim.explore.toys import set_x

    work = yield queue_work_on(1, set_x, s)
    assert work.done and ops.CURRENT.cpu == 0
    yield flush_work(work)


def test_choices_are_branched_exhaustively() -> None:
    @kernel
    def pick(b: Box) -> Gen:
        a = yield choose(3, "first")
        c = yield choose(2, "second")
        b.log.append((a, c))

    program = _program(lambda b: {0: partial(pick, b)})
    seen: set[tuple[int, int]] = set()
    r = run(program, "dpor", on_execution=lambda e: seen.add(e.state.log[0]))
    assert r.executions == 6 and seen == {(a, c) for a in range(3) for c in range(2)}


# =======================================================================================
# Bounds and the environment


def test_bounds_from_the_environment() -> None:
    env = {"PAGESIM_STRATEGY": "pct", "PAGESIM_SEED": "9", "PAGESIM_MAX_EXECUTIONS": "12",
           "PAGESIM_PCT_DEPTH": "2", "PAGESIM_MINIMIZE": "0", "PAGESIM_TIME_LIMIT": "1.5"}
    b = Bounds.from_env(env)
    assert (b.strategy, b.seed, b.max_executions, b.pct_depth, b.minimize, b.time_limit) \
        == ("pct", 9, 12, 2, False, 1.5)
    assert Bounds.from_env(env, seed=4).seed == 4
    with pytest.raises(ValueError, match="PAGESIM_SEED"):
        Bounds.from_env({"PAGESIM_SEED": "x"})
    with pytest.raises(ValueError, match="unknown strategy"):
        Bounds(strategy="bfs")


def test_check_reads_the_environment_unless_given_bounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGESIM_STRATEGY", "dfs")
    monkeypatch.setenv("PAGESIM_MAX_EXECUTIONS", "3")
    r = check(locked_counter(2, 1))
    assert (r.strategy, r.executions, r.verdict) == ("dfs", 3, "no-violation-within-bounds")
    assert check(locked_counter(2, 1), bounds=Bounds()).strategy == "dpor"
    assert check(locked_counter(2, 1), "bounded").strategy == "bounded"


# =======================================================================================
# DPOR against DFS on generated programs


class RState:
    def __init__(self, nmem: int, nlocks: int) -> None:
        self.name = "r"
        self.mem = [0] * nmem
        self.locks = [SpinLock(f"L{i}") for i in range(nlocks)]
        self.logs: dict[str, list[Any]] = {}


@kernel
def interpret(s: RState, prog: tuple[Any, ...], label: str) -> Gen:
    """Run a generated program: reads, writes of values that depend on the last read,
    lock sections, trylocks, interrupts-off sections, work items, choices."""
    log = s.logs.setdefault(label, [])
    last = 0
    handles = []
    for ins in prog:
        k = ins[0]
        if k == "r":
            last = yield READ_ONCE_IDX(s.mem, ins[1], "m")
            log.append(last)
        elif k == "w":
            yield WRITE_ONCE_IDX(s.mem, ins[1], ins[2] + last, "m")
        elif k == "lock":
            yield spin_lock(s.locks[ins[1]])
        elif k == "unlock":
            yield spin_unlock(s.locks[ins[1]])
        elif k == "try":
            ok = yield spin_trylock(s.locks[ins[1]])
            log.append(ok)
            if ok:
                v = yield READ_ONCE_IDX(s.mem, ins[2], "m")
                yield WRITE_ONCE_IDX(s.mem, ins[2], v + 1, "m")
                yield spin_unlock(s.locks[ins[1]])
        elif k == "irq":
            yield local_irq_save()
        elif k == "irqr":
            yield local_irq_restore()
        elif k == "queue":
            handles.append((yield queue_work_on(ins[1], interpret, s, ins[2], ins[3])))
        elif k == "flush":
            yield flush_work(handles.pop(0))
        elif k == "choose":
            last = yield choose(2, "c")
            log.append(("c", last))
        else:
            yield point("p")


def _block(rng: random.Random, nmem: int, nlocks: int, top: bool, ncpus: int,
           names: list[int]) -> list[tuple[Any, ...]]:
    r = rng.random()
    if r < 0.35:
        return [("r", rng.randrange(nmem))]
    if r < 0.6:
        return [("w", rng.randrange(nmem), rng.randrange(1, 3))]
    if r < 0.7 and top:
        lock = rng.randrange(nlocks)
        body = [i for _ in range(rng.randrange(1, 3))
                for i in _block(rng, nmem, nlocks, False, ncpus, names)]
        return [("lock", lock), *body, ("unlock", lock)]
    if r < 0.78 and top:
        body = [i for _ in range(rng.randrange(1, 3))
                for i in _block(rng, nmem, nlocks, False, ncpus, names)]
        return [("irq",), *body, ("irqr",)]
    if r < 0.84:
        return [("try", rng.randrange(nlocks), rng.randrange(nmem))]
    if r < 0.92 and top and ncpus:
        body = [i for _ in range(rng.randrange(1, 3))
                for i in _block(rng, nmem, nlocks, True, 0, names)]
        names[0] += 1
        out: list[tuple[Any, ...]] = [("queue", rng.randrange(ncpus), tuple(body),
                                       f"w{names[0]}")]
        return [*out, ("flush",)] if rng.random() < 0.6 else out
    return [("choose",)] if r < 0.96 else [("point",)]


def generated(seed: int, invariant: bool) -> Program:
    rng = random.Random(seed)
    ncpus, nmem, nlocks = rng.choice([2, 2, 3]), rng.choice([2, 3]), rng.choice([1, 2])
    names = [0]
    spec = {cpu: [(tuple(i for _ in range(rng.randrange(1, 4))
                         for i in _block(rng, nmem, nlocks, True, ncpus, names)),
                   f"t{cpu}.{n}") for n in range(1 if rng.random() < 0.8 else 2)]
            for cpu in range(ncpus)}

    def setup() -> tuple[Any, dict[int, Any]]:
        s = RState(nmem, nlocks)
        return s, {cpu: [partial(interpret, s, prog, label) for prog, label in ctxs]
                   for cpu, ctxs in spec.items()}

    if not invariant:
        return Program(f"generated({seed})", setup, max_steps=200)
    a, b = rng.randrange(1, 4), rng.randrange(0, 4)

    def bad_pair(s: RState) -> str | None:
        return "bad pair" if s.mem[0] == a and s.mem[1] != b else None

    return Program(f"generated({seed}, invariant)", setup, max_steps=200,
                   checks=[bad_pair], observes=lambda s: [(s.mem, 0), (s.mem, 1)])


def _outcome(ex: Execution) -> tuple[Any, ...]:
    s = ex.state
    v = ex.violation
    if v is not None and v.property == "invariant":
        return ("invariant", s.mem[0], s.mem[1])
    logs = tuple(sorted((k, tuple(x)) for k, x in s.logs.items()))
    return (v.property if v else "ok", tuple(s.mem), logs)


def _outcomes(explore: Callable[[Program, Bounds], Outcome],
              program: Program) -> tuple[int, set[tuple[Any, ...]]]:
    seen: set[tuple[Any, ...]] = set()
    out = explore(program, ALL.but(on_execution=lambda ex: seen.add(_outcome(ex))))
    assert out.complete
    return out.executions, seen


#: seeds (among the first 200) whose plain DFS runs 100 to 2500 executions
GENERATED = [(seed, False) for seed in (
    2, 4, 20, 22, 23, 35, 38, 40, 43, 47, 48, 49, 51, 59, 60, 66, 68, 77, 85, 88, 91, 96,
    97, 98, 107, 112, 121, 126, 135, 138, 140, 145, 154, 155, 162, 165, 167, 175, 177,
    181, 186, 187, 188, 194, 198)] + [(seed, True) for seed in (
        2, 20, 22, 35, 43, 44, 49, 51, 85, 88, 98, 126, 138, 148, 154, 162, 175)]


@pytest.mark.parametrize(("seed", "invariant"), GENERATED)
def test_dpor_reaches_every_outcome_dfs_reaches(seed: int, invariant: bool) -> None:
    program = generated(seed, invariant)
    n_dfs, dfs = _outcomes(explore_dfs, program)
    n_dpor, dpor = _outcomes(explore_dpor, program)
    assert dpor == dfs
    assert n_dpor <= n_dfs


@kernel
def bump_under(lock: SpinLock, s: Any, field: str) -> Gen:
    """Plain updates under a lock: +1 then -1, so the field is 1 only in between."""
    yield spin_lock(lock)
    setattr(s, field, getattr(s, field) + 1)
    yield spin_unlock(lock)
    yield spin_lock(lock)
    setattr(s, field, getattr(s, field) - 1)
    yield spin_unlock(lock)


@kernel
def bump_irqs_off(s: Any, field: str) -> Gen:
    yield local_irq_save()
    setattr(s, field, getattr(s, field) + 1)
    yield point("inside the section")
    setattr(s, field, getattr(s, field) - 1)
    yield local_irq_restore()


def test_observed_locks_and_sections_make_their_holders_visible() -> None:
    """The checks read state that plain code changes under a lock (or with interrupts
    off): declaring the lock (or the CPU) visible is what lets DPOR see every state."""

    def both_up(s: Any) -> str | None:
        return "both are up" if s.a == 1 and s.b == 1 else None

    def locked() -> tuple[Any, dict[int, Any]]:
        s: Any = Cell("s", a=0, b=0, la=SpinLock("A"), lb=SpinLock("B"))
        return s, {0: partial(bump_under, s.la, s, "a"), 1: partial(bump_under, s.lb, s, "b")}

    def sections() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", a=0, b=0)
        return s, {0: partial(bump_irqs_off, s, "a"), 1: partial(bump_irqs_off, s, "b")}

    for setup, observed in ((locked, lambda s: [s.la, s.lb]),
                            (sections, lambda s: [("cpu", 0), ("cpu", 1)])):
        program = Program("both_up", setup, checks=[both_up], observes=observed)
        assert run(program, "dfs").verdict == "violation"
        assert run(program, "dpor").verdict == "violation"
        # Declaring nothing observed is a promise the checks read nothing that changes:
        # broken here, and the reduction then misses the state.
        unobserved = dataclasses.replace(program, observes=lambda s: [])
        assert run(unobserved, "dpor").verdict == "verified"
