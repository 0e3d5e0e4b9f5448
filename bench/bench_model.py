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

Each path runs twice: linked (``.fast`` as the model runs it: callees inlined and one
branch per generation, :mod:`pagesim.runtime.linker`) and plain (``inlining(False)``:
every kernel call a call). Times are CPU time of this process (``time.process_time``),
best of several runs, so other processes on a shared box move the ratios less.

Why 10x is out of reach: the last table prices the operations a pair cannot avoid, in
floor units, and a "bound": the v5.11 pcp pair written by hand with the same three calls
per pair as the measured loop (take, prep_new_page, give), each body straight-line, with
no generation tests and no redundant load or store, doing only the reads and writes of
the per-pfn arrays and the pcp that the model must do. It lands at about 11-12x: the
arrays are bytearrays and int32 arrays (16.5 bytes a page), a read-modify-write of one
element costs about one floor (an int32 one almost two), a call most of one, and a pair
does about a dozen element accesses and three calls.

The last rows try the one layout change left: the same machine with its per-pfn fields
as Python lists, the cheapest element access Python has (:func:`as_lists`). That layout
takes 48 bytes a page, over the 32-byte target, and still leaves the linked pair at
about 14.5x; only the hand-written bound dips under 10x on it (9.7x seen). The two
targets cannot both be met by CPython code that keeps the model's checks.

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
from array import array
from collections.abc import Callable

from pagesim.model.build import simple_machine
from pagesim.model.mmzone import (
    MIGRATE_MOVABLE,
    Machine,
    PG_lru,
    PG_pcp,
    PG_transit,
    Zone,
)
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
from pagesim.runtime.linker import inlining
from pagesim.runtime.ops import CURRENT


