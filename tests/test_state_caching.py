# SPDX-License-Identifier: GPL-2.0-only
"""State caching: the fingerprints, and the stateful search against the stateless ones.

The stateful search must give the verdicts and reach the final states that stateless
DPOR and plain DFS give and reach, on the toys, on generated programs and on the
allocator scenarios; its state counts are pinned on the toys as its execution counts are.
Programs whose workers loop forever, which no stateless search can finish, must be
explored to the end, and a bug seeded in one must be found.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Generator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pagesim.explore import Bounds, Result, check
from pagesim.explore.common import Outcome
from pagesim.explore.dpor import explore_dfs, explore_dpor
from pagesim.explore.stateful import explore_stateful
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
)
from pagesim.runtime.executor import Execution, Program, replay
from pagesim.runtime.fingerprint import GENERATORS_SUPPORTED, Fingerprinter
from pagesim.runtime.kernelfn import kernel
from pagesim.runtime.ops import (
    READ_ONCE,
    WRITE_ONCE,
    SpinLock,
    choose,
    point,
    spin_lock,
    spin_unlock,
)
from pagesim.scenarios.allocator import pcp_alloc_free, pcp_drain_vs_free

sys.path.insert(0, str(Path(__file__).parent))
from test_explore_toys import GENERATED, generated

Gen = Generator[Any, Any, Any]

ALL = Bounds(stop_on_violation=False, minimize=False)


def run(program: Program, strategy: str, **kw: Any) -> Result:
    return check(program, bounds=ALL.but(strategy=strategy, **kw))


# =======================================================================================
# Fingerprints


def _state_after(program: Program, schedule: list[str], fpr: Fingerprinter) -> bytes | None:
    ex = Execution(program)
    for tid in schedule:
        ex.step(tid)
    return fpr.fingerprint(ex)


def test_this_python_lays_out_generator_frames_as_expected() -> None:
    assert GENERATORS_SUPPORTED


def test_the_same_state_by_different_orders_has_one_fingerprint() -> None:
    fpr = Fingerprinter()
    program = disjoint_writes(2)
    a = _state_after(program, ["cpu0", "cpu1"], fpr)
    b = _state_after(program, ["cpu1", "cpu0"], fpr)
    assert a is not None and a == b
    assert _state_after(program, ["cpu0"], fpr) != a


def test_different_values_give_different_fingerprints() -> None:
    fpr = Fingerprinter()
    program = lost_update(2)
    racy = _state_after(program, ["cpu0", "cpu1", "cpu0", "cpu1"], fpr)  # count 1
    serial = _state_after(program, ["cpu0", "cpu0", "cpu1", "cpu1"], fpr)  # count 2
    assert racy is not None and serial is not None and racy != serial


def _one_state(state: Any, body: Callable[..., Gen] | None = None) -> Execution:
    def setup() -> tuple[Any, dict[int, Any]]:
        return state(), {0: partial(body or _idle, None)}

    return Execution(Program("one", setup))


@kernel
def _idle(_: Any) -> Gen:
    yield point("idle")


def test_aliasing_and_atom_types_are_part_of_the_state() -> None:
    fpr = Fingerprinter()

    def shared() -> Any:
        xs: list[int] = []
        return Cell("s", a=xs, b=xs)

    def apart() -> Any:
        return Cell("s", a=[], b=[])

    assert fpr.fingerprint(_one_state(shared)) != fpr.fingerprint(_one_state(apart))
    assert fpr.fingerprint(_one_state(shared)) == fpr.fingerprint(_one_state(shared))
    flags = [fpr.fingerprint(_one_state(lambda v=v: Cell("s", flag=v)))
             for v in (True, 1, 1.0)]
    assert len(set(flags)) == 3


@kernel
def _walk_list(_: Any) -> Gen:
    for x in [7, 7, 7]:  # noqa: B007 - x is the same at every position: only the
        yield point("p")  # iterator on the frame's stack tells them apart


def test_the_evaluation_stack_of_a_frame_is_part_of_the_state() -> None:
    fpr = Fingerprinter()
    seen = []
    ex = _one_state(lambda: Cell("s"), _walk_list)
    while not ex.over:
        seen.append(fpr.fingerprint(ex))
        ex.step("cpu0")
    seen.append(fpr.fingerprint(ex))
    assert None not in seen and len(set(seen)) == len(seen) == 4


def test_what_cannot_be_canonicalised_is_unknown() -> None:
    fpr = Fingerprinter()

    class Key:
        pass

    assert fpr.fingerprint(_one_state(lambda: Cell("s", keys={Key(), Key()}))) is None
    assert "set of objects" in fpr.last_reason
    assert fpr.fingerprint(_one_state(lambda: Cell("s", keys={1, 2}))) is not None

    def closure_body(_: Any) -> Gen:
        n = 0

        def bump() -> None:
            nonlocal n
            n += 1

        bump()
        yield point("closure")

    assert fpr.fingerprint(_one_state(lambda: Cell("s"), closure_body)) is None


# =======================================================================================
# Pinned counts on the toys

#: name, program, verdict, property, then for the stateful search (every violation
#: counted): executions run to their end, and distinct states
PINNED: list[tuple[str, Callable[[], Program], str, str | None, int, int]] = [
    ("lost_update", lost_update, "violation", "final", 4, 10),
    ("lost_update(3)", lambda: lost_update(3), "violation", "final", 15, 56),
    ("locked_counter", locked_counter, "verified", None, 2, 15),
    ("locked_counter(3, 1)", lambda: locked_counter(3, 1), "verified", None, 3, 47),
    ("peterson", peterson, "verified", None, 12, 134),
    ("peterson(spins=2)", lambda: peterson(spins=2), "verified", None, 16, 231),
    ("peterson_no_turn", lambda: peterson(write_turn=False), "violation", "invariant",
     9, 58),
    ("disjoint_writes(4)", lambda: disjoint_writes(4), "verified", None, 1, 4),
    ("abba", abba, "violation", "deadlock", 3, 15),
    ("ab_ab", lambda: abba(ordered=True), "verified", None, 2, 15),
    ("flushed_work", flushed_work, "verified", None, 2, 19),
    ("percpu_counter", percpu_counter, "verified", None, 1, 23),
    ("percpu_counter_preemptible", lambda: percpu_counter(task_irqs_off=False),
     "violation", "final", 2, 23),
    ("chosen_writes", chosen_writes, "verified", None, 4, 7),
    ("spin_forever", spin_forever, "violation", "liveness", 1, 2),
]


@pytest.mark.parametrize("row", PINNED, ids=[r[0] for r in PINNED])
def test_pinned_state_counts(row: tuple[Any, ...]) -> None:
    _, make, verdict, prop, n_exec, n_states = row
    program = make()
    stateful = run(program, "stateful")
    dpor = run(program, "dpor")
    assert (stateful.verdict, stateful.property) == (dpor.verdict, dpor.property) \
        == (verdict, prop)
    assert (stateful.executions, stateful.distinct_states) == (n_exec, n_states)
    assert stateful.to_json()["distinct_states"] == n_states
    assert dpor.distinct_states is None


@pytest.mark.parametrize("row", PINNED, ids=[r[0] for r in PINNED])
def test_first_violation_agrees_with_dpor(row: tuple[Any, ...]) -> None:
    program = row[1]()
    stateful = check(program, bounds=Bounds(strategy="stateful"))
    dpor = check(program, bounds=Bounds())
    assert (stateful.verdict, stateful.property) == (dpor.verdict, dpor.property)
    assert stateful.complete == (stateful.verdict == "verified")
    if stateful.schedule is not None:  # the counterexample replays to the violation
        again = replay(program, stateful.schedule)
        assert again.violation is not None
        assert again.violation.property == stateful.property


# =======================================================================================
# Against the stateless searches on generated programs


def _final(ex: Execution, fpr: Fingerprinter) -> tuple[Any, ...]:
    """How an execution ended: its violation, and the final state's fingerprint."""
    v = ex.violation
    s = ex.state
    if v is not None and v.property == "invariant":
        return ("invariant", s.mem[0], s.mem[1])
    return (v.property if v else "ok", fpr.fingerprint(ex))


