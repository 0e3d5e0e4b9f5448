# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark of the sequential model: memory per page and the cost of the hot paths.

Every figure is printed beside a baseline measured in the same run, so the ratios hold
on a noisy or slower machine:

* model bytes per page: the per-pfn arrays and pageblock bits of a real-size machine,
  and the process's peak RSS growth while building it;
* order-0 alloc+free pairs through the pcp fast path (``alloc_pages`` /
  ``__free_pages``) and through the buddy (``rmqueue_buddy`` / ``__free_pages_ok``),
  each against the floor of plain Python: a bare ``list.append``/``list.pop`` loop.

Usage: ``python bench/bench_model.py [--gib 64] [--pairs 300000] [--kernel v6.19]``.
Targets (issue 2): <= 32 bytes of model state per page; pcp fast path within 10x of the
floor.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Callable

from pagesim.model.build import simple_machine
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine
from pagesim.model.page_alloc import (
    __free_pages,
    __free_pages_ok,
    alloc_pages,
    prep_new_page,
    rmqueue_buddy,
)
from pagesim.runtime.kernelfn import fast
from pagesim.runtime.ops import CURRENT


def _best_of(fn: Callable[[int], None], n: int, repeats: int = 5) -> float:
    """Seconds per iteration, best of ``repeats`` runs of ``n`` iterations."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def floor_loop(n: int) -> None:
    lst: list[int] = []
    push = lst.append
    pop = lst.pop
    for i in range(n):
        push(i)
        pop()


def pcp_pairs(m: Machine) -> Callable[[int], None]:
    alloc = fast(alloc_pages)
    free = fast(__free_pages)

    def run(n: int) -> None:
        for _ in range(n):
            pfn = alloc(m, 0, MIGRATE_MOVABLE)
            free(m, pfn, 0)
    return run


def buddy_pairs(m: Machine) -> Callable[[int], None]:
    take = fast(rmqueue_buddy)
    give = fast(__free_pages_ok)
    zone = m.zone("Normal")

    def run(n: int) -> None:
        for _ in range(n):
            pfn = take(m, zone, 0, MIGRATE_MOVABLE, 0)
            prep_new_page(m, pfn, 0, MIGRATE_MOVABLE)
            m.refcount[pfn] = 0
            give(m, pfn, 0, 0)
    return run


def state_bytes(m: Machine) -> int:
    arrays = (m.flags, m.private, m.index, m.refcount, m.zone_id, m.lru_next, m.lru_prev,
              m.pageblock_flags)
    return sum(sys.getsizeof(a) for a in arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=int, default=64, help="size of the machine to build")
    ap.add_argument("--pairs", type=int, default=200_000, help="alloc+free pairs per run")
    ap.add_argument("--kernel", default="v6.19")
    args = ap.parse_args(argv)
    CURRENT.cpu = 0

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    pages = args.gib << 18
    big = simple_machine(kern=args.kernel, nr_cpus=8,
                         zones=(("DMA32", 1 << 20), ("Normal", pages - (1 << 20))))
    build_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_page = state_bytes(big) / big.end_pfn
    rss_per_page = (rss1 - rss0) * 1024 / big.end_pfn
    del big
    gc.collect()

    m = simple_machine(kern=args.kernel, nr_cpus=2, zones=(("Normal", 1 << 18),))
    floor = _best_of(floor_loop, args.pairs)
    pcp = _best_of(pcp_pairs(m), args.pairs)
    buddy = _best_of(buddy_pairs(m), args.pairs)

    rows = [
        ("floor: list push+pop", floor * 1e9, 1.0, ""),
        ("pcp fast path: alloc+free", pcp * 1e9, pcp / floor, "<= 10x"),
        ("buddy path: alloc+free", buddy * 1e9, buddy / floor, ""),
    ]
    print(f"pagesim model benchmark, kernel {args.kernel}, Python {sys.version.split()[0]}")
    print()
    print(f"{'memory':<34}{'value':>14}{'target':>10}")
    print(f"{'machine built':<34}{f'{args.gib} GiB':>14}")
    print(f"{'build time (s)':<34}{build_s:>14.2f}")
    print(f"{'model state bytes/page':<34}{per_page:>14.1f}{'<= 32':>10}")
    print(f"{'peak RSS growth bytes/page':<34}{rss_per_page:>14.1f}")
    print()
    print(f"{'hot path':<34}{'ns/pair':>14}{'x floor':>10}{'target':>10}")
    for name, ns, ratio, target in rows:
        print(f"{name:<34}{ns:>14.0f}{ratio:>10.1f}{target:>10}")
    print(f"{'pcp pairs per second':<34}{1 / pcp:>14,.0f}")
    print(f"{'buddy pairs per second':<34}{1 / buddy:>14,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
