# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark: what tracing costs the model's hot path, and what writing traces costs.

The same order-0 alloc+free loop (``alloc_pages`` / ``__free_pages``, pcplists with
refills and flushes) runs with ``m.tracer = None``, with a sink that drops every event
(the cost of the tracepoints' calls alone), and with a :class:`pagesim.trace.Tracer`
collecting them. Each figure is printed against the untraced loop measured in the same
run. Then the collected events are written as ftrace text and trace-event JSON.

Usage: ``python bench/bench_trace.py [--pairs 100000] [--kernels v5.11,v6.19]``.
Target (issue 5): tracing on costs at most 2x tracing off.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from pagesim.model.build import simple_machine
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine
from pagesim.model.page_alloc import __free_pages, alloc_pages
from pagesim.model.pageset import set_pcp_limits
from pagesim.runtime.kernelfn import fast
from pagesim.runtime.ops import CURRENT
from pagesim.trace import TraceFormat, Tracer, render_ftrace, render_perfetto


def _best_of(fn: Callable[[int], None], n: int, reset: Callable[[], None],
             repeats: int = 5) -> float:
    """Seconds per iteration, best of ``repeats`` runs of ``n`` iterations."""
    best = float("inf")
    for _ in range(repeats):
        reset()
        gc.collect()
        t0 = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - t0) / n)
    reset()
    return best


def pairs(m: Machine) -> Callable[[int], None]:
    """alloc+free of two pages in turn, so the pcplist refills and flushes (batch 31,
    high 186: one refill and one flush of a batch every ~30 pairs)."""
    alloc = fast(alloc_pages)
    free = fast(__free_pages)

    def run(n: int) -> None:
        for _ in range(n // 64):
            held = [alloc(m, 0, MIGRATE_MOVABLE) for _ in range(64)]
            for pfn in held:
                free(m, pfn, 0)
    return run


def machine(kname: str) -> Machine:
    m = simple_machine(kern=kname, nr_cpus=2, zones=(("Normal", 1 << 16),))
    set_pcp_limits(m, m.zone("Normal"), 48, 16)
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64_000, help="alloc+free pairs per run")
    ap.add_argument("--kernels", default="v5.11,v6.19", help="generations to measure")
    args = ap.parse_args(argv)
    CURRENT.cpu = 0
    n = max(64, args.pairs // 64 * 64)

    rows: list[tuple[str, str, float, float]] = []
    writes: list[tuple[str, str, int, float]] = []
    for kname in args.kernels.split(","):
        m = machine(kname)
        run = pairs(m)
        off = _best_of(run, n, lambda: None)
        rows.append(("tracing off (m.tracer = None)", kname, off, 1.0))

        def drop(event: str, fields: dict[str, Any]) -> None:
            pass

        m.tracer = drop
        t = _best_of(run, n, lambda: None)
        rows.append(("tracepoints to a no-op sink", kname, t, t / off))
        tracer = Tracer()
        m.tracer = tracer
        t = _best_of(run, n, tracer.clear)
        rows.append(("Tracer collecting events", kname, t, t / off))
        run(n)  # one more run to keep its events for the writers
        m.tracer = None
        events = list(tracer.events)
        fmt = TraceFormat.of(m.kernel, m.geom.cma)
        t0 = time.perf_counter()
        render_ftrace(events, fmt, m.nr_cpus)
        writes.append(("ftrace text", kname, len(events), time.perf_counter() - t0))
        t0 = time.perf_counter()
        render_perfetto(events, nr_cpus=m.nr_cpus)
        writes.append(("trace-event JSON", kname, len(events), time.perf_counter() - t0))

    print(f"pagesim tracing benchmark, Python {sys.version.split()[0]}, {n} pairs per run")
    print()
    print(f"{'order-0 alloc+free pair':<34}{'kernel':>8}{'ns/pair':>10}{'x off':>8}")
    for name, kname, sec, ratio in rows:
        print(f"{name:<34}{kname:>8}{sec * 1e9:>10.0f}{ratio:>8.2f}")
    print()
    print(f"{'writer':<34}{'kernel':>8}{'events':>10}{'events/s':>12}")
    for name, kname, count, sec in writes:
        print(f"{name:<34}{kname:>8}{count:>10}{count / sec:>12,.0f}")
    print()
    print("target: tracing on costs at most 2x tracing off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
