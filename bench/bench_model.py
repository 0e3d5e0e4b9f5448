# SPDX-License-Identifier: GPL-2.0-only
"""Benchmark of the sequential model: memory per page and the cost of the hot paths.

Every figure is printed beside a baseline measured in the same run, so the ratios hold
on a noisy or slower machine:

* model bytes per page: the per-pfn arrays and pageblock bits of a real-size machine,
  and the process's peak RSS growth while building it;
* order-0 alloc+free pairs, per kernel generation, through the entry points
  (``alloc_pages`` / ``__free_pages``), through the pcp layer alone (``rmqueue_pcplist``
  / ``free_unref_page``) and through the buddy (``rmqueue_buddy`` / ``__free_pages_ok``),
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
    free_unref_page,
    prep_new_page,
    rmqueue_buddy,
    rmqueue_pcplist,
)
from pagesim.model.presets import preset_machine
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


def entry_pairs(m: Machine) -> Callable[[int], None]:
    """alloc_pages / __free_pages: watermark check, zonelist, pcp, prep, refcount."""
    alloc = fast(alloc_pages)
    free = fast(__free_pages)

    def run(n: int) -> None:
        for _ in range(n):
            pfn = alloc(m, 0, MIGRATE_MOVABLE)
            free(m, pfn, 0)
    return run


# The three runners repeat their loop on purpose: sharing it through callables would add
# two Python calls to every measured pair and inflate the figures by about a tenth.


def pcp_pairs(m: Machine) -> Callable[[int], None]:
    """rmqueue_pcplist / free_unref_page: the pcp layer itself."""
    take = fast(rmqueue_pcplist)
    give = fast(free_unref_page)
    zone = m.zone("Normal")

    def run(n: int) -> None:
        for _ in range(n):
            pfn = take(m, zone, 0, MIGRATE_MOVABLE, 0)
            prep_new_page(m, pfn, 0, MIGRATE_MOVABLE)
            m.refcount[pfn] = 0
            give(m, pfn, 0)
    return run


def buddy_pairs(m: Machine) -> Callable[[int], None]:
    """rmqueue_buddy / __free_pages_ok: an order-0 block through zone->lock."""
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
    ap.add_argument("--kernel", default="v6.19", help="generation of the big machine")
    ap.add_argument("--kernels", default="v5.11,v6.19", help="generations of the hot paths")
    args = ap.parse_args(argv)
    CURRENT.cpu = 0

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    big = preset_machine(f"{args.gib}g-8cpu", args.kernel)
    build_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_page = state_bytes(big) / big.end_pfn
    rss_per_page = (rss1 - rss0) * 1024 / big.end_pfn
    del big
    gc.collect()

    floor = _best_of(floor_loop, args.pairs)
    rows = [("floor: list push+pop", "", floor)]
    for kname in args.kernels.split(","):
        m = simple_machine(kern=kname, nr_cpus=2, zones=(("Normal", 1 << 18),))
        rows.append(("alloc_pages+__free_pages", kname, _best_of(entry_pairs(m), args.pairs)))
        rows.append(("pcp: rmqueue_pcplist+free_unref_page", kname,
                     _best_of(pcp_pairs(m), args.pairs)))
        rows.append(("buddy: rmqueue_buddy+__free_pages_ok", kname,
                     _best_of(buddy_pairs(m), args.pairs)))

    print(f"pagesim model benchmark, kernel {args.kernel}, Python {sys.version.split()[0]}")
    print()
    print(f"{'memory':<34}{'value':>14}{'target':>10}")
    print(f"{'machine built':<34}{f'{args.gib} GiB':>14}")
    print(f"{'build time (s)':<34}{build_s:>14.2f}")
    print(f"{'model state bytes/page':<34}{per_page:>14.1f}{'<= 32':>10}")
    print(f"{'peak RSS growth bytes/page':<34}{rss_per_page:>14.1f}")
    print()
    print(f"{'order-0 alloc+free pair':<40}{'kernel':>8}{'ns/pair':>10}{'pairs/s':>12}"
          f"{'x floor':>9}")
    for name, kname, sec in rows:
        print(f"{name:<40}{kname:>8}{sec * 1e9:>10.0f}{1 / sec:>12,.0f}{sec / floor:>9.1f}")
    print()
    print("targets: model state <= 32 bytes/page; pcp fast path within 10x of the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
