# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark of the checker: executions per second, DPOR's reduction factor, and what
state caching saves.

Each scenario is explored to the end three times in the same run, by Source-DPOR, by
plain DFS without reduction and by the stateful search (DPOR plus a table of visited
states), every violation counted rather than stopping at the first (so all explore
their whole space). The reduction factor is DFS executions / DPOR executions; where DFS
hits its budget the factor is a lower bound (printed with ``>=``). The stateful columns
give the distinct states stored, the runs from ``setup()`` (those that ended plus those
stopped at a cached state), the seconds, and the speed-up: DPOR's seconds over the
stateful search's, both measured in this run.

Throughput is given both as executions per second and as steps per second, where steps
include the replayed prefixes: the explorers are stateless (generators cannot be copied),
so every execution re-runs from ``setup()``, and steps/s is the runtime's raw speed.

Usage: ``python bench/bench_explore.py [--quick] [--only TEXT] [--dfs-budget 200000]
[--json]``.
The allocator scenarios are the built-in ``pcp-alloc-free`` on v5.11 (each CPU
allocates then frees its pages); plain DFS gets a small budget there (it cannot finish).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

from pagesim.explore import Bounds, Result, check
from pagesim.explore.toys import (
    disjoint_writes,
    locked_counter,
    lost_update,
    percpu_counter,
    peterson,
)
from pagesim.runtime.executor import Program
from pagesim.scenarios.allocator import pcp_alloc_free

#: name, program factory, whether --quick runs it
SCENARIOS: list[tuple[str, Callable[[], Program], bool]] = [
    ("locked counter, 2 CPUs, 2 private writes", lambda: locked_counter(2, 2), True),
    ("locked counter, 3 CPUs, 1 private write", lambda: locked_counter(3, 1), True),
    ("locked counter, 3 CPUs, 2 private writes", lambda: locked_counter(3, 2), False),
    ("locked counter, 4 CPUs, 1 private write", lambda: locked_counter(4, 1), False),
    ("disjoint writes, 4 CPUs", lambda: disjoint_writes(4), True),
    ("disjoint writes, 7 CPUs", lambda: disjoint_writes(7), False),
    ("lost update, 3 CPUs", lambda: lost_update(3), True),
    ("lost update, 4 CPUs", lambda: lost_update(4), False),
    ("Peterson, waits <= 1", lambda: peterson(spins=1), True),
    ("Peterson, waits <= 2", lambda: peterson(spins=2), False),
    ("Peterson without turn", lambda: peterson(write_turn=False, spins=2), False),
    ("per-CPU counter + remote work item", percpu_counter, True),
    ("pcp-alloc-free v5.11, 2 CPUs, 1 page", lambda: pcp_alloc_free("v5.11", 2), True),
    ("pcp-alloc-free v5.11, 2 CPUs, 2 pages",
     lambda: pcp_alloc_free("v5.11", 2, pages=2), False),
]

#: plain DFS budget on the allocator scenarios, whose interleavings it cannot finish
ALLOCATOR_DFS_BUDGET = 2000


def explore(program: Program, strategy: str, budget: int | None) -> Result:
    bounds = Bounds(strategy=strategy, stop_on_violation=False, minimize=False,
                    max_executions=budget)
    return check(program, bounds=bounds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the small scenarios only")
    ap.add_argument("--dfs-budget", type=int, default=200_000,
                    help="most executions plain DFS may run per scenario")
    ap.add_argument("--json", action="store_true", help="one JSON object per scenario")
    ap.add_argument("--only", default="", metavar="TEXT",
                    help="only the scenarios whose name contains TEXT")
    args = ap.parse_args(argv)

    rows = []
    for name, make, quick in SCENARIOS:
        if (args.quick and not quick) or args.only not in name:
            continue
        budget = min(args.dfs_budget, ALLOCATOR_DFS_BUDGET) if name.startswith("pcp") \
            else args.dfs_budget
        dpor = explore(make(), "dpor", None)
        dfs = explore(make(), "dfs", budget)
        stateful = explore(make(), "stateful", None)
        rows.append((name, dpor, dfs, stateful, budget))
        if args.json:
            print(json.dumps({
                "scenario": name,
                "dpor": {"executions": dpor.executions, "seconds": dpor.seconds,
                         "steps": dpor.steps, "complete": dpor.complete or dpor.violations > 0},
                "dfs": {"executions": dfs.executions, "seconds": dfs.seconds,
                        "steps": dfs.steps, "complete": _whole(dfs, budget)},
                "stateful": {"states": stateful.distinct_states,
                             "executions": stateful.executions,
                             "runs": stateful.executions + stateful.pruned,
                             "seconds": stateful.seconds, "steps": stateful.steps,
                             "verdict_agrees": stateful.verdict == dpor.verdict},
                "reduction": dfs.executions / max(1, dpor.executions),
                "stateful_speedup": dpor.seconds / max(1e-9, stateful.seconds)}))
    if args.json:
        return 0
    print(f"pagesim checker bench: Python {platform.python_version()} on "
          f"{platform.machine()}, {time.strftime('%Y-%m-%d')}")
    head = (f"{'scenario':42} | {'DPOR ex':>8} {'ex/s':>7} {'steps/s':>8} {'s':>7} | "
            f"{'DFS ex':>8} {'ex/s':>7} {'steps/s':>8} | {'reduction':>9} | "
            f"{'states':>7} {'runs':>6} {'s':>7} {'speed-up':>8}")
    print(head)
    print("-" * len(head))
    for name, dpor, dfs, stateful, budget in rows:
        whole = _whole(dfs, budget)
        factor = dfs.executions / max(1, dpor.executions)
        agree = "" if stateful.verdict == dpor.verdict else " (verdicts differ!)"
        print(f"{name:42} | {dpor.executions:8} {_rate(dpor.executions, dpor):>7} "
              f"{_rate(dpor.steps, dpor):>8} {dpor.seconds:7.2f} | {dfs.executions:8}"
              f"{'' if whole else '+'} {_rate(dfs.executions, dfs):>6} "
              f"{_rate(dfs.steps, dfs):>8} | {'' if whole else '>='}{factor:7.1f}x | "
              f"{stateful.distinct_states:7} {stateful.executions + stateful.pruned:6} "
              f"{stateful.seconds:7.2f} {dpor.seconds / max(1e-9, stateful.seconds):7.1f}x"
              f"{agree}")
    return 0


def _whole(r: Result, budget: int) -> bool:
    return r.executions < budget


def _rate(n: int, r: Result) -> str:
    return f"{n / r.seconds:.0f}" if r.seconds > 0 else "-"


if __name__ == "__main__":
    sys.exit(main())
