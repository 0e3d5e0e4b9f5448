# SPDX-License-Identifier: GPL-2.0-only
"""What every explorer shares: the bounds, the result, the search budget.

Environment variables override the defaults of :meth:`Bounds.from_env` (and so of
:func:`pagesim.explore.check` called without ``bounds``), so a long search can be
configured without touching the code that starts it:

======================================  ================================================
``PAGESIM_STRATEGY``                    ``dpor`` (default), ``dfs``, ``random``, ``pct``,
                                        ``bounded``, ``stateful``, ``auto``
``PAGESIM_SEED``                        seed of ``random``, ``pct`` and ``auto``'s probe
                                        (default 0)
``PAGESIM_PROBE_SECONDS``               ``auto``: seconds of random and PCT scheduling
                                        before the exhaustive search (default 1)
``PAGESIM_MAX_EXECUTIONS``              stop after this many executions (default: none
                                        for the exhaustive strategies, 1000 for random
                                        and PCT)
``PAGESIM_MAX_STEPS``                   steps per execution before a liveness violation
                                        (default: the program's ``max_steps``)
``PAGESIM_PREEMPTION_BOUND``            ``bounded``: most preemptions (default 2)
``PAGESIM_PCT_DEPTH``                   ``pct``: bug depth *d* (default 3)
``PAGESIM_TIME_LIMIT``                  seconds before giving up (default: none)
``PAGESIM_MINIMIZE``                    ``0`` to report the first counterexample as found
``PAGESIM_MINIMIZE_EXECUTIONS``         budget of the minimisation search (default 3000)
``PAGESIM_MINIMIZE_SECONDS``            time budget of the minimisation (default 20)
======================================  ================================================
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pagesim.runtime.executor import Execution, Program, Schedule, StepRecord, Violation

STRATEGIES = ("dpor", "dfs", "random", "pct", "bounded", "stateful", "auto")

VERIFIED = "verified"
VIOLATION = "violation"
WITHIN_BOUNDS = "no-violation-within-bounds"


@dataclass(frozen=True)
class Bounds:
    """How to search, and when to stop. Build one, or start from the environment with
    :meth:`from_env`, and adjust it with :meth:`but`."""

    strategy: str = "dpor"
    seed: int = 0
    #: stop after this many executions (``None``: exhaustive strategies run to the end;
    #: random and PCT run 1000)
    max_executions: int | None = None
    #: steps per execution before a liveness violation (``None``: the program's)
    max_steps: int | None = None
    preemption_bound: int = 2
    pct_depth: int = 3
    time_limit: float | None = None
    #: stop at the first violation (else count them all and report the first)
    stop_on_violation: bool = True
    minimize: bool = True
    minimize_executions: int = 3000
    #: minimisation also stops after this many seconds (the best schedule so far wins)
    minimize_seconds: float = 20.0
    #: ``auto``: seconds of randomised probing before the exhaustive search
    probe_seconds: float = 1.0
    #: called with every execution that ended (runs counted as pruned excepted): for
    #: tests and tools that look at more than the verdict
    on_execution: Callable[[Execution], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} "
                             f"(one of {', '.join(STRATEGIES)})")
        if self.pct_depth < 1:
            raise ValueError("pct_depth must be at least 1")
        if self.preemption_bound < 0:
            raise ValueError("preemption_bound must be at least 0")
        if self.probe_seconds < 0:
            raise ValueError("probe_seconds must be at least 0")

    def but(self, **changes: Any) -> Bounds:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items()
                                            if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Bounds:
        """The defaults, overridden by ``PAGESIM_*`` variables, overridden by
        ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, conv in (("strategy", str), ("seed", int), ("max_executions", int),
                           ("max_steps", int), ("preemption_bound", int),
                           ("pct_depth", int), ("time_limit", float),
                           ("minimize_executions", int), ("minimize_seconds", float),
                           ("probe_seconds", float)):
            text = env.get(f"PAGESIM_{name.upper()}")
            if text:
                try:
                    values[name] = conv(text)
                except ValueError:
                    raise ValueError(f"PAGESIM_{name.upper()}={text!r}: not a "
                                     f"{conv.__name__}") from None
        text = env.get("PAGESIM_MINIMIZE")
        if text:
            values["minimize"] = text.lower() not in ("0", "no", "false", "off")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class Result:
    """What a search found.

    ``verdict`` is ``"verified"`` (every execution was explored and none violates a
    property: ``complete`` is then true), ``"violation"``, or
    ``"no-violation-within-bounds"`` (the budget, the preemption bound or the strategy
    left executions unexplored). ``executions`` counts executions run to their end
    (finished, deadlocked, violating or cut by the step bound); ``pruned`` counts runs
    that DPOR's sleep sets abandoned as redundant (and, for the stateful search, runs
    that stopped at a state already explored or at a loop). ``distinct_states`` is the
    number of states the stateful search stored (``None`` for the other strategies).
    For a violation, ``schedule`` replays it (minimised unless disabled: fewest steps,
    then fewest preemptions) and ``trace`` is that replay, step by step.
    """

    program: str
    strategy: str
    verdict: str
    complete: bool
    executions: int
    seconds: float
    steps: int = 0
    pruned: int = 0
    violations: int = 0
    property: str | None = None
    message: str | None = None
    schedule: Schedule | None = None
    trace: list[StepRecord] = field(default_factory=list)
    preemptions: int | None = None
    found_length: int | None = None
    seed: int | None = None
    distinct_states: int | None = None
    #: for a violation: seconds until the explorer found it (before minimising)
    seconds_to_find: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "strategy": self.strategy,
            "verdict": self.verdict,
            "complete": self.complete,
            "executions": self.executions,
            "pruned": self.pruned,
            "steps": self.steps,
            "seconds": round(self.seconds, 6),
            "seconds_to_find": (None if self.seconds_to_find is None
                                else round(self.seconds_to_find, 6)),
            "property": self.property,
            "message": self.message,
            "violations": self.violations,
            "preemptions": self.preemptions,
            "seed": self.seed,
            "distinct_states": self.distinct_states,
            "schedule": (None if self.schedule is None
                         else [[t, c] for t, c in self.schedule.steps]),
            "counterexample": [
                {"step": r.index, "thread": r.tid, "cpu": r.cpu, "op": r.op,
                 "value": r.value, "choice": r.choice, "preemption": r.preemption,
                 "chain": [[fn, line] for fn, line in r.chain]}
                for r in self.trace],
        }

    def summary(self) -> str:
        what = f"{self.program}: {self.verdict}"
        if self.property:
            what += f" ({self.property}: {self.message})"
        return (f"{what}; {self.strategy}, {self.executions} executions"
                f"{', complete' if self.complete else ''}, {self.seconds:.3f}s")


