# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark of pagesim.scale: the same comparison in one process and spread over local
processes, in one run.

Two comparisons, each a set of independent jobs: ``compare --workload
offline-under-load`` (four generations of the demo's 16 GiB, 8-CPU offline under load)
and ``compare pcp-alloc-free`` on every generation from v5.8 to v6.19 with two CPUs
(32 small checks). Each runs with the serial pool (the default) and with a pool of
``--jobs`` local processes; the table gives wall seconds and the speed-up, and says
whether the tables came out the same (they must). Process start-up (a spawned
interpreter importing pagesim, about half a second) is included: that is what a user
pays.

What it showed (Python 3.11, 2-core x86-64, --jobs 2): the workload comparison 10.7 s
serial, 5.9 s in two processes (1.8x); the 32 checks 3.8 s and 2.7 s (1.4x: each check
takes a tenth of a second, so start-up and pickling weigh more). Same tables both ways.

Usage: ``python bench/bench_scale.py [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from pagesim.cli.compare import compare
from pagesim.cli.simulate import simulate_job
from pagesim.explore.common import Bounds
from pagesim.model.kernels import releases
from pagesim.scale import Pool, ProcessPool, SerialPool
from pagesim.sim.demo import DEMO_KERNELS, DEMO_SEED, demo_workload


def workload_rows(pool: Pool) -> list[Any]:
    w = demo_workload()
    source = (None, None, None, None)
    results = pool.map(simulate_job, [(w, source, k, None, None, DEMO_SEED, False)
                                      for k in DEMO_KERNELS])
    return [(r.kernel, r.counters.page_ops, r.steps) for r in results]


def check_rows(pool: Pool) -> list[Any]:
    rows = compare("pcp-alloc-free", releases(), None, "dpor", Bounds(), pool)
    return [(r.kernel, r.result.verdict, r.result.executions) for r in rows]


def timed(fn: Callable[[Pool], list[Any]], pool: Pool) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    with pool:
        rows = fn(pool)
    return time.perf_counter() - t0, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="local processes of the pool")
    args = ap.parse_args(argv)
    print(f"pagesim scale benchmark: serial against {args.jobs} local processes "
          f"(Python {sys.version.split()[0]})")
    print(f"{'comparison':<44}{'jobs':>6}{'serial s':>10}{'pool s':>9}{'speed-up':>10}"
          f"{'same':>6}")
    for name, fn, n in (("compare --workload offline-under-load", workload_rows,
                         len(DEMO_KERNELS)),
                        ("compare pcp-alloc-free, every generation", check_rows,
                         len(releases()))):
        serial, rows_s = timed(fn, SerialPool())
        pooled, rows_p = timed(fn, ProcessPool(args.jobs))
        print(f"{name:<44}{n:>6}{serial:>10.1f}{pooled:>9.1f}{serial / pooled:>9.2f}x"
              f"{'yes' if rows_s == rows_p else 'NO':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
