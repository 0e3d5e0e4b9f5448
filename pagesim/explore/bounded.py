# SPDX-License-Identifier: GPL-2.0-only
"""Preemption-bounded search (Musuvathi and Qadeer, "Iterative Context Bounding for
Systematic Testing of Multithreaded Programs", PLDI 2007; the CHESS tool).

A *preemption* is a step of another thread while the thread that took the previous step
is still enabled (it neither finished nor blocked). Most concurrency bugs need few
preemptions, and the number of executions with at most ``c`` preemptions grows
polynomially in the length of the program where all executions grow exponentially.

The search is iterative: bound 0, then 1, ... up to ``bounds.preemption_bound``, so a
violation is found with as few preemptions as possible. Round ``c`` walks every schedule
with at most ``c`` preemptions (a DFS that tries the running thread first) and counts
those with exactly ``c`` as new, so ``executions`` is the number of distinct executions
with at most the final bound. If a round never had to refuse a preemption, every
execution of the program has been seen and the verdict is complete.
"""

from __future__ import annotations

from pagesim.explore.common import (
    Bounds,
    Budget,
    OptionNode,
    Outcome,
    backtrack_options,
    new_execution,
)
from pagesim.runtime.executor import Program


def explore_bounded(program: Program, bounds: Bounds) -> Outcome:
    """Iterative preemption bounding up to ``bounds.preemption_bound``."""
    budget = Budget(bounds)
    for c in range(bounds.preemption_bound + 1):
        stop, cut = _round(program, bounds, budget, c)
        if stop:
            return budget.outcome
        if not cut:
            budget.outcome.complete = True
            return budget.outcome
    return budget.outcome


def _round(program: Program, bounds: Bounds, budget: Budget, c: int) -> tuple[bool, bool]:
    """Every schedule with at most ``c`` preemptions; (stop, some preemption refused)."""
    stack: list[OptionNode] = []
    cut = False
    while True:
        ex = new_execution(program, bounds)
        for node in stack:
            node.take(ex, node.tid)
        while not ex.over:
            enabled = ex.enabled()
            last = ex.last_tid
            if last in enabled:
                others = [t for t in enabled if t != last]
                if ex.preemptions() < c:
                    options = [last, *others]
                else:
                    options = [last]
                    cut = cut or bool(others)
            else:
                options = list(enabled)
            node = OptionNode(options)
            stack.append(node)
            node.take(ex, node.tid)
        if ex.preemptions() == c:
            if budget.record(ex):
                return True, cut
        else:
            budget.outcome.steps += len(ex.steps)
        if not backtrack_options(stack):
            return False, cut