@dataclass
class Found:
    """A violating execution as an explorer found it."""

    violation: Violation
    schedule: Schedule
    preemptions: int


@dataclass
class Outcome:
    """What an explorer returns to :func:`pagesim.explore.check`."""

    executions: int = 0
    complete: bool = False
    pruned: int = 0
    steps: int = 0
    violations: int = 0
    first: Found | None = None
    #: states fingerprinted and stored (stateful search only)
    distinct_states: int | None = None


class Budget:
    """Counts executions and time against the bounds; one per search."""

    def __init__(self, bounds: Bounds, default_executions: int | None = None) -> None:
        self.max_executions = (bounds.max_executions if bounds.max_executions is not None
                               else default_executions)
        self.deadline = (None if bounds.time_limit is None
                         else time.perf_counter() + bounds.time_limit)
        self.stop_on_violation = bounds.stop_on_violation
        self.on_execution = bounds.on_execution
        self.outcome = Outcome()

    def record(self, ex: Execution, *, counted: bool = True) -> bool:
        """Account for an execution that ended; True if the search must stop now."""
        out = self.outcome
        out.steps += len(ex.steps)
        if not counted:
            out.pruned += 1
        else:
            out.executions += 1
            if self.on_execution is not None:
                self.on_execution(ex)
            v = ex.violation
            if v is not None:
                out.violations += 1
                if out.first is None:
                    # up to the violating step (an execution that kept going is longer)
                    steps = ex.steps[:v.step + 1]
                    out.first = Found(v, Schedule(tuple((s.tid, s.choice) for s in steps),
                                                  ex.program.name),
                                      sum(1 for s in steps if s.preemption))
                if self.stop_on_violation:
                    return True
        return self.exhausted()

    def exhausted(self) -> bool:
        out = self.outcome
        if self.max_executions is not None and out.executions >= self.max_executions:
            return True
        return self.deadline is not None and time.perf_counter() >= self.deadline


def new_execution(program: Program, bounds: Bounds) -> Execution:
    return Execution(program, max_steps=bounds.max_steps,
                     keep_going=not bounds.stop_on_violation)


class DecisionNode:
    """One decision of a search: which thread steps next and, when its pending op is a
    ``choose``, which value. Every explorer keeps a stack of these; what differs between
    them is only how the next thread is picked when backtracking."""

    __slots__ = ("choice", "nchoices")

    def __init__(self) -> None:
        self.choice: int | None = None
        self.nchoices = 0

    def take(self, ex: Execution, tid: str) -> None:
        """Step ``tid``, learning on first use whether its op is a choice."""
        n = ex.pending_choices(tid)
        if n is not None:
            self.nchoices = n
            if self.choice is None:
                self.choice = 0
        ex.step(tid, self.choice)

    def next_choice(self) -> bool:
        """Move to the next value of a choice; False when there is none left."""
        if self.nchoices and self.choice is not None and self.choice + 1 < self.nchoices:
            self.choice += 1
            return True
        return False

    def reset_choice(self) -> None:
        self.choice = None
        self.nchoices = 0


class OptionNode(DecisionNode):
    """A decision among a fixed list of threads, tried in order (DFS, bounded)."""

    __slots__ = ("options", "pos")

    def __init__(self, options: list[str]) -> None:
        super().__init__()
        self.options = options
        self.pos = 0

    @property
    def tid(self) -> str:
        return self.options[self.pos]


def backtrack_options(stack: list[OptionNode]) -> bool:
    """The next branch of a plain search: the next choice value, else the next thread of
    the deepest node that has one. False when the tree is exhausted."""
    while stack:
        node = stack[-1]
        if node.next_choice():
            return True
        node.pos += 1
        node.reset_choice()
        if node.pos < len(node.options):
            return True
        stack.pop()
    return False
