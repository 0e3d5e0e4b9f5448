# SPDX-License-Identifier: GPL-2.0-only
"""Zone watermarks, min_free_kbytes and lowmem_reserve, as pure functions.

They matter to pagesim because since 5.14 a zone's pcp ``high`` is derived from its low
watermark (:func:`pagesim.model.pcp_limits.zone_highsize`), and the watermarks of *every*
zone are recomputed after each memory online or offline: onlining memory in one zone
changes the pcp limits of all of them.

The kernel recomputes them in ``init_per_zone_wmark_min()`` (mm/page_alloc.c), which
runs at boot (postcore initcall) and after every successful online/offline:

1. ``calculate_min_free_kbytes()``: ``sqrt(16 * lowmem kB)`` clamped to [128, 262144],
   unless the user set a larger value. "lowmem" is ``nr_free_buffer_pages()``, i.e.
   managed minus the *current* high watermark of the zones GFP_USER may use.
2. ``setup_per_zone_wmarks()``: each lowmem zone gets a share of ``min_free_kbytes``
   proportional to its managed pages (:func:`setup_per_zone_wmarks`).
3. ``setup_per_zone_lowmem_reserve()`` (:func:`lowmem_reserve`).
4. With THP enabled (and khugepaged running), ``set_recommended_min_free_kbytes()``
   (mm/khugepaged.c) raises ``min_free_kbytes`` to a few pageblocks per zone and redoes
   step 2. On a THP kernel this recommendation, not the square root, is usually what
   /proc/sys/vm/min_free_kbytes shows. At boot the same step runs once khugepaged
   starts (late initcall). :func:`init_per_zone_wmark_min` chains all of this.

Generation differences (features of :class:`pagesim.model.kernels.Kernel`):
``wmark_promo`` (6.0: WMARK_PROMO),
``wmark_movable_highmem`` (6.6: ZONE_MOVABLE gets the small highmem-style min and is not
counted as lowmem), ``khugepaged_min_free_on_hotplug`` (5.10: step 4 after hotplug) and
``lowmem_reserve_sum_upper`` (5.11: how lowmem_reserve sums the upper zones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pagesim.model.kernels import Kernel
from pagesim.model.pcp_limits import PAGE_SHIFT

#: calculate_min_free_kbytes() clamp (mm/page_alloc.c; the same in every tree read,
#: [K510] ``init_per_zone_wmark_min`` .. [K619] ``calculate_min_free_kbytes``).
MIN_FREE_KBYTES_MIN = 128
MIN_FREE_KBYTES_MAX = 262144
#: include/linux/swap.h: the floor of a highmem-like zone's min watermark.
SWAP_CLUSTER_MAX = 32
#: Highmem-like zones get ``managed / 1024`` clamped to [SWAP_CLUSTER_MAX, this].
HIGHMEM_MIN_PAGES_MAX = 128
#: include/linux/mmzone.h: MIGRATE_UNMOVABLE, _MOVABLE, _RECLAIMABLE.
MIGRATE_PCPTYPES = 3
#: x86-64 pageblock_order (HUGETLB_PAGE_ORDER = 21 - 12).
PAGEBLOCK_ORDER = 9
#: vm.watermark_scale_factor default (per ten thousand of managed pages).
WATERMARK_SCALE_FACTOR = 10
#: vm.lowmem_reserve_ratio defaults by zone name (mm/page_alloc.c
#: sysctl_lowmem_reserve_ratio; ZONE_DEVICE is not initialised, hence 0).
DEFAULT_LOWMEM_RESERVE_RATIO = {"DMA": 256, "DMA32": 256, "Normal": 32, "HighMem": 0,
                                "Movable": 0, "Device": 0}
#: Zones above gfp_zone(GFP_USER) = ZONE_NORMAL: no GFP_USER allocation comes from them,
#: so nr_free_buffer_pages() and the THP zone count leave them out.
_ABOVE_NORMAL = frozenset({"HighMem", "Movable", "Device"})


@dataclass(frozen=True)
class WmarkZone:
    """What the watermark code needs of a zone; zones are given in zone-index order.

    ``highmem`` is ``is_highmem()`` (ZONE_HIGHMEM on 32-bit); ZONE_MOVABLE, ZONE_DEVICE
    and the GFP_USER limit are recognised by ``name`` as /proc/zoneinfo prints it.
    ``present`` decides ``populated_zone()`` for the THP zone count (defaults to
    ``managed``).
    """

    name: str
    managed: int
    highmem: bool = False
    present: int | None = None

    @classmethod
    def of(cls, name: str, managed: int, present: int | None = None) -> WmarkZone:
        """A zone whose highmem-ness follows from its name."""
        return cls(name, managed, highmem=(name == "HighMem"), present=present)

    @property
    def movable(self) -> bool:
        return self.name == "Movable"

    @property
    def gfp_user(self) -> bool:
        """zone_idx <= gfp_zone(GFP_USER): the zones nr_free_buffer_pages() counts."""
        return not self.highmem and self.name not in _ABOVE_NORMAL

    @property
    def populated(self) -> bool:
        return (self.managed if self.present is None else self.present) > 0


@dataclass(frozen=True)
class Watermarks:
    """``zone->_watermark[]`` as /proc/zoneinfo prints it (boost is 0 after a setup).

    ``promo`` (WMARK_PROMO) exists since 6.0 and is None before.
    """

    min: int
    low: int
    high: int
    promo: int | None = None


def int_sqrt(x: int) -> int:
    """lib/math/int_sqrt.c: floor of the square root."""
    if x < 0:
        raise ValueError(f"int_sqrt of a negative number: {x}")
    return math.isqrt(x)


def calculate_min_free_kbytes(lowmem_kbytes: int, k: Kernel) -> int:
    """The default min_free_kbytes: ``sqrt(16 * lowmem_kbytes)`` within [128, 262144].

    The square root makes the reserve grow slower than memory: 16 MiB of lowmem gives
    512 kB, 1 GiB about 4 MB, 16 GiB about 16 MB. ``lowmem_kbytes`` is
    ``nr_free_buffer_pages() * PAGE_SIZE / 1024`` (:func:`nr_free_buffer_pages`). The
    bounds are the same for every generation pagesim models (``k`` is accepted for
    uniformity). mm/page_alloc.c ``calculate_min_free_kbytes`` ([K600], [K606], [K619];
    inline in ``init_per_zone_wmark_min`` in [K510], [K511], [K514]). The caller keeps
    a larger user-set value (``user_min_free_kbytes``), see :func:`init_per_zone_wmark_min`.
    """
    del k
    if lowmem_kbytes < 0:
        raise ValueError(f"lowmem_kbytes must be >= 0, got {lowmem_kbytes}")
    return min(max(int_sqrt(lowmem_kbytes * 16), MIN_FREE_KBYTES_MIN), MIN_FREE_KBYTES_MAX)


def nr_free_buffer_pages(zones: Sequence[WmarkZone], high_wmarks: Sequence[int]) -> int:
    """Pages GFP_USER could use above the high watermarks: the "lowmem" of
    calculate_min_free_kbytes and of the THP 5 % cap. Uses the watermarks in force at the
    time of the call, so the result depends on the previous setup.
    mm/page_alloc.c ``nr_free_buffer_pages``/``nr_free_zone_pages``.
    """
    if len(high_wmarks) != len(zones):
        raise ValueError("one high watermark per zone is needed")
    return sum(max(0, z.managed - h) for z, h in zip(zones, high_wmarks, strict=True)
               if z.gfp_user)


def thp_zone_count(zones: Sequence[WmarkZone]) -> int:
    """Populated zones GFP_USER allocations can fragment (not Movable: it only holds
    movable pages). mm/khugepaged.c ``set_recommended_min_free_kbytes``."""
    return sum(1 for z in zones if z.populated and z.gfp_user)


def recommended_min_free_kbytes(nr_zones: int, nr_free_buffer_pages: int, *,
                                pageblock_order: int = PAGEBLOCK_ORDER,
                                page_shift: int = PAGE_SHIFT) -> int:
    """khugepaged's wish for min_free_kbytes: per zone, 2 free pageblocks plus 3 x 3 for
    the migratetype fallbacks, never more than 5 % of lowmem.

    mm/khugepaged.c ``set_recommended_min_free_kbytes`` ([K510]..[K619], unchanged).
    """
    if nr_zones < 0 or nr_free_buffer_pages < 0:
        raise ValueError("nr_zones and nr_free_buffer_pages must be >= 0")
    pageblock_nr_pages = 1 << pageblock_order
    pages = pageblock_nr_pages * nr_zones * 2
    pages += pageblock_nr_pages * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    pages = min(pages, nr_free_buffer_pages // 20)
    return pages << (page_shift - 10)


def set_recommended_min_free_kbytes(min_free_kbytes: int, nr_zones: int,
                                    nr_free_buffer_pages: int, *,
                                    pageblock_order: int = PAGEBLOCK_ORDER,
                                    page_shift: int = PAGE_SHIFT) -> int:
    """min_free_kbytes after khugepaged's recommendation: only ever raised, even over a
    user-set value (the user setting only silences the log message)."""
    rec = recommended_min_free_kbytes(nr_zones, nr_free_buffer_pages,
                                      pageblock_order=pageblock_order,
                                      page_shift=page_shift)
    return max(min_free_kbytes, rec)


def _highmem_like(k: Kernel, zone: WmarkZone) -> bool:
    return zone.highmem or (zone.movable and k.wmark_movable_highmem)


def setup_per_zone_wmarks(k: Kernel, zones: Sequence[WmarkZone], min_free_kbytes: int,
                          watermark_scale_factor: int = WATERMARK_SCALE_FACTOR, *,
                          page_shift: int = PAGE_SHIFT) -> list[Watermarks]:
    """Every zone's min/low/high(/promo) for a given min_free_kbytes.

    Lowmem zones split ``min_free_kbytes`` in proportion to their managed pages;
    highmem-like zones (HighMem, and ZONE_MOVABLE since 6.6) get only
    ``clamp(managed / 1024, 32, 128)`` as min, because the emergency allocations the min
    reserve is for cannot use them, but keep the proportional share as the base of their
    kswapd distances. The low/high/promo steps are the larger of a quarter of that share
    and ``watermark_scale_factor`` / 10000 of the zone. ``zones`` lists every zone of
    every node (``for_each_zone``), empty ones included.
    mm/page_alloc.c ``__setup_per_zone_wmarks`` ([K510] high = min + 2*step, [K600]+
    high = low + step: the same value; [K606]/[K619] treat ZONE_MOVABLE like highmem).
    """
    if min_free_kbytes < 0 or watermark_scale_factor < 0:
        raise ValueError("min_free_kbytes and watermark_scale_factor must be >= 0")
    pages_min = min_free_kbytes >> (page_shift - 10)
    lowmem_pages = sum(z.managed for z in zones if not _highmem_like(k, z))
    if lowmem_pages == 0:
        raise ValueError("no lowmem zone has managed pages: the kernel would divide by 0")
    promo = k.wmark_promo
    out: list[Watermarks] = []
    for z in zones:
        share = pages_min * z.managed // lowmem_pages
        if _highmem_like(k, z):
            wmin = min(max(z.managed // 1024, SWAP_CLUSTER_MAX), HIGHMEM_MIN_PAGES_MAX)
        else:
            wmin = share
        step = max(share >> 2, z.managed * watermark_scale_factor // 10000)
        out.append(Watermarks(min=wmin, low=wmin + step, high=wmin + 2 * step,
                              promo=wmin + 3 * step if promo else None))
    return out


def lowmem_reserve(k: Kernel, zones: Sequence[WmarkZone],
                   ratios: Sequence[int] | None = None) -> list[list[int]]:
    """``zone->lowmem_reserve[]`` of one node's zones (the zoneinfo ``protection:`` line).

    Entry ``[i][j]`` is how many pages of zone i an allocation that could have used
    zones up to j must leave alone: the managed pages of zones i+1..j divided by zone
    i's ratio; 0 when zone i is empty or its ratio is 0, and for j <= i. ``zones`` must
    be all MAX_NR_ZONES zones of the node in index order; ``ratios`` defaults to
    vm.lowmem_reserve_ratio's defaults by name. Before 5.11 a ratio-0 zone between i
    and j (ZONE_MOVABLE) was left out of the sum. mm/page_alloc.c
    ``setup_per_zone_lowmem_reserve`` ([K510] old loop; [K511]..[K619]).
    """
    if ratios is None:
        ratios = [DEFAULT_LOWMEM_RESERVE_RATIO.get(z.name, 0) for z in zones]
    if len(ratios) != len(zones):
        raise ValueError("one lowmem_reserve_ratio per zone is needed")
    if any(r < 0 for r in ratios):
        raise ValueError("lowmem_reserve_ratio values must be >= 0 (the sysctl turns "
                         "negative ones into 0)")
    n = len(zones)
    reserve = [[0] * n for _ in range(n)]
    if k.lowmem_reserve_sum_upper:
        for i in range(n - 1):
            clear = ratios[i] == 0 or zones[i].managed == 0
            upper = 0
            for j in range(i + 1, n):
                upper += zones[j].managed
                reserve[i][j] = 0 if clear else upper // ratios[i]
        return reserve
    for j in range(n):
        upper = zones[j].managed
        for idx in range(j - 1, -1, -1):
            if ratios[idx] == 0 or zones[idx].managed == 0:
                reserve[idx][j] = 0
                continue
            reserve[idx][j] = upper // ratios[idx]
            upper += zones[idx].managed
    return reserve


@dataclass(frozen=True)
class WmarkSetup:
    """Result of :func:`init_per_zone_wmark_min`."""

    min_free_kbytes: int
    watermarks: tuple[Watermarks, ...]


def init_per_zone_wmark_min(k: Kernel, zones: Sequence[WmarkZone], *,
                            prev_high: Sequence[int] | None = None,
                            min_free_kbytes: int = 0,
                            user_min_free_kbytes: int = -1,
                            thp: bool = True,
                            boot: bool = False,
                            watermark_scale_factor: int = WATERMARK_SCALE_FACTOR,
                            pageblock_order: int = PAGEBLOCK_ORDER,
                            page_shift: int = PAGE_SHIFT) -> WmarkSetup:
    """The whole recomputation after a memory online/offline (or at boot).

    ``prev_high`` are the zones' high watermarks before the call (None: all 0, as at
    boot), which feed the square-root default through nr_free_buffer_pages(). ``boot``
    models the postcore initcall followed by khugepaged's start (``hugepage_init`` →
    ``start_stop_khugepaged``), which applies the THP recommendation in every
    generation, with unchanged managed pages in between.
    ``min_free_kbytes`` is the current value, kept when the user set a value
    (``user_min_free_kbytes`` >= the square root). ``thp`` means THP enabled with
    khugepaged running: then the recommendation is applied on top (at boot when
    khugepaged starts; after hotplug only since 5.10). The lowmem reserves are not part
    of the result: :func:`lowmem_reserve` depends on managed pages only.
    mm/page_alloc.c ``init_per_zone_wmark_min``; mm/khugepaged.c
    ``khugepaged_min_free_kbytes_update``/``set_recommended_min_free_kbytes``.
    """
    if prev_high is None:
        prev_high = [0] * len(zones)
    lowmem_kbytes = nr_free_buffer_pages(zones, prev_high) << (page_shift - 10)
    new_min = int_sqrt(lowmem_kbytes * 16)
    if new_min > user_min_free_kbytes:
        min_free_kbytes = calculate_min_free_kbytes(lowmem_kbytes, k)
    wm = setup_per_zone_wmarks(k, zones, min_free_kbytes, watermark_scale_factor,
                               page_shift=page_shift)
    if thp and (boot or k.khugepaged_min_free_on_hotplug):
        raised = set_recommended_min_free_kbytes(
            min_free_kbytes, thp_zone_count(zones),
            nr_free_buffer_pages(zones, [w.high for w in wm]),
            pageblock_order=pageblock_order, page_shift=page_shift)
        # set_recommended_min_free_kbytes() always redoes the watermarks; with an
        # unchanged min_free_kbytes that gives the same values.
        min_free_kbytes = raised
        wm = setup_per_zone_wmarks(k, zones, min_free_kbytes, watermark_scale_factor,
                                   page_shift=page_shift)
    return WmarkSetup(min_free_kbytes, tuple(wm))

