# SPDX-License-Identifier: GPL-2.0-only
"""The checker: explore the interleavings (and choices) of a concurrent program.

One entry point, :func:`check`, takes a :class:`~pagesim.runtime.executor.Program` and a
strategy:

* ``"dpor"`` (default): exhaustive, with Source-DPOR and sleep sets
  (:mod:`pagesim.explore.dpor`); ``verified`` means every behaviour was covered;
* ``"dfs"``: exhaustive without reduction (the oracle, and the baseline of the bench);
* ``"random"`` and ``"pct"``: randomised, seeded (:mod:`pagesim.explore.random_walk`);
* ``"bounded"``: preemption-bounded, CHESS-style (:mod:`pagesim.explore.bounded`).
* ``"stateful"``: exhaustive like ``"dpor"``, and an execution that reaches a state
  already explored stops there (:mod:`pagesim.explore.stateful`); the result counts the
  distinct states.
* ``"auto"``: a second of random and PCT scheduling, then ``"stateful"``: quick to find
  a shallow race, still a proof when there is none (:mod:`pagesim.explore.auto`).

Bounds come from a :class:`Bounds` (whose defaults the ``PAGESIM_*`` environment
variables override, see :mod:`pagesim.explore.common`) and from keyword arguments, which
win. A violation is minimised (:mod:`pagesim.explore.minimize`) and replayed into a
step-by-step trace. This package depends on the runtime only, never on the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from pagesim.explore.auto import explore_auto
from pagesim.explore.bounded import explore_bounded
from pagesim.explore.common import (
    STRATEGIES,
    VERIFIED,
    VIOLATION,
    WITHIN_BOUNDS,
    Bounds,
    Outcome,
    Result,
)
from pagesim.explore.dpor import explore_dfs, explore_dpor
from pagesim.explore.minimize import minimize as minimize_found
from pagesim.explore.random_walk import DEFAULT_EXECUTIONS, explore_pct, explore_random
from pagesim.explore.stateful import explore_stateful
from pagesim.runtime.executor import Program, Schedule, StepRecord, replay

__all__ = ["SAMPLED", "STRATEGIES", "Bounds", "Result", "Schedule", "check", "format_trace",
           "merge_results", "split_bounds"]

#: the strategies whose executions are independent samples: their budget splits over
#: seeds, each part a search of its own, and the parts can run anywhere
SAMPLED = ("random", "pct")

EXPLORERS: dict[str, Callable[[Program, Bounds], Outcome]] = {
    "dpor": explore_dpor,
    "dfs": explore_dfs,
    "random": explore_random,
    "pct": explore_pct,
    "bounded": explore_bounded,
    "stateful": explore_stateful,
    "auto": explore_auto,
}


def check(program: Program, strategy: str | None = None, *, bounds: Bounds | None = None,
          seed: int | None = None, max_executions: int | None = None,
          max_steps: int | None = None, preemption_bound: int | None = None,
          pct_depth: int | None = None, time_limit: float | None = None,
          stop_on_violation: bool | None = None, minimize: bool | None = None) -> Result:
    """Explore ``program`` and report what was found.

    ``bounds`` defaults to :meth:`Bounds.from_env` (the defaults, overridden by the
    ``PAGESIM_*`` variables); the keyword arguments override it.
    """
    base = Bounds.from_env() if bounds is None else bounds
    b = base.but(strategy=strategy, seed=seed, max_executions=max_executions,
                 max_steps=max_steps, preemption_bound=preemption_bound,
                 pct_depth=pct_depth, time_limit=time_limit,
                 stop_on_violation=stop_on_violation, minimize=minimize)
    t0 = time.perf_counter()
    out = EXPLORERS[b.strategy](program, b)
    result = Result(
        program=program.name, strategy=b.strategy,
        verdict=VERIFIED if out.complete and out.first is None else WITHIN_BOUNDS,
        complete=out.complete and out.first is None, executions=out.executions,
        seconds=0.0, steps=out.steps, pruned=out.pruned, violations=out.violations,
        seed=b.seed if b.strategy in ("random", "pct", "auto") else None,
        distinct_states=out.distinct_states)
    found = out.first
    if found is not None:
        result.seconds_to_find = time.perf_counter() - t0
        result.verdict = VIOLATION
        result.found_length = len(found.schedule)
        if b.minimize:
            found = minimize_found(program, b, found)
        result.property = found.violation.property
        result.message = found.violation.message
        result.schedule = found.schedule
        result.preemptions = found.preemptions
        limit = b.max_steps if b.max_steps is not None else program.max_steps
        result.trace = replay(program, found.schedule, max_steps=limit).records
    result.seconds = time.perf_counter() - t0
    return result


def format_trace(records: list[StepRecord], *, width: int = 72) -> str:
    """A counterexample as kernel developers draw one: a column per CPU, a row per step,
    each cell the context, the innermost function and line, the op and its value (a
    ``*`` marks a preemption). Cells are cut at ``width`` characters."""
    cpus = sorted({r.cpu for r in records})
    col = {c: i for i, c in enumerate(cpus)}
    rows: list[tuple[int, int, str]] = []
    for r in records:
        fn, line = r.chain[-1] if r.chain else ("?", 0)
        text = f"{'* ' if r.preemption else ''}{r.tid} {fn}:{line} {r.op}"
        if r.value and not r.op.startswith(("WRITE_ONCE", "queue_work_on")):
            text += f" -> {r.value}"  # what the model got back
        rows.append((r.index, col[r.cpu], text[:width]))
    w = max([len(f"CPU{c}") for c in cpus] + [len(t) for _, _, t in rows])
    header = "step | " + " | ".join(f"CPU{c}".ljust(w) for c in cpus)
    lines = [header, "-" * len(header)]
    for index, c, text in rows:
        cells = [""] * len(cpus)
        cells[c] = text
        lines.append(f"{index:4} | " + " | ".join(x.ljust(w) for x in cells).rstrip())
    return "\n".join(lines)


def split_bounds(bounds: Bounds, parts: int) -> list[Bounds]:
    """A sampled search (``bounds.strategy`` random or pct) as ``parts`` independent
    ones: seeds ``seed``, ``seed + 1``, ...; the execution budget shared out (the
    first parts take the remainder); each keeps the time limit, which is a bound on
    wall time wherever it runs. The callback ``on_execution`` is dropped: a part may
    run in another process."""
    if bounds.strategy not in SAMPLED:
        raise ValueError(f"only a sampled search ({', '.join(SAMPLED)}) splits into "
                         f"parts; {bounds.strategy} is one search")
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    total = bounds.max_executions or DEFAULT_EXECUTIONS
    parts = min(parts, total)
    share, extra = divmod(total, parts)
    return [dataclasses.replace(bounds, seed=bounds.seed + i, on_execution=None,
                                max_executions=share + (i < extra))
            for i in range(parts)]


def merge_results(results: list[Result]) -> Result:
    """The parts of a split search as one result: the first part (in seed order) that
    found a violation gives the verdict, the counterexample and the seed that replays
    it; executions, steps, pruned runs and violations add up; ``seconds`` is the
    longest part's (they ran side by side)."""
    if not results:
        raise ValueError("no results to merge")
    found = next((r for r in results if r.verdict == VIOLATION), None)
    merged = dataclasses.replace(found if found is not None else results[0])
    merged.executions = sum(r.executions for r in results)
    merged.steps = sum(r.steps for r in results)
    merged.pruned = sum(r.pruned for r in results)
    merged.violations = sum(r.violations for r in results)
    merged.seconds = max(r.seconds for r in results)
    merged.complete = False
    return merged

