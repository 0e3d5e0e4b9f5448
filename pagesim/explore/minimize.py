# SPDX-License-Identifier: GPL-2.0-only
"""Counterexample minimisation: the shortest violating schedule, then the one with the
fewest preemptions.

A counterexample is read by a person, who follows it step by step, so its length and
its context switches are what cost. Given a violation found by any explorer, two passes
look for a better schedule violating the same property (an invariant violation is not
replaced by a deadlock), better meaning fewer steps, then fewer preemptions:

1. *shrinking*, as delta debugging does (Zeller and Hildebrandt, TSE 2002): drop every
   step of one thread, then chunks of consecutive steps, halving the chunk size, then
   swap neighbouring steps; each candidate is replayed leniently (a step whose thread
   cannot run is skipped, and once the candidate is used up the execution runs on
   without preemptions) and kept if it violates the property at a better cost;
2. a *branch-and-bound* depth-first search over all executions (every thread, every
   choice value), trying the running thread first, pruning every branch that cannot beat
   the best schedule known so far.

Both are bounded by ``bounds.minimize_executions`` runs and ``bounds.minimize_seconds``
in all, so on a large program the result is the best found, never worse than the
original.
"""

from __future__ import annotations

import time

from pagesim.explore.common import Bounds, Found, OptionNode, new_execution
from pagesim.runtime.executor import Execution, Program, Schedule


class _MNode(OptionNode):
    __slots__ = ("depth", "last", "pre")

    def __init__(self, options: list[str], depth: int, pre: int, last: str | None) -> None:
        super().__init__(options)
        self.depth = depth
        self.pre = pre
        #: the previous step's thread if it is still enabled here (switching is a
        #: preemption), else None
        self.last = last

    def cost(self, tid: str) -> int:
        return self.pre + (1 if self.last is not None and tid != self.last else 0)


def _fits(node: _MNode, tid: str, best: tuple[int, int]) -> bool:
    length = node.depth + 1
    return length < best[0] or (length == best[0] and node.cost(tid) < best[1])


def minimize(program: Program, bounds: Bounds, found: Found) -> Found:
    """The best violating schedule of ``found``'s property within the budget."""
    bounds = bounds.but(stop_on_violation=True)
    budget = [bounds.minimize_executions]
    deadline = time.perf_counter() + bounds.minimize_seconds
    found = _shrink(program, bounds, found, budget, deadline)
    return _branch_and_bound(program, bounds, found, budget[0], deadline)


def _cost(found: Found) -> tuple[int, int]:
    return len(found.schedule), found.preemptions


def _lenient(program: Program, bounds: Bounds,
             steps: list[tuple[str, int | None]]) -> Execution:
    """Run ``steps`` as far as they fit, then on without preemptions."""
    ex = new_execution(program, bounds)
    for tid, choice in steps:
        if ex.over:
            return ex
        if tid not in ex.enabled():
            continue
        n = ex.pending_choices(tid)
        ex.step(tid, (choice if choice is not None and choice < n else 0)
                if n is not None else None)
    while not ex.over:
        enabled = ex.enabled()
        tid = ex.last_tid if ex.last_tid in enabled else enabled[0]
        ex.step(tid, 0 if ex.pending_choices(tid) is not None else None)
    return ex


def _shrink(program: Program, bounds: Bounds, found: Found, budget: list[int],
            deadline: float) -> Found:
    prop = found.violation.property
    best = found

    def attempt(steps: list[tuple[str, int | None]]) -> bool:
        nonlocal best
        if budget[0] <= 0 or time.perf_counter() > deadline:
            budget[0] = 0
            return False
        budget[0] -= 1
        ex = _lenient(program, bounds, steps)
        v = ex.violation
        if v is None or v.property != prop:
            return False
        kept = ex.steps[:v.step + 1]
        cand = Found(v, Schedule(tuple((s.tid, s.choice) for s in kept), program.name),
                     sum(1 for s in kept if s.preemption))
        if _cost(cand) < _cost(best):
            best = cand
            return True
        return False

    improved = True
    while improved and budget[0] > 0:
        improved = False
        steps = list(best.schedule.steps)
        for tid in dict.fromkeys(t for t, _ in steps):
            if attempt([s for s in steps if s[0] != tid]):
                improved = True
                break
        if improved:
            continue
        size = len(steps) // 2
        while size >= 1 and not improved:
            for start in range(0, len(steps) - size + 1):
                if attempt(steps[:start] + steps[start + size:]):
                    improved = True
                    break
            size //= 2
        if improved:
            continue
        for i in range(len(steps) - 1):
            if steps[i][0] != steps[i + 1][0] and attempt(
                    [*steps[:i], steps[i + 1], steps[i], *steps[i + 2:]]):
                improved = True
                break
    return best


def _branch_and_bound(program: Program, bounds: Bounds, found: Found,
                      runs: int, deadline: float) -> Found:
    prop = found.violation.property
    best_found = found
    best = _cost(found)
    stack: list[_MNode] = []
    for _ in range(runs):
        if time.perf_counter() > deadline:
            break
        ex = new_execution(program, bounds)
        for node in stack:
            node.take(ex, node.tid)
        while not ex.over:
            enabled = ex.enabled()
            last = ex.last_tid if ex.last_tid in enabled else None
            order = ([last] if last is not None else []) + [t for t in enabled if t != last]
            node = _MNode(order, len(ex.steps), ex.preemptions(), last)
            node.options = [t for t in order if _fits(node, t, best)]
            if not node.options:
                break
            stack.append(node)
            node.take(ex, node.tid)
        v = ex.violation
        if v is not None and v.property == prop:
            cand = (len(ex.steps), ex.preemptions())
            if cand < best:
                best = cand
                best_found = Found(v, ex.schedule(), cand[1])
        if not _backtrack(stack, best):
            break
    return best_found


def _backtrack(stack: list[_MNode], best: tuple[int, int]) -> bool:
    while stack:
        node = stack[-1]
        if _fits(node, node.tid, best) and node.next_choice():
            return True
        node.reset_choice()
        node.pos += 1
        while node.pos < len(node.options) and not _fits(node, node.options[node.pos], best):
            node.pos += 1
        if node.pos < len(node.options):
            return True
        stack.pop()
    return False