def _finals(explore: Callable[[Program, Bounds], Outcome], program: Program,
            fpr: Fingerprinter) -> set[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    out = explore(program, ALL.but(on_execution=lambda ex: seen.add(_final(ex, fpr))))
    assert out.complete
    return seen


@pytest.mark.parametrize(("seed", "invariant"), GENERATED[::3])
def test_stateful_reaches_every_final_state_dfs_reaches(seed: int, invariant: bool) -> None:
    program = generated(seed, invariant)
    fpr = Fingerprinter()
    dfs = _finals(explore_dfs, program, fpr)
    assert _finals(explore_stateful, program, fpr) == dfs
    assert _finals(explore_dpor, program, fpr) == dfs


# =======================================================================================
# The allocator


def _alloc_finals(program: Program, strategy: str, fpr: Fingerprinter) -> tuple[
        Result, set[tuple[Any, ...]]]:
    seen: set[tuple[Any, ...]] = set()

    def final(ex: Execution) -> None:
        v = ex.violation
        seen.add((v.property if v else "ok", fpr.fingerprint(ex)))

    return run(program, strategy, on_execution=final), seen


@pytest.mark.parametrize("kern", ["v5.8", "v5.11", "v6.19"])
def test_allocator_scenarios_agree_with_dpor(kern: str) -> None:
    for program in (pcp_alloc_free(kern, 2), pcp_drain_vs_free(kern, 2)):
        fpr = Fingerprinter()
        dpor, dpor_finals = _alloc_finals(program, "dpor", fpr)
        stateful, stateful_finals = _alloc_finals(program, "stateful", fpr)
        assert dpor.verdict == stateful.verdict == "verified"
        assert stateful_finals == dpor_finals
        assert None not in {f for _, f in dpor_finals}
        assert stateful.distinct_states is not None and stateful.distinct_states > 0
        assert stateful.executions + stateful.pruned < dpor.executions


# =======================================================================================
# The step bound, loops, workers that never stop


@kernel
def _detour_then_work(s: Any, k: int) -> Gen:
    """One step or two (not remembered: both reach the same state), then ``k`` steps:
    the same state is reached at two depths."""
    if (yield choose(2, "detour")):
        yield point("detour")
    for _ in range(k):
        yield WRITE_ONCE(s, "x", 1)


def test_a_state_reached_deeper_is_explored_again_under_the_step_bound() -> None:
    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", x=0, y=0)
        return s, {0: partial(_detour_then_work, s, 4), 1: partial(_detour_then_work, s, 1)}

    longest = 2 + 4 + 2 + 1
    for limit in range(longest - 3, longest + 2):
        program = Program("detours", setup, max_steps=limit)
        dpor, stateful = run(program, "dpor"), run(program, "stateful")
        assert stateful.verdict == dpor.verdict == (
            "violation" if limit < longest else "verified"), limit
        assert stateful.property == dpor.property


@kernel
def _worker(s: Any, cpu: int, locked: bool) -> Gen:
    """Forever: take a token from the pool or give one back (the allocator's "allocate
    or free" worker). Each update of the pool and of what this CPU holds is one step;
    ``locked=False`` drops the lock, so two CPUs can read the same count."""
    while True:
        give_back = yield choose(2, "take or give back")
        if give_back and not s.held[cpu]:
            continue
        if locked:
            yield spin_lock(s.lock)
        free = yield READ_ONCE(s, "free")
        if give_back:
            yield WRITE_ONCE(s, "free", free + 1)
            s.held[cpu] -= 1
        elif free:
            yield WRITE_ONCE(s, "free", free - 1)
            s.held[cpu] += 1
        if locked:
            yield spin_unlock(s.lock)


def _conserved(s: Any) -> str | None:
    total = s.free + sum(s.held)
    return None if total == 2 else f"{total} tokens, expected 2"


def workers(locked: bool = True, terminates: bool = False, max_steps: int = 5000) -> Program:
    """Two CPUs taking and returning two tokens forever; every token accounted for."""

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("pool", free=2, held=[0, 0], lock=SpinLock("pool.lock"))
        return s, {cpu: partial(_worker, s, cpu, locked) for cpu in (0, 1)}

    return Program(f"workers(locked={locked})", setup, checks=[_conserved],
                   observes=lambda s: [(s, "free")], max_steps=max_steps,
                   terminates=terminates)


def test_workers_that_loop_forever_are_explored_to_the_end() -> None:
    r = run(workers(), "stateful")
    assert (r.verdict, r.complete) == ("verified", True)
    assert r.distinct_states is not None and r.distinct_states > 20
    # no stateless search can finish it: every run is cut by the step bound
    assert run(workers(), "dpor", max_executions=5).property == "liveness"


def test_a_bug_seeded_in_looping_workers_is_found() -> None:
    r = check(workers(locked=False), bounds=Bounds(strategy="stateful", minimize=False))
    assert (r.verdict, r.property) == ("violation", "invariant")
    assert r.message is not None and "3 tokens" in r.message
    assert r.schedule is not None
    again = replay(workers(locked=False), r.schedule)
    assert again.violation is not None and again.violation.property == "invariant"


def test_a_loop_in_a_program_that_must_terminate_is_a_liveness_violation() -> None:
    program = workers(terminates=True, max_steps=200)
    r = check(program, bounds=Bounds(strategy="stateful", minimize=False))
    assert r.property == "liveness"
    assert r.schedule is not None and len(r.schedule) == program.max_steps
    again = replay(program, r.schedule)
    assert again.violation is not None and again.violation.property == "liveness"
    r = check(spin_forever(max_steps=15), bounds=Bounds(strategy="stateful"))
    assert r.property == "liveness" and r.schedule is not None and len(r.schedule) == 15


def test_the_step_bound_leaves_a_looping_search_incomplete() -> None:
    @kernel
    def count_up(s: Any) -> Gen:
        while True:  # a new state every step: no loop to close
            v = yield READ_ONCE(s, "n")
            yield WRITE_ONCE(s, "n", v + 1)

    def setup() -> tuple[Any, dict[int, Any]]:
        s = Cell("s", n=0)
        return s, {0: partial(count_up, s)}

    program = Program("count_up", setup, max_steps=30, terminates=False)
    r = run(program, "stateful")
    assert (r.verdict, r.complete, r.violations) == ("no-violation-within-bounds", False, 0)
    assert r.distinct_states == 30


def test_strategy_from_the_environment_and_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGESIM_STRATEGY", "stateful")
    assert check(locked_counter()).strategy == "stateful"
    assert dataclasses.replace(Bounds(), strategy="stateful").strategy == "stateful"