def _best_of(fn: Callable[[int], None], n: int, repeats: int = 5) -> float:
    """Seconds per iteration, best of ``repeats`` runs of ``n`` iterations."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.process_time()
        fn(n)
        best = min(best, (time.process_time() - t0) / n)
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


def _bound_take(m: Machine, zone: Zone) -> int:
    pcp = zone.per_cpu_pageset[CURRENT.cpu]
    pfn: int = pcp.lists[MIGRATE_MOVABLE].popleft()
    m.flags[pfn] = m.flags[pfn] & ~PG_pcp | PG_transit
    pcp.count -= 1
    return pfn


def _bound_give(m: Machine, pfn: int) -> None:
    flags = m.flags
    f = flags[pfn]  # free_pages_prepare's checks
    if f & 0x77 or m.refcount[pfn] or m.private[pfn]:
        raise AssertionError("bad page")
    mt = m.pb_type[m.pageblock_flags[pfn >> m.pageblock_order]]
    m.index[pfn] = mt
    pcp = m.zones[m.zone_id[pfn]].per_cpu_pageset[CURRENT.cpu]
    pcp.lists[mt].appendleft(pfn)
    flags[pfn] = f & ~(PG_lru | PG_transit) | PG_pcp
    pcp.count += 1
    if pcp.count >= pcp.high:
        raise AssertionError("the bound does not flush")


def bound_pairs(m: Machine) -> Callable[[int], None]:
    """The v5.11 pcp pair written by hand with the same three calls per pair as
    :func:`pcp_pairs`: each body straight-line, only the loads and stores a pair cannot
    avoid (the checks of free_pages_prepare, the pageblock read, the list moves, the
    flags), no generation tests, no refill or flush."""
    zone = m.zone("Normal")

    def run(n: int) -> None:
        for _ in range(n):
            pfn = _bound_take(m, zone)
            prep_new_page(m, pfn, 0, MIGRATE_MOVABLE)
            m.refcount[pfn] = 0
            _bound_give(m, pfn)
    return run


#: the per-pfn byte and int arrays that a pcp pair reads or writes
PFN_FIELDS = ("flags", "private", "index", "refcount", "zone_id", "pageblock_flags")


def as_lists(m: Machine, names: tuple[str, ...] = PFN_FIELDS) -> Machine:
    """The layout experiment: ``m`` with its per-pfn fields as Python lists (one 8-byte
    pointer a pfn each, against 1 or 4 bytes), which the model's code accepts unchanged
    because it only subscripts them. Lists are the cheapest element access Python has;
    the rows measured on such a machine say how far a layout change alone could go."""
    for name in names:
        setattr(m, name, list(getattr(m, name)))
    return m


def _call5(a: int, b: int, c: int, d: int, e: int) -> None:
    return None


def unit_costs(n: int) -> list[tuple[str, float]]:
    """Seconds per operation of what a pair is made of (loop overhead included, as in
    the floor)."""
    ba = bytearray(1024)
    ar = array("i", bytes(4 * 1024))
    li = [0] * 1024

    def rmw(seq: bytearray | array[int] | list[int]) -> Callable[[int], None]:
        def run(k: int) -> None:
            p = 512
            for _ in range(k):
                seq[p] = seq[p] & ~4 | 64
        return run

    def call(k: int) -> None:
        for i in range(k):
            _call5(i, i, i, i, i)

    return [("bytearray element read-modify-write", _best_of(rmw(ba), n)),
            ("array('i') element read-modify-write", _best_of(rmw(ar), n)),
            ("list element read-modify-write", _best_of(rmw(li), n)),
            ("Python call, 5 arguments", _best_of(call, n))]


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
    rows = [("floor: list push+pop", "", floor, 0.0)]
    paths = (("alloc_pages+__free_pages", entry_pairs),
             ("pcp: rmqueue_pcplist+free_unref_page", pcp_pairs),
             ("buddy: rmqueue_buddy+__free_pages_ok", buddy_pairs))
    for kname in args.kernels.split(","):
        m = simple_machine(kern=kname, nr_cpus=2, zones=(("Normal", 1 << 18),))
        for name, runner in paths:
            runner(m)(10)  # link on first use, outside the timing
            linked = _best_of(runner(m), args.pairs)
            with inlining(False):
                plain = _best_of(runner(m), args.pairs)
            rows.append((name, kname, linked, plain))
    bound_m = simple_machine(kern="v5.11", nr_cpus=2, zones=(("Normal", 1 << 18),))
    pcp_pairs(bound_m)(10)  # fill the pcplist
    bound = _best_of(bound_pairs(bound_m), args.pairs)
    list_m = as_lists(simple_machine(kern="v5.11", nr_cpus=2, zones=(("Normal", 1 << 18),)))
    pcp_pairs(list_m)(10)
    list_linked = _best_of(pcp_pairs(list_m), args.pairs)
    list_bound = _best_of(bound_pairs(list_m), args.pairs)
    list_bytes = 8 * len(PFN_FIELDS[:-1]) + 8  # five pointer lists and the two lru links
    units = unit_costs(args.pairs)

    print(f"pagesim model benchmark, kernel {args.kernel}, Python {sys.version.split()[0]}")
    print()
    print(f"{'memory':<34}{'value':>14}{'target':>10}")
    print(f"{'machine built':<34}{f'{args.gib} GiB':>14}")
    print(f"{'build time (s)':<34}{build_s:>14.2f}")
    print(f"{'model state bytes/page':<34}{per_page:>14.1f}{'<= 32':>10}")
    print(f"{'peak RSS growth bytes/page':<34}{rss_per_page:>14.1f}")
    print()
    print(f"{'order-0 alloc+free pair':<40}{'kernel':>8}{'ns/pair':>10}{'pairs/s':>12}"
          f"{'x floor':>9}{'plain':>8}")
    for name, kname, sec, plain in rows:
        plain_x = f"{plain / floor:>8.1f}" if plain else ""
        print(f"{name:<40}{kname:>8}{sec * 1e9:>10.0f}{1 / sec:>12,.0f}{sec / floor:>9.1f}"
              f"{plain_x}")
    print()
    print(f"{'why not 10x: unit costs':<48}{'ns':>8}{'x floor':>9}")
    for name, sec in units:
        print(f"{name:<48}{sec * 1e9:>8.0f}{sec / floor:>9.1f}")
    print(f"{'bound: v5.11 pcp pair by hand, same 3 calls':<48}{bound * 1e9:>8.0f}"
          f"{bound / floor:>9.1f}")
    print(f"per-pfn fields as lists ({list_bytes} bytes/page):")
    print(f"{'  pcp pair, v5.11, linked':<48}{list_linked * 1e9:>8.0f}"
          f"{list_linked / floor:>9.1f}")
    print(f"{'  bound by hand':<48}{list_bound * 1e9:>8.0f}{list_bound / floor:>9.1f}")
    print()
    print("targets: model state <= 32 bytes/page; pcp fast path within 10x of the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
