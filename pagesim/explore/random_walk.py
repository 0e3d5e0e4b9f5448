# SPDX-License-Identifier: GPL-2.0-only
"""Randomised search, for programs too large to exhaust: uniform random scheduling and
PCT.

**Random walk**: at every step, a uniformly random enabled thread; every choice value
uniformly random.

**PCT** (Burckhardt, Kothari, Musuvathi, Nagarakatte, "A Randomized Scheduler with
Probabilistic Guarantees of Finding Bugs", ASPLOS 2010): the threads get distinct random
priorities ``d .. d+n-1`` and the highest-priority enabled thread always runs; ``d-1``
priority change points are drawn uniformly among the ``k`` steps of an execution, and the
thread that takes the *i*-th of them drops to priority *i*, below every initial one. A
bug of depth ``d`` (``d`` ordering constraints) is then found by one execution with
probability at least ``1/(n k^(d-1))``. ``k`` is estimated as the longest execution seen
so far (the first run is a random walk that measures it). Work items created during an
execution get a random priority in the initial range when they are created.

Both are driven by one ``random.Random(seed)``, so a seed names a sequence of
executions exactly.
"""

from __future__ import annotations

import random

from pagesim.explore.common import Bounds, Budget, Outcome, new_execution
from pagesim.runtime.executor import Execution, Program

#: executions when the bounds do not say
DEFAULT_EXECUTIONS = 1000


def _random_run(ex: Execution, rng: random.Random) -> None:
    while not ex.over:
        enabled = ex.enabled()
        tid = enabled[rng.randrange(len(enabled))]
        n = ex.pending_choices(tid)
        ex.step(tid, rng.randrange(n) if n else None)


def explore_random(program: Program, bounds: Bounds) -> Outcome:
    """Uniformly random schedules, ``max_executions`` of them (default 1000)."""
    rng = random.Random(bounds.seed)
    budget = Budget(bounds, DEFAULT_EXECUTIONS)
    while True:
        ex = new_execution(program, bounds)
        _random_run(ex, rng)
        if budget.record(ex):
            return budget.outcome


def explore_pct(program: Program, bounds: Bounds) -> Outcome:
    """PCT with bug depth ``bounds.pct_depth``; see the module docstring."""
    rng = random.Random(bounds.seed)
    budget = Budget(bounds, DEFAULT_EXECUTIONS)
    d = bounds.pct_depth
    ex = new_execution(program, bounds)
    _random_run(ex, rng)
    k = max(1, len(ex.steps))
    if budget.record(ex):
        return budget.outcome
    while True:
        ex = new_execution(program, bounds)
        _pct_run(ex, rng, d, k)
        k = max(k, len(ex.steps))
        if budget.record(ex):
            return budget.outcome


def _pct_run(ex: Execution, rng: random.Random, d: int, k: int) -> None:
    tids = list(ex.threads)
    initial = list(range(d, d + len(tids)))
    rng.shuffle(initial)
    prio: dict[str, float] = dict(zip(tids, initial, strict=True))
    points = rng.sample(range(1, k + 1), min(d - 1, k))
    change = {step: i + 1 for i, step in enumerate(points)}
    top = d + len(tids)
    while not ex.over:
        enabled = ex.enabled()
        tid = max(enabled, key=lambda t: prio[t])
        n = ex.pending_choices(tid)
        step = ex.step(tid, rng.randrange(n) if n else None)
        if step.created is not None:
            prio[step.created] = d + rng.random() * (top - d)
        lowered = change.get(len(ex.steps))
        if lowered is not None:
            prio[tid] = lowered
